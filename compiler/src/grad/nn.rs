//! Gradients of neural-network ops.

use super::{dy, Ctx, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

// dx = dy, db = sum of dy over every axis but the channels (TensorFlow's BiasAddGrad)
pub(super) fn bias_add(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let rank = c.ty(n.x(0)).shape.rank();
    let channels = match n.op {
        Op::BiasAdd { data_format } => data_format.channel_axis(rank),
        _ => rank.saturating_sub(1),
    };
    let db = c.op(
        Op::Sum {
            axes: Some(
                (0..rank)
                    .filter(|&a| a != channels)
                    .map(|a| a as i64)
                    .collect(),
            ),
            keep_dims: false,
        },
        &[dy(g)],
    )?;
    Ok(vec![Some(dy(g)), Some(db)])
}

// dx = y * (dy - sum(dy * y, last axis))
pub(super) fn softmax(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
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

// dx = dy - exp(y) * sum(dy, last axis)
pub(super) fn log_softmax(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let s = c.op(
        Op::Sum {
            axes: Some(vec![-1]),
            keep_dims: true,
        },
        &[dy(g)],
    )?;
    let p = c.op(Op::Exp, &[n.y()])?;
    let ps = c.mul(p, s)?;
    Ok(vec![Some(c.sub(dy(g), ps)?)])
}

// loss = -sum(labels * log_softmax(logits), last axis):
// dlogits = (softmax(logits) * sum(labels, last axis) - labels) * dy[..., None]
// (TensorFlow's (softmax - labels) * dy where labels sum to 1, exact for any labels);
// dlabels = -log_softmax(logits) * dy[..., None] (TensorFlow's registered gradient)
pub(super) fn softmax_cross_entropy(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let d = c.op(Op::ExpandDims { axes: vec![-1] }, &[dy(g)])?;
    let p = c.op(Op::Softmax, &[n.x(0)])?;
    let mass = c.op(
        Op::Sum {
            axes: Some(vec![-1]),
            keep_dims: true,
        },
        &[n.x(1)],
    )?;
    let pm = c.mul(p, mass)?;
    let diff = c.sub(pm, n.x(1))?;
    let dlogits = c.mul(diff, d)?;
    let log_p = c.op(Op::LogSoftmax, &[n.x(0)])?;
    let neg = c.op(Op::Neg, &[log_p])?;
    let dlabels = c.mul(neg, d)?;
    Ok(vec![Some(dlogits), Some(dlabels)])
}
