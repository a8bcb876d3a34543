//! `Conv2DBackpropFilter`: the gradient of Conv2D's filter (TensorFlow's
//! `tf.nn.conv2d_backprop_filter`), inputs (input, filter, out_backprop),
//! the filter read for its shape only:
//! `dw[i, j, c, o] = Σ x[n, oh·sh + i·dh − ph, ow·sw + j·dw − pw, c] · dy[n, oh, ow, o]`
//! over the batch and the outputs whose tap (i, j) is inside the input, as a
//! matrix product (`conv_gemm.rs`).
//! Its gradients: `compiler/src/grad/conv2d_backprop_filter.rs`.

use super::conv::{conv_fits, Conv};
use super::{Arity, Op};
use super::conv_gemm::{self, in_nhwc, Sizes};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

pub(super) use super::conv::attrs_text;

/// The output has the filter's shape; out_backprop must have the shape
/// Conv2D gives for the input and that filter.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    conv_fits(&Conv::of(op)?, &ins[0].shape, &ins[1].shape, &ins[2].shape)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: ins[1].shape.clone(),
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let (x, dy) = (conv.nhwc(input(0)?), conv.nhwc(input(2)?));
    let s = Sizes::of("Conv2DBackpropFilter", &conv, x.shape(), out.shape())?;
    s.check_out_backprop("Conv2DBackpropFilter", dy.shape())?;
    in_nhwc([&x, &dy], out.view_mut(), |[x, dy], dw| conv_gemm::filter_grad(&s, x, dy, dw))
}
