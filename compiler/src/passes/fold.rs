//! Constant folding: a pure node whose inputs are all constants is evaluated
//! now, with the runtime's own kernels (so the value is bit-identical to
//! running it), and becomes a constant under its own name. A shape-only node
//! (ReducedSize, ZerosLike, OnesLike) whose input shape is fully known folds
//! the same way. Results above `MAX_ELEMENTS` stay computed at run time, so
//! programs do not grow large literals.

use super::{Fired, Pass};
use crate::error::{CompileError, ErrorKind, Result};
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
        && !op.is_layer()
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
        if out.shape.size()? > MAX_ELEMENTS {
            return None;
        }
        let inputs = g.inputs(n);
        if shape_only {
            let x = g.ty(*inputs.first()?);
            x.shape.concrete()?;
            let zeros = Tensor::zeros(x.dtype, &x.shape.concrete()?).ok()?;
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
        for n in g.topo_order()? {
            let Some((value, rule)) = self.value(g, n) else {
                continue;
            };
            let lit = Literal::from_flat(value.shape(), &value.to_f64_vec()).ok_or_else(|| {
                CompileError::new(ErrorKind::Internal, "a folded value does not fit its shape")
            })?;
            // A constant's dtype is its node's: make it the folded value's.
            g.g[n].dtype = value.dtype();
            g.rewrite(n, Op::Const(lit), &[])?;
            self.fired.hit(rule);
            changed = true;
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
