//! `DepthwiseConv2dNative`: TensorFlow's `tf.nn.depthwise_conv2d_native`,
//! computed directly: input channel c with filter m makes output channel c·M + m,
//! `y[n, oh, ow, c·M + m] = Σ x[n, oh·sh + i·dh − ph, ow·sw + j·dw − pw, c] · w[i, j, c, m]`
//! over the taps (i, j) inside the input. Its gradients are its two
//! backprop ops (`compiler/src/grad/depthwise_conv2d.rs`).

use super::conv::{depthwise_filter, Conv};
use super::{unify, Arity, Op};
use crate::dtype::Scalar;
use crate::shape::Dim;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
float_kernel!();

pub(super) use super::conv::attrs_text;

/// Input [N, H, W, C] (in the data format), filter [kh, kw, C, M] of known
/// sizes; output [N, OH, OW, C·M].
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let conv = Conv::of(op)?;
    let (x, f) = (&ins[0].shape, &ins[1].shape);
    let [n, _, _, c] = conv.split("the input", x)?;
    let [kh, kw, fc, m] = depthwise_filter(f)?;
    unify(&c, &Dim::Known(fc)).map_err(|_| {
        format!("the input {x} has {c} channels ({:?}), the filter {f} takes {fc}", conv.data_format)
    })?;
    let g = conv.geometry(conv.spatial_sizes("the input", x)?, [kh, kw])?;
    let channels = fc.checked_mul(m).ok_or_else(|| format!("the filter {f} has too many channels"))?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: conv.shape([n, Dim::Known(g[0].out), Dim::Known(g[1].out), Dim::Known(channels)]),
    }])
}

pub(super) fn kernel<'a, T: Scalar>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let conv = Conv::of(op)?;
    let x = conv.nhwc(input(0)?);
    let w = input(1)?;
    let (&[batch, h, wd, c], &[kh, kw, fc, m]) = (x.shape(), w.shape()) else {
        return Err("DepthwiseConv2dNative takes an input and a filter of rank 4".into());
    };
    let g = conv.geometry([h, wd], [kh, kw])?;
    let mut y = conv.nhwc_mut(out.view_mut());
    if fc != c || y.shape() != [batch, g[0].out, g[1].out, c * m] {
        return Err(format!(
            "DepthwiseConv2dNative: input {:?}, filter {:?} and output {:?} do not fit",
            x.shape(),
            w.shape(),
            y.shape()
        ));
    }
    for n in 0..batch {
        for oh in 0..g[0].out {
            for ow in 0..g[1].out {
                for ci in 0..c {
                    for k in 0..m {
                        let mut acc = T::zero();
                        for i in 0..kh {
                            let Some(ih) = g[0].input(oh, i, h) else { continue };
                            for j in 0..kw {
                                let Some(iw) = g[1].input(ow, j, wd) else { continue };
                                acc = acc + x[[n, ih, iw, ci]] * w[[i, j, ci, k]];
                            }
                        }
                        y[[n, oh, ow, ci * m + k]] = acc;
                    }
                }
            }
        }
    }
    Ok(())
}
