//! Reductions: Sum, Mean, ReducedSize, SumToLike, Softmax and the softmax
//! cross-entropy.

use super::{reshape_owned, Elem};
use crate::shape::normalize_axes;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Zip};

/// Sorted, distinct axes in range; all axes when `axes` is absent.
fn resolve_axes(axes: Option<&[i64]>, rank: usize) -> Result<Vec<usize>, String> {
    match axes {
        Some(a) => normalize_axes(a, rank),
        None => Ok((0..rank).collect()),
    }
}

/// Sums over `axes` (sorted, distinct, in range), removing them.
fn sum_axes<T: Elem>(x: &ArrayViewD<'_, T>, axes: &[usize]) -> ArrayD<T> {
    // Highest axis first, so the lower ones keep their positions.
    let mut rest = axes.iter().rev();
    let Some(&first) = rest.next() else {
        return x.to_owned();
    };
    rest.fold(x.sum_axis(Axis(first)), |acc, &a| acc.sum_axis(Axis(a)))
}

/// Number of elements over `axes` of a tensor of shape `shape`.
fn count<T: Elem>(shape: &[usize], axes: &[usize]) -> T {
    let n: usize = axes.iter().map(|&a| shape[a]).product();
    T::from_f64(n as f64)
}

pub(super) fn sum<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: Option<&[i64]>,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let axes = resolve_axes(axes, x.ndim())?;
    reshape_owned(sum_axes(x, &axes), out)
}

/// The sum divided by the number of elements reduced (NaN when that is 0).
pub(super) fn mean<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: Option<&[i64]>,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let axes = resolve_axes(axes, x.ndim())?;
    let n = count::<T>(x.shape(), &axes);
    reshape_owned(sum_axes(x, &axes).mapv_into(|v| v / n), out)
}

/// The number of elements over `axes` as a scalar.
pub(super) fn reduced_size<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: Option<&[i64]>,
) -> Result<ArrayD<T>, String> {
    let axes = resolve_axes(axes, x.ndim())?;
    Ok(ArrayD::from_elem(IxDyn(&[]), count::<T>(x.shape(), &axes)))
}

/// Index of the first largest element along `axis`, as a float.
pub(super) fn argmax<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axis: i64,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let a = normalize_axes(&[axis], x.ndim())?[0];
    let best = x.map_axis(Axis(a), |lane| {
        let mut best = 0;
        for (i, v) in lane.iter().enumerate() {
            if *v > lane[best] {
                best = i;
            }
        }
        T::from_f64(best as f64)
    });
    reshape_owned(best, out)
}

/// Sums `x` down to `out`, the reverse of broadcasting `out` to x's shape:
/// over the leading axes `out` lacks and the axes where `out` has 1.
pub(super) fn sum_to_like<T: Elem>(
    x: &ArrayViewD<'_, T>,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let shape = x.shape();
    let bad = || format!("cannot sum {shape:?} down to {out:?}");
    let pad = shape.len().checked_sub(out.len()).ok_or_else(bad)?;
    let mut axes: Vec<usize> = (0..pad).collect();
    for (i, (&d, &o)) in shape[pad..].iter().zip(out).enumerate() {
        if o == 1 && d != 1 {
            axes.push(pad + i);
        } else if o != d {
            return Err(bad());
        }
    }
    reshape_owned(sum_axes(x, &axes), out)
}

/// Softmax over the last axis, shifted by the maximum so exp cannot overflow.
pub(super) fn softmax<T: Elem>(x: &ArrayViewD<'_, T>) -> Result<ArrayD<T>, String> {
    let Some(last) = x.ndim().checked_sub(1) else {
        return Err("Softmax needs rank >= 1, got a scalar".into());
    };
    let mut y = x.as_standard_layout().into_owned();
    for mut lane in y.lanes_mut(Axis(last)) {
        let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
        lane.mapv_inplace(|v| (v - m).exp());
        let s = lane.sum();
        lane.mapv_inplace(|v| v / s);
    }
    Ok(y)
}

/// Per-example -sum(labels * log_softmax(logits)) over the last axis, with
/// log_softmax = logits - logsumexp(logits) computed stably.
pub(super) fn softmax_cross_entropy<T: Elem>(
    logits: &ArrayViewD<'_, T>,
    labels: &ArrayViewD<'_, T>,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let shape = logits.shape();
    let Some(last) = shape.len().checked_sub(1) else {
        return Err("logits must have rank >= 1, got a scalar".into());
    };
    if labels.shape() != shape || shape[..last] != *out {
        return Err(format!(
            "logits {shape:?} and labels {:?} must have one shape, {out:?} plus the class axis",
            labels.shape()
        ));
    }
    let mut loss = ArrayD::zeros(IxDyn(out));
    Zip::from(&mut loss)
        .and(logits.lanes(Axis(last)))
        .and(labels.lanes(Axis(last)))
        .for_each(|loss, z, p| {
            let m = z.fold(T::neg_infinity(), |m, &v| m.max(v));
            let lse = m + z.fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
            *loss = Zip::from(&z)
                .and(&p)
                .fold(T::zero(), |acc, &zi, &pi| acc - pi * (zi - lse));
        });
    Ok(loss)
}
