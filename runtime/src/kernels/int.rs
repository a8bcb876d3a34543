//! Integer kernels: the elementwise functions TensorFlow has on integers
//! (`UnaryFn::int`, `BinaryFn::int`), computed on i64 with wrapping and
//! narrowed back, so i32 wraps at 32 bits; other ops that only move values
//! go to `values`.

use super::{input, values, Inputs};
use crate::dtype::Value;
use crate::op::{BinaryFn, UnaryFn};
use crate::Op;
use ndarray::{ArrayD, ArrayViewD, Dimension, Zip};

/// I32 and I64.
pub(super) trait Int: Value {
    fn widen(self) -> i64;
    /// The low bits of `v` (wrapping).
    fn narrow(v: i64) -> Self;
}

impl Int for i32 {
    fn widen(self) -> i64 {
        i64::from(self)
    }
    fn narrow(v: i64) -> i32 {
        v as i32
    }
}

impl Int for i64 {
    fn widen(self) -> i64 {
        self
    }
    fn narrow(v: i64) -> i64 {
        v
    }
}

fn no_kernel(op: &Op, dtype: crate::DType) -> String {
    format!("{} has no {dtype} kernel", op.name())
}

/// An integer function `f` of the operands, written into `out` (broadcast).
fn binary<T: Int>(
    f: fn(i64, i64) -> Option<i64>,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let dim = out.raw_dim();
    let bad = |s: &[usize]| format!("shape {s:?} does not broadcast to {:?}", dim.slice());
    let a = a.broadcast(dim.clone()).ok_or_else(|| bad(a.shape()))?;
    let b = b.broadcast(dim.clone()).ok_or_else(|| bad(b.shape()))?;
    let mut ok = true;
    Zip::from(out)
        .and(&a)
        .and(&b)
        .for_each(|o, &a, &b| match f(a.widen(), b.widen()) {
            Some(v) => *o = T::narrow(v),
            None => ok = false,
        });
    ok.then_some(())
        .ok_or_else(|| "integer division by zero".to_string())
}

pub(super) fn kernel<T: Int>(op: &Op, ins: &dyn Inputs, out: &mut ArrayD<T>) -> Result<(), String> {
    let x = |k: usize| input::<T>(ins, k);
    if let Some(f) = UnaryFn::of(op) {
        let f = f.int().ok_or_else(|| no_kernel(op, T::DTYPE))?;
        let x = x(0)?;
        super::same_shape("the input", x.shape(), out.shape())?;
        Zip::from(out)
            .and(&x)
            .for_each(|o, &v| *o = T::narrow(f(v.widen())));
        return Ok(());
    }
    if let Some(f) = BinaryFn::of(op) {
        let f = f.int().ok_or_else(|| no_kernel(op, T::DTYPE))?;
        return binary(f, &x(0)?, &x(1)?, out);
    }
    values::kernel(op, ins, out)
}

/// `kernel` writing over input `k`, whose buffer `io` is.
pub(super) fn in_place<T: Int>(
    op: &Op,
    k: usize,
    ins: &dyn Inputs,
    io: &mut ArrayD<T>,
) -> Result<(), String> {
    if let Some(f) = UnaryFn::of(op).and_then(UnaryFn::int) {
        io.mapv_inplace(|v| T::narrow(f(v.widen())));
        return Ok(());
    }
    if let Some(f) = BinaryFn::of(op).and_then(BinaryFn::int) {
        let other = input::<T>(ins, 1 - k)?;
        let other = other.broadcast(io.raw_dim()).ok_or_else(|| {
            format!(
                "shape {:?} does not broadcast to {:?}",
                other.shape(),
                io.shape()
            )
        })?;
        let mut ok = true;
        Zip::from(io).and(&other).for_each(|v, &o| {
            let (a, b) = if k == 0 {
                (v.widen(), o.widen())
            } else {
                (o.widen(), v.widen())
            };
            match f(a, b) {
                Some(r) => *v = T::narrow(r),
                None => ok = false,
            }
        });
        return ok
            .then_some(())
            .ok_or_else(|| "integer division by zero".to_string());
    }
    match op {
        Op::Identity | Op::StopGradient => Ok(()),
        _ => Err(format!("{} cannot run in place on {}", op.name(), T::DTYPE)),
    }
}

/// `dst += delta` (or `-=`), wrapping: AssignAdd and AssignSub on integers.
pub(super) fn accumulate<T: Int>(
    dst: &mut ArrayD<T>,
    delta: &ArrayD<T>,
    subtract: bool,
) -> Result<(), String> {
    let delta = delta.broadcast(dst.raw_dim()).ok_or_else(|| {
        format!(
            "a delta of shape {:?} does not fit {:?}",
            delta.shape(),
            dst.shape()
        )
    })?;
    Zip::from(dst).and(&delta).for_each(|v, &d| {
        let (a, b) = (v.widen(), d.widen());
        *v = T::narrow(if subtract {
            a.wrapping_sub(b)
        } else {
            a.wrapping_add(b)
        });
    });
    Ok(())
}
