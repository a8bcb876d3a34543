//! `Stack`: TensorFlow's `tf.stack` (Pack): inputs of one shape joined along
//! a new axis `axis` (negative from the end of the result). Its gradient
//! slices dy at each input's place and squeezes the axis
//! (`compiler/src/grad/stack.rs`).

use super::{same_shape, Arity, Op};
use crate::dtype::Value;
use crate::shape::{normalize_axes, Dim, Shape};
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, Axis};

pub(super) const ARITY: Arity = Arity::AtLeast(1);
value_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Stack { axis } => format!("{{axis: {axis}}}"),
        _ => String::new(),
    }
}

/// The new axis, from 0, of a result of `rank`.
fn axis_of(op: &Op, rank: usize) -> Result<usize, String> {
    let Op::Stack { axis } = op else {
        return Err(format!("{} is not Stack", op.name()));
    };
    Ok(normalize_axes(&[*axis], rank)?[0])
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let mut shape = ins[0].shape.clone();
    for (k, t) in ins.iter().enumerate().skip(1) {
        shape = same_shape(&shape, &t.shape).map_err(|_| {
            format!("input {k} {} is not of the shape of input 0 {}", t.shape, ins[0].shape)
        })?;
    }
    let axis = axis_of(op, shape.rank() + 1)?;
    let mut dims = shape.0;
    dims.insert(axis, Dim::Known(ins.len()));
    Ok(vec![TensorType {
        dtype: dt,
        shape: Shape(dims),
    }])
}

/// Each input into its place along the new axis; the inputs are counted by
/// the output's size along it.
pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let axis = axis_of(op, out.ndim())?;
    for k in 0..out.shape()[axis] {
        let x = input(k)?;
        let mut place = out.index_axis_mut(Axis(axis), k);
        if place.shape() != x.shape() {
            return Err(format!(
                "Stack: input {k} {:?} does not fit the output {:?}",
                x.shape(),
                out.shape()
            ));
        }
        place.assign(&x);
    }
    Ok(())
}
