//! `OneHot`: TensorFlow's `tf.one_hot`: for indices (I32 or I64) a new axis
//! of `depth` at `axis` (-1: last) holding `on_value` at the index and
//! `off_value` elsewhere, as `dtype` (F32 unless given, as TensorFlow). An
//! index outside [0, depth) gives a row of `off_value`, as TensorFlow's.
//! Not differentiable (its input is an integer).

use super::{Arity, In, Op, Takes};
use crate::dtype::{Num, Value};
use crate::kernels::Inputs;
use crate::shape::{Dim, Shape};
use crate::{by_dtype, DType, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Int);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::OneHot {
            depth,
            on_value,
            off_value,
            axis,
            dtype,
        } => format!(
            "{{depth: {depth}, on_value: {}, off_value: {}, axis: {axis}, dtype: {dtype:?}}}",
            super::fmt_f64(*on_value),
            super::fmt_f64(*off_value)
        ),
        _ => String::new(),
    }
}

/// (depth, on, off, axis as a position in the output, dtype).
fn parts(op: &Op, rank: usize) -> Result<(usize, f64, f64, usize, DType), String> {
    let Op::OneHot {
        depth,
        on_value,
        off_value,
        axis,
        dtype,
    } = op
    else {
        return Err(format!("{} is not a OneHot", op.name()));
    };
    let depth = usize::try_from(*depth).map_err(|_| format!("depth must be >= 0, got {depth}"))?;
    let axis = match *axis {
        -1 => rank,
        a => usize::try_from(a)
            .ok()
            .filter(|&a| a <= rank)
            .ok_or_else(|| format!("axis must be -1 or in [0, {rank}], got {a}"))?,
    };
    Ok((depth, *on_value, *off_value, axis, *dtype))
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let indices = &ins[0].shape;
    let (depth, _, _, axis, dtype) = parts(op, indices.rank())?;
    let mut dims = indices.0.clone();
    dims.insert(axis, Dim::Known(depth));
    Ok(vec![TensorType {
        dtype,
        shape: Shape(dims),
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let indices = ins.get(0).ok_or("input 0 is missing")?;
    let parts = parts(op, indices.shape().len())?;
    let dtype = out.dtype();
    by_dtype!(dtype, T => {
        let y = T::array_mut(out).ok_or("the output buffer has another dtype")?;
        match indices {
            Tensor::I32(i) => one_hot(&i.view(), parts, y),
            Tensor::I64(i) => one_hot(&i.view(), parts, y),
            other => Err(format!("indices must be i32 or i64, got {}", other.dtype())),
        }
    })
}

fn one_hot<T: Value, I: Copy + Into<i64>>(
    indices: &ArrayViewD<'_, I>,
    (depth, on, off, axis, _): (usize, f64, f64, usize, DType),
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    // Output position (o, d, i): o over the index axes before `axis`, i over those after.
    let inner: usize = indices.shape()[axis..].iter().product();
    if out.len() != indices.len() * depth {
        return Err(format!("the output {:?} does not fit {depth} classes", out.shape()));
    }
    let (on, off) = (T::from_num(Num::F(on)), T::from_num(Num::F(off)));
    let dst = out.as_slice_mut().ok_or("the output buffer is not in standard layout")?;
    dst.fill(off);
    for (p, &index) in indices.iter().enumerate() {
        if let Some(d) = usize::try_from(index.into()).ok().filter(|&d| d < depth) {
            let (o, i) = (p / inner.max(1), p % inner.max(1));
            dst[(o * depth + d) * inner + i] = on;
        }
    }
    Ok(())
}
