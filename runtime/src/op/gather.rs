//! `Gather`: TensorFlow's `tf.gather` (GatherV2) with `batch_dims` 0: the
//! slices of `params` along `axis` at `indices` (I32 or I64), so the output
//! has shape params[:axis] + indices + params[axis+1:]. An index outside
//! [0, params.shape[axis]) is a run-time error naming it and the bound, as on
//! TensorFlow's CPU. Its gradient (`compiler/src/grad/gather.rs`) is an
//! `UnsortedSegmentSum` of dy by the indices.

use super::{Arity, In, Op, Takes};
use crate::dtype::Value;
use crate::kernels::{input, Inputs};
use crate::shape::{normalize_axis, Shape};
use crate::{each, DType, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
pub(super) const TAKES: Takes = Takes::Each(&[In::Any, In::Int]);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Gather { axis } => format!("{{axis: {axis}}}"),
        _ => String::new(),
    }
}

fn axis_attr(op: &Op) -> Result<i64, String> {
    match op {
        Op::Gather { axis } => Ok(*axis),
        _ => Err(format!("{} is not a Gather", op.name())),
    }
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (params, indices) = (&ins[0].shape, &ins[1].shape);
    if params.rank() == 0 {
        return Err("params must have rank >= 1, got a scalar".into());
    }
    let a = normalize_axis(axis_attr(op)?, params.rank())?;
    let mut dims = params.0[..a].to_vec();
    dims.extend(indices.0.iter().cloned());
    dims.extend(params.0[a + 1..].iter().cloned());
    Ok(vec![TensorType {
        dtype: ins[0].dtype,
        shape: Shape(dims),
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let axis = axis_attr(op)?;
    let indices = ins.get(1).ok_or("input 1 is missing")?;
    each!(out, y => match indices {
        Tensor::I32(i) => gather(&input(ins, 0)?, &i.view(), axis, y),
        Tensor::I64(i) => gather(&input(ins, 0)?, &i.view(), axis, y),
        other => Err(format!("indices must be i32 or i64, got {}", other.dtype())),
    })
}

/// An index's position in `shape`, as TensorFlow writes it: `[1,0]`.
pub(super) fn position(flat: usize, shape: &[usize]) -> String {
    let mut rest = flat;
    let mut at = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            at[k] = rest % d;
            rest /= d;
        }
    }
    let at: Vec<String> = at.iter().map(usize::to_string).collect();
    format!("[{}]", at.join(","))
}

/// `index` (element `flat` of the `name` tensor, of `shape`) as a position
/// below `bound`, or TensorFlow's error naming it.
pub(super) fn checked(
    name: &str,
    index: i64,
    flat: usize,
    shape: &[usize],
    bound: usize,
) -> Result<usize, String> {
    usize::try_from(index)
        .ok()
        .filter(|&i| i < bound)
        .ok_or_else(|| format!("{name}{} = {index} is not in [0, {bound})", position(flat, shape)))
}

fn gather<T: Value, I: Copy + Into<i64>>(
    params: &ArrayViewD<'_, T>,
    indices: &ArrayViewD<'_, I>,
    axis: i64,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let a = normalize_axis(axis, params.ndim()).map_err(|e| e.0)?;
    let shape = params.shape();
    let (outer, n): (usize, usize) = (shape[..a].iter().product(), shape[a]);
    let inner: usize = shape[a + 1..].iter().product();
    let count = indices.len();
    if out.len() != outer * count * inner {
        return Err(format!("the output {:?} does not fit the gathered slices", out.shape()));
    }
    let params = params.as_standard_layout();
    let (Some(src), Some(dst)) = (params.as_slice(), out.as_slice_mut()) else {
        return Err("the output buffer is not in standard layout".into());
    };
    for (j, &index) in indices.iter().enumerate() {
        let i = checked("indices", index.into(), j, indices.shape(), n)?;
        for o in 0..outer {
            let from = (o * n + i) * inner;
            let to = (o * count + j) * inner;
            dst[to..to + inner].copy_from_slice(&src[from..from + inner]);
        }
    }
    Ok(())
}
