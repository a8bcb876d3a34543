//! Normalization kernels: Moments and BatchNormalization (TensorFlow's formulas).

use super::Elem;
use crate::op::DataFormat;
use crate::parallel::{split_elements, threads, PARALLEL_MIN_ELEMENTS};
use crate::shape::normalize_axes;
use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Dimension, IxDyn, Zip};

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
/// mean squared deviation from it), into `mean` and `var` (of one shape).
/// Reducing the leading axes of a contiguous x (a batch, or a batch and its
/// spatial axes in NHWC) runs over rows with nothing allocated; other axes
/// go through ndarray's `sum_axis`.
pub(super) fn moments<T: Elem>(
    x: &ArrayViewD<'_, T>,
    axes: &[i64],
    mean: &mut ArrayD<T>,
    var: &mut ArrayD<T>,
) -> Result<(), String> {
    super::same_shape("the variance", var.shape(), mean.shape())?;
    let rank = x.ndim() as i64;
    let mut leading = 0usize;
    let mut seen = 0u64;
    for &a in axes {
        let a = if a < 0 { a + rank } else { a };
        if !(0..rank).contains(&a) || a >= 64 || seen & (1 << a) != 0 {
            leading = usize::MAX;
            break;
        }
        seen |= 1 << a;
    }
    if leading != usize::MAX && seen.trailing_ones() as usize == axes.len() {
        leading = axes.len();
        let inner: usize = x.shape()[leading..].iter().product();
        if let (Some(xs), Some(m), Some(v), true) = (
            x.as_slice(),
            mean.as_slice_mut(),
            var.as_slice_mut(),
            inner > 0,
        ) {
            if m.len() != inner {
                return Err(format!(
                    "moments of {:?} over {axes:?} have {inner} values, the output {}",
                    x.shape(),
                    m.len()
                ));
            }
            let n = T::from_f64((xs.len() / inner) as f64);
            m.fill(T::zero());
            for row in xs.chunks_exact(inner) {
                m.iter_mut().zip(row).for_each(|(m, &v)| *m = *m + v);
            }
            m.iter_mut().for_each(|m| *m = *m / n);
            v.fill(T::zero());
            for row in xs.chunks_exact(inner) {
                v.iter_mut()
                    .zip(row)
                    .zip(&*m)
                    .for_each(|((v, &x), &m)| *v = *v + (x - m) * (x - m));
            }
            v.iter_mut().for_each(|v| *v = *v / n);
            return Ok(());
        }
    }
    let out = mean.shape().to_vec();
    let (m, v) = moments_general(x, axes, &out)?;
    mean.assign(&m);
    var.assign(&v);
    Ok(())
}

/// `moments` for any axes (allocates).
fn moments_general<T: Elem>(
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

/// The values of a parameter that holds one value per element of the last
/// axis of a rank-`rank` tensor (shape `[c]`, `[1, c]`, ...), if it is one.
fn as_row<'a, T: Elem>(p: &'a ArrayViewD<'_, T>, rank: usize, c: usize) -> Option<&'a [T]> {
    let s = p.shape();
    let (&last, lead) = s.split_last()?;
    (s.len() <= rank && last == c && lead.iter().all(|&d| d == 1))
        .then(|| p.as_slice())
        .flatten()
}

/// `inv = rsqrt(variance + eps) * scale; y = x * inv + (offset - mean * inv)`,
/// parameters broadcast against x (absent offset: 0, absent scale: 1). With
/// x contiguous and every parameter one value per element of x's last axis
/// (the layer's case), row by row with nothing allocated.
pub(super) fn batch_normalization<T: Elem>(
    xs: &[Option<ArrayViewD<'_, T>>],
    eps: f64,
    has_offset: bool,
    has_scale: bool,
    y: &mut ArrayD<T>,
) -> Result<(), String> {
    let get = |k: usize| {
        xs.get(k)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("BatchNormalization: input {k} is missing"))
    };
    let (x, mean, var) = (get(0)?, get(1)?, get(2)?);
    let offset = if has_offset { Some(get(3)?) } else { None };
    let scale = if has_scale {
        Some(get(3 + usize::from(has_offset))?)
    } else {
        None
    };
    let eps = T::from_f64(eps);
    let c_n = x.shape().last().copied().unwrap_or(1);
    let rank = x.ndim();
    let rows = (
        as_row(mean, rank, c_n),
        as_row(var, rank, c_n),
        offset.map(|p| as_row(p, rank, c_n)),
        scale.map(|p| as_row(p, rank, c_n)),
    );
    if let (Some(m), Some(v), Some(o), Some(sc), Some(xs), true) = (
        rows.0,
        rows.1,
        rows.2.unwrap_or(Some(&[])),
        rows.3.unwrap_or(Some(&[])),
        x.as_slice(),
        c_n > 0,
    ) {
        super::same_shape("x", x.shape(), y.shape())?;
        let ys = y.as_slice_mut().ok_or("the output is not contiguous")?;
        for (yr, xr) in ys.chunks_exact_mut(c_n).zip(xs.chunks_exact(c_n)) {
            for (c, (y, &x)) in yr.iter_mut().zip(xr).enumerate() {
                let mut inv = (v[c] + eps).sqrt().recip();
                if let Some(&s) = sc.get(c) {
                    inv = inv * s;
                }
                *y = match o.get(c) {
                    Some(&o) => x * inv + (o - m[c] * inv),
                    None => x * inv - m[c] * inv,
                };
            }
        }
        return Ok(());
    }
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
    let (x, mean, var) = (b(x)?, b(mean)?, b(var)?);
    let offset = offset.map(b).transpose()?;
    let scale = scale.map(b).transpose()?;
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
    channels: usize,
    inner: usize,
    len: usize,
}

impl Layout {
    fn of(shape: &[usize], format: DataFormat) -> Layout {
        let c = format.channel_axis(shape.len());
        Layout {
            channels: shape.get(c).copied().unwrap_or(1),
            inner: shape[c + 1..].iter().product(),
            len: shape.iter().product(),
        }
    }

    /// Elements per channel.
    fn count(&self) -> usize {
        self.len / self.channels.max(1)
    }

    /// `acc[c] = acc[c] + f(c, k)` for every element k of every channel c,
    /// in index order: along rows of channels when channels are last (the
    /// loop the compiler vectorizes), block by block otherwise.
    #[inline(always)]
    fn accumulate<T: Elem>(&self, acc: &mut [T], f: impl Fn(usize, usize) -> T) {
        let (c_n, inner) = (self.channels, self.inner);
        if c_n == 0 || inner == 0 {
            return;
        }
        if inner == 1 {
            for row in 0..self.len / c_n {
                for (c, a) in acc.iter_mut().enumerate() {
                    *a = *a + f(c, row * c_n + c);
                }
            }
        } else {
            for block in 0..self.len / inner {
                let c = block % c_n;
                let mut a = acc[c];
                for k in block * inner..(block + 1) * inner {
                    a = a + f(c, k);
                }
                acc[c] = a;
            }
        }
    }
}

/// The contiguous data of `a`, or an error naming it.
fn data<'a, T: Elem>(a: &'a ArrayViewD<'_, T>, what: &str) -> Result<&'a [T], String> {
    a.as_slice()
        .ok_or_else(|| format!("{what} is not contiguous"))
}

/// The contiguous data of an output buffer of shape `shape`.
fn out_data<'a, T: Elem>(
    a: &'a mut ArrayD<T>,
    shape: &[usize],
    what: &str,
) -> Result<&'a mut [T], String> {
    super::same_shape(what, a.shape(), shape)?;
    a.as_slice_mut()
        .ok_or_else(|| format!("{what} is not contiguous"))
}

/// Checks that every per-channel parameter has `channels` values.
fn per_channel<'a, T: Elem, const N: usize>(
    params: [(&'a ArrayViewD<'_, T>, &str); N],
    channels: usize,
) -> Result<[&'a [T]; N], String> {
    let mut out: [&[T]; N] = [&[]; N];
    for (o, (p, what)) in out.iter_mut().zip(params) {
        if p.shape() != [channels] {
            return Err(format!(
                "{what} has shape {:?}, expected [{channels}]",
                p.shape()
            ));
        }
        *o = data(p, what)?;
    }
    Ok(out)
}

/// FusedBatchNorm of x, scale, offset, mean, variance, into outputs y,
/// batch_mean, batch_variance, saved_mean, saved_variance. In training the
/// statistics are the batch's (two passes: the mean, then the mean squared
/// deviation; batch_variance Bessel-corrected, saved_variance not), else the
/// given ones. `y = x * inv + (offset - mean * inv)` with
/// `inv = rsqrt(variance + eps) * scale`, as TensorFlow groups it.
pub(super) fn fused_batch_norm<T: Elem>(
    xs: [ArrayViewD<'_, T>; 5],
    eps: f64,
    format: DataFormat,
    training: bool,
    [y, batch_mean, batch_var, saved_mean, saved_var]: [&mut ArrayD<T>; 5],
) -> Result<(), String> {
    let [x_view, scale, offset, mean_in, var_in] = &xs;
    let l = Layout::of(x_view.shape(), format);
    let x = data(x_view, "x")?;
    let c_n = l.channels;
    let [scale, offset, mean_in, var_in] = per_channel(
        [
            (scale, "scale"),
            (offset, "offset"),
            (mean_in, "mean"),
            (var_in, "variance"),
        ],
        c_n,
    )?;
    let y = out_data(y, x_view.shape(), "y")?;
    let [batch_mean, batch_var, mean, var] = [
        (batch_mean, "batch_mean"),
        (batch_var, "batch_variance"),
        (saved_mean, "saved_mean"),
        (saved_var, "saved_variance"),
    ]
    .map(|(o, what)| out_data(o, &[c_n], what));
    let (batch_mean, batch_var, mean, var) = (batch_mean?, batch_var?, mean?, var?);
    let eps = T::from_f64(eps);
    let bessel = T::from_f64(l.count() as f64 / (l.count().max(2) - 1) as f64);
    if by_bands::<T>(&l) {
        // Channels last: each band of channels takes its statistics and
        // normalizes its columns, on its own thread.
        let rows = l.len / c_n;
        let x = ArrayView2::from_shape((rows, c_n), x).map_err(|e| e.to_string())?;
        let y = ArrayViewMut2::from_shape((rows, c_n), y).map_err(|e| e.to_string())?;
        let n = T::from_f64(rows as f64);
        channel_bands([x], y, [mean, var], &|c0, [x], mut y, [mean, var]| {
            // A block of channels at a time, its sums in a local array (not
            // in the outputs, whose cache line at the bands' border both
            // threads would otherwise write row after row).
            for c in (0..mean.len()).step_by(CHUNK) {
                let cw = CHUNK.min(mean.len() - c);
                let (mut m, mut v) = ([T::zero(); CHUNK], [T::zero(); CHUNK]);
                if training {
                    for row in band_rows(&x) {
                        m.iter_mut()
                            .zip(&row[c..c + cw])
                            .for_each(|(m, &x)| *m = *m + x);
                    }
                    m.iter_mut().for_each(|m| *m = *m / n);
                    for row in band_rows(&x) {
                        v.iter_mut()
                            .zip(&row[c..c + cw])
                            .zip(&m)
                            .for_each(|((v, &x), &m)| *v = *v + (x - m) * (x - m));
                    }
                    v.iter_mut().for_each(|v| *v = *v / n);
                } else {
                    m[..cw].copy_from_slice(&mean_in[c0 + c..][..cw]);
                    v[..cw].copy_from_slice(&var_in[c0 + c..][..cw]);
                }
                mean[c..c + cw].copy_from_slice(&m[..cw]);
                var[c..c + cw].copy_from_slice(&v[..cw]);
                let (mut inv, mut shift) = ([T::zero(); CHUNK], [T::zero(); CHUNK]);
                for j in 0..cw {
                    let i = (v[j] + eps).sqrt().recip() * scale[c0 + c + j];
                    inv[j] = i;
                    shift[j] = offset[c0 + c + j] - m[j] * i;
                }
                for (yr, xr) in band_rows_mut(&mut y).zip(band_rows(&x)) {
                    yr[c..c + cw]
                        .iter_mut()
                        .zip(&xr[c..c + cw])
                        .zip(&inv)
                        .zip(&shift)
                        .for_each(|(((y, &x), &i), &s)| *y = x * i + s);
                }
            }
        });
        if training {
            batch_var
                .iter_mut()
                .zip(&*var)
                .for_each(|(b, &v)| *b = v * bessel);
        } else {
            batch_var.copy_from_slice(var_in);
        }
        batch_mean.copy_from_slice(mean);
        return Ok(());
    }
    if training {
        let n = T::from_f64(l.count() as f64);
        mean.fill(T::zero());
        l.accumulate(mean, |_, k| x[k]);
        mean.iter_mut().for_each(|m| *m = *m / n);
        var.fill(T::zero());
        let m: &[T] = mean;
        l.accumulate(var, |c, k| (x[k] - m[c]) * (x[k] - m[c]));
        var.iter_mut().for_each(|v| *v = *v / n);
        batch_var
            .iter_mut()
            .zip(&*var)
            .for_each(|(b, &v)| *b = v * bessel);
    } else {
        mean.copy_from_slice(mean_in);
        var.copy_from_slice(var_in);
        batch_var.copy_from_slice(var_in);
    }
    batch_mean.copy_from_slice(mean);
    let (mean, var): (&[T], &[T]) = (mean, var);
    // y by parts of whole [channels, inner] blocks, one part a thread.
    split_elements(y, c_n * l.inner, &|first, y| {
        let x = &x[first..first + y.len()];
        normalize(&l, x, y, |c| {
            let inv = (var[c] + eps).sqrt().recip() * scale[c];
            (inv, offset[c] - mean[c] * inv)
        });
    });
    Ok(())
}

/// `y = x * inv + shift` with `(inv, shift) = coefficients(c)` for each
/// element's channel c, over `x` (whole [channels, inner] blocks), computed
/// for a chunk of channels at a time.
fn normalize<T: Elem>(l: &Layout, x: &[T], y: &mut [T], coefficients: impl Fn(usize) -> (T, T)) {
    let c_n = l.channels;
    let mut inv = [T::zero(); CHUNK];
    let mut shift = [T::zero(); CHUNK];
    for c0 in (0..c_n).step_by(CHUNK) {
        let w = CHUNK.min(c_n - c0);
        for j in 0..w {
            (inv[j], shift[j]) = coefficients(c0 + j);
        }
        if l.inner == 1 {
            for (ys, xs) in y.chunks_exact_mut(c_n).zip(x.chunks_exact(c_n)) {
                let ys = &mut ys[c0..c0 + w];
                for (((y, &x), &i), &s) in ys.iter_mut().zip(&xs[c0..c0 + w]).zip(&inv).zip(&shift)
                {
                    *y = x * i + s;
                }
            }
        } else {
            for (block, (ys, xs)) in y
                .chunks_exact_mut(l.inner)
                .zip(x.chunks_exact(l.inner))
                .enumerate()
            {
                let j = (block % c_n).wrapping_sub(c0);
                if j < w {
                    ys.iter_mut()
                        .zip(xs)
                        .for_each(|(y, &x)| *y = x * inv[j] + shift[j]);
                }
            }
        }
    }
}

/// FusedBatchNormGrad: inputs dy, x, scale, saved_mean, saved_variance;
/// outputs dx, dscale, doffset. With r = rsqrt(var + eps), xhat = (x - mean) r:
/// doffset = sum(dy), dscale = sum(dy xhat), and dx = scale r dy in inference
/// form, scale r (dy - doffset / n - xhat dscale / n) in training form.
pub(super) fn fused_batch_norm_grad<T: Elem>(
    xs: [ArrayViewD<'_, T>; 5],
    eps: f64,
    format: DataFormat,
    training: bool,
    [dx, dscale, doffset]: [&mut ArrayD<T>; 3],
) -> Result<(), String> {
    let [dy_view, x_view, scale, mean, var] = &xs;
    let l = Layout::of(x_view.shape(), format);
    super::same_shape("dy", dy_view.shape(), x_view.shape())?;
    let (dy, x) = (data(dy_view, "dy")?, data(x_view, "x")?);
    let c_n = l.channels;
    let [scale, mean, var] = per_channel(
        [
            (scale, "scale"),
            (mean, "saved_mean"),
            (var, "saved_variance"),
        ],
        c_n,
    )?;
    let dx = out_data(dx, x_view.shape(), "dx")?;
    let dscale = out_data(dscale, &[c_n], "dscale")?;
    let doffset = out_data(doffset, &[c_n], "doffset")?;
    let eps = T::from_f64(eps);
    let n = T::from_f64(l.count() as f64);
    if by_bands::<T>(&l) {
        // Channels last: each band of channels sums its columns of dy, then
        // writes its columns of dx, on its own thread.
        let rows = l.len / c_n;
        let shape = (rows, c_n);
        let dy = ArrayView2::from_shape(shape, dy).map_err(|e| e.to_string())?;
        let x = ArrayView2::from_shape(shape, x).map_err(|e| e.to_string())?;
        let dx = ArrayViewMut2::from_shape(shape, dx).map_err(|e| e.to_string())?;
        channel_bands(
            [dy, x],
            dx,
            [doffset, dscale],
            &|c0, [dy, x], mut dx, [doffset, dscale]| {
                // A block of channels at a time, its sums in local arrays (see
                // fused_batch_norm).
                for c in (0..doffset.len()).step_by(CHUNK) {
                    let cw = CHUNK.min(doffset.len() - c);
                    let m = &mean[c0 + c..][..cw];
                    let (mut o, mut sc) = ([T::zero(); CHUNK], [T::zero(); CHUNK]);
                    for (dyr, xr) in band_rows(&dy).zip(band_rows(&x)) {
                        let (dyr, xr) = (&dyr[c..c + cw], &xr[c..c + cw]);
                        o.iter_mut().zip(dyr).for_each(|(o, &d)| *o = *o + d);
                        sc.iter_mut()
                            .zip(dyr)
                            .zip(xr)
                            .zip(m)
                            .for_each(|(((s, &d), &x), &m)| *s = *s + d * (x - m));
                    }
                    // The coefficients by kind, one array each, for the loop below
                    // to read a vector of each at a time.
                    let mut k = [[T::zero(); CHUNK]; 4];
                    for j in 0..cw {
                        let r = (var[c0 + c + j] + eps).sqrt().recip();
                        // dscale[c] = sum(dy (x - mean)) r: the sum first, then the factor.
                        sc[j] = sc[j] * r;
                        let p = dx_coefficients(r, scale[c0 + c + j], m[j], o[j], sc[j], n);
                        for (k, p) in k.iter_mut().zip(p) {
                            k[j] = p;
                        }
                    }
                    doffset[c..c + cw].copy_from_slice(&o[..cw]);
                    dscale[c..c + cw].copy_from_slice(&sc[..cw]);
                    let [sr, km, k0, k1] = &k;
                    let rows = band_rows_mut(&mut dx)
                        .zip(band_rows(&dy))
                        .zip(band_rows(&x));
                    for ((dxr, dyr), xr) in rows {
                        dxr[c..c + cw]
                            .iter_mut()
                            .zip(&dyr[c..c + cw])
                            .zip(&xr[c..c + cw])
                            .zip(sr.iter().zip(km).zip(k0).zip(k1))
                            .for_each(|(((d, &dy), &x), (((&sr, &m), &k0), &k1))| {
                                *d = bn_dx(training, [sr, m, k0, k1], dy, x)
                            });
                    }
                }
            },
        );
        return Ok(());
    }
    doffset.fill(T::zero());
    l.accumulate(doffset, |_, k| dy[k]);
    // dscale[c] = sum(dy (x - mean)) r: the sum first, then the factor.
    dscale.fill(T::zero());
    l.accumulate(dscale, |c, k| dy[k] * (x[k] - mean[c]));
    let r = |c: usize| (var[c] + eps).sqrt().recip();
    dscale
        .iter_mut()
        .enumerate()
        .for_each(|(c, d)| *d = *d * r(c));
    let (dscale, doffset): (&[T], &[T]) = (dscale, doffset);
    // dx by parts of whole [channels, inner] blocks, one part a thread.
    split_elements(dx, c_n * l.inner, &|first, dx| {
        let (dy, x) = (&dy[first..first + dx.len()], &x[first..first + dx.len()]);
        batch_norm_dx(&l, [dy, x], dx, training, |c| {
            dx_coefficients(r(c), scale[c], mean[c], doffset[c], dscale[c], n)
        });
    });
    Ok(())
}

/// FusedBatchNormGrad's dx over whole [channels, inner] blocks of dy and x,
/// with `per_channel(c)` its channel's [`dx_coefficients`], computed for a
/// chunk of channels at a time.
fn batch_norm_dx<T: Elem>(
    l: &Layout,
    [dy, x]: [&[T]; 2],
    dx: &mut [T],
    training: bool,
    per_channel: impl Fn(usize) -> [T; 4],
) {
    let c_n = l.channels;
    let mut p = [[T::zero(); 4]; CHUNK];
    for c0 in (0..c_n).step_by(CHUNK) {
        let w = CHUNK.min(c_n - c0);
        for (j, p) in p.iter_mut().enumerate().take(w) {
            *p = per_channel(c0 + j);
        }
        let at = |j: usize, k: usize| bn_dx(training, p[j], dy[k], x[k]);
        if l.inner == 1 {
            for (row, ds) in dx.chunks_exact_mut(c_n).enumerate() {
                for (j, d) in ds[c0..c0 + w].iter_mut().enumerate() {
                    *d = at(j, row * c_n + c0 + j);
                }
            }
        } else {
            for (block, ds) in dx.chunks_exact_mut(l.inner).enumerate() {
                let j = (block % c_n).wrapping_sub(c0);
                if j < w {
                    for (i, d) in ds.iter_mut().enumerate() {
                        *d = at(j, block * l.inner + i);
                    }
                }
            }
        }
    }
}

/// Whether FusedBatchNorm and its gradient take the channels-last path by
/// bands of channels: on channels-last data, unless two threads would split
/// it into bands too unequal (fewer than four cache lines of channels), where
/// the general path, which splits its last pass by rows, shares the work
/// better.
fn by_bands<T>(l: &Layout) -> bool {
    let per_line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    l.inner == 1
        && l.channels > 0
        && (threads() < 2 || l.len < PARALLEL_MIN_ELEMENTS || l.channels >= 4 * per_line)
}

/// Channels-last data, `[rows, channels]`, cut into up to [`threads`] bands
/// of channels run on as many threads when the data is large (each band at
/// least half of [`PARALLEL_MIN_ELEMENTS`] elements and a cache line of
/// channels), else one band: `f(c0, ins, out, per_channel)` for the band
/// from channel `c0`, with its columns of `ins` and `out` and its part of
/// each per-channel slice. Every channel is computed as on one thread.
fn channel_bands<T: Elem, const I: usize, const O: usize>(
    ins: [ArrayView2<'_, T>; I],
    out: ArrayViewMut2<'_, T>,
    per_channel: [&mut [T]; O],
    f: &BandFn<'_, T, I, O>,
) {
    let per_line = (64 / std::mem::size_of::<T>().max(1)).max(1);
    let parts = if out.len() < PARALLEL_MIN_ELEMENTS {
        1
    } else {
        threads()
            .min(out.len() / (PARALLEL_MIN_ELEMENTS / 2))
            .min(out.ncols() / per_line)
            .max(1)
    };
    bands(parts, 0, ins, out, per_channel, f);
}

/// [`channel_bands`] for `parts` bands of the channels from `c0` on.
fn bands<T: Elem, const I: usize, const O: usize>(
    parts: usize,
    c0: usize,
    ins: [ArrayView2<'_, T>; I],
    out: ArrayViewMut2<'_, T>,
    per_channel: [&mut [T]; O],
    f: &BandFn<'_, T, I, O>,
) {
    let c_n = out.ncols();
    let left = parts / 2;
    let mid = band_border::<T>(out.as_ptr() as usize, c_n, left, parts);
    if parts < 2 || mid == 0 || mid >= c_n {
        f(c0, ins, out, per_channel);
        return;
    }
    let l_ins = ins.map(|v| v.slice_move(s![.., ..mid]));
    let r_ins = ins.map(|v| v.slice_move(s![.., mid..]));
    let (out_l, out_r) = out.split_at(Axis(1), mid);
    let mut pl: [&mut [T]; O] = std::array::from_fn(|_| <&mut [T]>::default());
    let mut pr: [&mut [T]; O] = std::array::from_fn(|_| <&mut [T]>::default());
    for ((p, l), r) in per_channel.into_iter().zip(&mut pl).zip(&mut pr) {
        (*l, *r) = p.split_at_mut(mid);
    }
    rayon::join(
        || bands(left, c0, l_ins, out_l, pl, f),
        || bands(parts - left, c0 + mid, r_ins, out_r, pr, f),
    );
}

/// Where the band of the last `parts − left` of `parts` shares of `c_n`
/// channels starts: at that share, moved on to a cache line's first element
/// of an output row starting at address `start` where it can be, so that
/// two threads do not write the same line of that row (a line both write
/// bounces between their cores); every row starts where the first does in
/// its line when a row is a whole number of lines, as the 512 channels of
/// W2 are.
fn band_border<T>(start: usize, c_n: usize, left: usize, parts: usize) -> usize {
    let size = std::mem::size_of::<T>().max(1);
    let per_line = (64 / size).max(1);
    // The row's first element's place within its cache line.
    let skew = if start.is_multiple_of(size) {
        (start / size) % per_line
    } else {
        0
    };
    (c_n * left / parts.max(1) + skew).next_multiple_of(per_line) - skew
}

/// The work [`channel_bands`] hands each band.
type BandFn<'f, T, const I: usize, const O: usize> =
    dyn Fn(usize, [ArrayView2<'_, T>; I], ArrayViewMut2<'_, T>, [&mut [T]; O]) + Sync + 'f;

/// The rows of a band of channels-last data (each contiguous).
fn band_rows<'b, T>(x: &'b ArrayView2<'_, T>) -> impl Iterator<Item = &'b [T]> {
    x.rows().into_iter().map(|r| {
        r.to_slice()
            .expect("a row of a band of channels is contiguous")
    })
}

/// The rows of a band of channels-last output (each contiguous).
fn band_rows_mut<'b, T>(y: &'b mut ArrayViewMut2<'_, T>) -> impl Iterator<Item = &'b mut [T]> {
    y.rows_mut().into_iter().map(|r| {
        r.into_slice()
            .expect("a row of a band of channels is contiguous")
    })
}

/// Channels per block of per-channel coefficients computed before a pass.
const CHUNK: usize = 128;

/// One element of FusedBatchNormGrad's dx, with its channel's
/// [`dx_coefficients`].
#[inline(always)]
fn bn_dx<T: Elem>(training: bool, [sr, mean, k0, k1]: [T; 4], dy: T, x: T) -> T {
    if training {
        sr * (dy - k0 - (x - mean) * k1)
    } else {
        sr * dy
    }
}

/// A channel's `[scale r, mean, doffset / n, r dscale / n]` for [`bn_dx`]:
/// dx = scale r (dy - doffset / n - xhat dscale / n) with xhat = (x - mean) r,
/// its divisions made once a channel instead of once an element.
fn dx_coefficients<T: Elem>(r: T, scale: T, mean: T, doffset: T, dscale: T, n: T) -> [T; 4] {
    [scale * r, mean, doffset / n, r * dscale / n]
}

#[cfg(test)]
mod tests {
    use super::band_border;

    #[test]
    fn band_borders_fall_on_a_cache_line_near_the_middle() {
        for start in (0..256).step_by(4) {
            for c_n in [2, 16, 37, 200, 203, 512] {
                let mid = band_border::<f32>(start, c_n, 1, 2);
                assert_eq!((start + mid * 4) % 64, 0, "start {start}, {c_n} channels");
                assert!(
                    mid >= c_n / 2 && mid < c_n / 2 + 16,
                    "start {start}, {c_n}: {mid}"
                );
            }
        }
        // f64: 8 to a line; an address that is not a multiple of the size
        // keeps the middle rounded up to a line.
        assert_eq!(band_border::<f64>(8, 100, 1, 2), 55);
        assert_eq!(band_border::<f64>(3, 100, 1, 2), 56);
        // Sixteen bands of 512 f32 channels: two lines (32 channels) each, the
        // first eight 256 channels.
        assert_eq!(band_border::<f32>(0, 512, 8, 16), 256);
        assert_eq!(band_border::<f32>(0, 512, 1, 16), 32);
    }
}
