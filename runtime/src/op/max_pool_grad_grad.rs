//! `MaxPoolGradGrad`: the gradient of MaxPoolGrad's grad (TensorFlow's
//! `MaxPoolGradGrad`): inputs (orig_input, orig_output, grad of the input's
//! shape); each output takes grad at its window's first maximum. Its
//! gradient: `compiler/src/grad/max_pool_grad_grad.rs`.

use super::conv::{pool, pooled};
use super::{same_shape, Arity, Op};
use super::conv_gemm::in_nhwc;
use super::pool::Pool;
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

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

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let (x, gx) = (conv.nhwc(input(0)?), conv.nhwc(input(2)?));
    let p = Pool::of("MaxPoolGradGrad", &conv, window, x.shape())?;
    Pool::check("MaxPoolGradGrad", "grad", gx.shape(), p.input())?;
    let y = conv.nhwc_mut(out.view_mut());
    Pool::check("MaxPoolGradGrad", "the output", y.shape(), p.output())?;
    in_nhwc([&x, &gx], y, |[x, gx], y| {
        p.max_pool_grad_grad(x, gx, y);
        Ok(())
    })
}
