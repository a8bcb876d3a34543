//! `Max`: the largest element over `axes` (TensorFlow's `tf.reduce_max`),
//! NaN where any element is NaN; `Min` (`min.rs`) is the same with the
//! order reversed. Their gradient goes to the elements equal to the result,
//! shared evenly among ties, as TensorFlow's `_MaxGrad`
//! (`compiler/src/grad/max.rs`).

use super::{reduce_axes, reduced_shape, Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, Axis};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Max { axes, keep_dims } | Op::Min { axes, keep_dims } => {
            let axes = axes.as_ref().map_or("all".to_string(), |a| format!("{a:?}"));
            format!("{{axes: {axes}, keep_dims: {keep_dims}}}")
        }
        _ => String::new(),
    }
}

/// (axes, keep_dims) of a Max or Min.
pub(super) fn parts(op: &Op) -> Result<(&Option<Vec<i64>>, bool), String> {
    match op {
        Op::Max { axes, keep_dims } | Op::Min { axes, keep_dims } => Ok((axes, *keep_dims)),
        _ => Err(format!("{} is not Max or Min", op.name())),
    }
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (axes, keep_dims) = parts(op)?;
    let x = &ins[0].shape;
    let shape = reduced_shape(axes, keep_dims, x)?;
    // The extreme of no elements is undefined (TensorFlow gives ∓inf).
    let ax = reduce_axes(axes, x.rank())?;
    if ax.iter().any(|&a| x.0[a].known() == Some(0)) {
        return Err(format!("{} over an empty axis of {x}", op.name()));
    }
    Ok(vec![TensorType { dtype: dt, shape }])
}

/// The reduction by `pick` (which keeps its first argument unless the
/// second wins), over the axes in decreasing order.
pub(super) fn reduce<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
    pick: fn(T, T) -> T,
) -> Result<(), String> {
    let (axes, _) = parts(op)?;
    let x = input(0)?;
    let mut ax = reduce_axes(axes, x.ndim())?;
    if ax.iter().any(|&a| x.shape()[a] == 0) {
        return Err(format!("{} over an empty axis of {:?}", op.name(), x.shape()));
    }
    ax.sort_unstable_by(|a, b| b.cmp(a));
    let mut r = x.to_owned();
    for a in ax {
        // No lane is empty (checked above): the zero is never used.
        r = r.map_axis(Axis(a), |lane| lane.iter().copied().reduce(pick).unwrap_or(T::zero()));
    }
    if r.len() != out.len() {
        return Err(format!("{}: the output {:?} does not hold {} values", op.name(), out.shape(), r.len()));
    }
    out.iter_mut().zip(r.iter()).for_each(|(o, &v)| *o = v);
    Ok(())
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    reduce(op, input, out, super::elementwise::maximum)
}
