//! `Cumsum`: TensorFlow's `tf.cumsum`: running sums along `axis` (negative
//! from the end), each value included (or, `exclusive`, only those before
//! it), from the start (or, `reverse`, from the end). Its gradient is the
//! cumulative sum of dy the other way (`compiler/src/grad/cumsum.rs`).
//! `Cumprod` (`cumprod.rs`, `tf.math.cumprod`) is the same with products.

use super::{Arity, Op};
use crate::kernels::Elem;
use crate::shape::normalize_axes;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, Axis, Zip};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Cumsum {
            axis,
            exclusive,
            reverse,
        }
        | Op::Cumprod {
            axis,
            exclusive,
            reverse,
        } => format!("{{axis: {axis}, exclusive: {exclusive}, reverse: {reverse}}}"),
        _ => String::new(),
    }
}

/// (axis from 0, exclusive, reverse) for an input of `rank`.
fn parts(op: &Op, rank: usize) -> Result<(usize, bool, bool), String> {
    let (Op::Cumsum {
        axis,
        exclusive,
        reverse,
    }
    | Op::Cumprod {
        axis,
        exclusive,
        reverse,
    }) = op
    else {
        return Err(format!("{} is not Cumsum or Cumprod", op.name()));
    };
    if rank == 0 {
        return Err(format!("{} runs along an axis: the input is a scalar", op.name()));
    }
    Ok((normalize_axes(&[*axis], rank)?[0], *exclusive, *reverse))
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    parts(op, ins[0].shape.rank())?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: ins[0].shape.clone(),
    }])
}

/// Each lane along the axis summed (multiplied) in order (from its end with `reverse`).
pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let x = input(0)?;
    let (axis, exclusive, reverse) = parts(op, x.ndim())?;
    super::index::check_out(op, out.shape(), x.shape())?;
    let (start, step): (T, fn(T, T) -> T) = match op {
        Op::Cumprod { .. } => (T::one(), |a, b| a * b),
        _ => (T::zero(), |a, b| a + b),
    };
    Zip::from(out.lanes_mut(Axis(axis)))
        .and(x.lanes(Axis(axis)))
        .for_each(|mut y, x| {
            let n = x.len();
            let mut acc = start;
            for k in 0..n {
                let i = if reverse { n - 1 - k } else { k };
                if exclusive {
                    y[i] = acc;
                    acc = step(acc, x[i]);
                } else {
                    acc = step(acc, x[i]);
                    y[i] = acc;
                }
            }
        });
    Ok(())
}
