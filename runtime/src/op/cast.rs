//! `Cast`: the values converted to `to` (TensorFlow's `tf.cast`), as C++'s
//! `static_cast` converts them on TensorFlow's CPU kernels: floats to
//! integers truncate toward zero (saturating; NaN gives 0), integers narrow
//! by wrapping, anything to Bool is `!= 0`, Bool to a number is 0 or 1. Its
//! gradient (`compiler/src/grad/cast.rs`) is cast back between floats and
//! stops at integers and bools.

use super::{Arity, In, Op, Takes};
use crate::dtype::Value;
use crate::kernels::Inputs;
use crate::{by_dtype, each, DType, Tensor, TensorType};
use ndarray::Zip;

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Any);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Cast { to } => format!("{{to: {to:?}}}"),
        _ => String::new(),
    }
}

/// The target dtype.
fn target(op: &Op) -> Result<DType, String> {
    match op {
        Op::Cast { to } => Ok(*to),
        _ => Err(format!("{} is not a Cast", op.name())),
    }
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: target(op)?,
        shape: ins[0].shape.clone(),
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let to = target(op)?;
    let x = ins.get(0).ok_or("input 0 is missing")?;
    if out.dtype() != to || out.shape() != x.shape() {
        return Err(format!(
            "the output buffer is {}, the cast gives {to}{:?}",
            out.tensor_type(),
            x.shape()
        ));
    }
    each!(x, x => by_dtype!(to, T => {
        let y = T::array_mut(out).ok_or("the output buffer has another dtype")?;
        Zip::from(y).and(x).for_each(|y, x| *y = T::from_num(x.to_num()));
    }));
    Ok(())
}
