//! The canonical text form of a graph: one node per line, in deterministic
//! topological order. This is what `gradc grad` prints and what snapshots hold.
//!
//! ```text
//! apple_price = Mul(apple, apple_num) : f64[]
//! ```

use crate::error::Result;
use crate::ir::{Graph, Role};
use petgraph::stable_graph::NodeIndex;
use std::fmt::Write;

/// One node as a line: `name = Op{attrs}(inputs) : types`.
pub fn node_line(g: &Graph, n: NodeIndex) -> String {
    let node = g.node(n);
    let mut inputs: Vec<String> = g.inputs(n).into_iter().map(|t| g.tensor_name(t)).collect();
    inputs.extend(
        g.control_inputs(n)
            .into_iter()
            .map(|c| format!("^{}", g.node(c).name)),
    );
    let types: Vec<String> = node.outputs.iter().map(ToString::to_string).collect();
    let types = if types.is_empty() {
        vec!["()".to_string()]
    } else {
        types
    };
    let args = if inputs.is_empty() {
        String::new()
    } else {
        format!("({})", inputs.join(", "))
    };
    format!(
        "{} = {}{}{args} : {}",
        node.name,
        node.op.name(),
        node.op.attrs_text(),
        types.join(", ")
    )
}

/// The whole graph: sections of forward and backward nodes, then gradients and outputs.
pub fn graph_text(g: &Graph) -> Result<String> {
    let mut s = String::new();
    let _ = writeln!(s, "graph {}", g.name);
    let mut role = None;
    for n in g.topo_order()? {
        let r = g.node(n).role;
        if role != Some(r) {
            let header = match r {
                Role::Forward => "# forward",
                Role::Backward => "# backward",
                Role::Update => "# update",
            };
            let _ = writeln!(s, "{header}");
            role = Some(r);
        }
        let _ = writeln!(s, "{}", node_line(g, n));
    }
    if !g.gradients.is_empty() {
        let _ = writeln!(s, "# gradients");
        for r in &g.gradients {
            let _ = writeln!(
                s,
                "{} = {} : {}",
                r.name,
                g.tensor_name(r.value),
                g.ty(r.value)
            );
        }
    }
    let _ = writeln!(s, "# outputs");
    for (label, t) in &g.outputs {
        let _ = writeln!(s, "{label} = {} : {}", g.tensor_name(*t), g.ty(*t));
    }
    Ok(s)
}

/// A lowered program, one instruction per line in the form of
/// [`node_line`] (in program order, each input named by its instruction),
/// then its named outputs: what a session runs, as `gradc compile` writes it.
pub fn program_text(p: &gradc_runtime::Program) -> String {
    let name = |v: &gradc_runtime::ValueRef| {
        let base = p.instrs.get(v.node).map_or("?", |i| i.name.as_str());
        if v.output == 0 {
            base.to_string()
        } else {
            format!("{base}:{}", v.output)
        }
    };
    let mut s = String::new();
    let _ = writeln!(s, "program {}", p.name);
    for i in &p.instrs {
        let mut inputs: Vec<String> = i.inputs.iter().map(name).collect();
        inputs.extend(
            i.control
                .iter()
                .map(|&c| format!("^{}", p.instrs.get(c).map_or("?", |c| c.name.as_str()))),
        );
        let args = if inputs.is_empty() {
            String::new()
        } else {
            format!("({})", inputs.join(", "))
        };
        let types: Vec<String> = i.outputs.iter().map(ToString::to_string).collect();
        let types = if types.is_empty() {
            "()".to_string()
        } else {
            types.join(", ")
        };
        let _ = writeln!(
            s,
            "{} = {}{}{args} : {types}",
            i.name,
            i.op.name(),
            i.op.attrs_text()
        );
    }
    let _ = writeln!(s, "# outputs");
    for o in &p.outputs {
        let _ = writeln!(s, "{} = {}", o.label, name(&o.value));
    }
    s
}

/// Graphviz DOT: forward nodes as boxes, backward nodes shaded in their own cluster.
pub fn dot(g: &Graph) -> Result<String> {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];",
        esc(&g.name)
    );
    let order = g.topo_order()?;
    for (role, header) in [
        (Role::Forward, "  subgraph cluster_forward {\n    label=\"forward\";"),
        (Role::Backward, "  subgraph cluster_backward {\n    label=\"backward\";\n    style=filled; color=\"#eeeeff\";\n    node [style=filled, fillcolor=\"#ddddff\"];"),
        (Role::Update, "  subgraph cluster_update {\n    label=\"update\";\n    style=filled; color=\"#eeffee\";\n    node [style=filled, fillcolor=\"#ddffdd\"];"),
    ] {
        let nodes: Vec<_> = order.iter().filter(|&&n| g.node(n).role == role).collect();
        if nodes.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{header}");
        for &&n in &nodes {
            let node = g.node(n);
            let types: Vec<String> = node.outputs.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "    n{} [label=\"{}\\n{}{}\\n{}\"];",
                n.index(),
                esc(&node.name),
                node.op.name(),
                esc(&node.op.attrs_text()),
                types.join(", ")
            );
        }
        let _ = writeln!(s, "  }}");
    }
    for &n in &order {
        for (slot, t) in g.inputs(n).into_iter().enumerate() {
            let label = if t.output == 0 {
                slot.to_string()
            } else {
                format!("{}->{slot}", t.output)
            };
            let _ = writeln!(
                s,
                "  n{} -> n{} [label=\"{label}\"];",
                t.node.index(),
                n.index()
            );
        }
        for c in g.control_inputs(n) {
            let _ = writeln!(s, "  n{} -> n{} [style=dotted];", c.index(), n.index());
        }
    }
    for r in &g.gradients {
        let name = esc(&r.name);
        let _ = writeln!(
            s,
            "  \"{name}\" [shape=note];\n  n{} -> \"{name}\" [style=dashed];",
            r.value.node.index()
        );
    }
    let _ = writeln!(s, "}}");
    Ok(s)
}
