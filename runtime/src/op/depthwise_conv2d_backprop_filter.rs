//! `DepthwiseConv2dNativeBackpropFilter`: the gradient of
//! DepthwiseConv2dNative's filter, inputs (input, filter, read for its shape
//! only, out_backprop):
//! `dw[i, j, c, m] = Σ x[n, oh·sh + i·dh − ph, ow·sw + j·dw − pw, c] · dy[n, oh, ow, c·M + m]`.
//! Its gradients: `compiler/src/grad/depthwise_conv2d_backprop_filter.rs`.

use super::conv::{depthwise_fits, Conv};
use super::{Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

pub(super) use super::conv::attrs_text;

/// The output has the filter's shape.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    depthwise_fits(&Conv::of(op)?, &ins[0].shape, &ins[1].shape, &ins[2].shape)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: ins[1].shape.clone(),
    }])
}

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let x = conv.nhwc(input(0)?);
    let dy = conv.nhwc(input(2)?);
    let (&[batch, h, wd, c], &[kh, kw, fc, m]) = (x.shape(), out.shape()) else {
        return Err("DepthwiseConv2dNativeBackpropFilter takes an input and a filter of rank 4".into());
    };
    let g = conv.geometry([h, wd], [kh, kw])?;
    if fc != c || dy.shape() != [batch, g[0].out, g[1].out, c * m] {
        return Err(format!(
            "DepthwiseConv2dNativeBackpropFilter: input {:?}, filter {:?} and out_backprop {:?} do not fit",
            x.shape(),
            out.shape(),
            dy.shape()
        ));
    }
    for i in 0..kh {
        for j in 0..kw {
            for ci in 0..c {
                for k in 0..m {
                    let mut acc = T::zero();
                    for n in 0..batch {
                        for oh in 0..g[0].out {
                            let Some(ih) = g[0].input(oh, i, h) else { continue };
                            for ow in 0..g[1].out {
                                let Some(iw) = g[1].input(ow, j, wd) else { continue };
                                acc = acc + x[[n, ih, iw, ci]] * dy[[n, oh, ow, ci * m + k]];
                            }
                        }
                    }
                    out[[i, j, ci, k]] = acc;
                }
            }
        }
    }
    Ok(())
}
