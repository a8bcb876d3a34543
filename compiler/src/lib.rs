//! gradc compiler: RON graph -> IR -> shapes -> gradients -> passes -> program.
//!
//! ```text
//! schema::parse  ->  build::build (IR + shapes + grad::gradients)  ->  passes  ->  lower  ->  Program
//! ```
//!
//! [`graph_from_file`] and [`graph_from_str`] parse and build a graph file;
//! [`Compiler`] is the one way to compile: a parsed file or a built graph,
//! with the passes, the run's names and the training flag it asks for, into
//! a program ([`Compiler::compile`]), the two programs of a train section
//! ([`Compiler::compile_train`]) or the graph before lowering ([`Compiler::graph`]).

pub mod build;
pub mod builder;
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

pub use build::RunNames;
pub use error::{did_you_mean, CompileError, ErrorKind, Result};
pub use ir::Graph;

use std::collections::BTreeMap;
use std::path::Path;

/// Parses and builds a graph from its text; errors carry `file` as given.
pub fn graph_from_str(text: &str, file: &str) -> Result<Graph> {
    let spec = schema::parse_file(text, file)?;
    build::build(&spec, text).map_err(|e| e.in_file(file))
}

/// Reads, parses and builds a graph file.
pub fn graph_from_file(path: &Path) -> Result<Graph> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CompileError::new(ErrorKind::Io, e.to_string()).in_file(&file))?;
    graph_from_str(&text, &file)
}

/// What a [`Compiler`] compiles.
pub enum Source<'a> {
    /// A parsed graph file: its spec, its text (for the lines of errors) and
    /// its name (for errors). Built as the pipeline wants it: with forward
    /// patterns fused before differentiation if it prefuses
    /// ([`passes::Pipeline::prefuse`]), sparing what the run names.
    File {
        spec: &'a schema::GraphSpec,
        text: &'a str,
        file: &'a str,
    },
    /// A graph already built ([`graph_from_file`], [`graph_from_str`]): it is
    /// not built again, so nothing is prefused and its training flag, if it
    /// has one, stays a placeholder. (Boxed: a graph is large.)
    Graph(Box<Graph>),
}

impl<'a> Source<'a> {
    /// A parsed graph file, as [`Source::File`].
    pub fn file(spec: &'a schema::GraphSpec, text: &'a str, file: &'a str) -> Source<'a> {
        Source::File { spec, text, file }
    }
}

impl From<Graph> for Source<'_> {
    fn from(g: Graph) -> Self {
        Source::Graph(Box::new(g))
    }
}

/// The one entry point for compiling: what to compile, then the options, then
/// what to make of it.
///
/// - [`Compiler::passes`]: the optimizer's pipeline (default
///   [`passes::Pipeline::default_passes`], prefuse included;
///   [`passes::Pipeline::none`] for no optimization).
/// - [`Compiler::run_names`]: the tensors a run fetches (kept as outputs)
///   and the nodes it feeds (each rewritten into a placeholder before the
///   passes, see [`RunNames`]).
/// - [`Compiler::training_flag`]: the train section's `training_flag` built
///   as this constant (a parsed file only).
/// - [`Compiler::inference`]: only what the loss, the metrics and the outputs
///   of a graph with a train section need, its training flag 0 unless set.
/// - [`Compiler::keep_graph`]: [`Output::graph`] holds the graph after the
///   passes (lowering then copies it instead of moving it).
///
/// Then [`Compiler::compile`] makes one program (what `gradc compile` and
/// `gradc run` do), [`Compiler::compile_train`] the train step and the
/// inference program of a train section (what `gradc train` does), and
/// [`Compiler::graph`] the graph that `compile` would lower (what `gradc grad
/// --inference` prints).
///
/// ```
/// use gradc_compiler::{passes::Pipeline, schema, Compiler, Source};
///
/// let text = r#"Graph(name: "apple", dtype: F32, nodes: [
///     (name: "apple", op: Const(1.5)),
///     (name: "num", op: Const(2.0)),
///     (name: "price", op: Mul, inputs: ["apple", "num"]),
/// ], gradients: [(of: "price", wrt: ["apple"])])"#;
/// let spec = schema::parse(text)?;
/// // Optimized, as `gradc compile` does.
/// let out = Compiler::new(Source::file(&spec, text, "apple.ron")).compile()?;
/// assert!(out.program.optimized);
/// // Built only, no pass.
/// let g = Compiler::new(Source::file(&spec, text, "apple.ron"))
///     .passes(Pipeline::none())
///     .graph()?;
/// // A built graph compiles too.
/// let program = Compiler::new(g).passes(Pipeline::none()).compile()?.program;
/// assert!(!program.optimized);
/// # Ok::<(), gradc_compiler::CompileError>(())
/// ```
pub struct Compiler<'a> {
    source: Source<'a>,
    pipeline: passes::Pipeline,
    run: RunNames<'a>,
    training_flag: Option<f64>,
    inference: bool,
    keep_graph: bool,
}

/// A program that [`Compiler::compile`] made, with what the compile did.
#[derive(Debug)]
pub struct Output {
    pub program: gradc_runtime::Program,
    /// The graph after the passes, with [`Compiler::keep_graph`].
    pub graph: Option<Graph>,
    /// What prefuse fused (rule and count) as the graph was built.
    pub prefused: BTreeMap<&'static str, usize>,
    /// What each pass did.
    pub reports: Vec<passes::PassReport>,
}

/// The two programs of a graph with a `train` section ([`Compiler::compile_train`]).
pub struct TrainPrograms {
    /// Forward, backward and every update op; run it with the target `train`.
    pub train: gradc_runtime::Program,
    /// Forward only: the loss, the metrics and the graph's outputs, no update op.
    pub eval: gradc_runtime::Program,
    /// The target to run for one train step, and the labels to fetch.
    pub train_op: String,
    pub loss: String,
    pub metrics: Vec<String>,
    /// The label of the learning rate a step uses, to fetch from `train`.
    pub learning_rate: Option<String>,
}

impl<'a> Compiler<'a> {
    /// Compiles `source` (a [`Source::file`] or a built [`Graph`]) with the
    /// default passes, for a run that names nothing beyond the file.
    pub fn new(source: impl Into<Source<'a>>) -> Compiler<'a> {
        Compiler {
            source: source.into(),
            pipeline: passes::Pipeline::default_passes(),
            run: RunNames::default(),
            training_flag: None,
            inference: false,
            keep_graph: false,
        }
    }

    /// The passes to run (and, for a parsed file, whether to prefuse).
    pub fn passes(mut self, pipeline: passes::Pipeline) -> Compiler<'a> {
        self.pipeline = pipeline;
        self
    }

    /// The tensors the run fetches and the nodes it feeds.
    pub fn run_names(mut self, run: RunNames<'a>) -> Compiler<'a> {
        self.run = run;
        self
    }

    /// Builds the parsed file with its train section's `training_flag` (a
    /// scalar placeholder) replaced by the constant `value`, so layers keep
    /// only their training (1) or inference (0) branch.
    pub fn training_flag(mut self, value: f64) -> Compiler<'a> {
        self.training_flag = Some(value);
        self
    }

    /// Compiles the inference part of a graph with a `train` section: only
    /// what its loss, its metrics and its outputs need, pruned before the
    /// passes (so the train section plays no part in them) and again as it
    /// is lowered; a parsed file's training flag is 0 unless
    /// [`Compiler::training_flag`] says otherwise.
    pub fn inference(mut self) -> Compiler<'a> {
        self.inference = true;
        self
    }

    /// Keeps the graph after the passes in [`Output::graph`].
    pub fn keep_graph(mut self) -> Compiler<'a> {
        self.keep_graph = true;
        self
    }

    /// Builds, runs the passes and lowers to one program.
    pub fn compile(self) -> Result<Output> {
        let (inference, keep_graph) = (self.inference, self.keep_graph);
        let (mut g, reports) = self.graph_and_reports()?;
        // Pruned again after the passes: what they left unread (a
        // placeholder, a variable) is not part of the inference program.
        let lower_copy = |g: &Graph| match inference {
            true => lower::lower_pruned(g, &g.outputs),
            false => lower::lower(g),
        };
        if keep_graph {
            return Ok(Output {
                program: lower_copy(&g)?,
                prefused: g.prefused.clone(),
                graph: Some(g),
                reports,
            });
        }
        let prefused = std::mem::take(&mut g.prefused);
        let program = match inference {
            true => lower_copy(&g)?,
            // The graph is moved into the program instead of copied.
            false => lower::lower_owned(g)?,
        };
        Ok(Output {
            program,
            graph: None,
            prefused,
            reports,
        })
    }

    /// The graph that [`Compiler::compile`] would lower: built, with the run's
    /// names kept and fed, pruned to inference if asked, after the passes.
    pub fn graph(self) -> Result<Graph> {
        Ok(self.graph_and_reports()?.0)
    }

    /// Compiles a graph with a `train` section into its train step and its
    /// inference program, each optimized by the pipeline. A parsed file with
    /// a `training_flag` is built twice: with the flag set to 1 for the train
    /// step and to 0 for the inference program, so layers keep only their
    /// training or inference branch. The inference program is compiled as
    /// [`Compiler::inference`] does. Run names, a training flag value, the
    /// inference target and a kept graph are options of `compile` and
    /// `graph`, and an error here.
    pub fn compile_train(self) -> Result<TrainPrograms> {
        let Compiler {
            source,
            mut pipeline,
            run,
            training_flag,
            inference,
            keep_graph,
        } = self;
        if !run.fetches.is_empty()
            || !run.feeds.is_empty()
            || training_flag.is_some()
            || inference
            || keep_graph
        {
            return Err(CompileError::new(
                ErrorKind::Train,
                "compile_train sets the training flag and makes both programs itself: \
                 it takes no run names, training flag value, inference target or kept graph",
            ));
        }
        match source {
            Source::File { spec, text, file } => {
                let flag = spec.train.as_ref().and_then(|t| t.training_flag.as_deref());
                let prefuse = pipeline.prefuse;
                let none = RunNames::default();
                // Inference exchanges nothing: each rank of a data-parallel run
                // evaluates whole chunks of its own, as one process would (a
                // synchronized batch norm in training mode uses the chunk's
                // statistics there).
                let ranks = spec.train.as_ref().and_then(|t| t.ranks).unwrap_or(1);
                let one_rank = (ranks > 1).then(|| {
                    let mut s = spec.clone();
                    if let Some(t) = s.train.as_mut() {
                        t.ranks = None;
                    }
                    s
                });
                let eval_spec = one_rank.as_ref().unwrap_or(spec);
                let (train_g, eval_g) = match flag {
                    Some(flag) => (
                        build_with_flag(spec, text, file, flag, 1.0, prefuse, none)?,
                        build_with_flag(eval_spec, text, file, flag, 0.0, prefuse, none)?,
                    ),
                    None => {
                        let g = build::build_with(spec, text, prefuse, none)
                            .map_err(|e| e.in_file(file))?;
                        let eval = match &one_rank {
                            Some(s) => build::build_with(s, text, prefuse, none)
                                .map_err(|e| e.in_file(file))?,
                            None => g.clone(),
                        };
                        (g, eval)
                    }
                };
                programs(train_g, eval_g, &mut pipeline).map_err(|e| e.in_file(file))
            }
            Source::Graph(g) => programs((*g).clone(), *g, &mut pipeline),
        }
    }

    /// The graph of `compile` and `graph`, after the passes; and what each pass did.
    fn graph_and_reports(self) -> Result<(Graph, Vec<passes::PassReport>)> {
        let Compiler {
            source,
            mut pipeline,
            run,
            training_flag,
            inference,
            keep_graph: _,
        } = self;
        let (mut g, file) = match source {
            Source::File { spec, text, file } => {
                let declared = spec.train.as_ref().and_then(|t| t.training_flag.as_deref());
                let prefuse = pipeline.prefuse;
                let g =
                    match (declared, training_flag) {
                        (Some(flag), value) if value.is_some() || inference => {
                            let value = value.unwrap_or(0.0);
                            build_with_flag(spec, text, file, flag, value, prefuse, run)?
                        }
                        (None, Some(_)) => return Err(CompileError::new(
                            ErrorKind::Train,
                            "a training flag value is given, but the graph has no training_flag",
                        )
                        .in_file(file)),
                        _ => build::build_with(spec, text, prefuse, run)
                            .map_err(|e| e.in_file(file))?,
                    };
                (g, Some(file))
            }
            Source::Graph(g) => {
                if training_flag.is_some() {
                    return Err(CompileError::new(
                        ErrorKind::Train,
                        "a training flag value is given for a graph already built, \
                         where the flag is a placeholder: compile the parsed file",
                    ));
                }
                (*g, None)
            }
        };
        let located = |e: CompileError| match file {
            Some(file) => e.in_file(file),
            None => e,
        };
        keep(&mut g, run.fetches).map_err(located)?;
        cut_at_feeds(&mut g, run.feeds).map_err(located)?;
        if inference {
            // Optimized as what it is: the part of the graph its outputs
            // need, without the train section (whose gradient nodes would
            // otherwise lend it their names through CSE).
            g = inference_graph(&g).map_err(located)?;
        }
        let reports = pipeline.run(&mut g)?;
        Ok((g, reports))
    }
}

/// Makes each fed node a placeholder of its type (TensorFlow's `feed_dict`
/// replaces a tensor's value, and what only it needed does not run), so the
/// passes see a value they know nothing about. Placeholders and variables
/// stay as they are; a node with several outputs, or one that changes a
/// variable, cannot be fed.
fn cut_at_feeds(g: &mut Graph, feeds: &[&str]) -> Result<()> {
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

/// Makes the named tensors outputs of the graph, so the optimizer keeps them
/// (what `gradc run --fetch` asks for): gradient results, outputs, `node` or `node:k`.
fn keep(g: &mut Graph, names: &[&str]) -> Result<()> {
    for &name in names {
        if g.outputs.iter().any(|(l, _)| l == name) || g.gradients.iter().any(|r| r.name == name) {
            continue;
        }
        // A node without outputs (a NoOp) is run, not fetched; DCE keeps it.
        if g.find(name).is_some_and(|n| g.node(n).outputs.is_empty()) {
            continue;
        }
        let t = builder::resolve_ref(g, &Default::default(), name).ok_or_else(|| {
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

/// Builds the graph with the placeholder `flag` replaced by the constant `value`.
fn build_with_flag(
    spec: &schema::GraphSpec,
    text: &str,
    file: &str,
    flag: &str,
    value: f64,
    prefuse: bool,
    run: RunNames,
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
        schema::NodeOp::Op(gradc_runtime::Op::Placeholder { shape }) if shape.rank() == 0 => {}
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
    node.op = gradc_runtime::Op::Const(gradc_runtime::Literal::Scalar(value)).into();
    build::build_with(&s, text, prefuse, run).map_err(|e| e.in_file(file))
}

/// The train step from `train_g` and the inference program from `eval_g`.
fn programs(
    mut train_g: Graph,
    eval_g: Graph,
    pipeline: &mut passes::Pipeline,
) -> Result<TrainPrograms> {
    // The passes keep no state between runs but the counts they report, so
    // one pipeline optimizes both graphs as two fresh ones would.
    pipeline.run(&mut train_g)?;
    // The inference program is optimized as what it is: the part of the
    // graph its outputs need, without the train section (whose gradient
    // nodes would otherwise lend it their names through CSE).
    let mut eval_g = inference_graph(&eval_g)?;
    pipeline.run(&mut eval_g)?;
    let Some(info) = train_g.train.clone() else {
        return Err(CompileError::new(
            ErrorKind::Train,
            "the graph has no train section",
        ));
    };
    train_g.outputs = info.reported().cloned().collect();
    let train_op = train_g.node(info.train_op).name.clone();
    Ok(TrainPrograms {
        train: lower::lower_owned(train_g)?,
        // Pruned again after the passes: what they left unread (a
        // placeholder, a variable) is not part of the inference program.
        eval: lower::lower_pruned(&eval_g, &eval_g.outputs)?,
        train_op,
        loss: info.loss.0.clone(),
        metrics: info.metrics.iter().map(|(l, _)| l.clone()).collect(),
        learning_rate: info.learning_rate.map(|(l, _)| l),
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
fn inference_graph(g: &Graph) -> Result<Graph> {
    let outputs = inference_outputs(g)?;
    Ok(lower::prune(g, &outputs))
}
