//! `MaxPool`: the largest element of each window (TensorFlow's
//! `tf.nn.max_pool2d`). Its gradient is `MaxPoolGrad` (`compiler/src/grad/max_pool.rs`).

use super::conv::{pool, pooled};
use super::{Arity, Op};
use super::conv_gemm::in_nhwc;
use super::pool::Pool;
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) use super::conv::pool_attrs_text as attrs_text;

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (conv, window) = pool(op)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: pooled(&conv, window, &ins[0].shape)?,
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    drive("MaxPool", op, input, out, Pool::max_pool)
}

/// A pooling of input 0 into `out` by `f` on NHWC slices (MaxPool's, AvgPool's).
pub(super) fn drive<'a, T: Elem>(
    name: &'static str,
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
    f: fn(&Pool, &[T], &mut [T]),
) -> Result<(), String> {
    let (conv, window) = pool(op)?;
    let x = conv.nhwc(input(0)?);
    let p = Pool::of(name, &conv, window, x.shape())?;
    let y = conv.nhwc_mut(out.view_mut());
    Pool::check(name, "the output", y.shape(), p.output())?;
    in_nhwc([&x], y, |[x], y| {
        f(&p, x, y);
        Ok(())
    })
}
