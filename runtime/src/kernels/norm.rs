//! Normalization kernels: Moments and BatchNormalization (TensorFlow's formulas).

use super::Elem;
use crate::op::DataFormat;
use crate::shape::normalize_axes;
use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, IxDyn, Zip};

/// `a` reshaped (row-major) to `shape`.
fn reshape_owned<T: Clone>(a: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    a.into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())
}

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
    y: &mut ArrayD<T>,
) -> Result<(), String> {
    let dim = y.raw_dim();
    let b = |a: &ArrayViewD<'_, T>| {
        a.broadcast(dim.clone())
            .ok_or_else(|| {
                format!(
                    "shape {:?} does not broadcast to {:?}",
                    a.shape(),
                    dim.slice()
                )
            })
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
    let z = Zip::from(y).and(&x).and(&mean).and(&inv);
    match &offset {
        // y = x * inv + (offset - mean * inv), grouped as TensorFlow groups it.
        Some(o) => z
            .and(o)
            .for_each(|y, &x, &m, &i, &o| *y = x * i + (o - m * i)),
        None => z.for_each(|y, &x, &m, &i| *y = x * i - m * i),
    }
    Ok(())
}

/// A rank-2 or rank-4 tensor seen as [outer, channels, inner], row-major.
struct Layout {
    outer: usize,
    channels: usize,
    inner: usize,
}

impl Layout {
    fn of(shape: &[usize], format: DataFormat) -> Layout {
        let c = format.channel_axis(shape.len());
        Layout {
            outer: shape[..c].iter().product(),
            channels: shape.get(c).copied().unwrap_or(1),
            inner: shape[c + 1..].iter().product(),
        }
    }
    /// Elements per channel.
    fn count(&self) -> usize {
        self.outer * self.inner
    }
    /// Calls `f(channel, flat index)` for every element.
    fn each(&self, mut f: impl FnMut(usize, usize)) {
        for o in 0..self.outer {
            for c in 0..self.channels {
                let base = (o * self.channels + c) * self.inner;
                for i in 0..self.inner {
                    f(c, base + i);
                }
            }
        }
    }
}

fn contiguous<'a, T: Elem>(a: &'a ArrayViewD<'_, T>) -> std::borrow::Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// FusedBatchNorm: outputs y, batch_mean, batch_variance, saved_mean, saved_variance.
pub(super) fn fused_batch_norm<T: Elem>(
    xs: &[ArrayViewD<'_, T>],
    eps: f64,
    format: DataFormat,
    training: bool,
) -> Result<Vec<ArrayD<T>>, String> {
    let shape = xs[0].shape().to_vec();
    let l = Layout::of(&shape, format);
    let x = contiguous(&xs[0]);
    let (scale, offset) = (contiguous(&xs[1]), contiguous(&xs[2]));
    let (mut mean, mut var) = (
        contiguous(&xs[3]).into_owned(),
        contiguous(&xs[4]).into_owned(),
    );
    let mut batch_var = var.clone();
    if training {
        let n = T::from_f64(l.count() as f64);
        mean = vec![T::zero(); l.channels];
        var = vec![T::zero(); l.channels];
        l.each(|c, k| mean[c] = mean[c] + x[k]);
        mean.iter_mut().for_each(|m| *m = *m / n);
        l.each(|c, k| var[c] = var[c] + (x[k] - mean[c]) * (x[k] - mean[c]));
        var.iter_mut().for_each(|v| *v = *v / n);
        let bessel = T::from_f64(l.count() as f64 / (l.count().max(2) - 1) as f64);
        batch_var = var.iter().map(|&v| v * bessel).collect();
    }
    let eps = T::from_f64(eps);
    let inv: Vec<T> = var
        .iter()
        .zip(scale.iter())
        .map(|(&v, &s)| (v + eps).sqrt().recip() * s)
        .collect();
    let mut y = vec![T::zero(); x.len()];
    l.each(|c, k| y[k] = x[k] * inv[c] + (offset[c] - mean[c] * inv[c]));
    let param =
        |v: Vec<T>| ArrayD::from_shape_vec(IxDyn(&[l.channels]), v).map_err(|e| e.to_string());
    Ok(vec![
        ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| e.to_string())?,
        param(mean.clone())?,
        param(batch_var)?,
        param(mean)?,
        param(var)?,
    ])
}

/// FusedBatchNormGrad: inputs dy, x, scale, saved_mean, saved_variance;
/// outputs dx, dscale, doffset. With r = rsqrt(var + eps), xhat = (x - mean) r:
/// doffset = sum(dy), dscale = sum(dy xhat), and dx = scale r dy in inference
/// form, scale r (dy - doffset / n - xhat dscale / n) in training form.
pub(super) fn fused_batch_norm_grad<T: Elem>(
    xs: &[ArrayViewD<'_, T>],
    eps: f64,
    format: DataFormat,
    training: bool,
) -> Result<Vec<ArrayD<T>>, String> {
    let shape = xs[1].shape().to_vec();
    let l = Layout::of(&shape, format);
    let (dy, x) = (contiguous(&xs[0]), contiguous(&xs[1]));
    let (scale, mean, var) = (contiguous(&xs[2]), contiguous(&xs[3]), contiguous(&xs[4]));
    let eps = T::from_f64(eps);
    let r: Vec<T> = var.iter().map(|&v| (v + eps).sqrt().recip()).collect();
    let (mut doffset, mut dscale) = (vec![T::zero(); l.channels], vec![T::zero(); l.channels]);
    l.each(|c, k| {
        doffset[c] = doffset[c] + dy[k];
        dscale[c] = dscale[c] + dy[k] * (x[k] - mean[c]) * r[c];
    });
    let n = T::from_f64(l.count() as f64);
    let mut dx = vec![T::zero(); x.len()];
    l.each(|c, k| {
        dx[k] = if training {
            let xhat = (x[k] - mean[c]) * r[c];
            scale[c] * r[c] * (dy[k] - doffset[c] / n - xhat * dscale[c] / n)
        } else {
            scale[c] * r[c] * dy[k]
        }
    });
    let param =
        |v: Vec<T>| ArrayD::from_shape_vec(IxDyn(&[l.channels]), v).map_err(|e| e.to_string());
    Ok(vec![
        ArrayD::from_shape_vec(IxDyn(&shape), dx).map_err(|e| e.to_string())?,
        param(dscale)?,
        param(doffset)?,
    ])
}

/// a where cond != 0, else b, broadcast to the output's shape.
pub(super) fn select<T: Elem>(
    cond: &ArrayViewD<'_, T>,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    y: &mut ArrayD<T>,
) -> Result<(), String> {
    let dim = y.raw_dim();
    let bad = |t: &ArrayViewD<'_, T>| {
        format!(
            "shape {:?} does not broadcast to {:?}",
            t.shape(),
            dim.slice()
        )
    };
    let c = cond.broadcast(dim.clone()).ok_or_else(|| bad(cond))?;
    let (a, b) = (
        a.broadcast(dim.clone()).ok_or_else(|| bad(a))?,
        b.broadcast(dim.clone()).ok_or_else(|| bad(b))?,
    );
    Zip::from(y)
        .and(&c)
        .and(&a)
        .and(&b)
        .for_each(|y, &c, &a, &b| *y = if c != T::zero() { a } else { b });
    Ok(())
}
