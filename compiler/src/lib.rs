//! gradc compiler: RON graph -> IR -> shapes -> gradients -> passes -> program.
//!
//! ```text
//! schema::parse  ->  build::build (IR + shapes + grad::gradients)  ->  passes  ->  lower  ->  Program
//! ```

pub mod build;
pub mod error;
pub mod functions;
pub mod grad;
pub mod ir;
pub mod layers;
pub mod lower;
pub mod passes;
pub mod print;
pub mod schema;
pub mod train;

pub use error::{CompileError, ErrorKind, Result};
pub use ir::Graph;

use std::path::Path;

/// Parses and builds a graph from its text; errors carry `file` as given.
pub fn graph_from_str(text: &str, file: &str) -> Result<Graph> {
    let spec = schema::parse(text).map_err(|e| e.in_file(file))?;
    graph_from_spec(&spec, text, file)
}

/// Builds a parsed (and possibly adjusted) graph; `text` is its file's text, for lines.
pub fn graph_from_spec(spec: &schema::GraphSpec, text: &str, file: &str) -> Result<Graph> {
    build::build(spec, text).map_err(|e| e.in_file(file))
}

/// Builds a parsed graph as `pipeline` wants it (forward patterns fused before
/// differentiation if it prefuses), runs the pipeline and lowers it.
pub fn compile_spec(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    pipeline: passes::Pipeline,
    run: RunNames,
) -> Result<(gradc_runtime::Program, Graph, Vec<passes::PassReport>)> {
    let (g, reports) = optimized(spec, text, file, pipeline, run)?;
    Ok((lower::lower(&g)?, g, reports))
}

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

/// The graph of a parsed file, built as `pipeline` wants it for a run that
/// names `run`, after the pipeline; and what each pass did.
fn optimized(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    mut pipeline: passes::Pipeline,
    run: RunNames,
) -> Result<(Graph, Vec<passes::PassReport>)> {
    let mut g =
        build::build_with(spec, text, pipeline.prefuse, run).map_err(|e| e.in_file(file))?;
    keep(&mut g, run.fetches).map_err(|e| e.in_file(file))?;
    cut_at_feeds(&mut g, run.feeds).map_err(|e| e.in_file(file))?;
    let reports = pipeline.run(&mut g)?;
    Ok((g, reports))
}

/// Makes each fed node a placeholder of its type (TensorFlow's `feed_dict`
/// replaces a tensor's value, and what only it needed does not run), so the
/// passes see a value they know nothing about. Placeholders and variables
/// stay as they are; a node with several outputs, or one that changes a
/// variable, cannot be fed.
pub fn cut_at_feeds(g: &mut Graph, feeds: &[&str]) -> Result<()> {
    for &name in feeds {
        let n = g.find(name).ok_or_else(|| {
            CompileError::new(
                ErrorKind::UnknownNode,
                format!(
                    "feed '{name}': no node of that name{}",
                    error::did_you_mean(name, g.names())
                ),
            )
        })?;
        let node = g.node(n);
        let located = |e: CompileError| e.at_node(name, node.op.name()).at_line(node.line);
        if node.outputs.len() != 1 || node.op.is_stateful() {
            let why = if node.op.is_stateful() {
                "it changes a variable".to_string()
            } else {
                format!("it has {} outputs", node.outputs.len())
            };
            return Err(located(CompileError::new(
                ErrorKind::Feed,
                format!("'{name}' cannot be fed: {why}"),
            )));
        }
        if matches!(
            node.op,
            gradc_runtime::Op::Placeholder { .. } | gradc_runtime::Op::Variable { .. }
        ) {
            continue;
        }
        let ty = node.outputs[0].clone();
        g.g[n].dtype = ty.dtype;
        g.rewrite(n, gradc_runtime::Op::Placeholder { shape: ty.shape }, &[])?;
    }
    Ok(())
}

/// `compile_spec` for a caller that needs the program but not the optimized
/// graph: the graph is moved into the program instead of copied. Also returns
/// what prefuse fused (rule and count) and what each pass did.
pub fn compile_spec_program(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    pipeline: passes::Pipeline,
    run: RunNames,
) -> Result<(
    gradc_runtime::Program,
    std::collections::BTreeMap<&'static str, usize>,
    Vec<passes::PassReport>,
)> {
    let (mut g, reports) = optimized(spec, text, file, pipeline, run)?;
    let prefused = std::mem::take(&mut g.prefused);
    Ok((lower::lower_owned(g)?, prefused, reports))
}

/// Reads, parses and builds a graph file.
pub fn graph_from_file(path: &Path) -> Result<Graph> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CompileError::new(ErrorKind::Io, e.to_string()).in_file(&file))?;
    graph_from_str(&text, &file)
}

/// Runs the default passes and lowers to a program.
pub fn compile(g: Graph) -> Result<gradc_runtime::Program> {
    compile_with(g, passes::Pipeline::default_passes()).map(|(p, _)| p)
}

/// Runs `pipeline` and lowers to a program; also returns what each pass did.
pub fn compile_with(
    mut g: Graph,
    mut pipeline: passes::Pipeline,
) -> Result<(gradc_runtime::Program, Vec<passes::PassReport>)> {
    let reports = pipeline.run(&mut g)?;
    Ok((lower::lower_owned(g)?, reports))
}

/// Makes the named tensors outputs of the graph, so the optimizer keeps them
/// (what `gradc run --fetch` asks for): gradient results, outputs, `node` or `node:k`.
pub fn keep(g: &mut Graph, names: &[&str]) -> Result<()> {
    for &name in names {
        if g.outputs.iter().any(|(l, _)| l == name) || g.gradients.iter().any(|r| r.name == name) {
            continue;
        }
        let t = build::resolve_ref(g, &Default::default(), name).ok_or_else(|| {
            CompileError::new(
                ErrorKind::UnknownNode,
                format!(
                    "no node or output named '{name}'{}",
                    error::did_you_mean(name, g.names())
                ),
            )
        })?;
        g.outputs.push((name.to_string(), t));
    }
    Ok(())
}

/// The two programs of a graph with a `train` section.
pub struct TrainPrograms {
    /// Forward, backward and every update op; run it with the target `train`.
    pub train: gradc_runtime::Program,
    /// Forward only: the loss, the metrics and the graph's outputs, no update op.
    pub eval: gradc_runtime::Program,
    /// The target to run for one train step, and the labels to fetch.
    pub train_op: String,
    pub loss: String,
    pub metrics: Vec<String>,
}

/// Compiles a graph with a `train` section into its train-step and inference programs.
pub fn compile_training(g: Graph) -> Result<TrainPrograms> {
    programs(g.clone(), g, passes::Pipeline::default_passes)
}

/// Compiles a parsed graph file with a `train` section. With a `training_flag`,
/// the train step is built with the flag set to 1 and the inference program
/// with it set to 0, so layers keep only their training or inference branch.
pub fn compile_training_spec(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
) -> Result<TrainPrograms> {
    compile_training_spec_with(spec, text, file, passes::Pipeline::default_passes)
}

/// `compile_training_spec` with the passes `pipeline` makes (e.g. `Pipeline::none`).
pub fn compile_training_spec_with(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    pipeline: fn() -> passes::Pipeline,
) -> Result<TrainPrograms> {
    let flag = spec.train.as_ref().and_then(|t| t.training_flag.clone());
    let prefuse = pipeline().prefuse;
    let (train_g, eval_g) = match flag {
        Some(flag) => (
            graph_with_flag_opt(spec, text, file, &flag, 1.0, prefuse)?,
            graph_with_flag_opt(spec, text, file, &flag, 0.0, prefuse)?,
        ),
        None => {
            let g = build::build_with(spec, text, prefuse, RunNames::default())
                .map_err(|e| e.in_file(file))?;
            (g.clone(), g)
        }
    };
    programs(train_g, eval_g, pipeline).map_err(|e| e.in_file(file))
}

/// Builds the graph with the placeholder `flag` replaced by the constant `value`.
pub fn graph_with_flag(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    flag: &str,
    value: f64,
) -> Result<Graph> {
    graph_with_flag_opt(spec, text, file, flag, value, false)
}

fn graph_with_flag_opt(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    flag: &str,
    value: f64,
    prefuse: bool,
) -> Result<Graph> {
    let mut s = spec.clone();
    let node = s.nodes.iter_mut().find(|n| n.name == flag).ok_or_else(|| {
        CompileError::new(
            ErrorKind::Train,
            format!("training_flag '{flag}' is not a node of the graph"),
        )
        .in_file(file)
        .at_line(schema::line_of_key(text, "training_flag"))
    })?;
    match &node.op {
        gradc_runtime::Op::Placeholder { shape } if shape.rank() == 0 => {}
        other => {
            return Err(CompileError::new(
                ErrorKind::Train,
                format!(
                    "training_flag '{flag}' must be a scalar Placeholder, it is a {}",
                    other.name()
                ),
            )
            .in_file(file)
            .at_line(schema::line_of_node(text, flag)))
        }
    }
    node.op = gradc_runtime::Op::Const(gradc_runtime::Literal::Scalar(value));
    build::build_with(&s, text, prefuse, RunNames::default()).map_err(|e| e.in_file(file))
}

/// The inference graph of a parsed graph file with a `train` section: with its
/// `training_flag` set to 0, pruned to the loss, the metrics and the outputs.
pub fn inference_graph_spec(spec: &schema::GraphSpec, text: &str, file: &str) -> Result<Graph> {
    let g = match spec.train.as_ref().and_then(|t| t.training_flag.as_deref()) {
        Some(flag) => graph_with_flag(spec, text, file, flag, 0.0)?,
        None => graph_from_spec(spec, text, file)?,
    };
    inference_graph(&g)
}

/// The train step from `train_g` and the inference program from `eval_g`.
fn programs(
    mut train_g: Graph,
    eval_g: Graph,
    pipeline: fn() -> passes::Pipeline,
) -> Result<TrainPrograms> {
    pipeline().run(&mut train_g)?;
    // The inference program is optimized as what it is: the part of the
    // graph its outputs need, without the train section (whose gradient
    // nodes would otherwise lend it their names through CSE).
    let mut eval_g = inference_graph(&eval_g)?;
    pipeline().run(&mut eval_g)?;
    let Some(info) = train_g.train.clone() else {
        return Err(CompileError::new(
            ErrorKind::Train,
            "the graph has no train section",
        ));
    };
    let mut reported = vec![info.loss.clone()];
    reported.extend(info.metrics.iter().cloned());
    reported.extend(info.hooks.iter().cloned());
    train_g.outputs = reported;
    let train_op = train_g.node(info.train_op).name.clone();
    Ok(TrainPrograms {
        train: lower::lower_owned(train_g)?,
        // Pruned again after the passes: what they left unread (a
        // placeholder, a variable) is not part of the inference program.
        eval: lower::lower_pruned(&eval_g, &eval_g.outputs)?,
        train_op,
        loss: info.loss.0.clone(),
        metrics: info.metrics.iter().map(|(l, _)| l.clone()).collect(),
    })
}

/// What the inference program computes: the loss, the metrics and the graph's outputs.
fn inference_outputs(g: &Graph) -> Result<Vec<(String, ir::TensorRef)>> {
    let Some(info) = &g.train else {
        return Err(CompileError::new(
            ErrorKind::Train,
            "the graph has no train section",
        ));
    };
    let mut outputs = vec![info.loss.clone()];
    outputs.extend(info.metrics.iter().cloned());
    for o in &g.outputs {
        if !outputs.iter().any(|(l, _)| *l == o.0) {
            outputs.push(o.clone());
        }
    }
    Ok(outputs)
}

/// The inference graph of a graph with a `train` section: only what the loss,
/// the metrics and the outputs need (what `gradc grad --inference` prints).
pub fn inference_graph(g: &Graph) -> Result<Graph> {
    let outputs = inference_outputs(g)?;
    Ok(lower::prune(g, &outputs))
}
