//! Common-subexpression elimination: two nodes with equal ops (compared as
//! values, attributes included) on the same inputs compute the same thing, so
//! the later one is merged into the earlier.
//!
//! Never merged: ops that change state, sources whose identity matters
//! (placeholders, variables), NoOps, and nodes with control edges.

use super::{has_control, merge_into, Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::{DType, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashMap;

#[derive(Default)]
pub struct Cse {
    fired: Fired,
}

fn mergeable(op: &Op) -> bool {
    !op.is_stateful() && !matches!(op, Op::Placeholder { .. } | Op::Variable { .. } | Op::NoOp)
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        // Bucketed by op name, dtype and inputs; equal ops within a bucket merge.
        let mut seen: HashMap<(&'static str, DType, Vec<TensorRef>), Vec<NodeIndex>> =
            HashMap::new();
        let mut changed = false;
        for n in g.topo_order()? {
            let node = g.node(n);
            if !mergeable(&node.op) || has_control(g, n) {
                continue;
            }
            let key = (node.op.name(), node.dtype, g.inputs(n));
            let twin = seen
                .get(&key)
                .and_then(|ms| ms.iter().copied().find(|&m| g.node(m).op == node.op));
            match twin {
                Some(m) => {
                    merge_into(g, n, m);
                    self.fired.hit("merge_equal_nodes");
                    changed = true;
                }
                None => seen.entry(key).or_default().push(n),
            }
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
