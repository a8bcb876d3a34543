//! `Slice`: TensorFlow's `tf.slice` with `begin` and `size` as attributes:
//! `size[i]` values from `begin[i]` on each axis, -1 for the rest of the
//! axis. Its gradient is `SliceGrad` (`compiler/src/grad/slice.rs`).

use super::index::{check_out, gather_by_maps, slice_bounds, sliced_shape};
use super::{Arity, Op};
use crate::dtype::Value;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
value_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Slice { begin, size } | Op::SliceGrad { begin, size } => {
            format!("{{begin: {begin:?}, size: {size:?}}}")
        }
        _ => String::new(),
    }
}

/// (begin, size) of a Slice or SliceGrad.
pub(super) fn parts(op: &Op) -> Result<(&[i64], &[i64]), String> {
    match op {
        Op::Slice { begin, size } | Op::SliceGrad { begin, size } => Ok((begin, size)),
        _ => Err(format!("{} is not a slice", op.name())),
    }
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (begin, size) = parts(op)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: sliced_shape(begin, size, &ins[0].shape)?,
    }])
}

/// For each axis, output position o reads begin + o.
pub(super) fn maps(bounds: &[(usize, usize)]) -> Vec<Vec<Option<usize>>> {
    bounds
        .iter()
        .map(|&(start, end)| (start..end).map(Some).collect())
        .collect()
}

pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (begin, size) = parts(op)?;
    let x = input(0)?;
    let bounds = slice_bounds(begin, size, x.shape())?;
    let shape: Vec<usize> = bounds.iter().map(|(s, e)| e - s).collect();
    check_out(op, out.shape(), &shape)?;
    gather_by_maps(&x, &maps(&bounds), T::default(), &mut out.view_mut());
    Ok(())
}
