//! The convolutions as matrix products (im2col). Each output pixel's
//! receptive field, kh·kw·C input values, is a row of a patch matrix
//! (zeros where the field leaves the input), so that
//!
//! - Conv2D is `patches · filter` (the filter as a [kh·kw·C, O] matrix),
//! - Conv2DBackpropFilter is `patchesᵀ · dy`,
//! - Conv2DBackpropInput is `dy · filterᵀ`, a patch-shaped gradient added
//!   back onto the input pixels each row came from (col2im).
//!
//! The rows go in chunks of about [`CHUNK_ELEMENTS`] patch values, shared
//! between threads: each chunk's patches are built in its thread's scratch
//! buffer (hot in cache for the product) and multiplied with gradc's GEMM on
//! that thread. A chunk's extent depends on the shapes alone, never on the
//! thread count, so the results are the same bits for any thread count.
//! Operands in NCHW are copied to NHWC first, and the result back.

use super::conv::{Conv, Extent};
use super::Activation;
use crate::kernels::gemm::{gemm_with, Operand, Simd};
use crate::kernels::{bias_activation_rows, Elem, Scratch};
use crate::parallel::for_chunks;
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use std::sync::OnceLock;

/// Patch values per chunk: 512 KiB of f32, about what one core's L2 holds.
const CHUNK_ELEMENTS: usize = 1 << 17;

/// The most chunks the filter gradient sums: each chunk makes a partial
/// [kh·kw·C, O] sum, added up in chunk order at the end.
const FILTER_MAX_CHUNKS: usize = 16;

/// A convolution's sizes, in NHWC terms: input [n, h, w, c], filter
/// [kh, kw, c, o], output [n, g[0].out, g[1].out, o].
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub o: usize,
    pub g: [Extent; 2],
}

impl Sizes {
    /// The sizes of a convolution of an input of NHWC shape `x` with a
    /// filter of shape `filter`, checked: both rank 4, the channels agreeing.
    pub fn of(
        op: &'static str,
        conv: &Conv,
        x: &[usize],
        filter: &[usize],
    ) -> Result<Sizes, String> {
        let (&[n, h, w, c], &[kh, kw, fc, o]) = (x, filter) else {
            return Err(format!(
                "{op} takes an input and a filter of rank 4, got {x:?} (NHWC) and {filter:?}"
            ));
        };
        if fc != c {
            return Err(format!(
                "{op}: the input {x:?} (NHWC) has {c} channels, the filter {filter:?} takes {fc}"
            ));
        }
        let g = conv.geometry([h, w], [kh, kw])?;
        Ok(Sizes {
            n,
            h,
            w,
            c,
            kh,
            kw,
            o,
            g,
        })
    }

    /// The output's shape, NHWC.
    pub fn output(&self) -> [usize; 4] {
        [self.n, self.g[0].out, self.g[1].out, self.o]
    }

    /// An error unless out_backprop (NHWC) has the output's shape.
    pub fn check_out_backprop(&self, op: &'static str, dy: &[usize]) -> Result<(), String> {
        if dy == self.output() {
            return Ok(());
        }
        Err(format!(
            "{op}: out_backprop {dy:?} (NHWC) is not the output's shape {:?}",
            self.output()
        ))
    }

    /// Output pixels per image.
    fn pixels(&self) -> usize {
        self.g[0].out * self.g[1].out
    }

    /// Rows of the patch matrix: output pixels of the whole batch.
    fn rows(&self) -> usize {
        self.n * self.pixels()
    }

    /// Columns of the patch matrix: the values of one receptive field.
    fn depth(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Values of one input image.
    fn image(&self) -> usize {
        self.h * self.w * self.c
    }

    fn input_len(&self) -> usize {
        self.n * self.image()
    }

    fn filter_len(&self) -> usize {
        self.depth() * self.o
    }

    fn output_len(&self) -> usize {
        self.rows() * self.o
    }

    /// Whether the patches are the input itself: a 1x1 filter at stride 1
    /// with no padding.
    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.g.iter().all(|e| e.stride == 1 && e.before == 0)
            && self.g[0].out == self.h
            && self.g[1].out == self.w
    }

    /// The input column of output column `ow`'s first tap when the taps of
    /// a kernel row are side by side in the input (no dilation) and all
    /// inside it: then a kernel row's patch values are one run of kw·C
    /// input values.
    fn run(&self, ow: usize) -> Option<usize> {
        let e = self.g[1];
        (e.dilation == 1)
            .then(|| e.input(ow, 0, self.w))
            .flatten()
            .filter(|&iw| iw + self.kw <= self.w)
    }

    /// Patch rows per chunk.
    fn chunk_rows(&self) -> usize {
        (CHUNK_ELEMENTS / self.depth().max(1)).max(1)
    }

    /// Whether some size is 0, so that every result is zeros (or empty).
    fn empty(&self) -> bool {
        self.rows() == 0 || self.depth() == 0 || self.o == 0
    }

    /// Patch rows `first..first + rows.len() / depth` of the NHWC input `x`.
    fn patches<T: Elem>(&self, x: &[T], first: usize, rows: &mut [T]) {
        let (pixels, ow_n, c) = (self.pixels(), self.g[1].out, self.c);
        // The output pixel (n, oh, ow) of the first row, then stepped along.
        let (mut n, p) = (first / pixels, first % pixels);
        let (mut oh, mut ow) = (p / ow_n, p % ow_n);
        for row in rows.chunks_exact_mut(self.depth()) {
            let image = &x[n * self.image()..][..self.image()];
            let run = self.run(ow);
            for i in 0..self.kh {
                let ih = self.g[0].input(oh, i, self.h);
                let taps = &mut row[i * self.kw * c..][..self.kw * c];
                match (ih, run) {
                    (Some(ih), Some(iw)) => copy(taps, &image[(ih * self.w + iw) * c..]),
                    (None, _) => taps.fill(T::zero()),
                    (Some(ih), None) => {
                        for (j, seg) in taps.chunks_exact_mut(c).enumerate() {
                            match self.g[1].input(ow, j, self.w) {
                                Some(iw) => copy(seg, &image[(ih * self.w + iw) * c..]),
                                None => seg.fill(T::zero()),
                            }
                        }
                    }
                }
            }
            ow += 1;
            if ow == ow_n {
                ow = 0;
                oh += 1;
                if oh == self.g[0].out {
                    oh = 0;
                    n += 1;
                }
            }
        }
    }

    /// Adds patch-shaped rows (all rows of whole images) back onto those
    /// images' pixels, `dx` holding just those images, zeroed first.
    fn scatter<T: Elem>(&self, rows: &[T], dx: &mut [T]) {
        let (pixels, ow_n, c) = (self.pixels(), self.g[1].out, self.c);
        dx.fill(T::zero());
        for (r, row) in rows.chunks_exact(self.depth()).enumerate() {
            let (n, p) = (r / pixels, r % pixels);
            let (oh, ow) = (p / ow_n, p % ow_n);
            let image = &mut dx[n * self.image()..][..self.image()];
            let add = |to: &mut [T], from: &[T]| {
                for (d, &v) in to.iter_mut().zip(from) {
                    *d = *d + v;
                }
            };
            let run = self.run(ow);
            for i in 0..self.kh {
                let Some(ih) = self.g[0].input(oh, i, self.h) else {
                    continue;
                };
                let taps = &row[i * self.kw * c..][..self.kw * c];
                if let Some(iw) = run {
                    add(&mut image[(ih * self.w + iw) * c..][..self.kw * c], taps);
                    continue;
                }
                for (j, seg) in taps.chunks_exact(c).enumerate() {
                    if let Some(iw) = self.g[1].input(ow, j, self.w) {
                        add(&mut image[(ih * self.w + iw) * c..][..c], seg);
                    }
                }
            }
        }
    }
}

/// `to.len()` values from the start of `from` into `to`; the few values of
/// a one-channel image's kernel row without a call to `memcpy`.
#[inline(always)]
fn copy<T: Copy>(to: &mut [T], from: &[T]) {
    match (to, from) {
        ([a], [x, ..]) => *a = *x,
        ([a, b], [x, y, ..]) => (*a, *b) = (*x, *y),
        ([a, b, c], [x, y, z, ..]) => (*a, *b, *c) = (*x, *y, *z),
        (to, from) => to.copy_from_slice(&from[..to.len()]),
    }
}

/// A row-major rows×cols matrix in `data`.
fn matrix<T: Copy>(data: &[T], rows: usize, cols: usize) -> Result<Operand<'_, T>, String> {
    Operand::new(data, rows, cols, cols, 1)
        .ok_or_else(|| format!("{} values do not hold a {rows}x{cols} matrix", data.len()))
}

/// Keeps the first error any chunk met.
#[derive(Default)]
struct FirstError(OnceLock<String>);

impl FirstError {
    fn keep(&self, r: Result<(), String>) {
        if let Err(e) = r {
            let _ = self.0.set(e);
        }
    }

    fn result(self) -> Result<(), String> {
        self.0.into_inner().map_or(Ok(()), Err)
    }
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    Err(format!(
        "{what} holds {got} values, the convolution needs {want}"
    ))
}

/// What the fused convolution does to each chunk of output rows after its
/// product, while they are in cache: `activation(y + bias)`.
#[derive(Clone, Copy)]
pub(super) struct Epilogue<'a, T> {
    pub bias: &'a [T],
    pub activation: Activation,
}

/// Conv2D on NHWC slices: `y = patches(x) · filter`, then the epilogue
/// (FusedConv2D) if any.
pub(super) fn forward<T: Elem>(
    s: &Sizes,
    x: &[T],
    filter: &[T],
    y: &mut [T],
    epilogue: Option<Epilogue<'_, T>>,
) -> Result<(), String> {
    check_len("the input", x.len(), s.input_len())?;
    check_len("the filter", filter.len(), s.filter_len())?;
    check_len("the output", y.len(), s.output_len())?;
    if let Some(e) = epilogue {
        check_len("the bias", e.bias.len(), s.o)?;
    }
    if s.empty() {
        y.fill(T::zero());
        if let Some(e) = epilogue {
            bias_activation_rows(y, e.bias, e.activation);
        }
        return Ok(());
    }
    let (depth, o, chunk) = (s.depth(), s.o, s.chunk_rows());
    let w = matrix(filter, depth, o)?;
    let simd = Simd::best();
    let failed = FirstError::default();
    for_chunks(y, chunk * o, &|k, y| {
        let (first, rows) = (k * chunk, y.len() / o);
        let product = if s.pointwise() {
            matrix(&x[first * depth..][..rows * depth], rows, depth)
                .and_then(|a| gemm_with(a, w, y, simd, 1))
        } else {
            T::with_scratch(Scratch::Patches, |buf| {
                let patches = grown(buf, rows * depth);
                s.patches(x, first, patches);
                gemm_with(matrix(patches, rows, depth)?, w, y, simd, 1)
            })
        };
        if let (Ok(()), Some(e)) = (&product, epilogue) {
            bias_activation_rows(y, e.bias, e.activation);
        }
        failed.keep(product);
    });
    failed.result()
}

/// Conv2DBackpropFilter on NHWC slices: `dw = patches(x)ᵀ · dy`, summed
/// over at most [`FILTER_MAX_CHUNKS`] chunks of rows in order.
pub(super) fn filter_grad<T: Elem>(
    s: &Sizes,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
) -> Result<(), String> {
    check_len("the input", x.len(), s.input_len())?;
    check_len("out_backprop", dy.len(), s.output_len())?;
    check_len("the output", dw.len(), s.filter_len())?;
    if s.empty() {
        dw.fill(T::zero());
        return Ok(());
    }
    let (depth, o, total) = (s.depth(), s.o, s.rows());
    let chunk = s.chunk_rows().max(total.div_ceil(FILTER_MAX_CHUNKS));
    let chunks = total.div_ceil(chunk);
    let simd = Simd::best();
    T::with_scratch(Scratch::Partials, |buf| {
        let partials = grown(buf, chunks * depth * o);
        let failed = FirstError::default();
        for_chunks(partials, depth * o, &|k, part| {
            let first = k * chunk;
            let rows = chunk.min(total - first);
            let dy = &dy[first * o..][..rows * o];
            failed.keep(if s.pointwise() {
                matrix(&x[first * depth..][..rows * depth], rows, depth)
                    .and_then(|a| gemm_with(a.t(), matrix(dy, rows, o)?, part, simd, 1))
            } else {
                T::with_scratch(Scratch::Patches, |buf| {
                    let patches = grown(buf, rows * depth);
                    s.patches(x, first, patches);
                    let a = matrix(patches, rows, depth)?.t();
                    gemm_with(a, matrix(dy, rows, o)?, part, simd, 1)
                })
            });
        });
        failed.result()?;
        let mut parts = partials.chunks_exact(depth * o);
        if let Some(p) = parts.next() {
            dw.copy_from_slice(p);
        }
        for p in parts {
            for (d, &v) in dw.iter_mut().zip(p) {
                *d = *d + v;
            }
        }
        Ok(())
    })
}

/// Conv2DBackpropInput on NHWC slices: `dy · filterᵀ` added back onto the
/// input pixels, a chunk of whole images at a time.
pub(super) fn input_grad<T: Elem>(
    s: &Sizes,
    filter: &[T],
    dy: &[T],
    dx: &mut [T],
) -> Result<(), String> {
    check_len("the filter", filter.len(), s.filter_len())?;
    check_len("out_backprop", dy.len(), s.output_len())?;
    check_len("the output", dx.len(), s.input_len())?;
    if s.empty() || s.image() == 0 {
        dx.fill(T::zero());
        return Ok(());
    }
    let (depth, o, pixels) = (s.depth(), s.o, s.pixels());
    let wt = matrix(filter, depth, o)?.t();
    let simd = Simd::best();
    let failed = FirstError::default();
    if s.pointwise() {
        let chunk = s.chunk_rows();
        for_chunks(dx, chunk * depth, &|k, dx| {
            let (first, rows) = (k * chunk, dx.len() / depth);
            failed.keep(
                matrix(&dy[first * o..][..rows * o], rows, o)
                    .and_then(|a| gemm_with(a, wt, dx, simd, 1)),
            );
        });
        return failed.result();
    }
    let images = (CHUNK_ELEMENTS / (pixels * depth)).max(1);
    for_chunks(dx, images * s.image(), &|k, dx| {
        let first = k * images * pixels;
        let rows = dx.len() / s.image() * pixels;
        failed.keep(T::with_scratch(Scratch::Patches, |buf| {
            let patches = grown(buf, rows * depth);
            let a = matrix(&dy[first * o..][..rows * o], rows, o)?;
            gemm_with(a, wt, patches, simd, 1)?;
            s.scatter(patches, dx);
            Ok(())
        }));
    });
    failed.result()
}

/// The first `len` values of `buf`, grown (never shrunk) to hold them.
fn grown<T: Elem>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    &mut buf[..len]
}

/// Runs `f` on the inputs and the output as contiguous NHWC slices: views
/// that are already contiguous go as they are, the others (NCHW data seen
/// through NHWC axes) are copied into this thread's layout scratch, and the
/// output copied back.
pub(super) fn in_nhwc<T: Elem, const K: usize>(
    ins: [&ArrayViewD<'_, T>; K],
    mut out: ArrayViewMutD<'_, T>,
    f: impl FnOnce([&[T]; K], &mut [T]) -> Result<(), String>,
) -> Result<(), String> {
    let copied: usize = ins
        .iter()
        .filter(|v| v.as_slice().is_none())
        .map(|v| v.len())
        .sum();
    let out_len = if out.as_slice().is_none() {
        out.len()
    } else {
        0
    };
    T::with_scratch(Scratch::Layout, |buf| {
        let mut rest = grown(buf, copied + out_len);
        let mut slices: [&[T]; K] = [&[]; K];
        for (slot, v) in slices.iter_mut().zip(ins) {
            *slot = match v.as_slice() {
                Some(s) => s,
                None => {
                    let (part, tail) = std::mem::take(&mut rest).split_at_mut(v.len());
                    for (d, &s) in part.iter_mut().zip(v.iter()) {
                        *d = s;
                    }
                    rest = tail;
                    part
                }
            };
        }
        match out.as_slice_mut() {
            Some(y) => f(slices, y),
            None => {
                let y = &mut rest[..out_len];
                f(slices, y)?;
                let shape = IxDyn(out.shape());
                let view = ArrayViewD::from_shape(shape, y).map_err(|e| e.to_string())?;
                out.assign(&view);
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::conv::Conv;
    use super::super::{ConvKind, DataFormat, Op, Padding, PoolKind};
    use crate::dtype::Value;
    use crate::parallel::with_test_threads;
    use crate::Tensor;
    use ndarray::{ArrayD, ArrayViewD, IxDyn};

    /// Deterministic values in [-1, 1); with `levels`, rounded to that many
    /// steps (ties for max pooling).
    fn values(shape: &[usize], seed: usize, levels: Option<f64>) -> ArrayD<f64> {
        let mut k = seed;
        ArrayD::from_shape_fn(IxDyn(shape), |_| {
            k = (k * 7919 + 104_729) % 1_000_003;
            let v = (k % 2000) as f64 / 1000.0 - 1.0;
            levels.map_or(v, |l| (v * l).round() / l)
        })
    }

    fn nchw(x: &ArrayD<f64>) -> ArrayD<f64> {
        x.view()
            .permuted_axes(vec![0, 3, 1, 2])
            .as_standard_layout()
            .to_owned()
    }

    fn nhwc(x: &ArrayD<f64>) -> ArrayD<f64> {
        x.view()
            .permuted_axes(vec![0, 2, 3, 1])
            .as_standard_layout()
            .to_owned()
    }

    /// Runs `op`'s module kernel on `input(0)`, `input(1)`, … into `out`.
    fn module_kernel<'a, T: Value>(
        op: &Op,
        input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
        out: &mut ArrayD<T>,
    ) -> Result<(), String>
    where
        Tensor: From<ArrayD<T>>,
    {
        let ins: Vec<Tensor> = (0..)
            .map_while(|k| input(k).ok())
            .map(|v| Tensor::from(v.to_owned()))
            .collect();
        let refs: Vec<&Tensor> = ins.iter().collect();
        let mut t = [Tensor::from(std::mem::take(out))];
        let result = super::super::module_run(op, &refs.as_slice(), &mut t);
        *out = T::array_mut(&mut t[0])
            .ok_or("the output changed dtype")?
            .clone();
        result
    }

    /// Runs `op`'s kernel on `ins` into an output of `shape`.
    fn eval(op: &Op, ins: &[&ArrayD<f64>], shape: &[usize]) -> ArrayD<f64> {
        let mut out = ArrayD::from_elem(IxDyn(shape), f64::NAN);
        let input = |k: usize| -> Result<ArrayViewD<'_, f64>, String> {
            ins.get(k)
                .map(|a| a.view())
                .ok_or_else(|| "missing".to_string())
        };
        module_kernel(op, &input, &mut out).expect("the kernel runs");
        out
    }

    fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, what: &str) {
        assert_eq!(got.shape(), want.shape(), "{what}");
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "{what}: element {i}: {g} vs {w}"
            );
        }
    }

    fn conv_op(
        stride: [i64; 2],
        dilation: [i64; 2],
        padding: Padding,
        pads: [i64; 4],
        df: DataFormat,
    ) -> Op {
        let four = |v: [i64; 2]| match df {
            DataFormat::NHWC => vec![1, v[0], v[1], 1],
            DataFormat::NCHW => vec![1, 1, v[0], v[1]],
        };
        let explicit_paddings = match (padding, df) {
            (Padding::EXPLICIT, DataFormat::NHWC) => {
                vec![0, 0, pads[0], pads[1], pads[2], pads[3], 0, 0]
            }
            (Padding::EXPLICIT, DataFormat::NCHW) => {
                vec![0, 0, 0, 0, pads[0], pads[1], pads[2], pads[3]]
            }
            _ => vec![],
        };
        Op::Conv2D {
            strides: four(stride),
            padding,
            explicit_paddings,
            dilations: four(dilation),
            data_format: df,
        }
    }

    /// Conv2D, its input gradient and its filter gradient by direct loops
    /// over the NHWC definition.
    fn direct(conv: &Conv, x: &ArrayD<f64>, w: &ArrayD<f64>, dy: &ArrayD<f64>) -> [ArrayD<f64>; 3] {
        let (&[n, h, wd, c], &[kh, kw, _, o]) = (x.shape(), w.shape()) else {
            panic!("rank 4")
        };
        let g = conv.geometry([h, wd], [kh, kw]).expect("fits");
        let mut y = ArrayD::zeros(IxDyn(&[n, g[0].out, g[1].out, o]));
        let mut dx = ArrayD::zeros(x.raw_dim());
        let mut dw = ArrayD::zeros(w.raw_dim());
        for b in 0..n {
            for oh in 0..g[0].out {
                for ow in 0..g[1].out {
                    for i in 0..kh {
                        let Some(ih) = g[0].input(oh, i, h) else {
                            continue;
                        };
                        for j in 0..kw {
                            let Some(iw) = g[1].input(ow, j, wd) else {
                                continue;
                            };
                            for ci in 0..c {
                                for oc in 0..o {
                                    y[[b, oh, ow, oc]] += x[[b, ih, iw, ci]] * w[[i, j, ci, oc]];
                                    dx[[b, ih, iw, ci]] += dy[[b, oh, ow, oc]] * w[[i, j, ci, oc]];
                                    dw[[i, j, ci, oc]] += x[[b, ih, iw, ci]] * dy[[b, oh, ow, oc]];
                                }
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dw]
    }

    /// (input NHWC, filter, strides, dilations, padding, explicit pads (top, bottom, left, right)).
    type ConvCase = (
        [usize; 4],
        [usize; 4],
        [i64; 2],
        [i64; 2],
        Padding,
        [i64; 4],
    );

    const CONV_CASES: &[ConvCase] = &[
        (
            [2, 5, 5, 3],
            [3, 3, 3, 4],
            [1, 1],
            [1, 1],
            Padding::SAME,
            [0; 4],
        ),
        (
            [2, 6, 6, 1],
            [3, 3, 1, 5],
            [2, 2],
            [1, 1],
            Padding::SAME,
            [0; 4],
        ),
        (
            [1, 7, 6, 5],
            [5, 5, 5, 2],
            [1, 1],
            [1, 1],
            Padding::VALID,
            [0; 4],
        ),
        (
            [2, 7, 7, 3],
            [2, 3, 3, 3],
            [2, 1],
            [1, 1],
            Padding::VALID,
            [0; 4],
        ),
        (
            [1, 9, 8, 2],
            [3, 3, 2, 3],
            [1, 1],
            [2, 2],
            Padding::SAME,
            [0; 4],
        ),
        (
            [2, 5, 6, 3],
            [1, 1, 3, 4],
            [1, 1],
            [1, 1],
            Padding::VALID,
            [0; 4],
        ),
        (
            [2, 5, 6, 3],
            [1, 1, 3, 4],
            [2, 2],
            [1, 1],
            Padding::SAME,
            [0; 4],
        ),
        (
            [1, 5, 5, 2],
            [3, 2, 2, 3],
            [1, 2],
            [1, 1],
            Padding::EXPLICIT,
            [1, 2, 0, 3],
        ),
        // Many images: several chunks, and a filter gradient summed over them.
        (
            [40, 12, 12, 32],
            [3, 3, 32, 8],
            [1, 1],
            [1, 1],
            Padding::SAME,
            [0; 4],
        ),
    ];

    #[test]
    fn convolutions_match_the_direct_loops_in_both_layouts() {
        for (k, &(xs, ks, stride, dilation, padding, pads)) in CONV_CASES.iter().enumerate() {
            let (x, w) = (values(&xs, k, None), values(&ks, k + 100, None));
            let op = conv_op(stride, dilation, padding, pads, DataFormat::NHWC);
            let conv = Conv::of(&op).expect("a convolution");
            let g = conv.geometry([xs[1], xs[2]], [ks[0], ks[1]]).expect("fits");
            let ys = [xs[0], g[0].out, g[1].out, ks[3]];
            let dy = values(&ys, k + 200, None);
            let [y, dx, dw] = direct(&conv, &x, &w, &dy);
            for df in [DataFormat::NHWC, DataFormat::NCHW] {
                let op = conv_op(stride, dilation, padding, pads, df);
                let to = |a: &ArrayD<f64>| {
                    if df == DataFormat::NCHW {
                        nchw(a)
                    } else {
                        a.clone()
                    }
                };
                let from = |a: ArrayD<f64>| if df == DataFormat::NCHW { nhwc(&a) } else { a };
                let (x_, dy_) = (to(&x), to(&dy));
                let what = |o: &str| format!("case {k} {df:?} {o}");
                let got = eval(&op, &[&x_, &w], to(&y).shape());
                assert_close(&from(got), &y, &what("Conv2D"));
                let bi = op.conv_like(ConvKind::BackpropInput).expect("conv");
                let got = eval(&bi, &[&x_, &w, &dy_], x_.shape());
                assert_close(&from(got), &dx, &what("Conv2DBackpropInput"));
                let bf = op.conv_like(ConvKind::BackpropFilter).expect("conv");
                let got = eval(&bf, &[&x_, &w, &dy_], w.shape());
                assert_close(&got, &dw, &what("Conv2DBackpropFilter"));
            }
        }
    }

    /// Pooling by direct loops over the NHWC definition: MaxPool, MaxPoolGrad,
    /// MaxPoolGradGrad, AvgPool, AvgPoolGrad.
    fn direct_pool(
        op: &Op,
        x: &ArrayD<f64>,
        dy: &ArrayD<f64>,
        gx: &ArrayD<f64>,
    ) -> [ArrayD<f64>; 5] {
        let (conv, [kh, kw]) = super::super::conv::pool(op).expect("a pooling");
        let &[n, h, w, c] = x.shape() else {
            panic!("rank 4")
        };
        let g = conv.geometry([h, w], [kh, kw]).expect("fits");
        let ys = [n, g[0].out, g[1].out, c];
        let (mut max, mut max_grad, mut max_gg) = (
            ArrayD::zeros(IxDyn(&ys)),
            ArrayD::zeros(x.raw_dim()),
            ArrayD::zeros(IxDyn(&ys)),
        );
        let (mut avg, mut avg_grad) = (ArrayD::zeros(IxDyn(&ys)), ArrayD::zeros(x.raw_dim()));
        for b in 0..n {
            for oh in 0..g[0].out {
                for ow in 0..g[1].out {
                    let taps: Vec<(usize, usize)> = (0..kh)
                        .filter_map(|i| g[0].input(oh, i, h))
                        .flat_map(|ih| {
                            (0..kw)
                                .filter_map(move |j| g[1].input(ow, j, w))
                                .map(move |iw| (ih, iw))
                        })
                        .collect();
                    let count = taps.len().max(1) as f64;
                    for ch in 0..c {
                        let mut best: Option<(f64, usize, usize)> = None;
                        let mut sum = 0.0;
                        for &(ih, iw) in &taps {
                            let v = x[[b, ih, iw, ch]];
                            if best.is_none_or(|(m, _, _)| v > m) {
                                best = Some((v, ih, iw));
                            }
                            sum += v;
                        }
                        if let Some((v, ih, iw)) = best {
                            max[[b, oh, ow, ch]] = v;
                            max_grad[[b, ih, iw, ch]] += dy[[b, oh, ow, ch]];
                            max_gg[[b, oh, ow, ch]] = gx[[b, ih, iw, ch]];
                        }
                        avg[[b, oh, ow, ch]] = sum / count;
                        for &(ih, iw) in &taps {
                            avg_grad[[b, ih, iw, ch]] += dy[[b, oh, ow, ch]] / count;
                        }
                    }
                }
            }
        }
        [max, max_grad, max_gg, avg, avg_grad]
    }

    /// (input NHWC, window, strides, padding).
    type PoolCase = ([usize; 4], [i64; 2], [i64; 2], Padding);

    /// An op, its inputs and its output's shape.
    type KernelCall<'a> = (Op, Vec<&'a ArrayD<f32>>, &'a [usize]);

    fn pool_op(window: [i64; 2], stride: [i64; 2], padding: Padding, df: DataFormat) -> Op {
        let four = |v: [i64; 2]| match df {
            DataFormat::NHWC => vec![1, v[0], v[1], 1],
            DataFormat::NCHW => vec![1, 1, v[0], v[1]],
        };
        Op::MaxPool {
            ksize: four(window),
            strides: four(stride),
            padding,
            data_format: df,
        }
    }

    #[test]
    fn poolings_match_the_direct_loops_in_both_layouts() {
        let cases: &[PoolCase] = &[
            ([2, 6, 6, 3], [2, 2], [2, 2], Padding::VALID),
            ([2, 7, 5, 2], [3, 3], [2, 2], Padding::SAME),
            ([1, 5, 6, 70], [3, 2], [1, 1], Padding::SAME),
            ([3, 8, 8, 4], [3, 3], [1, 2], Padding::VALID),
            // Windows that share no pixel: tiling the input (with padding
            // before, after, or none) and not (pixels in no window).
            ([2, 7, 5, 2], [2, 2], [2, 2], Padding::SAME),
            ([1, 7, 7, 3], [3, 3], [3, 3], Padding::SAME),
            ([2, 7, 5, 2], [2, 2], [2, 2], Padding::VALID),
            ([1, 8, 7, 3], [2, 2], [3, 3], Padding::VALID),
        ];
        for (k, &(xs, window, stride, padding)) in cases.iter().enumerate() {
            // Few levels: many ties inside a window; and a few NaNs, which
            // are a window's maximum only where they come first.
            let mut x = values(&xs, k, Some(3.0));
            for at in [0, 5, 17] {
                x.as_slice_mut().expect("contiguous")[at] = f64::NAN;
            }
            let gx = values(&xs, k + 50, None);
            let op = pool_op(window, stride, padding, DataFormat::NHWC);
            let (conv, win) = super::super::conv::pool(&op).expect("a pooling");
            let g = conv.geometry([xs[1], xs[2]], win).expect("fits");
            let ys = [xs[0], g[0].out, g[1].out, xs[3]];
            let dy = values(&ys, k + 100, None);
            let want = direct_pool(&op, &x, &dy, &gx);
            for df in [DataFormat::NHWC, DataFormat::NCHW] {
                let op = pool_op(window, stride, padding, df);
                let to = |a: &ArrayD<f64>| {
                    if df == DataFormat::NCHW {
                        nchw(a)
                    } else {
                        a.clone()
                    }
                };
                let from = |a: ArrayD<f64>| if df == DataFormat::NCHW { nhwc(&a) } else { a };
                let (x_, dy_, gx_) = (to(&x), to(&dy), to(&gx));
                let y_ = to(&want[0]);
                let kinds = [
                    (PoolKind::MaxPool, vec![&x_], y_.shape()),
                    (PoolKind::MaxPoolGrad, vec![&x_, &y_, &dy_], x_.shape()),
                    (PoolKind::MaxPoolGradGrad, vec![&x_, &y_, &gx_], y_.shape()),
                    (PoolKind::AvgPool, vec![&x_], y_.shape()),
                    (PoolKind::AvgPoolGrad, vec![&x_, &dy_], x_.shape()),
                ];
                for ((kind, ins, shape), want) in kinds.into_iter().zip(&want) {
                    let op = op.pool_like(kind).expect("a pooling");
                    let got = from(eval(&op, &ins, shape));
                    // The same sums in the same order: the same values (NaN where NaN).
                    let same = got.shape() == want.shape()
                        && got
                            .iter()
                            .zip(want)
                            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
                    assert!(same, "case {k} {df:?} {kind:?}: {got} instead of {want}");
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let x = values(&[24, 14, 14, 16], 1, None).mapv(|v| v as f32);
        let w = values(&[3, 3, 16, 32], 2, None).mapv(|v| v as f32);
        let dy = values(&[24, 14, 14, 32], 3, None).mapv(|v| v as f32);
        let op = conv_op([1, 1], [1, 1], Padding::SAME, [0; 4], DataFormat::NHWC);
        let pool = pool_op([2, 2], [2, 2], Padding::VALID, DataFormat::NHWC);
        let run = || {
            let mut outs = Vec::new();
            let cases: [KernelCall<'_>; 4] = [
                (op.clone(), vec![&x, &w], dy.shape()),
                (
                    op.conv_like(ConvKind::BackpropInput).expect("conv"),
                    vec![&x, &w, &dy],
                    x.shape(),
                ),
                (
                    op.conv_like(ConvKind::BackpropFilter).expect("conv"),
                    vec![&x, &w, &dy],
                    w.shape(),
                ),
                (pool.clone(), vec![&dy], &[24, 7, 7, 32]),
            ];
            for (op, ins, shape) in cases {
                let mut out = ArrayD::from_elem(IxDyn(shape), f32::NAN);
                let input = |k: usize| -> Result<ArrayViewD<'_, f32>, String> {
                    ins.get(k)
                        .map(|a| a.view())
                        .ok_or_else(|| "missing".to_string())
                };
                module_kernel(&op, &input, &mut out).expect("runs");
                outs.push(out);
            }
            outs
        };
        let one = run();
        let two = with_test_threads(2, run);
        let three = with_test_threads(3, run);
        assert_eq!(one, two);
        assert_eq!(one, three);
    }
}
