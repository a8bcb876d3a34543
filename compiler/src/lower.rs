//! IR -> runtime program: nodes in topological order become instructions.

use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::{Instr, NamedOutput, Op, Program, TensorType, ValueRef};
use petgraph::stable_graph::NodeIndex;

pub fn lower(g: &Graph) -> Result<Program> {
    let wiring = wiring(g)?;
    let parts = wiring
        .order
        .iter()
        .map(|&n| {
            let node = g.node(n);
            (node.name.clone(), node.op.clone(), node.outputs.clone())
        })
        .collect();
    Ok(assemble(g, wiring, parts))
}

/// `lower`, moving names, ops and types out of a graph that is not needed
/// after: a large graph's strings and types are not copied and freed again.
pub fn lower_owned(mut g: Graph) -> Result<Program> {
    let wiring = wiring(&g)?;
    let parts = wiring
        .order
        .iter()
        .map(|&n| {
            let node = &mut g.g[n];
            (
                std::mem::take(&mut node.name),
                std::mem::replace(&mut node.op, Op::NoOp),
                std::mem::take(&mut node.outputs),
            )
        })
        .collect();
    Ok(assemble(&g, wiring, parts))
}

/// What lowering reads from the graph's edges: the nodes in topological
/// order, each one's inputs and control inputs, and the instruction index of
/// each node (by node index).
struct Wiring {
    order: Vec<NodeIndex>,
    edges: Vec<(Vec<ValueRef>, Vec<usize>)>,
    index: Vec<usize>,
}

fn wiring(g: &Graph) -> Result<Wiring> {
    let order = g.topo_order()?;
    // Instruction index by node index.
    let mut index = vec![usize::MAX; g.node_bound()];
    for (i, &n) in order.iter().enumerate() {
        index[n.index()] = i;
    }
    let mut ins = Vec::new();
    let edges = order
        .iter()
        .map(|&n| {
            g.inputs_into(n, &mut ins);
            let inputs = ins
                .iter()
                .map(|t| ValueRef {
                    node: index[t.node.index()],
                    output: t.output,
                })
                .collect();
            let control = g
                .control_inputs(n)
                .into_iter()
                .map(|c| index[c.index()])
                .collect();
            (inputs, control)
        })
        .collect();
    Ok(Wiring {
        order,
        edges,
        index,
    })
}

/// The program of the wired nodes, given each one's name, op and output types.
fn assemble(g: &Graph, wiring: Wiring, parts: Vec<(String, Op, Vec<TensorType>)>) -> Program {
    let index = &wiring.index;
    let value = |t: TensorRef| ValueRef {
        node: index[t.node.index()],
        output: t.output,
    };
    let instrs = wiring
        .order
        .iter()
        .zip(wiring.edges.into_iter().zip(parts))
        .map(|(&n, ((inputs, control), (name, op, outputs)))| Instr {
            name,
            op,
            dtype: g.node(n).dtype,
            inputs,
            outputs,
            control,
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
    Program {
        name: g.name.clone(),
        instrs,
        outputs,
        optimized: g.optimized,
    }
}

/// Lowers only what `outputs` need (data and control inputs, transitively),
/// with those outputs as the program's outputs: e.g. the inference program of
/// a training graph, which holds no gradient and no update op.
pub fn lower_pruned(g: &Graph, outputs: &[(String, TensorRef)]) -> Result<Program> {
    lower_owned(prune(g, outputs))
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
    keep.remove_all(&dead);
    for members in keep.collections.values_mut() {
        members.retain(|n| needed.contains(n));
    }
    keep.outputs = outputs.to_vec();
    keep.gradients.clear();
    keep.train = None;
    keep
}
