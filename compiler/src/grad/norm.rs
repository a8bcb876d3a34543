//! Gradients of normalization: Moments, BatchNormalization, FusedBatchNorm and
//! FusedBatchNormGrad (whose own gradient differentiates its decomposition, so
//! second order works through the fused ops).

use super::{dy, vjp_of, Ctx, Grads, NodeArgs};
use crate::builder::broadcastable;
use crate::error::Result;
use crate::ir::TensorRef;
use gradc_runtime::Op;

// dx = broadcast(dmean) / n + broadcast(dvar) * 2 (x - mean) / n   (the mean's own
// dependence on x drops out of the variance term, as with TensorFlow's stop_gradient)
pub(super) fn moments(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Moments { axes, keep_dims } = &n.op else {
        unreachable!("moments rule on {}", n.op.name())
    };
    let x = n.x(0);
    let rank = c.ty(x).shape.rank();
    let axes_n: Vec<i64> = gradc_runtime::shape::normalize_axes(axes, rank)
        .map_err(|e| crate::error::CompileError::new(crate::error::ErrorKind::Shape, e))?
        .into_iter()
        .map(|a| a as i64)
        .collect();
    // A reduced tensor with its axes put back as size 1, broadcast over x.
    let unreduce = |c: &mut Ctx, t: TensorRef| -> Result<TensorRef> {
        let t = if *keep_dims || axes_n.is_empty() {
            t
        } else {
            c.op(
                Op::ExpandDims {
                    axes: axes_n.clone(),
                },
                &[t],
            )?
        };
        c.op(Op::BroadcastLike, &[t, x])
    };
    let count = c.op(
        Op::ReducedSize {
            axes: Some(axes.clone()),
        },
        &[x],
    )?;
    let mut parts = Vec::new();
    if let Some(dmean) = g[0] {
        let b = unreduce(c, dmean)?;
        parts.push(c.div(b, count)?);
    }
    if let Some(dvar) = g[1] {
        let mean = if *keep_dims || axes_n.is_empty() {
            n.outputs[0]
        } else {
            c.op(
                Op::ExpandDims {
                    axes: axes_n.clone(),
                },
                &[n.outputs[0]],
            )?
        };
        let centered = c.sub(x, mean)?;
        let b = unreduce(c, dvar)?;
        let t = c.mul(b, centered)?;
        let t = c.scale(2.0, t)?;
        parts.push(c.div(t, count)?);
    }
    let dx = match parts.as_slice() {
        [one] => *one,
        _ => c.op(Op::AddN, &parts)?,
    };
    Ok(vec![Some(dx)])
}

// r = rsqrt(var + eps), inv = r * scale, y = (x - mean) * inv + offset:
// dx = dy inv, dmean = -dy inv, dvar = dy (x - mean) scale (-r^3 / 2),
// doffset = dy, dscale = dy (x - mean) r   (the driver sums each to its input's shape)
pub(super) fn batch_normalization(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::BatchNormalization {
        variance_epsilon,
        offset,
        scale,
    } = n.op
    else {
        unreachable!("batch_normalization rule on {}", n.op.name())
    };
    let (x, mean, var) = (n.x(0), n.x(1), n.x(2));
    let scale_in = scale.then(|| n.x(3 + usize::from(offset)));
    let eps = c.scalar(variance_epsilon, var)?;
    let v = c.add(var, eps)?;
    let r = c.op(Op::Rsqrt, &[v])?;
    let inv = match scale_in {
        Some(s) => c.mul(r, s)?,
        None => r,
    };
    let dy = dy(g);
    let dx = c.mul(dy, inv)?;
    let dmean = c.neg(dx)?;
    let centered = c.sub(x, mean)?;
    let dinv = c.mul(dy, centered)?;
    let r3 = c.op(Op::Pow { exponent: 3.0 }, &[r])?;
    let dv = c.scale(-0.5, r3)?;
    let dv = match scale_in {
        Some(s) => c.mul(dv, s)?,
        None => dv,
    };
    let dvar = c.mul(dinv, dv)?;
    let mut grads = vec![Some(dx), Some(dmean), Some(dvar)];
    if offset {
        grads.push(Some(dy));
    }
    if scale {
        grads.push(Some(c.mul(dinv, r)?));
    }
    Ok(grads)
}

/// Output `k` of the node that `t` is output 0 of.
fn output(t: TensorRef, k: usize) -> TensorRef {
    TensorRef {
        node: t.node,
        output: k,
    }
}

// dx, dscale, doffset = FusedBatchNormGrad(dy, x, scale, saved_mean, saved_variance).
// Training form: the statistics outputs are the batch's moments of x, so their
// gradients add Moments' terms to dx (the Bessel factor n / (n - 1) on batch_variance).
// Inference form: they pass the mean and variance inputs through, and y adds
// dmean = -doffset scale r, dvar = -dscale scale r^2 / 2 (r = rsqrt(var + eps)).
pub(super) fn fused_batch_norm(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::FusedBatchNorm {
        epsilon,
        data_format,
        is_training,
    } = n.op
    else {
        unreachable!("fused_batch_norm rule on {}", n.op.name())
    };
    let x = n.x(0);
    let mut dx = Vec::new();
    let (mut dscale, mut doffset, mut dmean, mut dvar) = (None, None, Vec::new(), Vec::new());
    if let Some(dyt) = g[0] {
        let grad_op = Op::FusedBatchNormGrad {
            epsilon,
            data_format,
            is_training,
        };
        let d = c.op(grad_op, &[dyt, x, n.x(1), n.outputs[3], n.outputs[4]])?;
        dx.push(d);
        dscale = Some(output(d, 1));
        doffset = Some(output(d, 2));
        if !is_training {
            let eps = c.scalar(epsilon, n.x(4))?;
            let v = c.add(n.x(4), eps)?;
            let r = c.op(Op::Rsqrt, &[v])?;
            let sr = c.mul(n.x(1), r)?;
            let t = c.mul(output(d, 2), sr)?;
            dmean.push(c.neg(t)?);
            let t = c.mul(output(d, 1), sr)?;
            let t = c.mul(t, r)?;
            dvar.push(c.scale(-0.5, t)?);
        }
    }
    let gm: Vec<TensorRef> = [g[1], g[3]].into_iter().flatten().collect();
    let gv_saved = g[4];
    if is_training {
        let rank = c.ty(x).shape.rank();
        let channel = data_format.channel_axis(rank);
        let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != channel as i64).collect();
        let count = c.op(Op::ReducedSize { axes: Some(axes) }, &[x])?;
        let spread = |c: &mut Ctx, p: TensorRef| -> Result<TensorRef> {
            let p = broadcastable(c, p, data_format, rank)?;
            c.op(Op::BroadcastLike, &[p, x])
        };
        for m in gm {
            let t = spread(c, m)?;
            dx.push(c.div(t, count)?);
        }
        let mut gv = Vec::new();
        if let Some(g2) = g[2] {
            let one = c.scalar(1.0, count)?;
            let n1 = c.sub(count, one)?;
            let bessel = c.div(count, n1)?;
            gv.push(c.mul(g2, bessel)?);
        }
        gv.extend(gv_saved);
        if !gv.is_empty() {
            let gv = sum_all(c, gv)?;
            let mean = broadcastable(c, n.outputs[3], data_format, rank)?;
            let centered = c.sub(x, mean)?;
            let t = spread(c, gv)?;
            let t = c.mul(t, centered)?;
            let t = c.scale(2.0, t)?;
            dx.push(c.div(t, count)?);
        }
    } else {
        dmean.extend(gm);
        dvar.extend([g[2], g[4]].into_iter().flatten());
    }
    let opt = |c: &mut Ctx, parts: Vec<TensorRef>| -> Result<Option<TensorRef>> {
        if parts.is_empty() {
            Ok(None)
        } else {
            sum_all(c, parts).map(Some)
        }
    };
    let dx = opt(c, dx)?;
    let dmean = opt(c, dmean)?;
    let dvar = opt(c, dvar)?;
    Ok(vec![dx, dscale, doffset, dmean, dvar])
}

/// The sum of same-shaped tensors: the tensor itself, or an AddN.
pub(super) fn sum_all(c: &mut Ctx, parts: Vec<TensorRef>) -> Result<TensorRef> {
    match parts.as_slice() {
        [one] => Ok(*one),
        _ => c.op(Op::AddN, &parts),
    }
}

// the gradient of FusedBatchNormGrad's decomposition into primitives (below)
pub(super) fn fused_batch_norm_grad(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let outputs = decompose_fused_batch_norm_grad(c, n)?;
    vjp_of(c, &outputs, g, &n.inputs)
}

/// FusedBatchNormGrad as primitives: r = rsqrt(var + eps), xhat = (x - mean) r,
/// doffset = sum(dy), dscale = sum(dy xhat), dx = scale r dy (inference) or
/// scale r (dy - doffset / n - xhat dscale / n) (training); sums over all axes but the channels.
pub(super) fn decompose_fused_batch_norm_grad(c: &mut Ctx, n: &NodeArgs) -> Result<Vec<TensorRef>> {
    let Op::FusedBatchNormGrad {
        epsilon,
        data_format,
        is_training,
    } = n.op
    else {
        unreachable!("decomposition of {}", n.op.name())
    };
    let [dyt, x, scale, mean, var] = [n.x(0), n.x(1), n.x(2), n.x(3), n.x(4)];
    let rank = c.ty(x).shape.rank();
    let channel = data_format.channel_axis(rank);
    let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != channel as i64).collect();
    let b = |c: &mut Ctx, p: TensorRef| broadcastable(c, p, data_format, rank);
    let eps = c.scalar(epsilon, var)?;
    let v = c.add(var, eps)?;
    let r = c.op(Op::Rsqrt, &[v])?;
    let (mb, rb) = (b(c, mean)?, b(c, r)?);
    let centered = c.sub(x, mb)?;
    let xhat = c.mul(centered, rb)?;
    let sum = |c: &mut Ctx, t: TensorRef| {
        c.op(
            Op::Sum {
                axes: Some(axes.clone()),
                keep_dims: false,
            },
            &[t],
        )
    };
    let doffset = sum(c, dyt)?;
    let dy_xhat = c.mul(dyt, xhat)?;
    let dscale = sum(c, dy_xhat)?;
    let sr = c.mul(scale, r)?;
    let srb = b(c, sr)?;
    let inner = if is_training {
        let count = c.op(
            Op::ReducedSize {
                axes: Some(axes.clone()),
            },
            &[x],
        )?;
        let ob = b(c, doffset)?;
        let ob = c.div(ob, count)?;
        let sb = b(c, dscale)?;
        let t = c.mul(xhat, sb)?;
        let t = c.div(t, count)?;
        let t2 = c.sub(dyt, ob)?;
        c.sub(t2, t)?
    } else {
        dyt
    };
    let dx = c.mul(inner, srb)?;
    Ok(vec![dx, dscale, doffset])
}
