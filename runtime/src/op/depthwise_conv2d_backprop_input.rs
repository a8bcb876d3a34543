//! `DepthwiseConv2dNativeBackpropInput`: the gradient of
//! DepthwiseConv2dNative's input, inputs (input, read for its shape only,
//! filter, out_backprop):
//! `dx[n, ih, iw, c] = Σ dy[n, oh, ow, c·M + m] · w[i, j, c, m]` over the
//! outputs and taps that read (ih, iw). Its gradients:
//! `compiler/src/grad/depthwise_conv2d_backprop_input.rs`.

use super::conv::{depthwise_fits, Conv};
use super::{Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

pub(super) use super::conv::attrs_text;

/// The output has the input's shape.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    depthwise_fits(&Conv::of(op)?, &ins[0].shape, &ins[1].shape, &ins[2].shape)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: ins[0].shape.clone(),
    }])
}

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let w = input(1)?;
    let dy = conv.nhwc(input(2)?);
    out.fill(T::zero());
    let mut dx = conv.nhwc_mut(out.view_mut());
    let (&[batch, h, wd, c], &[kh, kw, fc, m]) = (dx.shape(), w.shape()) else {
        return Err("DepthwiseConv2dNativeBackpropInput takes an input and a filter of rank 4".into());
    };
    let g = conv.geometry([h, wd], [kh, kw])?;
    if fc != c || dy.shape() != [batch, g[0].out, g[1].out, c * m] {
        return Err(format!(
            "DepthwiseConv2dNativeBackpropInput: input {:?}, filter {:?} and out_backprop {:?} do not fit",
            dx.shape(),
            w.shape(),
            dy.shape()
        ));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                for i in 0..kh {
                    let Some(ih) = g[0].input(oh, i, h) else { continue };
                    for j in 0..kw {
                        let Some(iw) = g[1].input(ow, j, wd) else { continue };
                        for ci in 0..c {
                            let mut acc = dx[[n, ih, iw, ci]];
                            for k in 0..m {
                                acc = acc + dy[[n, oh, ow, ci * m + k]] * w[[i, j, ci, k]];
                            }
                            dx[[n, ih, iw, ci]] = acc;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
