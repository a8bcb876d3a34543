//! `ClipByValue`: TensorFlow's `tf.clip_by_value`: inputs (t, lo, hi), lo
//! and hi broadcast to t; each value min(max(t, lo), hi), NaN where any of
//! them is. Its gradient (`compiler/src/grad/clip_by_value.rs`) goes to t
//! where lo ≤ t ≤ hi, to lo where t < lo and to hi where t > hi.

use super::elementwise::{maximum, minimum};
use super::{Arity, Op};
use crate::kernels::Elem;
use crate::shape::broadcast;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, Zip};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

pub(super) fn attrs_text(_: &Op) -> String {
    String::new()
}

/// t's shape; lo and hi broadcast to it.
pub(super) fn infer(_: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let t = &ins[0].shape;
    for (k, name) in [(1, "clip_value_min"), (2, "clip_value_max")] {
        let s = &ins[k].shape;
        if broadcast(t, s).ok().as_ref() != Some(t) {
            return Err(format!("{name} {s} does not broadcast to t {t}"));
        }
    }
    Ok(vec![TensorType {
        dtype: dt,
        shape: t.clone(),
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (t, lo, hi) = (input(0)?, input(1)?, input(2)?);
    super::index::check_out(op, out.shape(), t.shape())?;
    let (lo, hi) = (spread(&lo, &t, "clip_value_min")?, spread(&hi, &t, "clip_value_max")?);
    Zip::from(out)
        .and(&t)
        .and(&lo)
        .and(&hi)
        .for_each(|y, &t, &lo, &hi| *y = minimum(maximum(t, lo), hi));
    Ok(())
}

/// `v` broadcast to `t`'s shape, or an error naming it.
fn spread<'v, T>(
    v: &'v ArrayViewD<'_, T>,
    t: &ArrayViewD<'_, T>,
    name: &str,
) -> Result<ArrayViewD<'v, T>, String> {
    v.broadcast(t.raw_dim()).ok_or_else(|| {
        format!("ClipByValue: {name} {:?} does not broadcast to t {:?}", v.shape(), t.shape())
    })
}
