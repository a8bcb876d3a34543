//! Kernels that build or rearrange values: Const, Fill, ZerosLike, OnesLike,
//! Identity, reshapes, Transpose, BroadcastLike.

use super::{broadcast_view, same_shape};
use crate::dtype::{Num, Value};
use crate::Literal;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// Whether the literal has exactly this shape (as `Literal::to_flat` would give it).
fn literal_fits(lit: &Literal, shape: &[usize]) -> bool {
    match (lit, shape.split_first()) {
        (Literal::Scalar(_), None) => true,
        (Literal::List(items), Some((&n, rest))) if items.is_empty() => n == 0 && rest.is_empty(),
        (Literal::List(items), Some((&n, rest))) => {
            items.len() == n && items.iter().all(|item| literal_fits(item, rest))
        }
        _ => false,
    }
}

/// Writes the literal's values, in row-major order, to `out`.
fn write_literal<'a, T: Value + 'a>(lit: &Literal, out: &mut impl Iterator<Item = &'a mut T>) {
    match lit {
        Literal::Scalar(v) => {
            if let Some(o) = out.next() {
                *o = T::from_num(Num::F(*v));
            }
        }
        Literal::List(items) => items.iter().for_each(|item| write_literal(item, out)),
    }
}

pub(super) fn constant<T: Value>(lit: &Literal, out: &mut ArrayD<T>) -> Result<(), String> {
    if !literal_fits(lit, out.shape()) {
        let (shape, _) = lit.to_flat()?;
        return Err(format!(
            "constant of shape {shape:?}, expected {:?}",
            out.shape()
        ));
    }
    write_literal(lit, &mut out.iter_mut());
    Ok(())
}

/// The output filled with the scalar `value`.
pub(super) fn fill<T: Value>(value: &ArrayViewD<'_, T>, out: &mut ArrayD<T>) -> Result<(), String> {
    match value.ndim() {
        0 => {
            let &v = value.first().ok_or("Fill: empty value")?;
            out.fill(v);
            Ok(())
        }
        _ => Err(format!(
            "Fill takes a scalar value, got shape {:?}",
            value.shape()
        )),
    }
}

/// The output, of x's shape, filled with `value` (ZerosLike, OnesLike).
pub(super) fn fill_like<T: Value>(
    x: &ArrayViewD<'_, T>,
    value: T,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    same_shape("the input", x.shape(), out.shape())?;
    out.fill(value);
    Ok(())
}

/// A copy of `x`, of the output's shape (Identity, StopGradient).
pub(super) fn copy<T: Value>(x: &ArrayViewD<'_, T>, out: &mut ArrayD<T>) -> Result<(), String> {
    same_shape("the input", x.shape(), out.shape())?;
    out.assign(x);
    Ok(())
}

/// Row-major reshape (Reshape, ReshapeLike, ExpandDims, Squeeze).
pub(super) fn reshape<T: Value>(x: &ArrayViewD<'_, T>, out: &mut ArrayD<T>) -> Result<(), String> {
    if x.len() != out.len() {
        return Err(format!(
            "cannot reshape {:?} to {:?}: the sizes differ",
            x.shape(),
            out.shape()
        ));
    }
    match (x.as_slice(), out.as_slice_mut()) {
        (Some(src), Some(dst)) => dst.copy_from_slice(src),
        _ => out.iter_mut().zip(x.iter()).for_each(|(o, &v)| *o = v),
    }
    Ok(())
}

/// Permutes the axes; reverses them when `perm` is absent.
pub(super) fn transpose<T: Value>(
    x: &ArrayViewD<'_, T>,
    perm: Option<&[usize]>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let r = x.ndim();
    let permuted = match perm {
        None => x.view().reversed_axes(),
        Some(p) => {
            let valid = p.len() == r
                && p.iter()
                    .enumerate()
                    .all(|(i, &a)| a < r && !p[..i].contains(&a));
            if !valid {
                return Err(format!("perm {p:?} is not a permutation of {r} axes"));
            }
            x.view().permuted_axes(IxDyn(p))
        }
    };
    same_shape("the transposed input", permuted.shape(), out.shape())?;
    out.assign(&permuted);
    Ok(())
}

/// `x` broadcast to the output's shape, materialized.
pub(super) fn broadcast_to<T: Value>(
    x: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let shape = out.raw_dim();
    out.assign(&broadcast_view(x, &shape)?);
    Ok(())
}
