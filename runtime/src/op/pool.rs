//! The pooling ops' kernels on NHWC slices: each output pixel's window is
//! the list of its input pixels inside the input, in scan order, and every
//! loop runs over the channels of a pixel, which lie side by side. Images
//! are shared between threads (`for_chunks`); an image's values are
//! computed the same way on any thread, so results do not depend on the
//! thread count. Operands in NCHW go through `conv_gemm::in_nhwc`.

use super::conv::{Conv, Extent};
use crate::kernels::Elem;
use crate::parallel::for_chunks;

/// Channels whose first maximum is looked for at once (on the stack).
const BLOCK: usize = 64;

/// A pooling's sizes, in NHWC terms: input [n, h, w, c], window [kh, kw],
/// output [n, g[0].out, g[1].out, c].
#[derive(Clone, Copy, Debug)]
pub(super) struct Pool {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    kh: usize,
    kw: usize,
    g: [Extent; 2],
}

impl Pool {
    /// The pooling of an input of NHWC shape `x` with the window `[kh, kw]`.
    pub fn of(
        op: &'static str,
        conv: &Conv,
        [kh, kw]: [usize; 2],
        x: &[usize],
    ) -> Result<Pool, String> {
        let &[n, h, w, c] = x else {
            return Err(format!("{op} takes an input of rank 4, got {x:?}"));
        };
        let g = conv.geometry([h, w], [kh, kw])?;
        Ok(Pool {
            n,
            h,
            w,
            c,
            kh,
            kw,
            g,
        })
    }

    /// The input's shape, NHWC.
    pub fn input(&self) -> [usize; 4] {
        [self.n, self.h, self.w, self.c]
    }

    /// The output's shape, NHWC.
    pub fn output(&self) -> [usize; 4] {
        [self.n, self.g[0].out, self.g[1].out, self.c]
    }

    /// An error unless `what`, of NHWC shape `got`, has the shape `want`.
    pub fn check(
        op: &'static str,
        what: &str,
        got: &[usize],
        want: [usize; 4],
    ) -> Result<(), String> {
        if got == want {
            return Ok(());
        }
        Err(format!("{op}: {what} {got:?} (NHWC) is not {want:?}"))
    }

    fn image(&self) -> usize {
        self.h * self.w * self.c
    }

    fn pooled_image(&self) -> usize {
        self.g[0].out * self.g[1].out * self.c
    }

    /// The input pixels (ih·w + iw) of output pixel (oh, ow)'s window that
    /// lie inside the input, in scan order.
    fn taps(&self, oh: usize, ow: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.kh)
            .filter_map(move |i| self.g[0].input(oh, i, self.h))
            .flat_map(move |ih| {
                (0..self.kw)
                    .filter_map(move |j| self.g[1].input(ow, j, self.w))
                    .map(move |iw| ih * self.w + iw)
            })
    }

    /// The output pixels (oh, ow) in order, with their index oh·OW + ow.
    fn outputs(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let (oh_n, ow_n) = (self.g[0].out, self.g[1].out);
        (0..oh_n * ow_n).map(move |p| (p, p / ow_n, p % ow_n))
    }

    /// Whether no two windows share an input pixel (the stride at least the
    /// window on both axes), and whether, besides, every input pixel lies
    /// in a window (the windows tile the input).
    fn disjoint(&self) -> (bool, bool) {
        let axes = [(self.g[0], self.kh, self.h), (self.g[1], self.kw, self.w)];
        let disjoint = axes.iter().all(|(e, k, _)| e.stride >= *k);
        let tiles = axes
            .iter()
            .all(|(e, k, size)| e.stride == *k && e.out * k >= size + e.before);
        (disjoint, disjoint && tiles)
    }

    /// For channels `c0..c0 + len` of output pixel (oh, ow): in `at`, the
    /// pixel of each one's first maximum in the window (TensorFlow's tie
    /// rule: a later value replaces it only if greater); false for an empty
    /// window. Branch-free over the channels, so that it vectorizes.
    fn first_max<T: Elem>(
        &self,
        x: &[T],
        (oh, ow): (usize, usize),
        c0: usize,
        len: usize,
        at: &mut [usize; BLOCK],
    ) -> bool {
        let c = self.c;
        let mut taps = self.taps(oh, ow);
        let Some(first) = taps.next() else {
            return false;
        };
        let mut best = [T::zero(); BLOCK];
        best[..len].copy_from_slice(&x[first * c + c0..][..len]);
        at[..len].fill(first);
        for tap in taps {
            let v = &x[tap * c + c0..][..len];
            for ((a, b), &v) in at[..len].iter_mut().zip(&mut best[..len]).zip(v) {
                let greater = v > *b;
                *b = if greater { v } else { *b };
                *a = if greater { tap } else { *a };
            }
        }
        true
    }

    /// MaxPool: `y` the largest value of each window (zero for an empty one).
    pub fn max_pool<T: Elem>(&self, x: &[T], y: &mut [T]) {
        let c = self.c;
        for_chunks(y, self.pooled_image(), &|n, y| {
            let x = &x[n * self.image()..][..self.image()];
            for (p, oh, ow) in self.outputs() {
                let out = &mut y[p * c..][..c];
                let mut taps = self.taps(oh, ow);
                match taps.next() {
                    Some(t) => out.copy_from_slice(&x[t * c..][..c]),
                    None => out.fill(T::zero()),
                }
                for t in taps {
                    for (o, &v) in out.iter_mut().zip(&x[t * c..][..c]) {
                        *o = if v > *o { v } else { *o };
                    }
                }
            }
        });
    }

    /// The input positions along `axis` (0 rows, 1 columns) of output
    /// position `o`'s window that lie inside the input: a range, as pooling
    /// windows are not dilated.
    fn span(&self, axis: usize, o: usize) -> std::ops::Range<usize> {
        let (e, k, size) = [(self.g[0], self.kh, self.h), (self.g[1], self.kw, self.w)][axis];
        let first = o * e.stride;
        let start = first.max(e.before) - e.before;
        let end = (first + k).min(size + e.before).saturating_sub(e.before);
        start..end.max(start)
    }

    /// MaxPoolGrad: each window's `dy` added at its first maximum in `x`.
    pub fn max_pool_grad<T: Elem>(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        let (disjoint, tiles) = self.disjoint();
        if disjoint {
            return self.max_pool_grad_disjoint(x, dy, dx, tiles);
        }
        let c = self.c;
        for_chunks(dx, self.image(), &|n, dx| {
            let x = &x[n * self.image()..][..self.image()];
            let dy = &dy[n * self.pooled_image()..][..self.pooled_image()];
            dx.fill(T::zero());
            let mut at = [0; BLOCK];
            for (p, oh, ow) in self.outputs() {
                for c0 in (0..c).step_by(BLOCK) {
                    let len = BLOCK.min(c - c0);
                    if !self.first_max(x, (oh, ow), c0, len, &mut at) {
                        continue;
                    }
                    let g = &dy[p * c + c0..][..len];
                    for (k, (&a, &g)) in at[..len].iter().zip(g).enumerate() {
                        let d = &mut dx[a * c + c0 + k];
                        *d = *d + g;
                    }
                }
            }
        });
    }

    /// MaxPoolGrad where no two windows share a pixel: each pixel of a window
    /// is written once, `0 + dy` (the sum from zero) at the window's first
    /// maximum and zero elsewhere; pixels outside every window are zeroed
    /// (none where the windows tile the input). The first maximum is the
    /// first pixel equal to the window's maximum (the first one, should
    /// that be NaN): the same pixel as `first_max` finds, found on values
    /// alone so that the loops over the channels vectorize.
    fn max_pool_grad_disjoint<T: Elem>(&self, x: &[T], dy: &[T], dx: &mut [T], tiles: bool) {
        let c = self.c;
        for_chunks(dx, self.image(), &|n, dx| {
            let x = &x[n * self.image()..][..self.image()];
            let dy = &dy[n * self.pooled_image()..][..self.pooled_image()];
            if !tiles {
                dx.fill(T::zero());
            }
            // Per channel: the window's maximum, and the gradient still to place.
            let (mut best, mut rest) = ([T::zero(); BLOCK], [T::zero(); BLOCK]);
            for (p, oh, ow) in self.outputs() {
                let (rows, cols) = (self.span(0, oh), self.span(1, ow));
                let taps = || {
                    rows.clone()
                        .flat_map(|ih| cols.clone().map(move |iw| ih * self.w + iw))
                };
                for c0 in (0..c).step_by(BLOCK) {
                    let len = BLOCK.min(c - c0);
                    let (best, rest) = (&mut best[..len], &mut rest[..len]);
                    let pixel = |t: usize| t * c + c0..t * c + c0 + len;
                    let mut window = taps();
                    let Some(first) = window.next() else {
                        continue;
                    };
                    best.copy_from_slice(&x[pixel(first)]);
                    for t in window {
                        for (b, &v) in best.iter_mut().zip(&x[pixel(t)]) {
                            *b = if v > *b { v } else { *b };
                        }
                    }
                    for (r, &g) in rest.iter_mut().zip(&dy[p * c + c0..][..len]) {
                        *r = T::zero() + g;
                    }
                    for (i, t) in taps().enumerate() {
                        let (v, d) = (&x[pixel(t)], &mut dx[pixel(t)]);
                        for (((d, &v), &b), r) in
                            d.iter_mut().zip(v).zip(best.iter()).zip(rest.iter_mut())
                        {
                            // A NaN maximum is the window's first value.
                            let hit = v == b || (i == 0 && b.is_nan());
                            *d = if hit { *r } else { T::zero() };
                            *r = if hit { T::zero() } else { *r };
                        }
                    }
                }
            }
        });
    }

    /// MaxPoolGradGrad: `y` each window's `gx` at its first maximum in `x`.
    pub fn max_pool_grad_grad<T: Elem>(&self, x: &[T], gx: &[T], y: &mut [T]) {
        let c = self.c;
        for_chunks(y, self.pooled_image(), &|n, y| {
            let x = &x[n * self.image()..][..self.image()];
            let gx = &gx[n * self.image()..][..self.image()];
            let mut at = [0; BLOCK];
            for (p, oh, ow) in self.outputs() {
                for c0 in (0..c).step_by(BLOCK) {
                    let len = BLOCK.min(c - c0);
                    let out = &mut y[p * c + c0..][..len];
                    if !self.first_max(x, (oh, ow), c0, len, &mut at) {
                        out.fill(T::zero());
                        continue;
                    }
                    for (k, (o, &a)) in out.iter_mut().zip(&at[..len]).enumerate() {
                        *o = gx[a * c + c0 + k];
                    }
                }
            }
        });
    }

    /// The number of window elements inside the input, at least 1, as T.
    fn count<T: Elem>(&self, oh: usize, ow: usize) -> T {
        T::from_f64(self.taps(oh, ow).count().max(1) as f64)
    }

    /// AvgPool: `y` the mean of each window over its elements inside the input.
    pub fn avg_pool<T: Elem>(&self, x: &[T], y: &mut [T]) {
        let c = self.c;
        for_chunks(y, self.pooled_image(), &|n, y| {
            let x = &x[n * self.image()..][..self.image()];
            for (p, oh, ow) in self.outputs() {
                let out = &mut y[p * c..][..c];
                out.fill(T::zero());
                for t in self.taps(oh, ow) {
                    for (o, &v) in out.iter_mut().zip(&x[t * c..][..c]) {
                        *o = *o + v;
                    }
                }
                let count: T = self.count(oh, ow);
                for o in out.iter_mut() {
                    *o = *o / count;
                }
            }
        });
    }

    /// AvgPoolGrad: each window's `dy` spread evenly over its elements inside the input.
    pub fn avg_pool_grad<T: Elem>(&self, dy: &[T], dx: &mut [T]) {
        let c = self.c;
        for_chunks(dx, self.image(), &|n, dx| {
            let dy = &dy[n * self.pooled_image()..][..self.pooled_image()];
            dx.fill(T::zero());
            for (p, oh, ow) in self.outputs() {
                let count: T = self.count(oh, ow);
                let dy = &dy[p * c..][..c];
                for t in self.taps(oh, ow) {
                    for (d, &g) in dx[t * c..][..c].iter_mut().zip(dy) {
                        *d = *d + g / count;
                    }
                }
            }
        });
    }
}
