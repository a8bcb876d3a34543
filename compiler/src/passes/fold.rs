//! Constant folding: a pure node whose inputs are all constants is evaluated
//! now, with the runtime's own kernels (so the value is bit-identical to
//! running it), and becomes a constant under its own name. A shape-only node
//! (ReducedSize, ZerosLike, OnesLike) whose input shape is fully known folds
//! the same way. Results above `MAX_ELEMENTS` stay computed at run time, so
//! programs do not grow large literals.

use super::{Fired, Pass};
use crate::error::Result;
use crate::ir::Graph;
use gradc_runtime::{kernels, Literal, Op, Tensor, TensorType};
use petgraph::stable_graph::NodeIndex;

/// The largest result folded into a literal.
pub const MAX_ELEMENTS: usize = 4096;

#[derive(Default)]
pub struct Fold {
    fired: Fired,
}

/// Whether the op's value depends only on its inputs (no state, no feed).
fn pure(op: &Op) -> bool {
    !op.is_stateful()
        && !op.is_collective()
        && !matches!(
            op,
            Op::Placeholder { .. } | Op::Variable { .. } | Op::NoOp | Op::Const(_)
        )
}

fn literal_tensor(lit: &Literal, ty: &TensorType) -> Option<Tensor> {
    let (shape, data) = lit.to_flat().ok()?;
    Tensor::from_f64(ty.dtype, &shape, data).ok()
}

impl Fold {
    /// The folded value of `n`, if it can be folded.
    fn value(&self, g: &Graph, n: NodeIndex) -> Option<(Tensor, &'static str)> {
        let node = g.node(n);
        if !pure(&node.op) || g.has_control(n) || node.outputs.len() != 1 {
            return None;
        }
        let shape_only = matches!(
            node.op,
            Op::ReducedSize { .. } | Op::ZerosLike | Op::OnesLike
        );
        // Most nodes fail here, on their edges alone: read nothing else first.
        if !shape_only
            && !g
                .data_sources(n)
                .all(|m| matches!(g.node(m).op, Op::Const(_)))
        {
            return None;
        }
        let out = &node.outputs[0];
        // Bounded with empty axes counted as 1 too: a literal nests a list
        // per index of every axis but the last, even when it holds nothing.
        let out_dims = out.shape.concrete()?;
        let nested = out_dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))?;
        if nested > MAX_ELEMENTS {
            return None;
        }
        let inputs = g.inputs(n);
        if shape_only {
            let x = g.ty(*inputs.first()?);
            let dims = x.shape.concrete()?;
            if let Op::ReducedSize { axes } = &node.op {
                // The count alone (as the kernel counts it), without a tensor of x's shape.
                let mut picked = match axes {
                    Some(a) => gradc_runtime::shape::normalize_axes(a, dims.len()).ok()?,
                    None => (0..dims.len()).collect(),
                };
                picked.sort_unstable();
                picked.dedup();
                let count = picked
                    .iter()
                    .try_fold(1usize, |c, &a| c.checked_mul(dims[a]))?;
                let v = Tensor::scalar(out.dtype, count as f64);
                return Some((v, "fold_shape_only"));
            }
            // ZerosLike and OnesLike: x has the output's shape, bounded above.
            let zeros = Tensor::zeros(x.dtype, &dims).ok()?;
            let v = kernels::eval(&node.op, &[&zeros], &node.outputs).ok()?;
            return v.into_iter().next().map(|t| (t, "fold_shape_only"));
        }
        let values: Vec<Tensor> = inputs
            .iter()
            .map(|&t| match &g.node(t.node).op {
                Op::Const(lit) => literal_tensor(lit, g.ty(t)),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let refs: Vec<&Tensor> = values.iter().collect();
        let v = kernels::eval(&node.op, &refs, &node.outputs).ok()?;
        v.into_iter().next().map(|t| (t, "fold_constant_inputs"))
    }
}

impl Pass for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let order = g.topo_order()?;
        // Whether a node changes state or reads what something that does
        // computes: a shape-only node folded over it keeps a control input
        // from it, so a run that needed it still runs the change.
        let mut after_state = vec![false; g.node_bound()];
        for &n in &order {
            after_state[n.index()] = g.node(n).op.is_stateful()
                || g.g
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                    .any(|m| after_state[m.index()]);
        }
        for n in order {
            let Some((value, rule)) = self.value(g, n) else {
                continue;
            };
            let Some(lit) = Literal::from_flat(value.shape(), &value.to_f64_vec()) else {
                continue;
            };
            // A literal holds no axis after an empty one ([0, 5] reads back
            // as [0]): such a value stays computed.
            if lit.to_flat().map(|(shape, _)| shape).as_deref() != Ok(value.shape()) {
                continue;
            }
            let stateful_inputs: Vec<NodeIndex> = g
                .data_sources(n)
                .filter(|m| after_state[m.index()])
                .collect();
            // A constant's dtype is its node's: make it the folded value's.
            g.g[n].dtype = value.dtype();
            g.rewrite(n, Op::Const(lit), &[])?;
            for m in stateful_inputs {
                g.add_control(m, n);
            }
            self.fired.hit(rule);
            changed = true;
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
