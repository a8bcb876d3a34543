//! `LessEqual`: a <= b, a Bool tensor of a and b broadcast (TensorFlow's `tf.less_equal`). No gradient.

pub(super) use super::compare::{attrs_text, infer};
use super::{Arity, Op, Takes};
use crate::kernels::Inputs;
use crate::Tensor;

pub(super) const ARITY: Arity = Arity::Exactly(2);
pub(super) const TAKES: Takes = super::compare::NUMBERS;

pub(super) fn run(_: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    super::compare::compare(ins, out, |o| o.is_le())
}
