//! `AvgPool`: the mean of each window (TensorFlow's `tf.nn.avg_pool2d`),
//! over the window's elements inside the input (SAME padding is not
//! counted). Its gradient is `AvgPoolGrad` (`compiler/src/grad/avg_pool.rs`).

use super::conv::{pool, pooled};
use super::{Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);

pub(super) use super::conv::pool_attrs_text as attrs_text;

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (conv, window) = pool(op)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: pooled(&conv, window, &ins[0].shape)?,
    }])
}

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let x = conv.nhwc(input(0)?);
    let &[batch, h, w, c] = x.shape() else {
        return Err("AvgPool takes an input of rank 4".into());
    };
    let g = conv.geometry([h, w], window)?;
    let mut y = conv.nhwc_mut(out.view_mut());
    if y.shape() != [batch, g[0].out, g[1].out, c] {
        return Err(format!("AvgPool: input {:?}, output {:?}", x.shape(), y.shape()));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                for ch in 0..c {
                    let (mut sum, mut count) = (T::zero(), 0usize);
                    for i in 0..window[0] {
                        let Some(ih) = g[0].input(oh, i, h) else { continue };
                        for j in 0..window[1] {
                            let Some(iw) = g[1].input(ow, j, w) else { continue };
                            sum = sum + x[[n, ih, iw, ch]];
                            count += 1;
                        }
                    }
                    y[[n, oh, ow, ch]] = sum / T::from_f64(count.max(1) as f64);
                }
            }
        }
    }
    Ok(())
}
