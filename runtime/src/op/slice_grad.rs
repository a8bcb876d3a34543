//! `SliceGrad`: the gradient of Slice: inputs (x, read for its shape only,
//! and dy of the slice's shape); zeros of x's shape with dy where the slice
//! was (TensorFlow pads dy). Its gradient is `compiler/src/grad/slice_grad.rs`.

use super::index::{check_out, scatter_by_maps, slice_bounds, sliced_shape};
use super::slice::{maps, parts};
use super::{same_shape, Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
float_kernel!();

pub(super) use super::slice::attrs_text;

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (begin, size) = parts(op)?;
    let (x, dy) = (&ins[0].shape, &ins[1].shape);
    let sliced = sliced_shape(begin, size, x)?;
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
    let (begin, size) = parts(op)?;
    let (x, dy) = (input(0)?, input(1)?);
    check_out(op, out.shape(), x.shape())?;
    let bounds = slice_bounds(begin, size, x.shape())?;
    let sliced: Vec<usize> = bounds.iter().map(|(s, e)| e - s).collect();
    if dy.shape() != sliced {
        return Err(format!("SliceGrad: dy {:?} is not the slice's shape {sliced:?}", dy.shape()));
    }
    scatter_by_maps(&dy, &maps(&bounds), &mut out.view_mut());
    Ok(())
}
