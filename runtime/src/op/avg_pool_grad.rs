//! `AvgPoolGrad`: the gradient of AvgPool (TensorFlow's `AvgPoolGrad`):
//! inputs (orig_input, read for its shape only, and grad); each window's
//! gradient spread evenly over its elements inside the input. Its gradient:
//! `compiler/src/grad/avg_pool_grad.rs`.

use super::conv::{pool, pooled};
use super::{same_shape, Arity, Op};
use super::conv_gemm::in_nhwc;
use super::pool::Pool;
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
float_kernel!();

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

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let dy = conv.nhwc(input(1)?);
    let dx = conv.nhwc_mut(out.view_mut());
    let p = Pool::of("AvgPoolGrad", &conv, window, dx.shape())?;
    Pool::check("AvgPoolGrad", "grad", dy.shape(), p.output())?;
    in_nhwc([&dy], dx, |[dy], dx| {
        p.avg_pool_grad(dy, dx);
        Ok(())
    })
}
