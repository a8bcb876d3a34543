//! Gradients of neural-network ops.

use super::{dy, Ctx, GradFn, Grads, NodeArgs};
use crate::error::Result;
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) fn rule(op: &Op) -> Option<GradFn> {
    Some(match op {
        Op::Relu => relu,
        Op::ReluGrad => relu_grad,
        Op::BiasAdd => bias_add,
        Op::Softmax => softmax,
        Op::SoftmaxCrossEntropyWithLogits => softmax_cross_entropy,
        Op::Moments { .. } => moments,
        Op::BatchNormalization { .. } => batch_normalization,
        _ => return None,
    })
}

// dx = dy * [y > 0]
fn relu(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(Op::ReluGrad, &[dy(g), n.y()])?)])
}

// ReluGrad(d, x) is linear in d with a piecewise-constant mask: dd = ReluGrad(dy, x), dx = 0
fn relu_grad(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(Op::ReluGrad, &[dy(g), n.x(1)])?), None])
}

// dx = dy, db = sum of dy over every axis but the last
fn bias_add(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let rank = c.ty(n.x(0)).shape.rank() as i64;
    let db = c.op(
        Op::Sum {
            axes: Some((0..rank - 1).collect()),
            keep_dims: false,
        },
        &[dy(g)],
    )?;
    Ok(vec![Some(dy(g)), Some(db)])
}

// dx = y * (dy - sum(dy * y, last axis))
fn softmax(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let dy_y = c.mul(dy(g), n.y())?;
    let s = c.op(
        Op::Sum {
            axes: Some(vec![-1]),
            keep_dims: true,
        },
        &[dy_y],
    )?;
    let d = c.sub(dy(g), s)?;
    Ok(vec![Some(c.mul(n.y(), d)?)])
}

// dlogits = (softmax(logits) - labels) * dy[..., None]; labels get none (TensorFlow's v1 op)
fn softmax_cross_entropy(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let p = c.op(Op::Softmax, &[n.x(0)])?;
    let diff = c.sub(p, n.x(1))?;
    let d = c.op(Op::ExpandDims { axes: vec![-1] }, &[dy(g)])?;
    Ok(vec![Some(c.mul(diff, d)?), None])
}

// dx = broadcast(dmean) / n + broadcast(dvar) * 2 (x - mean) / n   (the mean's own
// dependence on x drops out of the variance term, as with TensorFlow's stop_gradient)
fn moments(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
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
fn batch_normalization(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
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
