//! The pass pipeline. A pass is a name plus `run(&mut Graph) -> Result<bool>`
//! (whether it changed anything); the pipeline owns the fixpoint, the iteration
//! cap and the verifier that runs after every pass.

mod cse;
mod dce;
mod elementwise;
mod fold;
mod fuse;
pub mod prefuse;
mod simplify;

use crate::error::{did_you_mean, CompileError, ErrorKind, Result};
use crate::ir::{Graph, TensorRef};
use foldhash::{HashSet, HashSetExt};
use gradc_runtime::op::OpError;
use gradc_runtime::Op;
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::BTreeMap;

pub trait Pass {
    fn name(&self) -> &'static str;
    /// Rewrites the graph; true if anything changed.
    fn run(&mut self, g: &mut Graph) -> Result<bool>;
    /// How often each of the pass's rules fired since the pass was made.
    fn fired(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
}

/// Counts rule firings, for `fired`.
#[derive(Default)]
pub struct Fired(BTreeMap<&'static str, usize>);

impl Fired {
    pub fn hit(&mut self, rule: &'static str) {
        *self.0.entry(rule).or_default() += 1;
    }
    pub fn list(&self) -> Vec<(&'static str, usize)> {
        self.0.iter().map(|(&r, &n)| (r, n)).collect()
    }
}

/// The passes, in the order the default pipeline runs them. `prefuse` is not a
/// pass over the finished graph: it fuses forward patterns before
/// differentiation, when the graph is built (see `prefuse.rs`).
pub const PASS_NAMES: &[&str] = &[
    "prefuse",
    "simplify",
    "fold",
    "cse",
    "fuse",
    "elementwise",
    "dce",
];

/// A pass over the finished graph by name (`prefuse` is not one: see
/// [`Pipeline::named`]).
pub fn pass(name: &str) -> Result<Box<dyn Pass>> {
    Ok(match name {
        "simplify" => Box::new(simplify::Simplify::default()),
        "fold" => Box::new(fold::Fold::default()),
        "cse" => Box::new(cse::Cse::default()),
        "fuse" => Box::new(fuse::Fuse::default()),
        "elementwise" => Box::new(elementwise::Elementwise::default()),
        "dce" => Box::new(dce::Dce::default()),
        other => {
            return Err(CompileError::new(
                ErrorKind::UnknownPass,
                format!(
                    "unknown pass '{other}'{} (passes: {})",
                    did_you_mean(other, PASS_NAMES.iter().copied()),
                    PASS_NAMES.join(", ")
                ),
            ))
        }
    })
}

/// What one pass did over a pipeline run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassReport {
    pub name: &'static str,
    pub fired: Vec<(&'static str, usize)>,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

/// Runs passes in order, repeating the sequence until none changes the graph.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
    max_iterations: usize,
    verify: bool,
    /// Build graphs with forward patterns fused before differentiation.
    pub prefuse: bool,
}

impl Pipeline {
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Pipeline {
        Pipeline {
            passes,
            max_iterations: 16,
            verify: cfg!(debug_assertions),
            prefuse: false,
        }
    }

    /// The default optimizations, in order (every pass of `PASS_NAMES`).
    pub fn default_passes() -> Pipeline {
        let mut p = Pipeline::new(vec![
            Box::new(simplify::Simplify::default()),
            Box::new(fold::Fold::default()),
            Box::new(cse::Cse::default()),
            Box::new(fuse::Fuse::default()),
            Box::new(elementwise::Elementwise::default()),
            Box::new(dce::Dce::default()),
        ]);
        p.prefuse = true;
        p
    }

    /// No optimization (the verifier still runs in debug builds).
    pub fn none() -> Pipeline {
        Pipeline::new(Vec::new())
    }

    /// The passes with these names, in this order; `prefuse` among them
    /// fuses forward patterns when the graph is built.
    pub fn named<S: AsRef<str>>(names: &[S]) -> Result<Pipeline> {
        let mut passes = Vec::new();
        let mut prefuse = false;
        for name in names {
            match name.as_ref() {
                "prefuse" => prefuse = true,
                other => passes.push(pass(other)?),
            }
        }
        let mut p = Pipeline::new(passes);
        p.prefuse = prefuse;
        Ok(p)
    }

    pub fn verify_always(mut self) -> Pipeline {
        self.verify = true;
        self
    }

    /// Runs the passes to a fixpoint; reports, per pass, what fired.
    pub fn run(&mut self, g: &mut Graph) -> Result<Vec<PassReport>> {
        // The update ops the train step runs, which no pass may lose
        // (collected only when the verifier runs).
        let updates = if self.verify {
            reachable_updates(g)
        } else {
            HashSet::new()
        };
        let check = |g: &Graph, when: &str| -> Result<()> {
            let now = reachable_updates(g);
            if let Some(lost) = updates.difference(&now).next() {
                return Err(internal(
                    when,
                    format!("the update op '{lost}' is no longer run by the train step"),
                ));
            }
            verify(g).map_err(|e| internal(when, e))
        };
        if self.verify {
            check(g, "before the passes")?;
        }
        g.optimized |= !self.passes.is_empty();
        let mut reports: Vec<PassReport> = self
            .passes
            .iter()
            .map(|p| PassReport {
                name: p.name(),
                fired: Vec::new(),
                nodes_before: 0,
                nodes_after: 0,
            })
            .collect();
        let mut first = true;
        for _ in 0..self.max_iterations {
            let mut changed = false;
            for (pass, report) in self.passes.iter_mut().zip(&mut reports) {
                let before = g.g.node_count();
                if first {
                    report.nodes_before = before;
                    report.nodes_after = before;
                }
                changed |= pass.run(g).map_err(|mut e| {
                    e.message = format!("in pass {}: {}", pass.name(), e.message);
                    e
                })?;
                g.tidy();
                // What this pass's own runs added and removed.
                let change = g.g.node_count() as i64 - before as i64;
                report.nodes_after = (report.nodes_after as i64 + change).max(0) as usize;
                if self.verify {
                    check(g, &format!("after pass {}", pass.name()))?;
                }
            }
            first = false;
            if !changed {
                for (pass, report) in self.passes.iter().zip(&mut reports) {
                    report.fired = pass.fired();
                }
                return Ok(reports);
            }
        }
        let still: Vec<&str> = self.passes.iter().map(|p| p.name()).collect();
        Err(CompileError::new(
            ErrorKind::Internal,
            format!(
                "passes did not reach a fixpoint in {} iterations (passes: {})",
                self.max_iterations,
                still.join(", ")
            ),
        ))
    }
}

/// Names of the stateful ops the train step runs (through data or control inputs).
fn reachable_updates(g: &Graph) -> HashSet<String> {
    let Some(train) = &g.train else {
        return HashSet::new();
    };
    let mut seen = vec![false; g.node_bound()];
    let mut stack = vec![train.train_op];
    let mut names = HashSet::new();
    while let Some(n) = stack.pop() {
        if g.g.contains_node(n) && !std::mem::replace(&mut seen[n.index()], true) {
            if g.node(n).op.is_stateful() {
                names.insert(g.node(n).name.clone());
            }
            stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
        }
    }
    names
}

/// Every element of the constant `t` equals `v` (false if `t` is not a constant).
pub(crate) fn is_const(g: &Graph, t: TensorRef, v: f64) -> bool {
    match &g.node(t.node).op {
        Op::Const(lit) => lit
            .to_flat()
            .is_ok_and(|(_, d)| !d.is_empty() && d.iter().all(|&x| x == v)),
        _ => false,
    }
}

/// The node producing `t` and its op, if `t` is its only output and it has
/// no control edges.
pub(crate) fn producer(g: &Graph, t: TensorRef) -> Option<(NodeIndex, &Op)> {
    (t.output == 0 && !g.has_control(t.node)).then(|| (t.node, &g.node(t.node).op))
}

/// Redirects every use of every output of `from` to the same output of `to`.
pub(crate) fn redirect_uses(g: &mut Graph, from: NodeIndex, to: NodeIndex) {
    for k in 0..g.node(from).outputs.len() {
        g.replace_uses(
            TensorRef {
                node: from,
                output: k,
            },
            TensorRef {
                node: to,
                output: k,
            },
        );
    }
}

fn internal(when: &str, e: impl std::fmt::Display) -> CompileError {
    CompileError::new(
        ErrorKind::Internal,
        format!("graph invariant broken {when}: {e}"),
    )
}

/// A graph invariant a pass broke, as [`verify`] finds it. The pipeline
/// reports it as an [`ErrorKind::Internal`] compile error naming the pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    /// The name table holds more or fewer names than there are nodes.
    #[error("the name table holds a node that is gone")]
    NameTable,
    /// The table of creation numbers disagrees with the nodes' own.
    #[error("the table of creation numbers disagrees with the nodes")]
    SeqTable,
    /// No topological order (a cycle): the message of the walk that failed.
    #[error("{}", .0.message)]
    Order(#[source] Box<CompileError>),
    /// The shortcut through creation order gives another order than the walk.
    #[error("the creation-order shortcut of the topological order disagrees with the walk")]
    OrderShortcut,
    /// Two nodes of one name, or a node the name table does not find.
    #[error("node name '{node}' is not unique or not indexed")]
    Name { node: String },
    /// A data edge from an output its source does not have.
    #[error("node '{node}' reads output {output} of '{from}', which has none such")]
    MissingOutput {
        node: String,
        output: usize,
        from: String,
    },
    /// Input slots not filled 0, 1, ... once each.
    #[error("node '{node}' has input slots {slots:?}, not 0..{} once each", slots.len())]
    InputSlots { node: String, slots: Vec<usize> },
    /// The op no longer accepts the node's inputs.
    #[error("node '{node}': {source}")]
    Infer { node: String, source: OpError },
    /// Stored output types that differ from the re-inferred ones.
    #[error("node '{node}' has stale types")]
    StaleTypes { node: String },
    /// A graph output or gradient whose tensor is gone.
    #[error("'{label}' points at a removed tensor")]
    RemovedTensor { label: String },
    /// A node's count of control edges that disagrees with its edges.
    #[error("a node's count of control edges disagrees with its edges")]
    ControlCounts,
}

/// Checks the invariants every pass must keep: the graph's tables (names,
/// creation numbers, control-edge counts) match its nodes and edges, acyclic
/// (and the topological order's shortcut agrees with the general walk), every
/// input slot filled once from an existing output, stored types equal to
/// re-inferred ones, unique names, outputs and gradients pointing at live
/// tensors.
pub fn verify(g: &Graph) -> std::result::Result<(), InvariantError> {
    if !g.name_table_agrees() {
        return Err(InvariantError::NameTable);
    }
    if !g.seq_table_agrees() {
        return Err(InvariantError::SeqTable);
    }
    let order_err = |e| InvariantError::Order(Box::new(e));
    let order = g.topo_order().map_err(order_err)?;
    if order != g.topo_order_by_walk().map_err(order_err)? {
        return Err(InvariantError::OrderShortcut);
    }
    let mut names = HashSet::new();
    let live = |t: &TensorRef| g.g.contains_node(t.node) && t.output < g.node(t.node).outputs.len();
    for n in g.g.node_indices() {
        let node = g.node(n);
        if !names.insert(node.name.as_str()) || g.find(&node.name) != Some(n) {
            return Err(InvariantError::Name {
                node: node.name.clone(),
            });
        }
        // Data edges fill slots 0, 1, ... once each, from existing outputs.
        let mut slots: Vec<usize> = Vec::new();
        for e in g.g.edges_directed(n, Direction::Incoming) {
            if let crate::ir::Edge::Data { output, input } = *e.weight() {
                let from = TensorRef {
                    node: e.source(),
                    output,
                };
                if !live(&from) {
                    return Err(InvariantError::MissingOutput {
                        node: node.name.clone(),
                        output,
                        from: g.node(e.source()).name.clone(),
                    });
                }
                slots.push(input);
            }
        }
        slots.sort_unstable();
        if slots.iter().enumerate().any(|(i, &s)| i != s) {
            return Err(InvariantError::InputSlots {
                node: node.name.clone(),
                slots,
            });
        }
        let ins = g.inputs(n);
        let types: Vec<_> = ins.iter().map(|&t| g.ty(t)).collect();
        let inferred =
            node.op
                .infer(node.dtype, &types)
                .map_err(|source| InvariantError::Infer {
                    node: node.name.clone(),
                    source,
                })?;
        if inferred != node.outputs {
            return Err(InvariantError::StaleTypes {
                node: node.name.clone(),
            });
        }
    }
    let gradients = g.gradients.iter().map(|r| (&r.name, &r.value));
    for (label, t) in g.outputs.iter().map(|(l, t)| (l, t)).chain(gradients) {
        if !live(t) {
            return Err(InvariantError::RemovedTensor {
                label: label.clone(),
            });
        }
    }
    if !g.control_counts_agree() {
        return Err(InvariantError::ControlCounts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Edge;

    /// A pass that breaks the graph its own way, to check the pipeline
    /// catches it and names it.
    struct Breaker(fn(&mut Graph) -> Result<bool>);

    impl Pass for Breaker {
        fn name(&self) -> &'static str {
            "breaker"
        }
        fn run(&mut self, g: &mut Graph) -> Result<bool> {
            (self.0)(g)
        }
    }

    fn two_layer_net() -> Graph {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../graphs/two_layer_net.ron");
        crate::graph_from_file(&path).expect("the example builds")
    }

    fn run_breaker(f: fn(&mut Graph) -> Result<bool>) -> String {
        let mut g = two_layer_net();
        let mut p = Pipeline::new(vec![Box::new(Breaker(f))]).verify_always();
        match p.run(&mut g) {
            Ok(_) => panic!("the broken graph passed the verifier"),
            Err(e) => e.message,
        }
    }

    fn node(g: &Graph, name: &str) -> NodeIndex {
        g.find(name).expect("the example has this node")
    }

    #[test]
    fn a_missing_input_slot_is_caught_after_the_pass() {
        let e = run_breaker(|g| {
            let n = node(g, "xW1");
            let edge =
                g.g.edges_directed(n, Direction::Incoming)
                    .find(|e| matches!(e.weight(), Edge::Data { input: 0, .. }))
                    .map(|e| e.id())
                    .expect("an input in slot 0");
            g.g.remove_edge(edge);
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("'xW1' has input slots [1]"),
            "{e}"
        );
    }

    #[test]
    fn a_read_of_a_missing_output_is_an_error_not_a_panic() {
        let e = run_breaker(|g| {
            let (from, to) = (node(g, "x"), node(g, "loss"));
            g.g.add_edge(
                from,
                to,
                Edge::Data {
                    output: 3,
                    input: 1,
                },
            );
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("output 3"),
            "{e}"
        );
    }

    #[test]
    fn a_control_edge_added_behind_the_graph_is_caught() {
        let e = run_breaker(|g| {
            let (from, to) = (node(g, "x"), node(g, "loss"));
            g.g.add_edge(from, to, Edge::Control);
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("count of control edges"),
            "{e}"
        );
    }

    #[test]
    fn a_node_removed_behind_the_graph_is_caught() {
        let e = run_breaker(|g| {
            let n = node(g, "loss");
            g.g.remove_node(n);
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("name table holds a node that is gone"),
            "{e}"
        );
    }

    #[test]
    fn stale_types_are_caught() {
        let e = run_breaker(|g| {
            let n = node(g, "loss");
            g.g[n].outputs[0].shape = gradc_runtime::Shape::known(&[7]);
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("stale types"),
            "{e}"
        );
    }

    #[test]
    fn a_cycle_is_caught() {
        let e = run_breaker(|g| {
            // x feeds logits through both layers; an edge back closes a cycle.
            let (from, to) = (node(g, "logits"), node(g, "x"));
            g.g.add_edge(
                from,
                to,
                Edge::Data {
                    output: 0,
                    input: 0,
                },
            );
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("cycle"),
            "{e}"
        );
    }

    #[test]
    fn a_changed_dtype_is_caught() {
        let e = run_breaker(|g| {
            let n = node(g, "loss");
            let ty = &mut g.g[n].outputs[0];
            ty.dtype = match ty.dtype {
                gradc_runtime::DType::F32 => gradc_runtime::DType::F64,
                _ => gradc_runtime::DType::F32,
            };
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("'loss' has stale types"),
            "{e}"
        );
    }

    #[test]
    fn an_output_left_pointing_at_a_removed_node_is_caught() {
        let e = run_breaker(|g| {
            // Removed through the graph (its tables kept), the output not moved.
            let n = node(g, "accuracy");
            g.remove(n);
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("'accuracy' points at a removed tensor"),
            "{e}"
        );
    }

    #[test]
    fn a_lost_update_op_is_caught() {
        let e = run_breaker(|g| {
            let update =
                g.g.node_indices()
                    .find(|&n| g.node(n).op.is_stateful() && g.node(n).name.contains("update"))
                    .expect("an update op");
            let name = g.node(update).name.clone();
            let edges: Vec<_> =
                g.g.edges_directed(update, Direction::Outgoing)
                    .map(|e| e.id())
                    .collect();
            assert!(!edges.is_empty(), "{name} is used by the train op");
            for e in edges {
                g.g.remove_edge(e);
            }
            Ok(true)
        });
        assert!(
            e.contains("after pass breaker") && e.contains("no longer run by the train step"),
            "{e}"
        );
    }

    /// What `verify` finds in the example after `f` broke it.
    fn broken(f: impl FnOnce(&mut Graph)) -> InvariantError {
        let mut g = two_layer_net();
        verify(&g).expect("the example keeps the invariants");
        f(&mut g);
        verify(&g).expect_err("the broken graph passed the verifier")
    }

    #[test]
    fn each_broken_invariant_is_its_own_error() {
        use gradc_runtime::op::OpError;
        let e = broken(|g| {
            let n = node(g, "loss");
            g.g.remove_node(n);
        });
        assert_eq!(e, InvariantError::NameTable);
        // Behind the tables' back, loss takes x's creation number (and all
        // else of x's but its name).
        let e = broken(|g| {
            let (n, x) = (node(g, "loss"), node(g, "x"));
            let mut moved = g.g[x].clone();
            moved.name = g.g[n].name.clone();
            g.g[n] = moved;
        });
        assert_eq!(e, InvariantError::SeqTable);
        let e = broken(|g| {
            let (from, to) = (node(g, "logits"), node(g, "x"));
            let edge = Edge::Data {
                output: 0,
                input: 0,
            };
            g.g.add_edge(from, to, edge);
        });
        assert!(
            matches!(&e, InvariantError::Order(c) if c.kind == ErrorKind::Cycle),
            "{e}"
        );
        assert_eq!(e.to_string(), "the graph has a cycle");
        let e = broken(|g| {
            let n = node(g, "loss");
            g.g[n].name = "renamed".into();
        });
        assert_eq!(
            e,
            InvariantError::Name {
                node: "renamed".into()
            }
        );
        let e = broken(|g| {
            let (from, to) = (node(g, "x"), node(g, "loss"));
            let edge = Edge::Data {
                output: 3,
                input: 1,
            };
            g.g.add_edge(from, to, edge);
        });
        assert_eq!(
            e,
            InvariantError::MissingOutput {
                node: "loss".into(),
                output: 3,
                from: "x".into()
            }
        );
        let e = broken(|g| {
            let n = node(g, "xW1");
            let edge =
                g.g.edges_directed(n, Direction::Incoming)
                    .find(|e| matches!(e.weight(), Edge::Data { input: 0, .. }))
                    .map(|e| e.id())
                    .expect("an input in slot 0");
            g.g.remove_edge(edge);
        });
        assert_eq!(
            e,
            InvariantError::InputSlots {
                node: "xW1".into(),
                slots: vec![1]
            }
        );
        assert_eq!(
            e.to_string(),
            "node 'xW1' has input slots [1], not 0..1 once each"
        );
        // A node of one input made an op of two.
        let e = broken(|g| {
            let n =
                g.g.node_indices()
                    .find(|&n| g.inputs(n).len() == 1)
                    .expect("a node of one input");
            g.g[n].op = Op::Add;
        });
        assert!(
            matches!(
                &e,
                InvariantError::Infer {
                    source: OpError::Arity {
                        op: "Add",
                        got: 1,
                        ..
                    },
                    ..
                }
            ),
            "{e}"
        );
        let e = broken(|g| {
            let n = node(g, "loss");
            g.g[n].outputs[0].shape = gradc_runtime::Shape::known(&[7]);
        });
        assert_eq!(
            e,
            InvariantError::StaleTypes {
                node: "loss".into()
            }
        );
        let e = broken(|g| {
            let n = node(g, "accuracy");
            g.remove(n);
        });
        assert_eq!(
            e,
            InvariantError::RemovedTensor {
                label: "accuracy".into()
            }
        );
        let e = broken(|g| {
            let (from, to) = (node(g, "x"), node(g, "loss"));
            g.g.add_edge(from, to, Edge::Control);
        });
        assert_eq!(e, InvariantError::ControlCounts);
        // The shortcut and the walk read the same creation numbers, which
        // the checks before it confirm: it guards `Graph::topo_order` itself,
        // so only its message can be checked from here.
        assert_eq!(
            InvariantError::OrderShortcut.to_string(),
            "the creation-order shortcut of the topological order disagrees with the walk"
        );
    }

    #[test]
    fn an_error_inside_a_pass_names_it() {
        let e = run_breaker(|_| Err(CompileError::new(ErrorKind::Internal, "it went wrong")));
        assert!(e.contains("in pass breaker: it went wrong"), "{e}");
    }

    #[test]
    fn a_pass_that_never_settles_hits_the_cap() {
        let e = run_breaker(|_| Ok(true));
        assert!(
            e.contains("fixpoint in 16 iterations (passes: breaker)"),
            "{e}"
        );
    }
}
