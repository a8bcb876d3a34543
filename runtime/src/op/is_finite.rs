//! `IsFinite`: where x is neither infinite nor NaN, a Bool tensor (TensorFlow's `tf.math.is_finite`). No gradient.

pub(super) use super::compare::{attrs_text, infer};
use super::{Arity, Op, Takes};
use crate::kernels::Inputs;
use crate::Tensor;

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = super::compare::FLOATS;

pub(super) fn run(_: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    super::compare::predicate(ins, out, f64::is_finite)
}
