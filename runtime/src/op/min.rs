//! `Min`: the smallest element over `axes` (TensorFlow's `tf.reduce_min`);
//! see `max.rs`, which it shares. Its gradient: `compiler/src/grad/min.rs`.

use super::{Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) use super::max::attrs_text;

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    super::max::infer(op, dt, ins)
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    super::max::reduce(op, input, out, super::elementwise::minimum)
}
