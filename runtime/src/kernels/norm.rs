//! Normalization kernels: Moments and BatchNormalization (TensorFlow's formulas).

use super::{reshape_owned, Elem};
use crate::shape::normalize_axes;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Zip};

/// Mean and population variance over `axes` (two passes: the mean, then the
/// mean squared deviation from it), both shaped `out`.
pub(super) fn moments<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: &[i64],
    out: &[usize],
) -> Result<(ArrayD<T>, ArrayD<T>), String> {
    let axes = normalize_axes(axes, x.ndim())?;
    let n = T::from_f64(axes.iter().map(|&a| x.shape()[a]).product::<usize>() as f64);
    // Keep-dims shape, for broadcasting the mean back over x.
    let keep: Vec<usize> = (0..x.ndim())
        .map(|i| if axes.contains(&i) { 1 } else { x.shape()[i] })
        .collect();
    let sum = axes
        .iter()
        .rev()
        .fold(x.to_owned(), |acc, &a| acc.sum_axis(Axis(a)));
    let mean = reshape_owned(sum.mapv_into(|v| v / n), &keep)?;
    let centered = {
        let m = mean
            .broadcast(x.raw_dim())
            .ok_or("the mean does not broadcast to the input")?;
        let mut c = ArrayD::zeros(x.raw_dim());
        Zip::from(&mut c)
            .and(x)
            .and(&m)
            .for_each(|c, &x, &m| *c = (x - m) * (x - m));
        c
    };
    let sq = axes
        .iter()
        .rev()
        .fold(centered, |acc, &a| acc.sum_axis(Axis(a)));
    let var = reshape_owned(sq.mapv_into(|v| v / n), out)?;
    Ok((reshape_owned(mean, out)?, var))
}

/// `inv = rsqrt(variance + eps) * scale; y = x * inv + (offset - mean * inv)`,
/// parameters broadcast against x (absent offset: 0, absent scale: 1).
pub(super) fn batch_normalization<T: Elem>(
    xs: &[ArrayViewD<'_, T>],
    eps: f64,
    has_offset: bool,
    has_scale: bool,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let dim = IxDyn(out);
    let b = |a: &ArrayViewD<'_, T>| {
        a.broadcast(dim.clone())
            .ok_or_else(|| format!("shape {:?} does not broadcast to {out:?}", a.shape()))
            .map(|v| v.to_owned())
    };
    let (x, mean, var) = (b(&xs[0])?, b(&xs[1])?, b(&xs[2])?);
    let offset = if has_offset { Some(b(&xs[3])?) } else { None };
    let scale = if has_scale {
        Some(b(&xs[3 + usize::from(has_offset)])?)
    } else {
        None
    };
    let eps = T::from_f64(eps);
    let mut inv = var.mapv(|v| (v + eps).sqrt().recip());
    if let Some(s) = &scale {
        inv.zip_mut_with(s, |i, &s| *i = *i * s);
    }
    let mut y = ArrayD::zeros(dim);
    let z = Zip::from(&mut y).and(&x).and(&mean).and(&inv);
    match &offset {
        // y = x * inv + (offset - mean * inv), grouped as TensorFlow groups it.
        Some(o) => z
            .and(o)
            .for_each(|y, &x, &m, &i, &o| *y = x * i + (o - m * i)),
        None => z.for_each(|y, &x, &m, &i| *y = x * i - m * i),
    }
    Ok(y)
}
