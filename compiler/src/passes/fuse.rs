//! Pattern fusion. `dense`: MatMul, BiasAdd and an optional activation (Relu,
//! Sigmoid, Tanh) become one Dense node, which writes the product and then adds
//! the bias and applies the activation in a single pass over the output. The
//! arithmetic is the same, operation for operation, so results are
//! bit-identical. Fused only where the intermediate tensors are used by the
//! next op of the pattern alone and are not named (outputs, gradients, hooks).

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

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        for n in g.topo_order()? {
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
            let act = only_use(g, TensorRef::of(n)).and_then(|m| {
                let activation = match g.node(m).op {
                    Op::Relu => Activation::Relu,
                    Op::Sigmoid => Activation::Sigmoid,
                    Op::Tanh => Activation::Tanh,
                    _ => return None,
                };
                (!has_control(g, m)).then_some((m, activation))
            });
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
