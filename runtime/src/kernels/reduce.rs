//! Reductions: Sum, Mean, ReducedSize, SumToLike, Softmax and the
//! softmax cross-entropy.
//!
//! Sums are accumulated straight into the output. The order of the additions
//! is that of reducing the highest axis first with ndarray's `sum_axis`: the
//! trailing reduced axes with an 8-way unrolled sum per lane (ndarray's
//! `sum`), nested outwards; any other reduced axis by adding its slices to
//! the output one after another.

use super::{layout, Elem};
use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Axis, Dimension, Zip};

/// Whether axis `a` is in `mask`.
fn has(mask: u64, a: usize) -> bool {
    a < 64 && (mask >> a) & 1 == 1
}

/// The reduced axes as a bit mask; all axes when `axes` is absent. Refuses
/// out-of-range and repeated axes, and ranks above 64.
fn axis_mask(axes: Option<&[i64]>, rank: usize) -> Result<u64, String> {
    if rank > 64 {
        return Err(format!("reductions support rank up to 64, got {rank}"));
    }
    let Some(axes) = axes else {
        return Ok(u64::MAX.checked_shr(64 - rank as u32).unwrap_or(0));
    };
    let r = rank as i64;
    let mut mask = 0u64;
    for &a in axes {
        if a < -r || a >= r {
            return Err(format!("axis {a} is out of range for rank {rank}"));
        }
        let a = if a < 0 { a + r } else { a } as usize;
        if has(mask, a) {
            return Err(format!("axis {a} is repeated"));
        }
        mask |= 1 << a;
    }
    Ok(mask)
}

/// Number of elements over the axes in `mask` of a tensor of shape `shape`.
fn count<T: Elem>(shape: &[usize], mask: u64) -> T {
    let n: usize = shape
        .iter()
        .enumerate()
        .filter(|&(a, _)| has(mask, a))
        .map(|(_, &d)| d)
        .product();
    T::from_f64(n as f64)
}

/// ndarray's `unrolled_fold` for addition over `n` values given by index:
/// eight partial sums, combined pairwise, then the remainder in order.
fn unrolled<T: Elem>(n: usize, f: impl Fn(usize) -> T) -> T {
    let mut p = [T::zero(); 8];
    let mut i = 0;
    while n - i >= 8 {
        for (j, p) in p.iter_mut().enumerate() {
            *p = *p + f(i + j);
        }
        i += 8;
    }
    let mut acc = T::zero();
    for j in 0..4 {
        acc = acc + (p[j] + p[j + 4]);
    }
    (i..n).fold(acc, |acc, k| acc + f(k))
}

/// `unrolled` over a slice, in a form the compiler vectorizes.
fn unrolled_slice<T: Elem>(xs: &[T]) -> T {
    let mut p = [T::zero(); 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (p, &v) in p.iter_mut().zip(c) {
            *p = *p + v;
        }
    }
    let mut acc = T::zero();
    for j in 0..4 {
        acc = acc + (p[j] + p[j + 4]);
    }
    rest.iter().fold(acc, |acc, &v| acc + v)
}

/// The sum of all of a row-major block of shape `shape`: `unrolled` along the
/// last axis, then along each outer axis over the inner sums.
fn nested_slice<T: Elem>(xs: &[T], shape: &[usize]) -> T {
    match shape {
        [] => xs.first().copied().unwrap_or_else(T::zero),
        [_] => unrolled_slice(xs),
        [n, inner @ ..] => {
            let step: usize = inner.iter().product();
            unrolled(*n, |i| nested_slice(&xs[i * step..(i + 1) * step], inner))
        }
    }
}

/// `nested_slice` for a view in any layout.
fn nested_sum<T: Elem>(x: &ArrayViewD<'_, T>) -> T {
    if let Some(xs) = x.as_slice() {
        return nested_slice(xs, x.shape());
    }
    match x.ndim() {
        0 => x.first().copied().unwrap_or_else(T::zero),
        1 => unrolled(x.len(), |i| x[i]),
        _ => unrolled(x.len_of(Axis(0)), |i| nested_sum(&x.index_axis(Axis(0), i))),
    }
}

/// Adds the sum of `x` over the axes in `mask` to `o`, which has x's rank and
/// size 1 on the reduced axes. `axis` is the axis of the full tensor that is
/// x's first; axes from `trailing` on are all reduced.
fn accumulate<T: Elem>(
    mut o: ArrayViewMutD<'_, T>,
    x: ArrayViewD<'_, T>,
    axis: usize,
    mask: u64,
    trailing: usize,
) {
    if axis >= trailing {
        if let Some(v) = o.first_mut() {
            *v = *v + nested_sum(&x);
        }
    } else if mask.checked_shr(axis as u32).unwrap_or(0) == 0 {
        Zip::from(&mut o).and(&x).for_each(|o, &v| *o = *o + v);
    } else if has(mask, axis) {
        for xi in x.outer_iter() {
            accumulate(o.index_axis_mut(Axis(0), 0), xi, axis + 1, mask, trailing);
        }
    } else {
        for (oi, xi) in o.outer_iter_mut().zip(x.outer_iter()) {
            accumulate(oi, xi, axis + 1, mask, trailing);
        }
    }
}

/// Sums `x` over the axes in `mask` into `out`, which holds the result in
/// row-major order (the reduced axes removed, or kept with size 1).
fn sum_into<T: Elem>(x: &ArrayViewD<'_, T>, mask: u64, out: &mut ArrayD<T>) -> Result<(), String> {
    if mask == 0 {
        return layout::reshape(x, out);
    }
    let mut keep = x.raw_dim();
    for a in 0..x.ndim() {
        if has(mask, a) {
            keep[a] = 1;
        }
    }
    if keep.size() != out.len() {
        return Err(format!(
            "cannot sum {:?} to {:?} (axes mask {mask:#b})",
            x.shape(),
            out.shape()
        ));
    }
    let mut trailing = x.ndim();
    while trailing > 0 && has(mask, trailing - 1) {
        trailing -= 1;
    }
    // Contiguous input, reduced axes all leading or all trailing: the same
    // additions in the same order as `accumulate`, over slices.
    let leading = mask.trailing_ones() as usize;
    if let (Some(xs), Some(o)) = (x.as_slice(), out.as_slice_mut()) {
        let shape = x.shape();
        if trailing == x.ndim() && mask == u64::MAX.checked_shr(64 - leading as u32).unwrap_or(0) {
            let inner: usize = shape[leading..].iter().product();
            o.fill(T::zero());
            for row in xs.chunks_exact(inner.max(1)) {
                o.iter_mut().zip(row).for_each(|(o, &v)| *o = *o + v);
            }
            return Ok(());
        }
        if mask.trailing_zeros() as usize >= trailing {
            let block = &shape[trailing..];
            let inner: usize = block.iter().product();
            o.fill(T::zero());
            for (o, b) in o.iter_mut().zip(xs.chunks_exact(inner.max(1))) {
                *o = *o + nested_slice(b, block);
            }
            return Ok(());
        }
    }
    let mut o = out
        .view_mut()
        .into_shape_with_order(keep)
        .map_err(|e| e.to_string())?;
    o.fill(T::zero());
    accumulate(o, x.view(), 0, mask, trailing);
    Ok(())
}

pub(super) fn sum<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: Option<&[i64]>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    sum_into(x, axis_mask(axes, x.ndim())?, out)
}

/// The sum divided by the number of elements reduced (NaN when that is 0).
pub(super) fn mean<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: Option<&[i64]>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let mask = axis_mask(axes, x.ndim())?;
    sum_into(x, mask, out)?;
    let n = count::<T>(x.shape(), mask);
    out.mapv_inplace(|v| v / n);
    Ok(())
}

/// The number of elements over `axes` as a scalar.
pub(super) fn reduced_size<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: Option<&[i64]>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let mask = axis_mask(axes, x.ndim())?;
    if out.ndim() != 0 {
        return Err(format!(
            "ReducedSize gives a scalar, the output has shape {:?}",
            out.shape()
        ));
    }
    out.fill(count::<T>(x.shape(), mask));
    Ok(())
}

/// Sums `x` down to the output's shape, the reverse of broadcasting it to x's
/// shape: over the leading axes the output lacks and the axes where it has 1.
pub(super) fn sum_to_like<T: Elem>(
    x: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let shape = x.shape();
    let to = out.shape();
    let bad = || format!("cannot sum {shape:?} down to {to:?}");
    let pad = shape.len().checked_sub(to.len()).ok_or_else(bad)?;
    if shape.len() > 64 {
        return Err(bad());
    }
    let mut mask = u64::MAX.checked_shr(64 - pad as u32).unwrap_or(0);
    for (i, (&d, &o)) in shape[pad..].iter().zip(to).enumerate() {
        if o == 1 && d != 1 {
            mask |= 1 << (pad + i);
        } else if o != d {
            return Err(bad());
        }
    }
    sum_into(x, mask, out)
}

/// Softmax over the last axis, shifted by the maximum so exp cannot overflow.
pub(super) fn softmax<T: Elem>(x: &ArrayViewD<'_, T>, out: &mut ArrayD<T>) -> Result<(), String> {
    let Some(last) = x.ndim().checked_sub(1) else {
        return Err("Softmax needs rank >= 1, got a scalar".into());
    };
    layout::copy(x, out)?;
    let n = x.shape()[last];
    if out.is_empty() {
        // Nothing to normalize (however many empty rows).
        return Ok(());
    }
    if let (Some(y), true) = (out.as_slice_mut(), n > 0) {
        for row in y.chunks_exact_mut(n) {
            let m = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
            row.iter_mut().for_each(|v| *v = (*v - m).exp());
            let s = unrolled_slice(row);
            row.iter_mut().for_each(|v| *v = *v / s);
        }
        return Ok(());
    }
    for mut lane in out.lanes_mut(Axis(last)) {
        let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
        lane.mapv_inplace(|v| (v - m).exp());
        let s = lane.sum();
        lane.mapv_inplace(|v| v / s);
    }
    Ok(())
}

/// log(softmax(x)) over the last axis: x - (m + log(sum(exp(x - m)))), m the
/// row's maximum, so neither exp overflows nor the log meets an underflowed 0.
pub(super) fn log_softmax<T: Elem>(
    x: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let Some(last) = x.ndim().checked_sub(1) else {
        return Err("LogSoftmax needs rank >= 1, got a scalar".into());
    };
    layout::copy(x, out)?;
    let n = x.shape()[last];
    if out.is_empty() {
        return Ok(());
    }
    if let (Some(y), true) = (out.as_slice_mut(), n > 0) {
        for row in y.chunks_exact_mut(n) {
            let m = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
            let lse = m + row.iter().fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
            row.iter_mut().for_each(|v| *v = *v - lse);
        }
        return Ok(());
    }
    for mut lane in out.lanes_mut(Axis(last)) {
        let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
        let lse = m + lane.fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
        lane.mapv_inplace(|v| v - lse);
    }
    Ok(())
}

/// Per-example -sum(labels * log_softmax(logits)) over the last axis, with
/// log_softmax = logits - logsumexp(logits) computed stably.
pub(super) fn softmax_cross_entropy<T: Elem>(
    logits: &ArrayViewD<'_, T>,
    labels: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let shape = logits.shape();
    let Some(last) = shape.len().checked_sub(1) else {
        return Err("logits must have rank >= 1, got a scalar".into());
    };
    if labels.shape() != shape || shape[..last] != *out.shape() {
        return Err(format!(
            "logits {shape:?} and labels {:?} must have one shape, {:?} plus the class axis",
            labels.shape(),
            out.shape()
        ));
    }
    let n = shape[last];
    if let (Some(z), Some(p), Some(o), true) = (
        logits.as_slice(),
        labels.as_slice(),
        out.as_slice_mut(),
        n > 0,
    ) {
        for ((loss, z), p) in o.iter_mut().zip(z.chunks_exact(n)).zip(p.chunks_exact(n)) {
            let m = z.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
            let lse = m + z.iter().fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
            *loss = z
                .iter()
                .zip(p)
                .fold(T::zero(), |acc, (&zi, &pi)| acc - pi * (zi - lse));
        }
        return Ok(());
    }
    Zip::from(out)
        .and(logits.lanes(Axis(last)))
        .and(labels.lanes(Axis(last)))
        .for_each(|loss, z, p| {
            let m = z.fold(T::neg_infinity(), |m, &v| m.max(v));
            let lse = m + z.fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
            *loss = Zip::from(&z)
                .and(&p)
                .fold(T::zero(), |acc, &zi, &pi| acc - pi * (zi - lse));
        });
    Ok(())
}
