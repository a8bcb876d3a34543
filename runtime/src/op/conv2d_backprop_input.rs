//! `Conv2DBackpropInput`: the gradient of Conv2D's input (TensorFlow's
//! `tf.nn.conv2d_backprop_input`), inputs (input, filter, out_backprop), the
//! first read for its shape only:
//! `dx[n, ih, iw, c] = Σ dy[n, oh, ow, o] · w[i, j, c, o]` over the outputs
//! and taps that read (ih, iw), as a matrix product (`conv_gemm.rs`). Its gradients: `compiler/src/grad/conv2d_backprop_input.rs`.

use super::conv::{conv_fits, Conv};
use super::{Arity, Op};
use super::conv_gemm::{self, in_nhwc, Sizes};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

pub(super) use super::conv::attrs_text;

/// The output has the input's shape; out_backprop must have the shape
/// Conv2D gives for that input and the filter.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    conv_fits(&Conv::of(op)?, &ins[0].shape, &ins[1].shape, &ins[2].shape)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: ins[0].shape.clone(),
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let (w, dy) = (input(1)?, conv.nhwc(input(2)?));
    let dx = conv.nhwc_mut(out.view_mut());
    let s = Sizes::of("Conv2DBackpropInput", &conv, dx.shape(), w.shape())?;
    s.check_out_backprop("Conv2DBackpropInput", dy.shape())?;
    in_nhwc([&w, &dy], dx, |[w, dy], dx| conv_gemm::input_grad(&s, w, dy, dx))
}
