//! `MaxPool`: the largest element of each window (TensorFlow's
//! `tf.nn.max_pool2d`). Its gradient is `MaxPoolGrad` (`compiler/src/grad/max_pool.rs`).

use super::conv::{argmax, pool, pooled};
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
        return Err("MaxPool takes an input of rank 4".into());
    };
    let g = conv.geometry([h, w], window)?;
    let mut y = conv.nhwc_mut(out.view_mut());
    if y.shape() != [batch, g[0].out, g[1].out, c] {
        return Err(format!("MaxPool: input {:?}, output {:?}", x.shape(), y.shape()));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                for ch in 0..c {
                    let at = argmax(&x, &g, window, (n, oh, ow, ch));
                    y[[n, oh, ow, ch]] = at.map_or(T::zero(), |(ih, iw)| x[[n, ih, iw, ch]]);
                }
            }
        }
    }
    Ok(())
}
