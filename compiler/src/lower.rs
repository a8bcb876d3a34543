//! IR -> runtime program: nodes in topological order become instructions.

use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::{Instr, NamedOutput, Program, ValueRef};

pub fn lower(g: &Graph) -> Result<Program> {
    let order = g.topo_order()?;
    // Instruction index by node index.
    let mut index = vec![usize::MAX; g.node_bound()];
    for (i, &n) in order.iter().enumerate() {
        index[n.index()] = i;
    }
    let value = |t: TensorRef| ValueRef {
        node: index[t.node.index()],
        output: t.output,
    };
    let instrs = order
        .iter()
        .map(|&n| {
            let node = g.node(n);
            Instr {
                name: node.name.clone(),
                op: node.op.clone(),
                dtype: node.dtype,
                inputs: g.inputs(n).into_iter().map(value).collect(),
                outputs: node.outputs.clone(),
                control: g
                    .control_inputs(n)
                    .into_iter()
                    .map(|c| index[c.index()])
                    .collect(),
            }
        })
        .collect();
    let gradients = g.gradients.iter().map(|r| (&r.name, r.value));
    let outputs = g
        .outputs
        .iter()
        .map(|(label, t)| (label, *t))
        .chain(gradients)
        .map(|(label, t)| NamedOutput {
            label: label.clone(),
            value: value(t),
        })
        .collect();
    Ok(Program {
        name: g.name.clone(),
        instrs,
        outputs,
    })
}

/// Lowers only what `outputs` need (data and control inputs, transitively),
/// with those outputs as the program's outputs: e.g. the inference program of
/// a training graph, which holds no gradient and no update op.
pub fn lower_pruned(g: &Graph, outputs: &[(String, TensorRef)]) -> Result<Program> {
    lower(&prune(g, outputs))
}

/// The part of `g` that `outputs` need, with those as its outputs and no gradients.
pub fn prune(g: &Graph, outputs: &[(String, TensorRef)]) -> Graph {
    let mut keep = g.clone();
    let mut needed = std::collections::HashSet::new();
    let mut stack: Vec<_> = outputs.iter().map(|(_, t)| t.node).collect();
    while let Some(n) = stack.pop() {
        if needed.insert(n) {
            stack.extend(g.g.neighbors_directed(n, petgraph::Direction::Incoming));
        }
    }
    let dead: Vec<_> = g.g.node_indices().filter(|n| !needed.contains(n)).collect();
    for n in dead {
        keep.remove(n);
    }
    for members in keep.collections.values_mut() {
        members.retain(|n| needed.contains(n));
    }
    keep.outputs = outputs.to_vec();
    keep.gradients.clear();
    keep.train = None;
    keep
}
