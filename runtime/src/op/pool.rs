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

    /// For channels `c0..c0 + len` of output pixel (oh, ow): the pixel of
    /// each one's first maximum in the window (TensorFlow's tie rule: a
    /// later value replaces it only if greater), None for an empty window.
    fn first_max<T: Elem>(
        &self,
        x: &[T],
        (oh, ow): (usize, usize),
        c0: usize,
        len: usize,
    ) -> [Option<usize>; BLOCK] {
        let mut at = [None; BLOCK];
        let mut best = [T::zero(); BLOCK];
        for tap in self.taps(oh, ow) {
            let v = &x[tap * self.c + c0..][..len];
            for ((a, b), &v) in at.iter_mut().zip(best.iter_mut()).zip(v) {
                if a.is_none() || v > *b {
                    (*a, *b) = (Some(tap), v);
                }
            }
        }
        at
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
                        if v > *o {
                            *o = v;
                        }
                    }
                }
            }
        });
    }

    /// MaxPoolGrad: each window's `dy` added at its first maximum in `x`.
    pub fn max_pool_grad<T: Elem>(&self, x: &[T], dy: &[T], dx: &mut [T]) {
        let c = self.c;
        for_chunks(dx, self.image(), &|n, dx| {
            let x = &x[n * self.image()..][..self.image()];
            let dy = &dy[n * self.pooled_image()..][..self.pooled_image()];
            dx.fill(T::zero());
            for (p, oh, ow) in self.outputs() {
                for c0 in (0..c).step_by(BLOCK) {
                    let len = BLOCK.min(c - c0);
                    let at = self.first_max(x, (oh, ow), c0, len);
                    for (k, at) in at[..len].iter().enumerate() {
                        if let Some(t) = at {
                            let d = &mut dx[t * c + c0 + k];
                            *d = *d + dy[p * c + c0 + k];
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
            for (p, oh, ow) in self.outputs() {
                for c0 in (0..c).step_by(BLOCK) {
                    let len = BLOCK.min(c - c0);
                    let at = self.first_max(x, (oh, ow), c0, len);
                    for (k, at) in at[..len].iter().enumerate() {
                        y[p * c + c0 + k] = at.map_or(T::zero(), |t| gx[t * c + c0 + k]);
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
