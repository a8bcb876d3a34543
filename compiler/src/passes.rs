//! The pass pipeline. A pass is a name plus `run(&mut Graph) -> Result<bool>`
//! (whether it changed anything); the pipeline owns the fixpoint, the iteration
//! cap and the verifier that runs after every pass.

use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Graph, TensorRef};
use std::collections::HashSet;

pub trait Pass {
    fn name(&self) -> &'static str;
    fn run(&mut self, g: &mut Graph) -> Result<bool>;
}

/// Runs passes in order, repeating the sequence until none changes the graph.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
    max_iterations: usize,
    verify: bool,
}

impl Pipeline {
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Pipeline {
        Pipeline {
            passes,
            max_iterations: 16,
            verify: cfg!(debug_assertions),
        }
    }

    /// The passes run by default (none yet: the optimizer issue fills this in).
    pub fn default_passes() -> Pipeline {
        Pipeline::new(Vec::new())
    }

    pub fn verify_always(mut self) -> Pipeline {
        self.verify = true;
        self
    }

    pub fn run(&mut self, g: &mut Graph) -> Result<()> {
        if self.verify {
            verify(g).map_err(|e| internal("before the passes", e))?;
        }
        for _ in 0..self.max_iterations {
            let mut changed = false;
            for pass in &mut self.passes {
                changed |= pass.run(g)?;
                if self.verify {
                    verify(g).map_err(|e| internal(&format!("after pass {}", pass.name()), e))?;
                }
            }
            if !changed {
                return Ok(());
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
