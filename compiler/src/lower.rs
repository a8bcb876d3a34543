//! IR -> runtime program: nodes in topological order become instructions.

use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::{Instr, NamedOutput, Program, ValueRef};
use std::collections::HashMap;

pub fn lower(g: &Graph) -> Result<Program> {
    let order = g.topo_order()?;
    let index: HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let value = |t: TensorRef| ValueRef {
        node: index[&t.node],
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
