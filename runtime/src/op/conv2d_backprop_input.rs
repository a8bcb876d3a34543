//! `Conv2DBackpropInput`: the gradient of Conv2D's input (TensorFlow's
//! `tf.nn.conv2d_backprop_input`), inputs (input, filter, out_backprop), the
//! first read for its shape only:
//! `dx[n, ih, iw, c] = Σ dy[n, oh, ow, o] · w[i, j, c, o]` over the outputs
//! and taps that read (ih, iw). Its gradients: `compiler/src/grad/conv2d_backprop_input.rs`.

use super::conv::{conv_fits, Conv};
use super::{Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);

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
    let (&[batch, h, wd, c], &[kh, kw, fc, o]) = (dx.shape(), w.shape()) else {
        return Err("Conv2DBackpropInput takes an input and a filter of rank 4".into());
    };
    let g = conv.geometry([h, wd], [kh, kw])?;
    if fc != c || dy.shape() != [batch, g[0].out, g[1].out, o] {
        return Err(format!(
            "Conv2DBackpropInput: input {:?}, filter {:?} and out_backprop {:?} do not fit",
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
                            for oc in 0..o {
                                acc = acc + dy[[n, oh, ow, oc]] * w[[i, j, ci, oc]];
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
