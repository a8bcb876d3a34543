//! Dead-code elimination: removes every node that nothing observable needs.
//!
//! Kept, with everything they need (data and control inputs): outputs,
//! gradient results, the train section's train op and what it reports (loss,
//! metrics, hooks, learning rate),
//! every op that changes state, and the program's interface (placeholders and
//! variables, which feeds and checkpoints address by name).

use super::{Fired, Pass};
use crate::error::Result;
use crate::ir::Graph;
use gradc_runtime::Op;
use petgraph::Direction;

#[derive(Default)]
pub struct Dce {
    fired: Fired,
}

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut stack: Vec<_> =
            g.g.node_indices()
                .filter(|&n| {
                    let op = &g.node(n).op;
                    op.is_stateful()
                        || matches!(op, Op::Placeholder { .. } | Op::Variable { .. } | Op::NoOp)
                })
                .collect();
        stack.extend(g.outputs.iter().map(|(_, t)| t.node));
        stack.extend(g.gradients.iter().map(|r| r.value.node));
        if let Some(t) = &g.train {
            stack.push(t.train_op);
            stack.extend(t.reported().map(|(_, m)| m.node));
        }
        // Indexed by node: cache-friendly on large graphs.
        let mut live = vec![false; g.node_bound()];
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut live[n.index()], true) {
                stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
            }
        }
        let dead: Vec<_> = g.g.node_indices().filter(|n| !live[n.index()]).collect();
        g.remove_all(&dead);
        for _ in &dead {
            self.fired.hit("dead_node");
        }
        for members in g.collections.values_mut() {
            members.retain(|n| live.get(n.index()).copied().unwrap_or(false));
        }
        Ok(!dead.is_empty())
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
