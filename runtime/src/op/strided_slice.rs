//! `StridedSlice`: TensorFlow's `tf.strided_slice` (NumPy's `x[b:e:s, ...]`)
//! with `begin`, `end` and `strides` as attributes and its five masks:
//! bit i of `begin_mask` (`end_mask`) ignores begin[i] (end[i]) for the
//! widest range, `ellipsis_mask` marks the entry that stands for the axes
//! not named, `new_axis_mask` inserts an axis of size 1, `shrink_axis_mask`
//! takes the one index begin[i] and removes the axis. Negative indices count
//! from the end, negative strides walk backwards, and ranges are clamped to
//! the axis as TensorFlow clamps them. Its gradient is `StridedSliceGrad`
//! (`strided_slice_grad.rs`), which shares these rules.

use super::index::{check_out, gather_by_maps};
use super::{Arity, Op};
use crate::dtype::Value;
use crate::shape::{Dim, Shape};
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

pub(super) const ARITY: Arity = Arity::Exactly(1);
value_kernel!();

/// The attributes of a StridedSlice or StridedSliceGrad.
pub(super) struct Spec<'a> {
    begin: &'a [i64],
    end: &'a [i64],
    strides: &'a [i64],
    masks: [i64; 5],
}

pub(super) fn spec(op: &Op) -> Result<Spec<'_>, String> {
    match op {
        Op::StridedSlice {
            begin,
            end,
            strides,
            begin_mask,
            end_mask,
            ellipsis_mask,
            new_axis_mask,
            shrink_axis_mask,
        }
        | Op::StridedSliceGrad {
            begin,
            end,
            strides,
            begin_mask,
            end_mask,
            ellipsis_mask,
            new_axis_mask,
            shrink_axis_mask,
        } => Ok(Spec {
            begin,
            end,
            strides,
            masks: [*begin_mask, *end_mask, *ellipsis_mask, *new_axis_mask, *shrink_axis_mask],
        }),
        _ => Err(format!("{} is not a strided slice", op.name())),
    }
}

pub(super) fn attrs_text(op: &Op) -> String {
    match spec(op) {
        Ok(s) => {
            let [b, e, el, na, sh] = s.masks;
            format!(
                "{{begin: {:?}, end: {:?}, strides: {:?}, begin_mask: {b}, end_mask: {e}, ellipsis_mask: {el}, new_axis_mask: {na}, shrink_axis_mask: {sh}}}",
                s.begin, s.end, s.strides
            )
        }
        Err(_) => String::new(),
    }
}

/// One input axis of the slice: the positions it reads, or (a symbolic
/// axis read whole) the axis itself; `shrink` when the output drops it.
#[derive(Clone, Debug)]
pub(super) enum Reads {
    Positions(Vec<usize>),
    Whole(Dim),
}

/// The slice on a shape: for each input axis what it reads and whether the
/// output keeps it, and the output's dimensions.
pub(super) struct Plan {
    pub(super) axes: Vec<(Reads, bool)>,
    pub(super) out: Vec<Dim>,
}

impl Plan {
    /// The output's dimensions at the input's rank (a dropped axis as 1).
    pub(super) fn at_input_rank(&self) -> Vec<usize> {
        self.axes
            .iter()
            .map(|(r, _)| match r {
                Reads::Positions(p) => p.len(),
                Reads::Whole(Dim::Known(d)) => *d,
                Reads::Whole(Dim::Sym(_)) => 0,
            })
            .collect()
    }

    /// One map per input axis from output position to input position.
    pub(super) fn maps(&self) -> Vec<Vec<Option<usize>>> {
        self.axes
            .iter()
            .map(|(r, _)| match r {
                Reads::Positions(p) => p.iter().map(|&i| Some(i)).collect(),
                Reads::Whole(Dim::Known(d)) => (0..*d).map(Some).collect(),
                Reads::Whole(Dim::Sym(_)) => Vec::new(),
            })
            .collect()
    }
}

/// TensorFlow's `ValidateStridedSliceOp`: the sparse spec made dense over
/// the input's axes (the ellipsis expanded, one added at the end when there
/// is none), then each axis's range canonicalized and clamped.
pub(super) fn plan(s: &Spec<'_>, x: &Shape) -> Result<Plan, String> {
    let n = s.begin.len();
    let strides: Vec<i64> = if s.strides.is_empty() { vec![1; n] } else { s.strides.to_vec() };
    if s.end.len() != n || strides.len() != n {
        return Err(format!(
            "begin, end and strides have {n}, {} and {} entries; they must have one each",
            s.end.len(),
            strides.len()
        ));
    }
    if n > 62 {
        return Err(format!("{n} entries are more than the masks' bits"));
    }
    let bit = |mask: i64, i: usize| (mask >> i) & 1 == 1;
    let [begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_mask] = s.masks;
    if (ellipsis_mask & ((1 << n) - 1)).count_ones() > 1 {
        return Err("ellipsis_mask has more than one bit set".into());
    }
    // No ellipsis: one implied after the last entry.
    let ellipsis = (0..n).find(|&i| bit(ellipsis_mask, i)).unwrap_or(n);
    let entries = if ellipsis == n { n + 1 } else { n };
    let new_after = (ellipsis + 1..n).filter(|&i| bit(new_axis_mask, i)).count();
    let rank = x.rank();
    let mut axes = Vec::with_capacity(rank);
    let mut out = Vec::new();
    let mut full = 0usize;
    // The implied ellipsis (entry n) has no stride of its own.
    for (i, &stride) in strides.iter().chain([&1]).enumerate().take(entries) {
        if i == ellipsis {
            let next = (rank + i + 1 + new_after).saturating_sub(entries).min(rank);
            for d in &x.0[full.min(next)..next] {
                axes.push((Reads::Whole(d.clone()), true));
                out.push(d.clone());
            }
            full = full.max(next);
        } else if bit(new_axis_mask, i) {
            out.push(Dim::Known(1));
        } else {
            let d = x.0.get(full).ok_or_else(|| {
                format!("entry {i} names axis {full}, but the input {x} has rank {rank}")
            })?;
            if stride == 0 {
                return Err(format!("strides[{i}] must be non-zero"));
            }
            let shrink = bit(shrink_mask, i);
            let (bm, em) = (bit(begin_mask, i), bit(end_mask, i));
            let reads = match d {
                Dim::Known(size) => Reads::Positions(positions(
                    s.begin[i], s.end[i], stride, bm, em, shrink, *size,
                ).map_err(|e| format!("axis {full}: {e}"))?),
                Dim::Sym(sym) if !shrink && stride == 1 && (bm || s.begin[i] == 0) && em => {
                    Reads::Whole(Dim::Sym(sym.clone()))
                }
                Dim::Sym(sym) => {
                    return Err(format!(
                        "axis {full} is the symbolic {sym}: only the whole axis (begin 0 or masked, end masked, stride 1) can be sliced from it"
                    ))
                }
            };
            if !shrink {
                out.push(match &reads {
                    Reads::Positions(p) => Dim::Known(p.len()),
                    Reads::Whole(d) => d.clone(),
                });
            }
            axes.push((reads, !shrink));
            full += 1;
        }
    }
    // Axes after the last entry are read whole (the implied ellipsis covers them).
    for d in &x.0[full.min(rank)..] {
        axes.push((Reads::Whole(d.clone()), true));
        out.push(d.clone());
    }
    Ok(Plan { axes, out })
}

/// The positions one axis of `size` reads, as TensorFlow canonicalizes
/// begin and end: negative from the end, masked for the widest range,
/// clamped to [0, size] going forward and [-1, size - 1] going backward.
fn positions(
    begin: i64,
    end: i64,
    stride: i64,
    begin_masked: bool,
    end_masked: bool,
    shrink: bool,
    size: usize,
) -> Result<Vec<usize>, String> {
    let d = size as i64;
    if shrink {
        let b = if begin < 0 { begin + d } else { begin };
        if !(0..d).contains(&b) {
            return Err(format!("slice index {begin} is out of bounds for size {size}"));
        }
        return Ok(vec![b as usize]);
    }
    let (lo, hi) = if stride > 0 { (0, d) } else { (-1, d - 1) };
    let canon = |v: i64, masked: bool, widest: i64| {
        if masked {
            widest
        } else {
            (if v < 0 { v + d } else { v }).clamp(lo, hi)
        }
    };
    let b = canon(begin, begin_masked, if stride > 0 { lo } else { hi });
    let e = canon(end, end_masked, if stride > 0 { hi } else { lo });
    let mut at = b;
    let mut p = Vec::new();
    while (stride > 0 && at < e) || (stride < 0 && at > e) {
        p.push(at as usize);
        at += stride;
    }
    Ok(p)
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let plan = plan(&spec(op)?, &ins[0].shape)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: Shape(plan.out),
    }])
}

pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let x = input(0)?;
    let plan = plan(&spec(op)?, &Shape::known(x.shape()))?;
    let want: Vec<usize> = plan.out.iter().map(|d| d.known().unwrap_or(0)).collect();
    check_out(op, out.shape(), &want)?;
    let mut at_rank = out
        .view_mut()
        .into_shape_with_order(IxDyn(&plan.at_input_rank()))
        .map_err(|e| e.to_string())?;
    gather_by_maps(&x, &plan.maps(), T::default(), &mut at_rank);
    Ok(())
}
