//! `UnsortedSegmentSum`: TensorFlow's `tf.math.unsorted_segment_sum`:
//! inputs (data, segment_ids), the ids (I32 or I64) of the shape of data's
//! leading axes; output [num_segments] + data's remaining axes, segment s
//! the sum of the slices whose id is s (zeros where none is), summed in the
//! order of the ids. An id outside [0, num_segments) is a run-time error
//! (TensorFlow drops negative ones). Gather's gradient; its own
//! (`compiler/src/grad/unsorted_segment_sum.rs`) is a Gather of dy.

use super::gather::checked;
use super::{Arity, In, Op, Takes};
use crate::kernels::{input, Elem, Inputs};
use crate::shape::{Dim, Shape};
use crate::{DType, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
pub(super) const TAKES: Takes = Takes::Each(&[In::Float, In::Int]);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::UnsortedSegmentSum { num_segments } => format!("{{num_segments: {num_segments}}}"),
        _ => String::new(),
    }
}

fn segments(op: &Op) -> Result<usize, String> {
    match op {
        Op::UnsortedSegmentSum { num_segments } => usize::try_from(*num_segments)
            .map_err(|_| format!("num_segments must be >= 0, got {num_segments}")),
        _ => Err(format!("{} is not an UnsortedSegmentSum", op.name())),
    }
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let n = segments(op)?;
    let (data, ids) = (&ins[0].shape, &ins[1].shape);
    let leading = data.0.get(..ids.rank()).ok_or_else(|| {
        format!("segment_ids {ids} has a higher rank than data {data}")
    })?;
    for (k, (d, i)) in leading.iter().zip(&ids.0).enumerate() {
        super::unify(d, i).map_err(|_| {
            format!("segment_ids {ids} is not the shape of data {data}'s leading axes (axis {k})")
        })?;
    }
    let mut dims = vec![Dim::Known(n)];
    dims.extend(data.0[ids.rank()..].iter().cloned());
    Ok(vec![TensorType {
        dtype: ins[0].dtype,
        shape: Shape(dims),
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let n = segments(op)?;
    let ids = ins.get(1).ok_or("input 1 is missing")?;
    match (out, ids) {
        (Tensor::F32(y), Tensor::I32(i)) => sum(&input(ins, 0)?, &i.view(), n, y),
        (Tensor::F32(y), Tensor::I64(i)) => sum(&input(ins, 0)?, &i.view(), n, y),
        (Tensor::F64(y), Tensor::I32(i)) => sum(&input(ins, 0)?, &i.view(), n, y),
        (Tensor::F64(y), Tensor::I64(i)) => sum(&input(ins, 0)?, &i.view(), n, y),
        (y, i) => Err(format!("no kernel for {} data and {} ids", y.dtype(), i.dtype())),
    }
}

fn sum<T: Elem, I: Copy + Into<i64>>(
    data: &ArrayViewD<'_, T>,
    ids: &ArrayViewD<'_, I>,
    n: usize,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let inner: usize = data.shape().get(ids.ndim()..).unwrap_or(&[]).iter().product();
    if data.shape().get(..ids.ndim()) != Some(ids.shape()) || out.len() != n * inner {
        return Err(format!(
            "data {:?}, segment_ids {:?} and the output {:?} do not fit",
            data.shape(),
            ids.shape(),
            out.shape()
        ));
    }
    let data = data.as_standard_layout();
    let (Some(src), Some(dst)) = (data.as_slice(), out.as_slice_mut()) else {
        return Err("the output buffer is not in standard layout".into());
    };
    dst.fill(T::zero());
    for (j, &id) in ids.iter().enumerate() {
        let s = checked("segment_ids", id.into(), j, ids.shape(), n)?;
        let row = &src[j * inner..(j + 1) * inner];
        for (o, &v) in dst[s * inner..(s + 1) * inner].iter_mut().zip(row) {
            *o = *o + v;
        }
    }
    Ok(())
}
