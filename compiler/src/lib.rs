//! gradc compiler: RON graph -> IR -> shapes -> gradients -> passes -> program.
//!
//! ```text
//! schema::parse  ->  build::build (IR + shapes + grad::gradients)  ->  passes  ->  lower  ->  Program
//! ```

pub mod build;
pub mod error;
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

/// Reads, parses and builds a graph file.
pub fn graph_from_file(path: &Path) -> Result<Graph> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CompileError::new(ErrorKind::Io, e.to_string()).in_file(&file))?;
    graph_from_str(&text, &file)
}

/// Runs the default passes and lowers to a program.
pub fn compile(mut g: Graph) -> Result<gradc_runtime::Program> {
    passes::Pipeline::default_passes().run(&mut g)?;
    lower::lower(&g)
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
pub fn compile_training(mut g: Graph) -> Result<TrainPrograms> {
    passes::Pipeline::default_passes().run(&mut g)?;
    let Some(info) = g.train.clone() else {
        return Err(CompileError::new(
            ErrorKind::Train,
            "the graph has no train section",
        ));
    };
    let mut reported = vec![info.loss.clone()];
    reported.extend(info.metrics.iter().cloned());
    let mut eval_outputs = reported.clone();
    for o in &g.outputs {
        if !eval_outputs.iter().any(|(l, _)| *l == o.0) {
            eval_outputs.push(o.clone());
        }
    }
    let mut train_graph = g.clone();
    train_graph.outputs = reported;
    Ok(TrainPrograms {
        train: lower::lower(&train_graph)?,
        eval: lower::lower_pruned(&g, &eval_outputs)?,
        train_op: g.node(info.train_op).name.clone(),
        loss: info.loss.0.clone(),
        metrics: info.metrics.iter().map(|(l, _)| l.clone()).collect(),
    })
}
