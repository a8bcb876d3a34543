//! What the slicing, padding, joining and tiling ops share: attribute
//! checks against a shape, and the index maps their kernels walk. Each op's
//! own rules are in its module (`slice.rs`, `pad.rs`, `concat.rs`, ...).

use super::Op;
use crate::shape::{Dim, Shape};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use serde::{Deserialize, Serialize};

/// How `Pad` fills the border (TensorFlow's `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PadMode {
    /// `constant_values`.
    #[default]
    CONSTANT,
    /// The values mirrored about the edge, the edge itself not repeated.
    REFLECT,
    /// The values mirrored about the edge, the edge repeated.
    SYMMETRIC,
}

/// One entry per axis, or an error naming the attribute and the rank.
pub(super) fn per_axis<T>(name: &str, v: &[T], rank: usize) -> Result<(), String> {
    if v.len() == rank {
        return Ok(());
    }
    Err(format!(
        "{name} has {} entries, the input has rank {rank}",
        v.len()
    ))
}

/// A slice's [start, end) on each axis of `dims`, checked as TensorFlow's
/// Slice does: 0 ≤ begin ≤ dim, size -1 (the rest of the axis) or
/// 0 ≤ size ≤ dim − begin.
pub(super) fn slice_bounds(
    begin: &[i64],
    size: &[i64],
    dims: &[usize],
) -> Result<Vec<(usize, usize)>, String> {
    per_axis("begin", begin, dims.len())?;
    per_axis("size", size, dims.len())?;
    dims.iter()
        .zip(begin.iter().zip(size))
        .enumerate()
        .map(|(axis, (&d, (&b, &s)))| axis_bounds(axis, d, b, s))
        .collect()
}

/// One axis's [start, end) of a slice (see `slice_bounds`).
fn axis_bounds(axis: usize, d: usize, b: i64, s: i64) -> Result<(usize, usize), String> {
    let start = usize::try_from(b).ok().filter(|&b| b <= d);
    let end = match (start, s) {
        (Some(b), -1) => Some(d.max(b)),
        (Some(b), s) => usize::try_from(s)
            .ok()
            .and_then(|s| b.checked_add(s))
            .filter(|&e| e <= d),
        (None, _) => None,
    };
    match (start, end) {
        (Some(b), Some(e)) => Ok((b, e)),
        _ => Err(format!(
            "begin {b} and size {s} on axis {axis} leave the dimension {d}"
        )),
    }
}

/// The slice's shape from the input's (possibly symbolic) shape: sizes as
/// given, -1 the rest of the axis (of a symbolic axis, from 0 only).
pub(super) fn sliced_shape(begin: &[i64], size: &[i64], x: &Shape) -> Result<Shape, String> {
    per_axis("begin", begin, x.rank())?;
    per_axis("size", size, x.rank())?;
    let dims = x.0.iter().zip(begin.iter().zip(size)).enumerate();
    let dims = dims.map(|(axis, (d, (&b, &s)))| match (d, b, s) {
        (_, b, _) if b < 0 => Err(format!("begin {b} on axis {axis} is negative")),
        (Dim::Known(d), _, _) => {
            let (start, end) = axis_bounds(axis, *d, b, s)?;
            Ok(Dim::Known(end - start))
        }
        (Dim::Sym(_), 0, -1) => Ok(d.clone()),
        (Dim::Sym(_), _, s) if s >= 0 => Ok(Dim::Known(s as usize)),
        (Dim::Sym(name), b, _) => Err(format!(
            "a slice to the end of the symbolic dimension {name} (axis {axis}) must begin at 0, not {b}"
        )),
    });
    Ok(Shape(dims.collect::<Result<_, String>>()?))
}

/// For each output position along one axis, the input position it reads
/// (None: outside the input, the padding value), for a pad of `before`
/// and `after` around `dim` values in `mode`.
pub(super) fn pad_map(
    mode: PadMode,
    dim: usize,
    (before, after): (usize, usize),
) -> Result<Vec<Option<usize>>, String> {
    check_reach(mode, dim, (before, after))?;
    let total = before
        .checked_add(dim)
        .and_then(|n| n.checked_add(after))
        .ok_or("the padded size overflows")?;
    Ok((0..total)
        .map(|o| {
            let i = o as isize - before as isize;
            let d = dim as isize;
            match mode {
                _ if (0..d).contains(&i) => Some(i as usize),
                PadMode::CONSTANT => None,
                PadMode::REFLECT if i < 0 => Some((-i) as usize),
                PadMode::REFLECT => Some((2 * d - 2 - i) as usize),
                PadMode::SYMMETRIC if i < 0 => Some((-i - 1) as usize),
                PadMode::SYMMETRIC => Some((2 * d - 1 - i) as usize),
            }
        })
        .collect())
}

/// An error unless a mirror pad reaches no further than the input:
/// REFLECT skips the edge (at most dim − 1 values), SYMMETRIC repeats it
/// (at most dim).
pub(super) fn check_reach(
    mode: PadMode,
    dim: usize,
    (before, after): (usize, usize),
) -> Result<(), String> {
    let reach = match mode {
        PadMode::CONSTANT => usize::MAX,
        PadMode::REFLECT => dim.saturating_sub(1),
        PadMode::SYMMETRIC => dim,
    };
    if before > reach || after > reach {
        return Err(format!(
            "{mode:?} padding of ({before}, {after}) is more than the {reach} values a dimension of {dim} mirrors"
        ));
    }
    Ok(())
}

/// `paddings` as (before, after) pairs, one per axis, none negative.
pub(super) fn pad_pairs(paddings: &[Vec<i64>], rank: usize) -> Result<Vec<(usize, usize)>, String> {
    per_axis("paddings", paddings, rank)?;
    paddings
        .iter()
        .enumerate()
        .map(|(axis, p)| match p[..] {
            [b, a] if b >= 0 && a >= 0 => Ok((b as usize, a as usize)),
            _ => Err(format!(
                "paddings on axis {axis} must be a (before, after) pair of counts, got {p:?}"
            )),
        })
        .collect()
}

/// `out[o] = x[map(o)]` (or `fill` where the map gives none) over every
/// element, with one map per axis from output to input positions.
pub(super) fn gather_by_maps<T: Copy>(
    x: &ArrayViewD<'_, T>,
    maps: &[Vec<Option<usize>>],
    fill: T,
    out: &mut ArrayViewMutD<'_, T>,
) {
    let mut at = IxDyn(&vec![0; maps.len()]);
    for (o, y) in out.indexed_iter_mut() {
        let mut inside = true;
        for (axis, map) in maps.iter().enumerate() {
            match map[o[axis]] {
                Some(i) => at[axis] = i,
                None => inside = false,
            }
        }
        *y = if inside { x[&at] } else { fill };
    }
}

/// `dx[map(o)] += dy[o]` over every element of `dy` in row-major order,
/// `dx` zeroed first: the adjoint of `gather_by_maps`.
pub(super) fn scatter_by_maps<T: crate::kernels::Elem>(
    dy: &ArrayViewD<'_, T>,
    maps: &[Vec<Option<usize>>],
    dx: &mut ArrayViewMutD<'_, T>,
) {
    dx.fill(T::zero());
    let mut at = IxDyn(&vec![0; maps.len()]);
    for (o, &g) in dy.indexed_iter() {
        let mut inside = true;
        for (axis, map) in maps.iter().enumerate() {
            match map[o[axis]] {
                Some(i) => at[axis] = i,
                None => inside = false,
            }
        }
        if inside {
            dx[&at] = dx[&at] + g;
        }
    }
}

/// An error unless the output buffer has the shape the op makes.
pub(super) fn check_out(op: &Op, got: &[usize], want: &[usize]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    Err(format!("{}: the output {got:?} is not {want:?}", op.name()))
}
