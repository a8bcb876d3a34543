//! `AvgPoolGrad`: the gradient of AvgPool (TensorFlow's `AvgPoolGrad`):
//! inputs (orig_input, read for its shape only, and grad); each window's
//! gradient spread evenly over its elements inside the input. Its gradient:
//! `compiler/src/grad/avg_pool_grad.rs`.

use super::conv::{pool, pooled};
use super::{same_shape, Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);

pub(super) use super::conv::pool_attrs_text as attrs_text;

/// grad has AvgPool's shape of orig_input; the output orig_input's.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (conv, window) = pool(op)?;
    let x = &ins[0].shape;
    let y = pooled(&conv, window, x)?;
    same_shape(&ins[1].shape, &y)
        .map_err(|_| format!("grad {} is not AvgPool's shape {y} of the input {x}", ins[1].shape))?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: x.clone(),
    }])
}

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let dy = conv.nhwc(input(1)?);
    out.fill(T::zero());
    let mut dx = conv.nhwc_mut(out.view_mut());
    let &[batch, h, w, c] = dx.shape() else {
        return Err("AvgPoolGrad makes an output of rank 4".into());
    };
    let g = conv.geometry([h, w], window)?;
    if dy.shape() != [batch, g[0].out, g[1].out, c] {
        return Err(format!("AvgPoolGrad: grad {:?}, output {:?}", dy.shape(), dx.shape()));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                let rows = (0..window[0]).filter(|&i| g[0].input(oh, i, h).is_some()).count();
                let cols = (0..window[1]).filter(|&j| g[1].input(ow, j, w).is_some()).count();
                let count = T::from_f64((rows * cols).max(1) as f64);
                for ch in 0..c {
                    let share = dy[[n, oh, ow, ch]] / count;
                    for i in 0..window[0] {
                        let Some(ih) = g[0].input(oh, i, h) else { continue };
                        for j in 0..window[1] {
                            let Some(iw) = g[1].input(ow, j, w) else { continue };
                            dx[[n, ih, iw, ch]] = dx[[n, ih, iw, ch]] + share;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
