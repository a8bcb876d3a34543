//! `Split`, `SplitV` and `Unstack`: one input cut along `axis` into several
//! outputs (TensorFlow's `tf.split` with a number of equal parts or a list
//! of sizes, and `tf.unstack`, whose parts lose the axis). `SplitV` and
//! `Unstack` (`split_v.rs`, `unstack.rs`) share these rules. Their gradients
//! (`compiler/src/grad/split.rs` …) are Concat or Stack of the outputs'
//! gradients, zeros for the outputs that have none.

use super::{Arity, In, Op, Takes};
use crate::dtype::Value;
use crate::kernels::Inputs;
use crate::shape::{normalize_axis, Dim, Shape};
use crate::{each, DType, Tensor, TensorType};
use ndarray::{ArrayViewD, Axis, Slice};

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Any);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Split { axis, num_split } => format!("{{axis: {axis}, num_split: {num_split}}}"),
        Op::SplitV { size_splits, axis } => format!("{{size_splits: {size_splits:?}, axis: {axis}}}"),
        Op::Unstack { axis } => format!("{{axis: {axis}}}"),
        _ => String::new(),
    }
}

/// The axis (an index) and each part's size along it; `squeeze` for Unstack.
fn parts(op: &Op, shape: &Shape) -> Result<(usize, Vec<usize>, bool), String> {
    let rank = shape.rank();
    let (axis, squeeze) = match op {
        Op::Split { axis, .. } | Op::SplitV { axis, .. } => (*axis, false),
        Op::Unstack { axis } => (*axis, true),
        _ => return Err(format!("{} does not split", op.name())),
    };
    let a = normalize_axis(axis, rank)?;
    let size = match &shape.0[a] {
        Dim::Known(d) => *d,
        Dim::Sym(s) => {
            return Err(format!("{} along axis {a}, the symbolic {s}: its size must be known", op.name()))
        }
    };
    let sizes = match op {
        Op::Split { num_split, .. } => {
            let n = usize::try_from(*num_split)
                .ok()
                .filter(|&n| n > 0 && size % n == 0)
                .ok_or_else(|| format!("num_split {num_split} does not divide axis {a} of {shape} into parts"))?;
            vec![size / n; n]
        }
        Op::SplitV { size_splits, .. } => split_v_sizes(size_splits, size)
            .ok_or_else(|| format!("size_splits {size_splits:?} do not add up to axis {a} of {shape}, {size} (one may be -1)"))?,
        _ => vec![1; size],
    };
    Ok((a, sizes, squeeze))
}

/// SplitV's sizes with the one -1 (if any) made the rest of the axis.
fn split_v_sizes(splits: &[i64], size: usize) -> Option<Vec<usize>> {
    let rest = splits.iter().filter(|&&s| s == -1).count();
    let known: usize = splits
        .iter()
        .filter(|&&s| s != -1)
        .map(|&s| usize::try_from(s).ok())
        .sum::<Option<usize>>()?;
    let fill = size.checked_sub(known)?;
    if splits.is_empty() || rest > 1 || (rest == 0 && fill != 0) {
        return None;
    }
    Some(splits.iter().map(|&s| if s == -1 { fill } else { s as usize }).collect())
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let x = &ins[0];
    let (a, sizes, squeeze) = parts(op, &x.shape)?;
    Ok(sizes
        .iter()
        .map(|&n| {
            let mut dims = x.shape.0.clone();
            if squeeze {
                dims.remove(a);
            } else {
                dims[a] = Dim::Known(n);
            }
            TensorType {
                dtype: x.dtype,
                shape: Shape(dims),
            }
        })
        .collect())
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let x = ins.get(0).ok_or("input 0 is missing")?;
    let (a, sizes, squeeze) = parts(op, &Shape::known(x.shape()))?;
    if sizes.len() != outs.len() {
        return Err(format!("{} parts, {} output buffers", sizes.len(), outs.len()));
    }
    each!(x, x => cut(&x.view(), a, &sizes, squeeze, outs))
}

fn cut<T: Value>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    sizes: &[usize],
    squeeze: bool,
    outs: &mut [Tensor],
) -> Result<(), String> {
    let mut at = 0;
    for (k, (out, &n)) in outs.iter_mut().zip(sizes).enumerate() {
        let y = T::array_mut(out).ok_or_else(|| format!("output {k}'s buffer has another dtype"))?;
        let part = x.slice_axis(Axis(axis), Slice::from(at..at + n));
        let part = if squeeze { part.index_axis_move(Axis(axis), 0) } else { part };
        if part.shape() != y.shape() {
            return Err(format!("part {k} {:?} does not fit its buffer {:?}", part.shape(), y.shape()));
        }
        y.assign(&part);
        at += n;
    }
    Ok(())
}
