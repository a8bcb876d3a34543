//! `MaxPoolGrad`: the gradient of MaxPool (TensorFlow's `MaxPoolGrad`):
//! inputs (orig_input, orig_output, grad); each window's gradient goes to
//! its first maximum in scan order. Its gradient: `compiler/src/grad/max_pool_grad.rs`.

use super::conv::{argmax, pool, pooled};
use super::{same_shape, Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);

pub(super) use super::conv::pool_attrs_text as attrs_text;

/// orig_output and grad have MaxPool's shape of orig_input; the output has orig_input's.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (conv, window) = pool(op)?;
    let x = &ins[0].shape;
    let y = pooled(&conv, window, x)?;
    for (k, what) in [(1, "orig_output"), (2, "grad")] {
        same_shape(&ins[k].shape, &y).map_err(|_| {
            format!("{what} {} is not MaxPool's shape {y} of the input {x}", ins[k].shape)
        })?;
    }
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
    let x = conv.nhwc(input(0)?);
    let dy = conv.nhwc(input(2)?);
    let &[batch, h, w, c] = x.shape() else {
        return Err("MaxPoolGrad takes an input of rank 4".into());
    };
    let g = conv.geometry([h, w], window)?;
    out.fill(T::zero());
    let mut dx = conv.nhwc_mut(out.view_mut());
    if dy.shape() != [batch, g[0].out, g[1].out, c] || dx.shape() != x.shape() {
        return Err(format!(
            "MaxPoolGrad: input {:?}, grad {:?}, output {:?}",
            x.shape(),
            dy.shape(),
            dx.shape()
        ));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                for ch in 0..c {
                    if let Some((ih, iw)) = argmax(&x, &g, window, (n, oh, ow, ch)) {
                        dx[[n, ih, iw, ch]] = dx[[n, ih, iw, ch]] + dy[[n, oh, ow, ch]];
                    }
                }
            }
        }
    }
    Ok(())
}
