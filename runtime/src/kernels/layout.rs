//! Kernels that build or rearrange values: Const, Fill, reshapes, Transpose,
//! BroadcastLike.

use super::{broadcast_view, Elem};
use crate::Literal;
use ndarray::{ArrayD, ArrayViewD, IxDyn};

pub(super) fn constant<T: Elem>(lit: &Literal, out: &[usize]) -> Result<ArrayD<T>, String> {
    let (shape, data) = lit.to_flat()?;
    if shape != out {
        return Err(format!("constant of shape {shape:?}, expected {out:?}"));
    }
    let data = data.into_iter().map(T::from_f64).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).map_err(|e| e.to_string())
}

/// A tensor of shape `out` filled with the scalar `value`.
pub(super) fn fill<T: Elem>(value: &ArrayViewD<'_, T>, out: &[usize]) -> Result<ArrayD<T>, String> {
    match value.ndim() {
        0 => value
            .first()
            .map(|&v| ArrayD::from_elem(IxDyn(out), v))
            .ok_or_else(|| "Fill: empty value".into()),
        _ => Err(format!(
            "Fill takes a scalar value, got shape {:?}",
            value.shape()
        )),
    }
}

/// Row-major reshape (Reshape, ReshapeLike, ExpandDims, Squeeze).
pub(super) fn reshape<T: Elem>(x: &ArrayViewD<'_, T>, out: &[usize]) -> Result<ArrayD<T>, String> {
    x.to_shape(IxDyn(out))
        .map(|y| y.into_owned())
        .map_err(|e| format!("cannot reshape {:?} to {out:?}: {e}", x.shape()))
}

/// Permutes the axes; reverses them when `perm` is absent.
pub(super) fn transpose<T: Elem>(
    x: &ArrayViewD<'_, T>,
    perm: Option<&[usize]>,
) -> Result<ArrayD<T>, String> {
    let r = x.ndim();
    let perm: Vec<usize> = match perm {
        Some(p) => p.to_vec(),
        None => (0..r).rev().collect(),
    };
    let mut seen = vec![false; r];
    let valid = perm.len() == r
        && perm
            .iter()
            .all(|&a| a < r && !std::mem::replace(&mut seen[a], true));
    if !valid {
        return Err(format!("perm {perm:?} is not a permutation of {r} axes"));
    }
    Ok(x.view()
        .permuted_axes(IxDyn(&perm))
        .as_standard_layout()
        .into_owned())
}

/// `x` broadcast to `out`, materialized.
pub(super) fn broadcast_to<T: Elem>(
    x: &ArrayViewD<'_, T>,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    Ok(broadcast_view(x, out)?.to_owned())
}
