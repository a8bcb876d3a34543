//! Pattern fusion, where the intermediate tensors are used by the next op of
//! the pattern alone and are not named (outputs, gradients, hooks):
//!
//! - `dense`: MatMul, BiasAdd and an optional activation (Relu, Sigmoid, Tanh)
//!   become one Dense node, which writes the product and then adds the bias and
//!   applies the activation in one pass over the output: the same arithmetic,
//!   operation for operation, so bit-identical.
//! - `dense_activation`: a linear Dense followed by its only user, an
//!   activation, takes the activation in (same arithmetic).
//! - `fold_batch_norm`: inference-form batch norm of a MatMul by statistics
//!   that are variables or constants (`FusedBatchNorm` with `is_training:
//!   false`, or `BatchNormalization` of rank-1 parameters), NHWC:
//!   `BN(a w) = a (w inv) + (offset - mean inv)` with `inv = scale rsqrt(var + eps)`.
//!   The folded weights are computed by ops each run (the statistics are
//!   variables), on `w`'s shape instead of the batch's. Equal in exact
//!   arithmetic; the rounding differs.

use super::{has_control, Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::op::Activation;
use gradc_runtime::Op;
use petgraph::stable_graph::NodeIndex;

#[derive(Default)]
pub struct Fuse {
    fired: Fired,
}

/// `t`'s only use, if it has exactly one, is not named and has no control edges.
fn only_use(g: &Graph, t: TensorRef) -> Option<NodeIndex> {
    match g.uses(t).as_slice() {
        [(n, _)] if !g.is_named(t) && !has_control(g, t.node) => Some(*n),
        _ => None,
    }
}

/// `n`'s only user, if it is an activation Dense can apply, with that activation.
fn activation_user(g: &Graph, n: NodeIndex) -> Option<(NodeIndex, Activation)> {
    let m = only_use(g, TensorRef::of(n))?;
    let activation = match g.node(m).op {
        Op::Relu => Activation::Relu,
        Op::Sigmoid => Activation::Sigmoid,
        Op::Tanh => Activation::Tanh,
        _ => return None,
    };
    (!has_control(g, m)).then_some((m, activation))
}

/// A tensor fixed during a run: a variable or a constant.
fn fixed(g: &Graph, t: TensorRef) -> bool {
    matches!(g.node(t.node).op, Op::Variable { .. } | Op::Const(_))
}

/// Folds inference-form batch norm `n` of a MatMul into a Dense; true if it did.
fn fold_batch_norm(g: &mut Graph, n: NodeIndex) -> Result<bool> {
    let ins = g.inputs(n);
    // (x, mean, variance, offset, scale, epsilon) of an inference-form normalization.
    let (x, mean, var, offset, scale, eps) = match g.node(n).op {
        Op::FusedBatchNorm {
            epsilon,
            data_format,
            is_training: false,
        } if data_format == gradc_runtime::op::DataFormat::NHWC
            && (1..5).all(|k| {
                g.uses(TensorRef { node: n, output: k }).is_empty()
                    && !g.is_named(TensorRef { node: n, output: k })
            }) =>
        {
            (ins[0], ins[3], ins[4], Some(ins[2]), Some(ins[1]), epsilon)
        }
        Op::BatchNormalization {
            variance_epsilon,
            offset,
            scale,
        } => {
            let off = offset.then(|| ins[3]);
            let sc = scale.then(|| ins[3 + usize::from(offset)]);
            (ins[0], ins[1], ins[2], off, sc, variance_epsilon)
        }
        _ => return Ok(false),
    };
    let params = [Some(mean), Some(var), offset, scale];
    if !params
        .iter()
        .flatten()
        .all(|&p| fixed(g, p) && g.ty(p).shape.rank() == 1)
    {
        return Ok(false);
    }
    let Op::MatMul {
        transpose_a,
        transpose_b: false,
    } = g.node(x.node).op
    else {
        return Ok(false);
    };
    if x.output != 0 || only_use(g, x) != Some(n) || g.ty(x).shape.rank() != 2 {
        return Ok(false);
    }
    let [a, w] = g.inputs(x.node)[..] else {
        return Ok(false);
    };
    let name = g.node(n).name.clone();
    let mut c = crate::grad::Ctx::new(g, format!("{name}/folded"), crate::ir::Role::Forward);
    let e = c.scalar(eps, var)?;
    let v = c.add(var, e)?;
    let r = c.op(Op::Rsqrt, &[v])?;
    let inv = match scale {
        Some(s) => c.mul(s, r)?,
        None => r,
    };
    let w_folded = c.mul(w, inv)?;
    let shift = c.mul(mean, inv)?;
    let bias = match offset {
        Some(o) => c.sub(o, shift)?,
        None => c.neg(shift)?,
    };
    let dense = Op::Dense {
        transpose_a,
        transpose_b: false,
        activation: Activation::Linear,
    };
    let dtype = g.ty(a).dtype;
    let y = g.add(
        g.unique_name(&format!("{name}/Dense")),
        dense,
        dtype,
        &[a, w_folded, bias],
        crate::ir::Role::Forward,
        None,
    )?;
    g.replace_uses(TensorRef::of(n), TensorRef::of(y));
    Ok(true)
}

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
            if !g.g.contains_node(n) || has_control(g, n) {
                continue;
            }
            if fold_batch_norm(g, n)? {
                self.fired.hit("fold_batch_norm");
                changed = true;
                continue;
            }
            if let Op::Dense {
                transpose_a,
                transpose_b,
                activation: Activation::Linear,
            } = g.node(n).op
            {
                if let Some((m, activation)) = activation_user(g, n) {
                    let inputs = g.inputs(n);
                    g.rewrite(
                        m,
                        Op::Dense {
                            transpose_a,
                            transpose_b,
                            activation,
                        },
                        &inputs,
                    )?;
                    self.fired.hit("dense_activation");
                    changed = true;
                    continue;
                }
            }
            if !g.g.contains_node(n) || !matches!(g.node(n).op, Op::BiasAdd) || has_control(g, n) {
                continue;
            }
            let [product, bias] = g.inputs(n)[..] else {
                continue;
            };
            let Op::MatMul {
                transpose_a,
                transpose_b,
            } = g.node(product.node).op
            else {
                continue;
            };
            if product.output != 0 || only_use(g, product) != Some(n) {
                continue;
            }
            let [a, w] = g.inputs(product.node)[..] else {
                continue;
            };
            // Fold the activation too when the BiasAdd feeds only it.
            let act = activation_user(g, n);
            let (target, activation, rule) = match act {
                Some((m, activation)) => (m, activation, "dense_with_activation"),
                None => (n, Activation::Linear, "dense"),
            };
            g.rewrite(
                target,
                Op::Dense {
                    transpose_a,
                    transpose_b,
                    activation,
                },
                &[a, w, bias],
            )?;
            self.fired.hit(rule);
            changed = true;
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
