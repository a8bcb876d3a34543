//! `Shape` and `Size`: TensorFlow's `tf.shape` and `tf.size`, the input's
//! dimensions as an I32 vector and its element count as an I32 scalar
//! (TensorFlow's default `out_type`), known at run time for symbolic axes.
//! No gradient (their inputs' values do not matter).

use super::{Arity, In, Op, Takes};
use crate::kernels::Inputs;
use crate::shape::{Dim, Shape};
use crate::{DType, Tensor, TensorType};

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Any);

pub(super) fn attrs_text(_: &Op) -> String {
    String::new()
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let shape = match op {
        Op::Size => Shape::scalar(),
        _ => Shape(vec![Dim::Known(ins[0].shape.rank())]),
    };
    Ok(vec![TensorType {
        dtype: DType::I32,
        shape,
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let x = ins.get(0).ok_or("input 0 is missing")?;
    let Tensor::I32(out) = out else {
        return Err(format!("the output buffer is {}, not i32", out.dtype()));
    };
    let i32_of = |n: usize| i32::try_from(n).map_err(|_| format!("{n} does not fit an i32"));
    match op {
        Op::Size => out.fill(i32_of(x.len())?),
        _ => {
            if out.len() != x.shape().len() {
                return Err(format!("{} dims cannot fill {:?}", x.shape().len(), out.shape()));
            }
            for (o, &d) in out.iter_mut().zip(x.shape()) {
                *o = i32_of(d)?;
            }
        }
    }
    Ok(())
}
