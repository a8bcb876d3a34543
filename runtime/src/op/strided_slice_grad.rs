//! `StridedSliceGrad`: the gradient of StridedSlice: inputs (x, read for its
//! shape only, and dy of the slice's shape); zeros of x's shape with dy added
//! where the slice read (TensorFlow's `StridedSliceGrad`). Its rules are
//! StridedSlice's (`strided_slice.rs`); its gradient is StridedSlice of the
//! incoming gradient.

use super::index::{check_out, scatter_by_maps};
use super::strided_slice::{plan, spec};
use super::{same_shape, Arity, Op};
use crate::kernels::Elem;
use crate::shape::Shape;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

pub(super) const ARITY: Arity = Arity::Exactly(2);
float_kernel!();

pub(super) use super::strided_slice::attrs_text;

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (x, dy) = (&ins[0].shape, &ins[1].shape);
    let sliced = Shape(plan(&spec(op)?, x)?.out);
    same_shape(dy, &sliced).map_err(|_| format!("dy {dy} is not the slice's shape {sliced}"))?;
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
    let (x, dy) = (input(0)?, input(1)?);
    check_out(op, out.shape(), x.shape())?;
    let plan = plan(&spec(op)?, &Shape::known(x.shape()))?;
    let dy = dy
        .into_shape_with_order(IxDyn(&plan.at_input_rank()))
        .map_err(|e| format!("StridedSliceGrad: dy does not fit the slice: {e}"))?;
    scatter_by_maps(&dy, &plan.maps(), &mut out.view_mut());
    Ok(())
}
