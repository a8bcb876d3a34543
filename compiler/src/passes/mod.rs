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
use petgraph::stable_graph::NodeIndex;
use petgraph::Direction;
use std::collections::{BTreeMap, HashSet};

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
                ErrorKind::Parse,
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
        let updates = reachable_updates(g);
        let check = |g: &Graph, when: &str| -> Result<()> {
            verify(g).map_err(|e| internal(when, e))?;
            let now = reachable_updates(g);
            if let Some(lost) = updates.difference(&now).next() {
                return Err(internal(
                    when,
                    format!("the update op '{lost}' is no longer run by the train step"),
                ));
            }
            Ok(())
        };
        if self.verify {
            check(g, "before the passes")?;
        }
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
                if first {
                    report.nodes_before = g.g.node_count();
                }
                changed |= pass.run(g)?;
                report.nodes_after = g.g.node_count();
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
        Err(CompileError::new(
            ErrorKind::Internal,
            format!(
                "passes did not reach a fixpoint in {} iterations",
                self.max_iterations
            ),
        ))
    }
}

/// Names of the stateful ops the train step runs (through data or control inputs).
fn reachable_updates(g: &Graph) -> HashSet<String> {
    let Some(train) = &g.train else {
        return HashSet::new();
    };
    let mut seen = HashSet::new();
    let mut stack = vec![train.train_op];
    let mut names = HashSet::new();
    while let Some(n) = stack.pop() {
        if g.g.contains_node(n) && seen.insert(n) {
            if g.node(n).op.is_stateful() {
                names.insert(g.node(n).name.clone());
            }
            stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
        }
    }
    names
}

/// Whether a node must stay as it is: it has control edges in or out.
pub(crate) fn has_control(g: &Graph, n: NodeIndex) -> bool {
    !g.control_inputs(n).is_empty()
        || g.g
            .edges_directed(n, Direction::Outgoing)
            .any(|e| *e.weight() == crate::ir::Edge::Control)
}

/// Redirects every use of every output of `from` to the same output of `to`, then removes `from`.
pub(crate) fn merge_into(g: &mut Graph, from: NodeIndex, to: NodeIndex) {
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
    g.remove(from);
}

fn internal(when: &str, e: String) -> CompileError {
    CompileError::new(
        ErrorKind::Internal,
        format!("graph invariant broken {when}: {e}"),
    )
}

/// Checks the invariants every pass must keep: acyclic, every input slot filled
/// once from an existing output, stored types equal to re-inferred ones, unique
/// names, outputs and gradients pointing at live tensors.
pub fn verify(g: &Graph) -> std::result::Result<(), String> {
    g.topo_order().map_err(|e| e.message)?;
    let mut names = HashSet::new();
    for n in g.g.node_indices() {
        let node = g.node(n);
        if !names.insert(node.name.as_str()) || g.find(&node.name) != Some(n) {
            return Err(format!(
                "node name '{}' is not unique or not indexed",
                node.name
            ));
        }
        let ins = g.inputs(n);
        let types: Vec<_> = ins.iter().map(|&t| g.ty(t).clone()).collect();
        let inferred = node
            .op
            .infer(node.dtype, &types)
            .map_err(|e| format!("node '{}': {e}", node.name))?;
        if inferred != node.outputs {
            return Err(format!("node '{}' has stale types", node.name));
        }
    }
    let live = |t: &TensorRef| g.g.contains_node(t.node) && t.output < g.node(t.node).outputs.len();
    let gradients = g.gradients.iter().map(|r| (&r.name, &r.value));
    for (label, t) in g.outputs.iter().map(|(l, t)| (l, t)).chain(gradients) {
        if !live(t) {
            return Err(format!("'{label}' points at a removed tensor"));
        }
    }
    Ok(())
}
