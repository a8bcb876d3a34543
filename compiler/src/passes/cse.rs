//! Common-subexpression elimination: two nodes with equal ops (compared as
//! values, attributes included; constants by their bits, so 0.0 and -0.0
//! stay apart) on the same inputs compute the same thing, so the later one is
//! merged into the earlier.
//!
//! Never merged: ops that change state, sources whose identity matters
//! (placeholders, variables), NoOps, and nodes with control edges.

use super::{redirect_uses, Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use foldhash::{HashMap, HashMapExt};
use gradc_runtime::{DType, Literal, Op};
use petgraph::stable_graph::NodeIndex;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hash, Hasher};

#[derive(Default)]
pub struct Cse {
    fired: Fired,
}

/// A literal's bits, shape included: equal bits are equal constants (0.0 and
/// -0.0 differ, as 1/x shows). Walks the literal without flattening it.
fn hash_literal(lit: &Literal, h: &mut impl Hasher) {
    match lit {
        Literal::Scalar(v) => v.to_bits().hash(h),
        Literal::List(items) => {
            items.len().hash(h);
            items.iter().for_each(|item| hash_literal(item, h));
        }
    }
}

/// Equal literals, compared by their bits.
fn same_literal(a: &Literal, b: &Literal) -> bool {
    match (a, b) {
        (Literal::Scalar(x), Literal::Scalar(y)) => x.to_bits() == y.to_bits(),
        (Literal::List(xs), Literal::List(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same_literal(x, y))
        }
        _ => false,
    }
}

/// Equal ops, constants compared by their bits.
fn same_op(a: &Op, b: &Op) -> bool {
    match (a, b) {
        (Op::Const(x), Op::Const(y)) => same_literal(x, y),
        _ => a == b,
    }
}

/// The hash of what two merged nodes share: op name, dtype, a constant's
/// bits, and the inputs. Equal nodes have equal hashes; equal hashes are
/// confirmed by comparing inputs and ops before a merge.
fn key_hash(op: &Op, dtype: DType, inputs: &[TensorRef]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0).build_hasher();
    op.name().hash(&mut h);
    dtype.hash(&mut h);
    if let Op::Const(lit) = op {
        hash_literal(lit, &mut h);
    }
    inputs.hash(&mut h);
    h.finish()
}

fn mergeable(op: &Op) -> bool {
    !op.is_stateful()
        && !op.is_collective()
        && !matches!(op, Op::Placeholder { .. } | Op::Variable { .. } | Op::NoOp)
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        // Keyed by the hash of op name, dtype, inputs and (for constants)
        // the value's bits: the first node of each key, and in `more` any
        // later ones that are not its twin (other attributes, or a hash
        // collision), so the table every node probes stays small.
        // A twin has equal inputs and an equal op, and merges.
        let mut seen: HashMap<u64, NodeIndex> = HashMap::with_capacity(g.g.node_count());
        let mut more: HashMap<u64, Vec<NodeIndex>> = HashMap::new();
        let (mut inputs, mut theirs) = (Vec::new(), Vec::new());
        // Merged nodes, removed together at the end (in the order they
        // merged): removing each as it merges walks the edge lists of its
        // inputs, which many merged nodes may share (see `Graph::remove_all`).
        let mut merged = Vec::new();
        for n in g.topo_order()? {
            let node = g.node(n);
            if !mergeable(&node.op) || g.has_control(n) {
                continue;
            }
            g.inputs_into(n, &mut inputs);
            let key = key_hash(&node.op, node.dtype, &inputs);
            let twin = match seen.entry(key) {
                Entry::Vacant(e) => {
                    e.insert(n);
                    continue;
                }
                Entry::Occupied(e) => {
                    let first = *e.get();
                    let others = more.get(&key).map(Vec::as_slice).unwrap_or_default();
                    std::iter::once(&first).chain(others).copied().find(|&m| {
                        let other = g.node(m);
                        g.inputs_into(m, &mut theirs);
                        other.dtype == node.dtype
                            && theirs == inputs
                            && same_op(&other.op, &node.op)
                    })
                }
            };
            match twin {
                Some(m) => {
                    redirect_uses(g, n, m);
                    merged.push(n);
                    self.fired.hit("merge_equal_nodes");
                }
                None => more.entry(key).or_default().push(n),
            }
        }
        g.remove_all(&merged);
        Ok(!merged.is_empty())
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
