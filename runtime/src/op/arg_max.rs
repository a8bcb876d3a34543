//! `ArgMax`: TensorFlow's `tf.math.argmax`: the index of the largest element
//! along `axis` (the first of equal ones), as `output_type` (I64, TensorFlow's
//! default, or I32). Not differentiable. `ArgMin` (`arg_min.rs`) shares it.

use super::{Arity, In, Op, Takes};
use crate::dtype::Value;
use crate::kernels::Inputs;
use crate::shape::{normalize_axis, Dim, Shape};
use crate::{by_dtype, DType, Tensor, TensorType};
use ndarray::{Axis, Dimension, RemoveAxis, Zip};
use std::cmp::Ordering;

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Numeric);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::ArgMax { axis, output_type } | Op::ArgMin { axis, output_type } => {
            format!("{{axis: {axis}, output_type: {output_type:?}}}")
        }
        _ => String::new(),
    }
}

/// (axis, output_type) of an ArgMax or ArgMin.
fn parts(op: &Op) -> Result<(i64, DType), String> {
    match op {
        Op::ArgMax { axis, output_type } | Op::ArgMin { axis, output_type } => {
            Ok((*axis, *output_type))
        }
        _ => Err(format!("{} is not an ArgMax or ArgMin", op.name())),
    }
}

/// The input's shape without `axis`, as `output_type`.
pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (axis, output_type) = parts(op)?;
    if !output_type.is_int() {
        return Err(format!("output_type must be I32 or I64, got {output_type:?}"));
    }
    let x = &ins[0].shape;
    let a = normalize_axis(axis, x.rank())?;
    if x.0[a] == Dim::Known(0) {
        return Err(format!("{} over axis {a} of {x}, which is empty", op.name()));
    }
    let mut dims = x.0.clone();
    dims.remove(a);
    Ok(vec![TensorType {
        dtype: output_type,
        shape: Shape(dims),
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    // ArgMax keeps the first index whose value is greater than the best so
    // far; ArgMin the first whose value is less. NaN compares as neither.
    let better = if matches!(op, Op::ArgMin { .. }) { Ordering::Less } else { Ordering::Greater };
    arg(op, ins, out, better)
}

/// The index of the first element better than every earlier one along the axis.
fn arg(op: &Op, ins: &dyn Inputs, out: &mut Tensor, better: Ordering) -> Result<(), String> {
    let (axis, _) = parts(op)?;
    let dtype = ins.get(0).ok_or("input 0 is missing")?.dtype();
    by_dtype!(dtype, T => {
        let x = crate::kernels::input::<T>(ins, 0)?;
        let a = normalize_axis(axis, x.ndim()).map_err(|e| e.0)?;
        if x.len_of(Axis(a)) == 0 {
            return Err(format!("{} over axis {a} of {:?}, which is empty", op.name(), x.shape()));
        }
        let lanes = x.raw_dim().remove_axis(Axis(a));
        if lanes.size() != out.len() {
            return Err(format!(
                "{} over axis {a} of {:?} cannot fill {:?}",
                op.name(),
                x.shape(),
                out.shape()
            ));
        }
        let out_dtype = out.dtype();
        by_dtype!(out_dtype, I => {
            let o = I::array_mut(out).ok_or("the output buffer has another dtype")?;
            let mut o = o.view_mut().into_shape_with_order(lanes).map_err(|e| e.to_string())?;
            Zip::from(&mut o).and(x.lanes(Axis(a))).for_each(|o, lane| {
                let mut best = 0;
                for (i, v) in lane.iter().enumerate() {
                    if v.partial_cmp(&lane[best]) == Some(better) {
                        best = i;
                    }
                }
                *o = I::from_num(crate::dtype::Num::I(best as i64));
            });
        });
    });
    Ok(())
}
