//! `MaxPoolGradGrad`: the gradient of MaxPoolGrad's grad (TensorFlow's
//! `MaxPoolGradGrad`): inputs (orig_input, orig_output, grad of the input's
//! shape); each output takes grad at its window's first maximum. Its
//! gradient: `compiler/src/grad/max_pool_grad_grad.rs`.

use super::conv::{argmax, pool, pooled};
use super::{same_shape, Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);

pub(super) use super::conv::pool_attrs_text as attrs_text;

/// orig_output has MaxPool's shape of orig_input, grad orig_input's; the output orig_output's.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (conv, window) = pool(op)?;
    let x = &ins[0].shape;
    let y = pooled(&conv, window, x)?;
    same_shape(&ins[1].shape, &y)
        .map_err(|_| format!("orig_output {} is not MaxPool's shape {y} of the input {x}", ins[1].shape))?;
    same_shape(&ins[2].shape, x)
        .map_err(|_| format!("grad {} is not the input's shape {x}", ins[2].shape))?;
    Ok(vec![TensorType { dtype: dt, shape: y }])
}

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let x = conv.nhwc(input(0)?);
    let gx = conv.nhwc(input(2)?);
    let &[batch, h, w, c] = x.shape() else {
        return Err("MaxPoolGradGrad takes an input of rank 4".into());
    };
    let g = conv.geometry([h, w], window)?;
    let mut y = conv.nhwc_mut(out.view_mut());
    if y.shape() != [batch, g[0].out, g[1].out, c] || gx.shape() != x.shape() {
        return Err(format!(
            "MaxPoolGradGrad: input {:?}, grad {:?}, output {:?}",
            x.shape(),
            gx.shape(),
            y.shape()
        ));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                for ch in 0..c {
                    let at = argmax(&x, &g, window, (n, oh, ow, ch));
                    y[[n, oh, ow, ch]] = at.map_or(T::zero(), |(ih, iw)| gx[[n, ih, iw, ch]]);
                }
            }
        }
    }
    Ok(())
}
