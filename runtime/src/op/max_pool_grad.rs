//! `MaxPoolGrad`: the gradient of MaxPool (TensorFlow's `MaxPoolGrad`):
//! inputs (orig_input, orig_output, grad); each window's gradient goes to
//! its first maximum in scan order. Its gradient: `compiler/src/grad/max_pool_grad.rs`.

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

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let (x, dy) = (conv.nhwc(input(0)?), conv.nhwc(input(2)?));
    let p = Pool::of("MaxPoolGrad", &conv, window, x.shape())?;
    Pool::check("MaxPoolGrad", "grad", dy.shape(), p.output())?;
    let dx = conv.nhwc_mut(out.view_mut());
    Pool::check("MaxPoolGrad", "the output", dx.shape(), p.input())?;
    in_nhwc([&x, &dy], dx, |[x, dy], dx| {
        p.max_pool_grad(x, dy, dx);
        Ok(())
    })
}
