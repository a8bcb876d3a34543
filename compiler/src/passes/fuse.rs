//! Pattern fusion, where the intermediate tensors are used by the next op of
//! the pattern alone and are not named (outputs, gradients, hooks):
//!
//! - `dense`: MatMul, BiasAdd and an optional activation (Relu, Sigmoid, Tanh)
//!   become one Dense node, which writes the product and then adds the bias and
//!   applies the activation in one pass over the output: the same arithmetic,
//!   operation for operation, so bit-identical.
//! - `conv_bias`, `conv_bias_activation`: the same for Conv2D, a BiasAdd
//!   along its channels (the same data format) and an optional activation:
//!   one FusedConv2D, which applies the bias and the activation to each chunk
//!   of output rows after its product (same arithmetic).
//! - `dense_activation`: a linear Dense followed by its only user, an
//!   activation, takes the activation in (same arithmetic).
//! - `fold_batch_norm`: inference-form batch norm of a MatMul or a Conv2D by
//!   statistics that are variables or constants (`FusedBatchNorm` with
//!   `is_training: false` in the convolution's data format, or
//!   `BatchNormalization` of rank-1 parameters, channels last):
//!   `BN(a w) = a (w inv) + (offset - mean inv)` with `inv = scale rsqrt(var + eps)`,
//!   `inv` scaling the last axis of the weights (a MatMul's columns, the
//!   filter's output channels). The MatMul becomes a Dense, the convolution a
//!   Conv2D and a BiasAdd that the rule above fuses. The folded weights are
//!   computed by ops each run (the statistics are variables), on `w`'s shape
//!   instead of the batch's. Equal in exact arithmetic; the rounding differs.
//! - `bias_activation_grad`, the dense pattern's backward form: the sum over
//!   the leading axes (BiasAdd's gradient) of dz = act'(y)·dy as the relu,
//!   sigmoid or tanh gradient rule builds it (the nodes of the derivative in
//!   the activation's row of the elementwise table: ReluGrad(dy, y),
//!   dy·(y·(1 − y)), dy·(1 − y²)) becomes one ActivationBiasGrad, which writes dz and the
//!   bias gradient in one pass; dz's other users (the products of dW and dx)
//!   read its first output (a ReluGrad, which reads what the fused op
//!   reads, becomes it in place and keeps its name). The same arithmetic,
//!   operation for operation, and the sum row after row as Sum adds:
//!   bit-identical.

use super::{is_const, producer, Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::op::{Activation, BinaryFn, DataFormat, FusedStep, UnaryFn};
use gradc_runtime::shape::normalize_axes;
use gradc_runtime::Op;
use petgraph::stable_graph::NodeIndex;

#[derive(Default)]
pub struct Fuse {
    fired: Fired,
}

/// `t`'s only use, if it has exactly one, is not named and has no control edges.
fn only_use(g: &Graph, t: TensorRef) -> Option<NodeIndex> {
    g.sole_user(t)
        .filter(|_| !g.is_named(t) && !g.has_control(t.node))
}

/// `n`'s only user, if it is an activation Dense can apply, with that activation.
fn activation_user(g: &Graph, n: NodeIndex) -> Option<(NodeIndex, Activation)> {
    let m = only_use(g, TensorRef::of(n))?;
    let activation = Activation::of(&g.node(m).op)?;
    (!g.has_control(m)).then_some((m, activation))
}

/// `(activation, dy, y)` if `dz` is act'(y)·dy as the activation's gradient
/// rule builds it: the nodes of the derivative its row of the elementwise
/// table records (operands of functions that commute in either order).
fn activation_grad_of(g: &Graph, dz: TensorRef) -> Option<(Activation, TensorRef, TensorRef)> {
    Activation::FUNCTIONS.into_iter().find_map(|activation| {
        let d = activation.unary()?.derivative()?;
        let mut bound = [None; 3];
        matches_program(g, &d.steps, d.outputs[0]?, dz, &mut bound).then_some(())?;
        // Inputs (dy, x, y): an activation's derivative does not read x.
        match bound {
            [Some(dy), None, Some(y)] => Some((activation, dy, y)),
            _ => None,
        }
    })
}

/// Whether register `r` of `steps` computes `t`, with the program's inputs
/// bound to tensors as `bound` says (unbound ones are bound on the way).
fn matches_program(
    g: &Graph,
    steps: &[FusedStep],
    r: usize,
    t: TensorRef,
    bound: &mut [Option<TensorRef>],
) -> bool {
    let inputs_of = |op_matches: &dyn Fn(&Op) -> bool| {
        producer(g, t)
            .filter(|(_, op)| op_matches(op))
            .map(|(n, _)| g.inputs(n))
    };
    match steps.get(r) {
        Some(&FusedStep::Input(k)) => match bound.get(k) {
            Some(Some(b)) => *b == t,
            Some(None) => {
                bound[k] = Some(t);
                true
            }
            None => false,
        },
        Some(&FusedStep::Const(v)) => is_const(g, t, v),
        Some(&FusedStep::Unary(f, a)) => {
            match inputs_of(&|op| UnaryFn::of(op) == Some(f)).as_deref() {
                Some(&[x]) => matches_program(g, steps, a, x, bound),
                _ => false,
            }
        }
        Some(&FusedStep::Binary(f, a, b)) => {
            let Some(&[x0, x1]) = inputs_of(&|op| BinaryFn::of(op) == Some(f)).as_deref() else {
                return false;
            };
            let orders: &[(TensorRef, TensorRef)] = if f.commutes() {
                &[(x0, x1), (x1, x0)]
            } else {
                &[(x0, x1)]
            };
            orders.iter().any(|&(u, v)| {
                let mut tried = bound.to_vec();
                let ok = matches_program(g, steps, a, u, &mut tried)
                    && matches_program(g, steps, b, v, &mut tried);
                if ok {
                    bound.copy_from_slice(&tried);
                }
                ok
            })
        }
        None => false,
    }
}

/// Fuses Sum node `n` with the activation gradient it sums (see the module
/// docs); true if it did.
fn bias_activation_grad(g: &mut Graph, n: NodeIndex) -> Result<bool> {
    let Op::Sum {
        axes: Some(axes),
        keep_dims: false,
    } = &g.node(n).op
    else {
        return Ok(false);
    };
    let [dz] = g.inputs(n)[..] else {
        return Ok(false);
    };
    let rank = g.ty(dz).shape.rank();
    let leading: Vec<usize> = (0..rank.saturating_sub(1)).collect();
    if rank < 2 || normalize_axes(axes, rank).ok() != Some(leading) {
        return Ok(false);
    }
    let Some((activation, dy, y)) = activation_grad_of(g, dz) else {
        return Ok(false);
    };
    if g.ty(dy) != g.ty(dz) || g.ty(y) != g.ty(dz) {
        return Ok(false);
    }
    // ReluGrad(dy, y) already reads what ActivationBiasGrad{Relu} reads and
    // makes its first output: it becomes that op in place (its users read
    // the same dz, it keeps its name), and the Sum's users read its db.
    if dz.output == 0
        && activation == Activation::Relu
        && matches!(g.node(dz.node).op, Op::ReluGrad)
        && g.inputs(dz.node) == [dy, y]
    {
        g.extend_op(dz.node, Op::ActivationBiasGrad { activation })?;
        g.replace_uses(
            TensorRef::of(n),
            TensorRef {
                node: dz.node,
                output: 1,
            },
        );
        return Ok(true);
    }
    let node = g.node(n);
    let (name, dtype, role) = (
        g.unique_name(format!("{}/ActivationBiasGrad", node.name)),
        node.dtype,
        node.role,
    );
    let fused = g.add(
        name,
        Op::ActivationBiasGrad { activation },
        dtype,
        &[dy, y],
        role,
        None,
    )?;
    // Where dz was made in creation order, so the schedule and the printed
    // graph keep their order (seq only breaks ties among ready nodes).
    g.set_seq(fused, g.node(dz.node).seq());
    g.replace_uses(
        dz,
        TensorRef {
            node: fused,
            output: 0,
        },
    );
    g.replace_uses(
        TensorRef::of(n),
        TensorRef {
            node: fused,
            output: 1,
        },
    );
    Ok(true)
}

/// A tensor fixed during a run: a variable or a constant.
fn fixed(g: &Graph, t: TensorRef) -> bool {
    matches!(g.node(t.node).op, Op::Variable { .. } | Op::Const(_))
}

/// Folds inference-form batch norm `n` of a MatMul or a Conv2D into its
/// weights and a bias; true if it did.
fn fold_batch_norm(g: &mut Graph, n: NodeIndex) -> Result<bool> {
    if !matches!(
        g.node(n).op,
        Op::FusedBatchNorm { .. } | Op::BatchNormalization { .. }
    ) {
        return Ok(false);
    }
    let ins = g.inputs(n);
    // (x, mean, variance, offset, scale, epsilon) of an inference-form normalization.
    let (x, mean, var, offset, scale, eps, format) = match g.node(n).op {
        Op::FusedBatchNorm {
            epsilon,
            data_format,
            is_training: false,
        } if (1..5).all(|k| {
            g.uses(TensorRef { node: n, output: k }).is_empty()
                && !g.is_named(TensorRef { node: n, output: k })
        }) =>
        {
            let (x, s, o, m, v) = (ins[0], ins[1], ins[2], ins[3], ins[4]);
            (x, m, v, Some(o), Some(s), epsilon, data_format)
        }
        Op::BatchNormalization {
            variance_epsilon,
            offset,
            scale,
        } => {
            let off = offset.then(|| ins[3]);
            let sc = scale.then(|| ins[3 + usize::from(offset)]);
            // Rank-1 statistics broadcast along the last axis.
            (
                ins[0],
                ins[1],
                ins[2],
                off,
                sc,
                variance_epsilon,
                DataFormat::NHWC,
            )
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
    // The product the statistics fold into: a MatMul's columns or a
    // convolution's output channels, both the last axis of its weights.
    let rank = g.ty(x).shape.rank();
    let folds = match &g.node(x.node).op {
        Op::MatMul {
            transpose_b: false, ..
        } => rank == 2 && format == DataFormat::NHWC,
        Op::Conv2D { data_format, .. } => rank == 4 && *data_format == format,
        _ => false,
    };
    if !folds || x.output != 0 || only_use(g, x) != Some(n) {
        return Ok(false);
    }
    let product = g.node(x.node).op.clone();
    let [a, w] = g.inputs(x.node)[..] else {
        return Ok(false);
    };
    let name = g.node(n).name.clone();
    let mut c = crate::builder::Ctx::new(g, format!("{name}/folded"), crate::ir::Role::Forward);
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
    let dtype = g.ty(a).dtype;
    let add = |g: &mut Graph, op: Op, inputs: &[TensorRef]| {
        let name = g.unique_name(format!("{name}/{}", op.name()));
        g.add(name, op, dtype, inputs, crate::ir::Role::Forward, None)
    };
    let y = match product {
        Op::MatMul { transpose_a, .. } => {
            let dense = Op::Dense {
                transpose_a,
                transpose_b: false,
                activation: Activation::Linear,
            };
            add(g, dense, &[a, w_folded, bias])?
        }
        // Conv2D and BiasAdd, which the fusion of a product, a bias and an
        // activation then makes one FusedConv2D.
        conv => {
            let z = add(g, conv, &[a, w_folded])?;
            let bias_add = Op::BiasAdd {
                data_format: format,
            };
            add(g, bias_add, &[TensorRef::of(z), bias])?
        }
    };
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
            if !g.g.contains_node(n) || g.has_control(n) {
                continue;
            }
            if fold_batch_norm(g, n)? {
                self.fired.hit("fold_batch_norm");
                changed = true;
                continue;
            }
            if bias_activation_grad(g, n)? {
                self.fired.hit("bias_activation_grad");
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
            let Op::BiasAdd { data_format } = g.node(n).op else {
                continue;
            };
            let [product, bias] = g.inputs(n)[..] else {
                continue;
            };
            if product.output != 0 || only_use(g, product) != Some(n) {
                continue;
            }
            let rank = g.ty(product).shape.rank();
            let along_last = data_format.channel_axis(rank) + 1 == rank;
            // The product with the bias and activation as its epilogue.
            let fused = |activation| match &g.node(product.node).op {
                &Op::MatMul {
                    transpose_a,
                    transpose_b,
                } if along_last => Some(Op::Dense {
                    transpose_a,
                    transpose_b,
                    activation,
                }),
                Op::Conv2D {
                    strides,
                    padding,
                    explicit_paddings,
                    dilations,
                    data_format: conv_format,
                } if *conv_format == data_format => Some(Op::FusedConv2D {
                    strides: strides.clone(),
                    padding: *padding,
                    explicit_paddings: explicit_paddings.clone(),
                    dilations: dilations.clone(),
                    data_format,
                    activation,
                }),
                _ => None,
            };
            let Some(linear) = fused(Activation::Linear) else {
                continue;
            };
            let [a, w] = g.inputs(product.node)[..] else {
                continue;
            };
            // Fold the activation too when the BiasAdd feeds only it.
            let (target, op) = match activation_user(g, n) {
                Some((m, activation)) => (m, fused(activation).unwrap_or(linear)),
                None => (n, linear),
            };
            let rule = match (&op, target == n) {
                (Op::Dense { .. }, true) => "dense",
                (Op::Dense { .. }, false) => "dense_with_activation",
                (_, true) => "conv_bias",
                (_, false) => "conv_bias_activation",
            };
            g.rewrite(target, op, &[a, w, bias])?;
            self.fired.hit(rule);
            changed = true;
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
