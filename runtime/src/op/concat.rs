//! `Concat`: TensorFlow's `tf.concat` (ConcatV2): inputs of one rank joined
//! along `axis` (negative from the end), every other axis equal. Its
//! gradient is a Slice of dy for each input (`compiler/src/grad/concat.rs`).

use super::{unify, Arity, Op};
use crate::dtype::Value;
use crate::shape::{normalize_axes, Dim, Shape};
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, Axis, Slice};

pub(super) const ARITY: Arity = Arity::AtLeast(1);
value_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Concat { axis } => format!("{{axis: {axis}}}"),
        _ => String::new(),
    }
}

/// The axis, from 0, of inputs of `rank`.
pub fn axis_of(op: &Op, rank: usize) -> Result<usize, String> {
    let Op::Concat { axis } = op else {
        return Err(format!("{} is not Concat", op.name()));
    };
    if rank == 0 {
        return Err("Concat joins tensors of rank 1 or more, got scalars".into());
    }
    Ok(normalize_axes(&[*axis], rank)?[0])
}

/// Every input of the first's rank and, off the axis, of its sizes; the
/// sizes along the axis added up (a symbolic one only alone).
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let first = &ins[0].shape;
    let axis = axis_of(op, first.rank())?;
    let mut dims = first.0.clone();
    for (k, t) in ins.iter().enumerate().skip(1) {
        let s = &t.shape;
        if s.rank() != first.rank() {
            return Err(format!("input {k} {s} is not of the rank of input 0 {first}"));
        }
        for (i, d) in s.0.iter().enumerate() {
            if i == axis {
                dims[i] = match (&dims[i], d) {
                    (Dim::Known(a), Dim::Known(b)) => Dim::Known(a + b),
                    _ => {
                        return Err(format!(
                            "axis {axis} is symbolic in {first} or {s}: its joined size is unknown"
                        ))
                    }
                };
            } else {
                dims[i] = unify(&dims[i], d).map_err(|_| {
                    format!("input {k} {s} differs from input 0 {first} off the axis {axis}")
                })?;
            }
        }
    }
    Ok(vec![TensorType {
        dtype: dt,
        shape: Shape(dims),
    }])
}

/// Copies each input into its place along the axis. The inputs are read
/// until the output is full and the next input is missing (the kernel
/// interface does not pass their count); a missing input before that is
/// the error it is.
pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let axis = axis_of(op, out.ndim())?;
    let size = out.shape()[axis];
    let mut at = 0;
    for k in 0.. {
        let x = match input(k) {
            Ok(x) => x,
            Err(_) if at == size && k > 0 => break,
            Err(e) => return Err(e),
        };
        let d = x.shape().get(axis).copied().unwrap_or(0);
        let mut want = out.shape().to_vec();
        want[axis] = d;
        if x.shape() != want || at + d > size {
            return Err(format!(
                "Concat: input {k} {:?} does not fit the output {:?} at {at} along axis {axis}",
                x.shape(),
                out.shape()
            ));
        }
        out.slice_axis_mut(Axis(axis), Slice::from(at..at + d)).assign(&x);
        at += d;
    }
    Ok(())
}
