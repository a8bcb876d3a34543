//! Schema -> IR, with validation. Nodes and gradient requests are built in
//! dependency order, so a node may use a gradient result (`d(y)/d(x)`) and a
//! gradient may be taken of a gradient (second order).

use crate::builder::{check_updated, resolve_ref};
use crate::error::{did_you_mean, CompileError, ErrorKind, Result};
use crate::grad;
use crate::ir::{GradientResult, Graph, Role, TensorRef, GLOBAL_VARIABLES, TRAINABLE_VARIABLES};
use crate::schema::{gradient_name, line_of_gradient, GraphSpec, Layer, NodeOp};
use foldhash::{HashMap, HashMapExt};
use gradc_runtime::Op;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a run names beyond the graph file: the tensors it fetches (`node`,
/// `node:k`, an output's or a gradient's label) and the nodes it feeds, as
/// `gradc run --fetch` and `--feed` do. Compiled for them, a program keeps
/// every fetched tensor and treats every fed node as a placeholder, so no
/// pass folds, merges or fuses what the feed replaces.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunNames<'a> {
    pub fetches: &'a [&'a str],
    pub feeds: &'a [&'a str],
}

/// One thing to build: a node of the file or a gradient request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Item {
    Node(usize),
    Gradient(usize),
}

/// Builds the IR of a parsed graph. `text` is the file's text, used to find lines.
pub fn build(spec: &GraphSpec, text: &str) -> Result<Graph> {
    build_with(spec, text, false, RunNames::default())
}

/// `build`, with `prefuse`: forward patterns are fused before each
/// differentiation (see `passes::prefuse`), sparing every node that the file
/// names (gradient requests, outputs, the train section) and those a run
/// fetches or feeds (`run`), so each keeps its value and gradient.
pub fn build_with(spec: &GraphSpec, text: &str, prefuse: bool, run: RunNames) -> Result<Graph> {
    let names: Vec<&str> = spec.nodes.iter().map(|n| n.name.as_str()).collect();
    let lines = crate::schema::node_lines(text, &names);
    let node_line = |i: usize| lines[i];
    // Who produces each name (borrowed from the spec and from the names of
    // the gradient results, made once).
    let result_names: Vec<(String, usize)> = spec
        .gradients
        .iter()
        .enumerate()
        .flat_map(|(j, gr)| gr.wrt.iter().map(move |x| (gradient_name(&gr.of, x), j)))
        .collect();
    let mut producer: HashMap<&str, Item> = HashMap::with_capacity(spec.nodes.len());
    for (i, n) in spec.nodes.iter().enumerate() {
        if producer.insert(&n.name, Item::Node(i)).is_some() {
            let second = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(&format!("\"{}\"", n.name)))
                .nth(1);
            return Err(CompileError::new(
                ErrorKind::DuplicateName,
                format!("node name '{}' is used twice", n.name),
            )
            .at_node(&n.name, n.op.name())
            .at_line(second.map(|(k, _)| k + 1).or(node_line(i))));
        }
    }
    for (name, j) in &result_names {
        producer.entry(name).or_insert(Item::Gradient(*j));
    }
    // What produces a reference: `x` or `x:k` is produced by whatever makes
    // `x`; `bn/moving_mean`, a node that the layer `bn` makes (its variables,
    // a called function's nodes), by that layer.
    let made_by_layer = |r: &str| -> Option<Item> {
        r.rmatch_indices('/')
            .find_map(|(at, _)| match producer.get(&r[..at]) {
                Some(&Item::Node(i)) if matches!(spec.nodes[i].op, NodeOp::Layer(_)) => {
                    Some(Item::Node(i))
                }
                _ => None,
            })
    };
    let produced = |r: &str| -> Option<Item> {
        let base = match r.rsplit_once(':') {
            Some((b, k)) if k.parse::<usize>().is_ok() && !producer.contains_key(r) => b,
            _ => r,
        };
        producer.get(base).copied().or_else(|| made_by_layer(base))
    };
    let unknown = |r: &str, line: Option<usize>, what: &str| {
        CompileError::new(
            ErrorKind::UnknownNode,
            format!(
                "{what} '{r}' does not exist{}",
                did_you_mean(r, producer.keys().copied())
            ),
        )
        .at_line(line)
    };
    // Dependencies of each item.
    let mut deps: Vec<(Item, Vec<Item>)> = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let mut d = Vec::new();
        for r in n.inputs.iter().chain(&n.control_inputs) {
            match produced(r) {
                Some(item) => d.push(item),
                None => return Err(unknown(r, node_line(i), "input").at_node(&n.name, n.op.name())),
            }
        }
        // A layer's is_training node: a missing one is the layer's error, with its wording.
        if let Some(item) = match &n.op {
            NodeOp::Layer(layer) => layer.reads().and_then(produced),
            NodeOp::Op(_) => None,
        } {
            d.push(item);
        }
        deps.push((Item::Node(i), d));
    }
    for (j, gr) in spec.gradients.iter().enumerate() {
        let line = line_of_gradient(text, &gr.of);
        let mut d = Vec::new();
        for r in std::iter::once(&gr.of).chain(&gr.wrt).chain(&gr.grad_ys) {
            match produced(r) {
                Some(item) if item == Item::Gradient(j) => {
                    return Err(CompileError::new(
                        ErrorKind::Cycle,
                        format!("gradient request of '{}' uses its own result '{r}'", gr.of),
                    )
                    .at_line(line))
                }
                Some(item) => d.push(item),
                None => {
                    return Err(
                        unknown(r, line, "gradient request names").at_node(&gr.of, "gradients")
                    )
                }
            }
        }
        deps.push((Item::Gradient(j), d));
    }
    let order = schedule(&deps).map_err(|stuck| match stuck {
        Item::Node(i) => {
            let n = &spec.nodes[i];
            CompileError::new(
                ErrorKind::Cycle,
                format!("node '{}' depends on itself through a cycle", n.name),
            )
            .at_node(&n.name, n.op.name())
            .at_line(node_line(i))
        }
        Item::Gradient(j) => CompileError::new(
            ErrorKind::Cycle,
            format!(
                "gradient request of '{}' depends on its own result",
                spec.gradients[j].of
            ),
        )
        .at_line(line_of_gradient(text, &spec.gradients[j].of)),
    })?;

    let mut g = Graph::new(&spec.name);
    // Differentiation and the train section add about as many nodes again
    // as the file has, and a little more.
    let derived = !spec.gradients.is_empty() || spec.train.is_some();
    g.reserve(spec.nodes.len() * if derived { 3 } else { 1 });
    let mut prefused = std::collections::BTreeMap::new();
    g.functions = crate::functions::check(spec, text)?;
    g.ranks = spec.train.as_ref().and_then(|t| t.ranks).unwrap_or(1);
    g.source = text.into();
    g.pinned = pinned_names(spec, run);
    g.fixed_roots = run
        .feeds
        .iter()
        .copied()
        .chain(
            spec.gradients
                .iter()
                .flat_map(|gr| gr.wrt.iter().map(String::as_str)),
        )
        .chain(
            spec.train
                .iter()
                .flat_map(|t| t.hooks.iter().map(String::as_str)),
        )
        .map(|n| crate::functions::base(n).to_string())
        .collect();
    let mut aliases: HashMap<String, TensorRef> = HashMap::new();
    let resolve = resolve_ref;
    for item in order {
        match item {
            Item::Node(i) => {
                let n = &spec.nodes[i];
                let line = node_line(i);
                let mut inputs = Vec::with_capacity(n.inputs.len());
                for r in &n.inputs {
                    let t = resolve(&g, &aliases, r).ok_or_else(|| {
                        CompileError::new(ErrorKind::UnknownNode, no_such_output(&g, r))
                            .at_node(&n.name, n.op.name())
                            .at_line(line)
                    })?;
                    inputs.push(t);
                }
                let dtype = n.dtype.unwrap_or(spec.dtype);
                let (id, layer_collections) = match &n.op {
                    NodeOp::Layer(Layer::Call(f)) => (
                        crate::functions::inline_call(&mut g, &n.name, f, &inputs, line)?,
                        Vec::new(),
                    ),
                    NodeOp::Layer(layer) => {
                        let e = crate::layers::expand(&mut g, &n.name, layer, &inputs, line)?;
                        (e.node, e.collections)
                    }
                    NodeOp::Op(op) => (
                        g.add(
                            n.name.clone(),
                            op.clone(),
                            dtype,
                            &inputs,
                            Role::Forward,
                            line,
                        )?,
                        Vec::new(),
                    ),
                };
                for (c, node) in layer_collections {
                    g.collections.entry(c).or_default().push(node);
                }
                for c in &n.control_inputs {
                    let before = g
                        .find(c)
                        .or_else(|| resolve(&g, &aliases, c).map(|t| t.node))
                        .ok_or_else(|| {
                            unknown(c, line, "control input").at_node(&n.name, n.op.name())
                        })?;
                    g.add_control(before, id);
                }
                if let NodeOp::Op(op) = &n.op {
                    check_updated(&g, op, &inputs)
                        .map_err(|e| e.at_node(&n.name, n.op.name()).at_line(line))?;
                }
                let mut collections = n.collections.clone();
                if let NodeOp::Op(Op::Variable { trainable, .. }) = n.op {
                    collections.push(GLOBAL_VARIABLES.to_string());
                    if trainable {
                        collections.push(TRAINABLE_VARIABLES.to_string());
                    }
                }
                for c in collections {
                    g.collections.entry(c).or_default().push(id);
                }
                let inferred = g.node(id).outputs.first().map_or(dtype, |t| t.dtype);
                if n.dtype.is_some_and(|d| d != inferred) {
                    return Err(CompileError::new(
                        ErrorKind::DType,
                        format!("declared dtype {dtype} but the inputs make it {inferred}"),
                    )
                    .at_node(&n.name, n.op.name())
                    .at_line(line));
                }
            }
            Item::Gradient(j) => {
                let gr = &spec.gradients[j];
                let line = line_of_gradient(text, &gr.of);
                if prefuse {
                    crate::passes::prefuse::run(&mut g, &mut prefused)?;
                }
                let find = |r: &str| {
                    resolve(&g, &aliases, r)
                        .ok_or_else(|| unknown(r, line, "gradient request names"))
                };
                let y = find(&gr.of)?;
                let xs = gr.wrt.iter().map(|x| find(x)).collect::<Result<Vec<_>>>()?;
                let grad_y = gr.grad_ys.as_deref().map(find).transpose()?;
                let scope = g.free_scope("gradients");
                let results =
                    grad::gradients(&mut g, y, &xs, grad_y, &scope).map_err(|e| e.at_line(line))?;
                for (x, r) in gr.wrt.iter().zip(results) {
                    let name = gradient_name(&gr.of, x);
                    aliases.insert(name.clone(), r);
                    g.gradients.push(GradientResult {
                        name,
                        of: gr.of.clone(),
                        wrt: x.clone(),
                        grad_ys: gr.grad_ys.clone(),
                        value: r,
                    });
                }
            }
        }
    }
    g.outputs = match &spec.outputs {
        Some(names) => names
            .iter()
            .map(|r| {
                resolve(&g, &aliases, r)
                    .map(|t| (r.clone(), t))
                    .ok_or_else(|| unknown(r, None, "output"))
            })
            .collect::<Result<_>>()?,
        None => default_outputs(&g),
    };
    if let Some(train) = &spec.train {
        if prefuse {
            crate::passes::prefuse::run(&mut g, &mut prefused)?;
        }
        crate::train::build_train(&mut g, train, &aliases, text)?;
    }
    g.prefused = prefused;
    Ok(g)
}

/// Why input `r` names no output of a node that exists: a `NoOp` has none,
/// another node fewer than `r` asks for.
fn no_such_output(g: &Graph, r: &str) -> String {
    let (base, n) = match g.find(r) {
        Some(n) => (r, n),
        None => match r.rsplit_once(':').and_then(|(b, _)| Some((b, g.find(b)?))) {
            Some(found) => found,
            None => return format!("input '{r}' does not exist{}", did_you_mean(r, g.names())),
        },
    };
    let node = g.node(n);
    match node.outputs.len() {
        0 => format!(
            "input '{r}' is a {}, which has no output to read: to run it first, name it in control_inputs",
            node.op.name()
        ),
        1 => format!(
            "input '{r}': node '{base}' ({}) has one output, '{base}' (or '{base}:0')",
            node.op.name()
        ),
        k => format!(
            "input '{r}': node '{base}' ({}) has {k} outputs, '{base}:0' (or '{base}') to '{base}:{}'",
            node.op.name(),
            k - 1
        ),
    }
}

/// The nodes that `prefuse` must spare (see [`Graph::pinned`]): every name
/// of a gradient request (`of`, `wrt`, `grad_ys`), the outputs, the train
/// section's loss, metrics, hooks and training flag, and what `run` fetches
/// and feeds; `x:k` pins node `x`.
fn pinned_names(spec: &GraphSpec, run: RunNames) -> foldhash::HashSet<String> {
    let requests = spec
        .gradients
        .iter()
        .flat_map(|gr| std::iter::once(&gr.of).chain(&gr.wrt).chain(&gr.grad_ys));
    let train = spec.train.iter().flat_map(|t| {
        std::iter::once(&t.loss)
            .chain(&t.metrics)
            .chain(&t.hooks)
            .chain(&t.training_flag)
    });
    let names = requests
        .chain(spec.outputs.iter().flatten())
        .chain(train)
        .map(String::as_str)
        .chain(run.fetches.iter().copied())
        .chain(run.feeds.iter().copied());
    let mut pinned = foldhash::HashSet::default();
    for name in names {
        pinned.insert(name.to_string());
        pinned.insert(crate::functions::base(name).to_string());
    }
    pinned
}

/// Forward nodes that no other forward node uses, sources (placeholders, constants) left out.
fn default_outputs(g: &Graph) -> Vec<(String, TensorRef)> {
    let mut out: Vec<_> = g
        .g
        .node_indices()
        .filter(|&n| {
            let node = g.node(n);
            node.role == Role::Forward
                && !node.op.is_stateful()
                && !matches!(
                    node.op,
                    Op::Placeholder { .. } | Op::Const(_) | Op::Variable { .. }
                )
                && g.consumers(n)
                    .iter()
                    .all(|&m| g.node(m).role != Role::Forward)
        })
        .flat_map(|n| (0..g.node(n).outputs.len()).map(move |k| TensorRef { node: n, output: k }))
        .map(|t| (g.tensor_name(t), t))
        .collect();
    out.sort_by_key(|(_, t)| (g.node(t.node).seq(), t.output));
    out
}

/// Kahn's algorithm over items, earliest item first. On a cycle, returns an item stuck in it.
fn schedule(deps: &[(Item, Vec<Item>)]) -> std::result::Result<Vec<Item>, Item> {
    // Items as dense indices: nodes first, then gradient requests.
    let count = |node: bool| {
        deps.iter()
            .flat_map(|(i, d)| std::iter::once(i).chain(d))
            .filter_map(|i| match (*i, node) {
                (Item::Node(k), true) | (Item::Gradient(k), false) => Some(k + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    let nodes = count(true);
    let index = |i: Item| match i {
        Item::Node(k) => k,
        Item::Gradient(k) => nodes + k,
    };
    let size = nodes + count(false);
    // Remaining dependencies per item (None: not an item to build), users per item.
    let mut remaining: Vec<Option<usize>> = vec![None; size];
    let mut users: Vec<Vec<Item>> = vec![Vec::new(); size];
    for (item, d) in deps {
        remaining[index(*item)] = Some(d.len());
        for &p in d {
            users[index(p)].push(*item);
        }
    }
    let mut ready: BinaryHeap<Reverse<Item>> = deps
        .iter()
        .filter(|(_, d)| d.is_empty())
        .map(|(i, _)| Reverse(*i))
        .collect();
    let mut order = Vec::with_capacity(deps.len());
    let mut done = vec![false; size];
    while let Some(Reverse(item)) = ready.pop() {
        order.push(item);
        done[index(item)] = true;
        for &u in &users[index(item)] {
            if let Some(c) = &mut remaining[index(u)] {
                *c -= 1;
                if *c == 0 {
                    ready.push(Reverse(u));
                }
            }
        }
    }
    if order.len() < deps.len() {
        let stuck = deps.iter().map(|(i, _)| *i).find(|&i| !done[index(i)]);
        return Err(stuck.unwrap_or(Item::Node(0)));
    }
    Ok(order)
}
