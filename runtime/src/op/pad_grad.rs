//! `PadGrad`: the gradient of Pad: input dy of the padded shape; output of
//! the unpadded shape, each value the sum of dy over the positions that
//! read it (the mirrored ones too: TensorFlow's `MirrorPadGrad`; for
//! CONSTANT, the slice of dy inside the border). Its gradient is
//! `compiler/src/grad/pad_grad.rs`.

use super::index::{check_out, pad_map, pad_pairs, scatter_by_maps};
use super::pad::{padded, parts};
use super::{Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) use super::pad::attrs_text;

/// The size before padding: dy's minus before and after.
fn unpadded(d: usize, (b, a): (usize, usize)) -> Result<usize, String> {
    d.checked_sub(b)
        .and_then(|n| n.checked_sub(a))
        .ok_or_else(|| format!("a dimension of {d} is smaller than its padding ({b}, {a})"))
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let shape = padded(op, &ins[0].shape, true)?;
    Ok(vec![TensorType { dtype: dt, shape }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (paddings, mode) = parts(op)?;
    let dy = input(0)?;
    let pairs = pad_pairs(paddings, dy.ndim())?;
    let shape = dy
        .shape()
        .iter()
        .zip(&pairs)
        .map(|(&d, &p)| unpadded(d, p))
        .collect::<Result<Vec<_>, String>>()?;
    check_out(op, out.shape(), &shape)?;
    let maps = shape
        .iter()
        .zip(&pairs)
        .map(|(&d, &p)| pad_map(mode, d, p))
        .collect::<Result<Vec<_>, String>>()?;
    scatter_by_maps(&dy, &maps, &mut out.view_mut());
    Ok(())
}
