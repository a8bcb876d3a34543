//! Kernels for any element type (floats, integers, bools): the ops that
//! build, move or choose values without computing with them.

use super::{input, layout, Inputs};
use crate::dtype::{Num, Value};
use crate::{DType, Op};
use ndarray::{ArrayD, ArrayViewD, Dimension, Zip};

/// An op whose output is of a dtype the float and integer kernels leave to
/// this one (bools), or an op that only moves values.
pub(super) fn kernel<T: Value>(
    op: &Op,
    ins: &dyn Inputs,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    use Op::*;
    let x = |k: usize| input::<T>(ins, k);
    match op {
        Const(lit) => layout::constant(lit, out),
        Identity | StopGradient => layout::copy(&x(0)?, out),
        Reshape { .. } | ReshapeLike | ExpandDims { .. } | Squeeze { .. } => {
            layout::reshape(&x(0)?, out)
        }
        Transpose { perm } => layout::transpose(&x(0)?, perm.as_deref(), out),
        ZerosLike => layout::fill_like(&x(0)?, T::from_num(Num::I(0)), out),
        OnesLike => layout::fill_like(&x(0)?, T::from_num(Num::I(1)), out),
        Fill { .. } => layout::fill(&x(0)?, out),
        BroadcastLike => layout::broadcast_to(&x(0)?, out),
        Select => select(ins, out),
        _ => Err(format!("{} has no {} kernel", op.name(), T::DTYPE)),
    }
}

/// Select: inputs (cond, a, b) broadcast to the output; a where cond is
/// true (or, for a condition of a's dtype, nonzero), else b.
pub(super) fn select<T: Value>(ins: &dyn Inputs, y: &mut ArrayD<T>) -> Result<(), String> {
    let cond = ins.get(0).ok_or("input 0 is missing")?;
    let (a, b) = (input::<T>(ins, 1)?, input::<T>(ins, 2)?);
    match cond.dtype() {
        DType::Bool => choose(&input::<bool>(ins, 0)?, &a, &b, y),
        _ => choose(&input::<T>(ins, 0)?, &a, &b, y),
    }
}

fn choose<C: Value, T: Value>(
    cond: &ArrayViewD<'_, C>,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    y: &mut ArrayD<T>,
) -> Result<(), String> {
    let dim = y.raw_dim();
    let bad = |shape: &[usize]| format!("shape {shape:?} does not broadcast to {:?}", dim.slice());
    let c = cond
        .broadcast(dim.clone())
        .ok_or_else(|| bad(cond.shape()))?;
    let a = a.broadcast(dim.clone()).ok_or_else(|| bad(a.shape()))?;
    let b = b.broadcast(dim.clone()).ok_or_else(|| bad(b.shape()))?;
    let no = C::default();
    Zip::from(y)
        .and(&c)
        .and(&a)
        .and(&b)
        .for_each(|y, &c, &a, &b| *y = if c != no { a } else { b });
    Ok(())
}
