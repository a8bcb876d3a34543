//! Functions of the graph file: checked once (names, calls, recursion), inlined
//! at every call under the call's name, and, for custom gradients,
//! instantiated into the backward graph by the `CustomGradient` rule.
//!
//! A call `c` of a function with one output becomes the body's nodes under
//! `c/...` and a node `c` = Identity of the output; with several outputs, `c`
//! is an IdentityN (`"c:1"` is the second output); with a custom gradient, `c`
//! is a `CustomGradient` node whose inputs are the call's arguments and the
//! body's outputs, so autodiff reaches the arguments through the function's
//! gradient graph and never through the body.

use crate::error::{did_you_mean, CompileError, ErrorKind, Result};
use crate::ir::{Graph, Role, TensorRef};
use crate::schema::{line_of_function, FunctionSpec, GraphSpec, NodeSpec};
use crate::schema::{Layer, NodeOp};
use foldhash::HashMap;
use gradc_runtime::Op;
use petgraph::stable_graph::NodeIndex;
use std::collections::BTreeMap;

fn function_error(function: &str, text: &str, message: String) -> CompileError {
    CompileError::new(ErrorKind::Function, message).at_line(line_of_function(text, function))
}

/// The graph's functions by name, after checking that names are unique, that
/// every call names a function, and that no function calls itself, directly or not.
pub fn check(spec: &GraphSpec, text: &str) -> Result<BTreeMap<String, FunctionSpec>> {
    let mut table = BTreeMap::new();
    for f in &spec.functions {
        if table.insert(f.name.clone(), f.clone()).is_some() {
            return Err(function_error(
                &f.name,
                text,
                format!("function '{}' is defined twice", f.name),
            ));
        }
    }
    let calls = |nodes: &[NodeSpec]| -> Vec<String> {
        nodes
            .iter()
            .filter_map(|n| match &n.op {
                NodeOp::Layer(Layer::Call(f)) => Some(f.clone()),
                _ => None,
            })
            .collect()
    };
    let names: Vec<&str> = table.keys().map(String::as_str).collect();
    let known = |callee: &str, caller: &str, line: Option<usize>| -> Result<()> {
        if table.contains_key(callee) {
            Ok(())
        } else {
            Err(CompileError::new(
                ErrorKind::Function,
                format!(
                    "{caller} calls '{callee}', which is not a function of the graph{}",
                    did_you_mean(callee, names.iter().copied())
                ),
            )
            .at_line(line))
        }
    };
    for n in &spec.nodes {
        if let NodeOp::Layer(Layer::Call(f)) = &n.op {
            known(
                f,
                &format!("node '{}'", n.name),
                crate::schema::line_of_node(text, &n.name),
            )?;
        }
    }
    for f in table.values() {
        for callee in calls(&f.nodes) {
            known(
                &callee,
                &format!("function '{}'", f.name),
                line_of_function(text, &f.name),
            )?;
        }
        if let Some(gr) = &f.gradient {
            if let Some(callee) = calls(&gr.nodes).first() {
                return Err(function_error(
                    &f.name,
                    text,
                    format!("the gradient of function '{}' calls '{callee}'; gradient graphs are made of ops", f.name),
                ));
            }
        }
    }
    // Recursion: a cycle in the call graph, found by depth-first search.
    fn visit<'a>(
        f: &'a str,
        table: &'a BTreeMap<String, FunctionSpec>,
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(start) = path.iter().position(|&p| p == f) {
            let mut cycle = path[start..].to_vec();
            cycle.push(f);
            return Some(cycle);
        }
        if done.contains(&f) {
            return None;
        }
        path.push(f);
        for n in table.get(f).map(|s| s.nodes.as_slice()).unwrap_or_default() {
            if let NodeOp::Layer(Layer::Call(callee)) = &n.op {
                if let Some(cycle) = visit(callee, table, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        done.push(f);
        None
    }
    let mut done = Vec::new();
    for f in table.keys() {
        if let Some(cycle) = visit(f, &table, &mut Vec::new(), &mut done) {
            return Err(function_error(
                cycle[0],
                text,
                format!(
                    "function '{}' calls itself: {}",
                    cycle[0],
                    cycle.join(" -> ")
                ),
            ));
        }
    }
    for f in table.values() {
        if let Some(gr) = &f.gradient {
            if gr.returns.len() != f.inputs.len() {
                return Err(function_error(
                    &f.name,
                    text,
                    format!(
                        "the gradient of function '{}' returns {} gradients for {} inputs",
                        f.name,
                        gr.returns.len(),
                        f.inputs.len()
                    ),
                ));
            }
        }
    }
    Ok(table)
}

/// Resolves `name` or `name:k` in an environment of tensors.
/// An output that does not exist (`x:7`, or any output of a `NoOp`) is None.
fn lookup(env: &HashMap<String, TensorRef>, g: &Graph, r: &str) -> Option<TensorRef> {
    if let Some(&t) = env.get(r) {
        return (t.output < g.node(t.node).outputs.len()).then_some(t);
    }
    let (base, k) = r.rsplit_once(':')?;
    let t = *env.get(base)?;
    let k: usize = k.parse().ok()?;
    (t.output == 0 && k < g.node(t.node).outputs.len()).then_some(TensorRef {
        node: t.node,
        output: k,
    })
}

/// Adds `nodes` under `scope` in dependency order, reading names from `env`
/// and adding each node to it. `place` says where, for errors.
pub fn instantiate(
    g: &mut Graph,
    nodes: &[NodeSpec],
    env: &mut HashMap<String, TensorRef>,
    scope: &str,
    role: Role,
    place: &dyn Fn(CompileError) -> CompileError,
) -> Result<()> {
    let mut remaining: Vec<&NodeSpec> = nodes.iter().collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|n| {
            n.inputs
                .iter()
                .chain(&n.control_inputs)
                .all(|r| env.contains_key(base(r)) || !nodes.iter().any(|m| m.name == base(r)))
        });
        let Some(i) = ready else {
            let n = remaining[0];
            return Err(place(CompileError::new(
                ErrorKind::Cycle,
                format!("node '{}' depends on itself through a cycle", n.name),
            )));
        };
        let n = remaining.remove(i);
        let inputs = n
            .inputs
            .iter()
            .map(|r| {
                lookup(env, g, r).ok_or_else(|| {
                    let message = if env.contains_key(base(r)) {
                        format!("input '{r}' has no such output")
                    } else {
                        let known: Vec<&str> = env.keys().map(String::as_str).collect();
                        format!("input '{r}' does not exist{}", did_you_mean(r, known))
                    };
                    place(
                        CompileError::new(ErrorKind::UnknownNode, message)
                            .at_node(&n.name, n.op.name()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let name = format!("{scope}/{}", n.name);
        let dtype = n
            .dtype
            .unwrap_or_else(|| inputs.first().map(|&t| g.ty(t).dtype).unwrap_or_default());
        let id = match &n.op {
            NodeOp::Layer(Layer::Call(f)) => {
                inline_call(g, &name, f, &inputs, None).map_err(place)?
            }
            NodeOp::Layer(layer) => {
                let e = crate::layers::expand(g, &name, layer, &inputs, None).map_err(place)?;
                for (c, node) in e.collections {
                    g.collections.entry(c).or_default().push(node);
                }
                e.node
            }
            NodeOp::Op(op) => {
                crate::builder::check_updated(g, op, &inputs)
                    .map_err(|e| place(e.at_node(&n.name, op.name())))?;
                g.add(name.clone(), op.clone(), dtype, &inputs, role, None)
                    .map_err(place)?
            }
        };
        for c in &n.control_inputs {
            let before = env.get(base(c)).copied().ok_or_else(|| {
                place(CompileError::new(
                    ErrorKind::UnknownNode,
                    format!("control input '{c}' does not exist"),
                ))
            })?;
            g.add_control(before.node, id);
        }
        for c in &n.collections {
            g.collections.entry(c.clone()).or_default().push(id);
        }
        env.insert(n.name.clone(), TensorRef::of(id));
    }
    Ok(())
}

/// The node a reference names: `x` for `x` or `x:k`.
pub(crate) fn base(r: &str) -> &str {
    match r.rsplit_once(':') {
        Some((b, k)) if k.parse::<usize>().is_ok() => b,
        _ => r,
    }
}

/// Inlines a call of `function` named `call` with arguments `args`; returns the node named `call`.
pub fn inline_call(
    g: &mut Graph,
    call: &str,
    function: &str,
    args: &[TensorRef],
    line: Option<usize>,
) -> Result<NodeIndex> {
    let f = g.functions.get(function).cloned().ok_or_else(|| {
        let names: Vec<&str> = g.functions.keys().map(String::as_str).collect();
        CompileError::new(
            ErrorKind::Function,
            format!(
                "'{function}' is not a function of the graph{}",
                did_you_mean(function, names)
            ),
        )
    })?;
    let source = g.source.clone();
    let at_call = |e: CompileError| e.at_node(call, "Call").at_line(line);
    if args.len() != f.inputs.len() {
        return Err(at_call(CompileError::new(
            ErrorKind::Function,
            format!(
                "function '{function}' takes {} inputs ({}), the call passes {}",
                f.inputs.len(),
                f.inputs.join(", "),
                args.len()
            ),
        )));
    }
    let mut env: HashMap<String, TensorRef> =
        f.inputs.iter().cloned().zip(args.iter().copied()).collect();
    let place = |e: CompileError| {
        let message = format!(
            "in function '{function}' (called by '{call}'): {}",
            e.message
        );
        let line = e.line.or(line_of_function(&source, function)).or(line);
        CompileError { message, line, ..e }
    };
    instantiate(g, &f.nodes, &mut env, call, Role::Forward, &place)?;
    let outputs = f
        .outputs
        .iter()
        .map(|o| {
            lookup(&env, g, o).ok_or_else(|| {
                place(CompileError::new(
                    ErrorKind::UnknownNode,
                    format!("output '{o}' is not a node of the function"),
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let dtype = outputs.first().map(|&t| g.ty(t).dtype).unwrap_or_default();
    let (op, inputs) = match (&f.gradient, outputs.as_slice()) {
        (Some(_), _) => {
            let mut inputs = args.to_vec();
            inputs.extend(&outputs);
            (
                Op::CustomGradient {
                    function: function.to_string(),
                    inputs: args.len(),
                },
                inputs,
            )
        }
        (None, [_]) => (Op::Identity, outputs.clone()),
        (None, _) => (Op::IdentityN, outputs.clone()),
    };
    g.add(call.to_string(), op, dtype, &inputs, Role::Forward, line)
        .map_err(at_call)
}
