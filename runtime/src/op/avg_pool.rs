//! `AvgPool`: the mean of each window (TensorFlow's `tf.nn.avg_pool2d`),
//! over the window's elements inside the input (SAME padding is not
//! counted). Its gradient is `AvgPoolGrad` (`compiler/src/grad/avg_pool.rs`).

use super::{Arity, Op};
use crate::kernels::Elem;
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) use super::conv::pool_attrs_text as attrs_text;

pub(super) use super::max_pool::infer;

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    super::max_pool::drive("AvgPool", op, input, out, super::pool::Pool::avg_pool)
}
