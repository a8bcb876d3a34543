//! Gradients of neural-network ops.

use super::{dy, Ctx, GradFn, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) fn rule(op: &Op) -> Option<GradFn> {
    Some(match op {
        Op::Relu => relu,
        Op::ReluGrad => relu_grad,
        Op::BiasAdd => bias_add,
        Op::Softmax => softmax,
        Op::SoftmaxCrossEntropyWithLogits => softmax_cross_entropy,
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
