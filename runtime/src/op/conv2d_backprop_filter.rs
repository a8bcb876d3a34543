//! `Conv2DBackpropFilter`: the gradient of Conv2D's filter (TensorFlow's
//! `tf.nn.conv2d_backprop_filter`), inputs (input, filter, out_backprop),
//! the filter read for its shape only:
//! `dw[i, j, c, o] = Σ x[n, oh·sh + i·dh − ph, ow·sw + j·dw − pw, c] · dy[n, oh, ow, o]`
//! over the batch and the outputs whose tap (i, j) is inside the input.
//! Its gradients: `compiler/src/grad/conv2d_backprop_filter.rs`.

use super::conv::{conv_fits, Conv};
use super::{Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);

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

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let x = conv.nhwc(input(0)?);
    let dy = conv.nhwc(input(2)?);
    let (&[batch, h, wd, c], &[kh, kw, fc, o]) = (x.shape(), out.shape()) else {
        return Err("Conv2DBackpropFilter takes an input and a filter of rank 4".into());
    };
    let g = conv.geometry([h, wd], [kh, kw])?;
    if fc != c || dy.shape() != [batch, g[0].out, g[1].out, o] {
        return Err(format!(
            "Conv2DBackpropFilter: input {:?}, filter {:?} and out_backprop {:?} do not fit",
            x.shape(),
            out.shape(),
            dy.shape()
        ));
    }
    for i in 0..kh {
        for j in 0..kw {
            for ci in 0..c {
                for oc in 0..o {
                    let mut acc = T::zero();
                    for n in 0..batch {
                        for oh in 0..g[0].out {
                            let Some(ih) = g[0].input(oh, i, h) else { continue };
                            for ow in 0..g[1].out {
                                let Some(iw) = g[1].input(ow, j, wd) else { continue };
                                acc = acc + x[[n, ih, iw, ci]] * dy[[n, oh, ow, oc]];
                            }
                        }
                    }
                    out[[i, j, ci, oc]] = acc;
                }
            }
        }
    }
    Ok(())
}
