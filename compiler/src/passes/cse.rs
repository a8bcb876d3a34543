//! Common-subexpression elimination: two nodes with equal ops (compared as
//! values, attributes included; constants by their bits, so 0.0 and -0.0
//! stay apart) on the same inputs compute the same thing, so the later one is
//! merged into the earlier.
//!
//! Never merged: ops that change state, sources whose identity matters
//! (placeholders, variables), NoOps, and nodes with control edges.

use super::{has_control, merge_into, Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use foldhash::{HashMap, HashMapExt};
use gradc_runtime::{DType, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hash, Hasher};

#[derive(Default)]
pub struct Cse {
    fired: Fired,
}

/// Op name, dtype, constant bits, inputs.
type Key = (&'static str, DType, u64, Vec<TensorRef>);

/// A hash of a constant's shape and values (0 for other ops), so that many
/// different constants do not share one key and get compared pairwise.
fn const_bits(op: &Op) -> u64 {
    let Op::Const(lit) = op else {
        return 0;
    };
    let Ok((shape, values)) = lit.to_flat() else {
        return 0;
    };
    let mut h = foldhash::fast::FixedState::with_seed(0).build_hasher();
    shape.hash(&mut h);
    values.iter().for_each(|v| v.to_bits().hash(&mut h));
    h.finish()
}

/// Equal ops, constants compared by their bits (0.0 and -0.0 differ, as 1/x shows).
fn same_op(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::Const(x), Op::Const(y)) => match (x.to_flat(), y.to_flat()) {
            (Ok((sx, vx)), Ok((sy, vy))) => {
                sx == sy
                    && vx
                        .iter()
                        .map(|v| v.to_bits())
                        .eq(vy.iter().map(|v| v.to_bits()))
            }
            _ => false,
        },
        _ => a == b,
    }
}

fn mergeable(op: &Op) -> bool {
    !op.is_stateful() && !matches!(op, Op::Placeholder { .. } | Op::Variable { .. } | Op::NoOp)
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        // Keyed by op name, dtype, inputs and (for constants) the value's
        // bits: the first node of each key, then any later ones whose ops
        // differ in attributes. Equal ops under one key merge.
        let mut seen: HashMap<Key, (NodeIndex, Vec<NodeIndex>)> = HashMap::new();
        let mut changed = false;
        for n in g.topo_order()? {
            let node = g.node(n);
            if !mergeable(&node.op) || has_control(g, n) {
                continue;
            }
            let key = (
                node.op.name(),
                node.dtype,
                const_bits(&node.op),
                g.inputs(n),
            );
            let twin = seen.get(&key).and_then(|(first, more)| {
                std::iter::once(first)
                    .chain(more)
                    .copied()
                    .find(|&m| same_op(&g.node(m).op, &node.op))
            });
            match twin {
                Some(m) => {
                    merge_into(g, n, m);
                    self.fired.hit("merge_equal_nodes");
                    changed = true;
                }
                None => match seen.entry(key) {
                    Entry::Occupied(mut e) => e.get_mut().1.push(n),
                    Entry::Vacant(e) => {
                        e.insert((n, Vec::new()));
                    }
                },
            }
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_constants_merge_and_constants_of_other_bits_do_not() {
        // 0.0 and -0.0 compare equal as floats but 1/x tells them apart.
        let text = r#"Graph(name: "c", dtype: F64, nodes: [
            (name: "zero", op: Const(0.0)),
            (name: "minus_zero", op: Const(-0.0)),
            (name: "zero_again", op: Const(0.0)),
            (name: "two", op: Const([1.0, 2.0])),
            (name: "two_again", op: Const([1.0, 2.0])),
            (name: "s", op: AddN, inputs: ["zero", "minus_zero", "zero_again"]),
            (name: "t", op: Add, inputs: ["two", "two_again"]),
        ])"#;
        let mut g = crate::graph_from_str(text, "c.ron").expect("builds");
        let mut cse = Cse::default();
        assert!(cse.run(&mut g).expect("runs"));
        for (name, kept) in [
            ("zero", true),
            ("minus_zero", true),
            ("zero_again", false),
            ("two", true),
            ("two_again", false),
        ] {
            assert_eq!(g.find(name).is_some(), kept, "{name}");
        }
        assert_eq!(cse.fired(), [("merge_equal_nodes", 2)]);
    }
}
