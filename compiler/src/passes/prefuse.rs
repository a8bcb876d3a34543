//! Fusion before differentiation. A composite that an op computes is replaced
//! by that op while the forward graph is still undifferentiated, so the
//! backward graph uses the op's own gradient instead of the composite's chain:
//!
//! - `sigmoid`: `1 / (1 + exp(-x))` becomes `Sigmoid(x)`, whose gradient is
//!   `y (1 - y) dy`.
//! - `softmax_cross_entropy`: `-sum(t * log(softmax(z)), last axis)` becomes
//!   `SoftmaxCrossEntropyWithLogits(z, t)`, whose gradient is `(softmax(z) - t) dy`
//!   (for labels that are distributions, as TensorFlow's).
//! - `fused_batch_norm`: `Moments` over all axes but the channels followed by
//!   `BatchNormalization` with those statistics becomes `FusedBatchNorm` in
//!   training form, its gradient the `FusedBatchNormGrad` kernel; other uses of
//!   the moments (moving averages) read its batch mean and population variance.
//!
//! Each is the same function in exact arithmetic; rounding differs at the last
//! bits (the optimizer's equivalence tests bound it), and at an infinite input
//! the fused gradient is the limit where the composite's chain is NaN. A pattern fuses only
//! where its intermediate tensors have no other use and are neither named nor
//! pinned (`Graph::pinned`: a gradient request, a fetch or a feed names
//! them), so every tensor anybody names keeps its value and its gradient. The
//! pattern's root keeps its name: rewritten in place, or (batch norm) its
//! fused op takes the name.

use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Graph, Role, TensorRef};
use gradc_runtime::op::DataFormat;
use gradc_runtime::{Dim, Literal, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;

/// `t`'s only use, if it has exactly one and is not named.
fn only_use(g: &Graph, t: TensorRef) -> Option<NodeIndex> {
    g.sole_user(t)
        .filter(|_| !g.is_named(t) && !g.is_pinned(t.node) && !g.has_control(t.node))
}

/// A constant 1 that nobody names: a fed one is not known to be 1, and a
/// request's `wrt` needs it on the path.
fn is_one(g: &Graph, t: TensorRef) -> bool {
    matches!(&g.node(t.node).op, Op::Const(Literal::Scalar(v)) if *v == 1.0) && !g.is_pinned(t.node)
}

/// The single input of `t`'s node if that node is `op` (compared by name) and
/// `t` is used only by `user`.
fn chain(g: &Graph, t: TensorRef, op: &str, user: NodeIndex) -> Option<TensorRef> {
    (t.output == 0 && g.node(t.node).op.name() == op && only_use(g, t) == Some(user))
        .then(|| g.inputs(t.node)[0])
}

/// `Sigmoid(x)` for `n` = 1 / (1 + exp(-x)).
fn sigmoid(g: &Graph, n: NodeIndex) -> Option<(Op, Vec<TensorRef>, Vec<NodeIndex>)> {
    let [one, denom] = g.inputs(n)[..] else {
        return None;
    };
    if !matches!(g.node(n).op, Op::Div)
        || !is_one(g, one)
        || !matches!(g.node(denom.node).op, Op::Add)
    {
        return None;
    }
    if only_use(g, denom) != Some(n) {
        return None;
    }
    let [a, b] = g.inputs(denom.node)[..] else {
        return None;
    };
    let e = if is_one(g, a) {
        b
    } else if is_one(g, b) {
        a
    } else {
        return None;
    };
    let neg = chain(g, e, "Exp", denom.node)?;
    let x = chain(g, neg, "Neg", e.node)?;
    (g.ty(x) == g.ty(TensorRef::of(n)))
        .then(|| (Op::Sigmoid, vec![x], vec![denom.node, e.node, neg.node]))
}

/// `SoftmaxCrossEntropyWithLogits(z, t)` for `n` = -sum(t * log(softmax(z)), last axis).
fn softmax_cross_entropy(g: &Graph, n: NodeIndex) -> Option<(Op, Vec<TensorRef>, Vec<NodeIndex>)> {
    if !matches!(g.node(n).op, Op::Neg) {
        return None;
    }
    let s = g.inputs(n)[0];
    let Op::Sum {
        axes: Some(axes),
        keep_dims: false,
    } = &g.node(s.node).op
    else {
        return None;
    };
    let rank = g.ty(g.inputs(s.node)[0]).shape.rank() as i64;
    if axes.as_slice() != [-1] && axes.as_slice() != [rank - 1] || only_use(g, s) != Some(n) {
        return None;
    }
    let p = g.inputs(s.node)[0];
    if !matches!(g.node(p.node).op, Op::Mul) || only_use(g, p) != Some(s.node) {
        return None;
    }
    let [a, b] = g.inputs(p.node)[..] else {
        return None;
    };
    let (labels, log) = if g.node(b.node).op.name() == "Log" {
        (a, b)
    } else {
        (b, a)
    };
    let softmax = chain(g, log, "Log", p.node)?;
    let logits = chain(g, softmax, "Softmax", log.node)?;
    (g.ty(labels) == g.ty(logits)).then(|| {
        (
            Op::SoftmaxCrossEntropyWithLogits,
            vec![logits, labels],
            vec![s.node, p.node, log.node, softmax.node],
        )
    })
}

/// A [C] parameter behind an optional NCHW reshape to [1, -1, 1, 1].
fn param(g: &Graph, t: TensorRef, nchw: bool) -> Option<TensorRef> {
    if !nchw {
        return (g.ty(t).shape.rank() == 1).then_some(t);
    }
    match &g.node(t.node).op {
        Op::Reshape { shape } if shape.as_slice() == [1, -1, 1, 1] && t.output == 0 => {
            let p = g.inputs(t.node)[0];
            (g.ty(p).shape.rank() == 1).then_some(p)
        }
        _ => None,
    }
}

/// Replaces BatchNormalization `n` over its input's batch moments by a FusedBatchNorm.
fn fused_batch_norm(g: &mut Graph, n: NodeIndex) -> Result<bool> {
    let Op::BatchNormalization {
        variance_epsilon,
        offset,
        scale,
    } = g.node(n).op
    else {
        return Ok(false);
    };
    let ins = g.inputs(n);
    let x = ins[0];
    let rank = g.ty(x).shape.rank();
    let nchw = rank == 4 && !matches!(g.node(ins[1].node).op, Op::Moments { .. });
    let (Some(mean), Some(var)) = (param(g, ins[1], nchw), param(g, ins[2], nchw)) else {
        return Ok(false);
    };
    let mv = mean.node;
    let format = if nchw {
        DataFormat::NCHW
    } else {
        DataFormat::NHWC
    };
    let channel = format.channel_axis(rank);
    let want: Vec<i64> = (0..rank as i64).filter(|&a| a != channel as i64).collect();
    let moments_ok = matches!(&g.node(mv).op, Op::Moments { axes, keep_dims: false }
        if gradc_runtime::shape::normalize_axes(axes, rank).ok() == Some(want.iter().map(|&a| a as usize).collect()));
    if !(rank == 2 || rank == 4)
        || !moments_ok
        || mean.output != 0
        || var
            != (TensorRef {
                node: mv,
                output: 1,
            })
        || g.inputs(mv)[0] != x
        || !matches!(g.ty(x).shape.0[channel], Dim::Known(_))
        || g.is_pinned(mv)
        // A pinned reshape between a parameter and the op would lose its gradient.
        || ins[1..]
            .iter()
            .any(|&t| g.is_pinned(t.node) && param(g, t, nchw) != Some(t))
    {
        return Ok(false);
    }
    let offset_in = offset.then(|| param(g, ins[3], nchw)).flatten();
    let scale_in = scale
        .then(|| param(g, ins[3 + usize::from(offset)], nchw))
        .flatten();
    if offset != offset_in.is_some() || scale != scale_in.is_some() {
        return Ok(false);
    }
    let name = g.node(n).name.clone();
    let dtype = g.ty(x).dtype;
    let Dim::Known(channels) = g.ty(x).shape.0[channel] else {
        return Ok(false);
    };
    // Stand-ins for an absent scale or offset: constants, not functions of the
    // moments (which are about to read from the fused node).
    let constant = |g: &mut Graph, what: &str, v: f64| -> Result<TensorRef> {
        let lit = Literal::List(vec![Literal::Scalar(v); channels]);
        let n = g.unique_name(format!("{name}/fused/{what}"));
        g.add(n, Op::Const(lit), dtype, &[], Role::Forward, None)
            .map(TensorRef::of)
    };
    let scale_t = match scale_in {
        Some(s) => s,
        None => constant(g, "ones", 1.0)?,
    };
    let offset_t = match offset_in {
        Some(o) => o,
        None => constant(g, "zeros", 0.0)?,
    };
    // Training form ignores its mean and variance inputs; the batch's own are wired for shape.
    let op = Op::FusedBatchNorm {
        epsilon: variance_epsilon,
        data_format: format,
        is_training: true,
    };
    let fused_name = g.unique_name(format!("{name}/FusedBatchNorm"));
    let f = g.add(
        fused_name,
        op,
        dtype,
        &[x, scale_t, offset_t, scale_t, scale_t],
        Role::Forward,
        None,
    )?;
    let out = |k| TensorRef { node: f, output: k };
    g.replace_uses(TensorRef::of(n), out(0));
    g.replace_uses(mean, out(1));
    g.replace_uses(var, out(4));
    let pinned = g.is_pinned(n);
    g.remove(n);
    if pinned {
        // A fetch or a request names the root: its value is the fused op's first output.
        g.rename(f, name)?;
    }
    for t in [ins[1], ins[2]] {
        if t.node != mv && g.uses(t).is_empty() && !g.is_named(t) {
            g.remove(t.node);
        }
    }
    if g.uses(mean).is_empty() && g.uses(var).is_empty() {
        g.remove(mv);
    }
    Ok(true)
}

/// Runs the patterns over the forward nodes that nothing has differentiated
/// yet; counts what fired into `fired`.
pub fn run(g: &mut Graph, fired: &mut BTreeMap<&'static str, usize>) -> Result<()> {
    for n in g.topo_order()? {
        if !g.g.contains_node(n)
            || g.node(n).role != Role::Forward
            || g.has_control(n)
            || g.is_fixed_root(n)
        {
            continue;
        }
        if fused_batch_norm(g, n)? {
            *fired.entry("fused_batch_norm").or_default() += 1;
            continue;
        }
        let found = sigmoid(g, n)
            .map(|f| ("sigmoid", f))
            .or_else(|| softmax_cross_entropy(g, n).map(|f| ("softmax_cross_entropy", f)));
        let Some((rule, (op, inputs, dead))) = found else {
            continue;
        };
        g.rewrite(n, op, &inputs)?;
        for d in dead {
            if g.g.contains_node(d)
                && (0..g.node(d).outputs.len())
                    .all(|k| g.uses(TensorRef { node: d, output: k }).is_empty())
            {
                g.remove(d);
            }
        }
        *fired.entry(rule).or_default() += 1;
    }
    // As the pipeline does after each pass (in debug builds and tests).
    if cfg!(debug_assertions) {
        super::verify(g).map_err(|e| {
            CompileError::new(
                ErrorKind::Internal,
                format!("graph invariant broken after pass prefuse: {e}"),
            )
        })?;
    }
    Ok(())
}
