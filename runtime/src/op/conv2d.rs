//! `Conv2D`: TensorFlow's `tf.nn.conv2d`, computed directly,
//! `y[n, oh, ow, o] = Σ x[n, oh·sh + i·dh − ph, ow·sw + j·dw − pw, c] · w[i, j, c, o]`
//! over the filter taps (i, j) and input channels c inside the input, as a
//! matrix product (`conv_gemm.rs`).
//! Its gradients are the two backprop ops (`compiler/src/grad/conv2d.rs`).

use super::conv::{filter_dims, Conv};
use super::{unify, Arity, Op};
use super::conv_gemm::{self, in_nhwc, Epilogue, Sizes};
use crate::kernels::Elem;
use crate::shape::Dim;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
float_kernel!();

pub(super) use super::conv::attrs_text;

/// Input [N, H, W, C] (in the data format), filter [kh, kw, C, O]; output
/// [N, OH, OW, O] with TensorFlow's sizes (see `conv::Axis`).
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let conv = Conv::of(op)?;
    let (x, f) = (&ins[0].shape, &ins[1].shape);
    let [n, _, _, c] = conv.split("the input", x)?;
    let (kh, kw, fc, o) = filter_dims(f)?;
    unify(&c, &fc).map_err(|_| {
        format!("the input {x} has {c} channels ({:?}), the filter {f} takes {fc}", conv.data_format)
    })?;
    let g = conv.geometry(conv.spatial_sizes("the input", x)?, [kh, kw])?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: conv.shape([n, Dim::Known(g[0].out), Dim::Known(g[1].out), o]),
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    drive("Conv2D", op, input, out, None)
}

/// The convolution of inputs 0 and 1 into `out`, then the epilogue if any
/// (FusedConv2D's).
pub(super) fn drive<'a, T: Elem>(
    name: &'static str,
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
    epilogue: Option<Epilogue<'_, T>>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let (x, w) = (conv.nhwc(input(0)?), input(1)?);
    let s = Sizes::of(name, &conv, x.shape(), w.shape())?;
    let y = conv.nhwc_mut(out.view_mut());
    if y.shape() != s.output() {
        return Err(format!("{name}: the output {:?} (NHWC) is not {:?}", y.shape(), s.output()));
    }
    in_nhwc([&x, &w], y, |[x, w], y| conv_gemm::forward(&s, x, w, y, epilogue))
}
