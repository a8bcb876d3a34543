//! The `gradc` command-line tool.

use clap::{Parser, Subcommand};
use gradc::compiler::ir::Role;
use gradc::compiler::{self, passes::Pipeline, Compiler, Graph, RunNames, Source};
use gradc::runtime::{Dim, Op, PlanMemory, Program, ProgramError, RunError, Session, ValueRef};
use gradc::{bench, feeds, gradcheck, train, Error};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc, not the system allocator: compiling a large graph makes and
/// frees millions of small strings, vectors and maps, and with mimalloc a
/// 100k-node compile takes about a fifth less (docs/performance.md, Compile time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that ends the process quietly (status 0) when stdout is closed,
/// as in `gradc grad big.ron | head`, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    };
}

#[derive(Parser)]
#[command(
    name = "gradc",
    version,
    about = "Static-graph compiler with ahead-of-time differentiation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which optimizer passes run.
#[derive(clap::Args, Clone, Debug, Default)]
struct OptArgs {
    /// Comma-separated passes to run, in order (default: all: prefuse,simplify,fold,cse,fuse,elementwise,dce); prefuse, wherever it is listed, runs as the graph is built, before each differentiation.
    #[arg(long, value_delimiter = ',', conflicts_with = "no_opt")]
    passes: Option<Vec<String>>,
    /// Run no optimizer pass.
    #[arg(long)]
    no_opt: bool,
}

impl OptArgs {
    fn pipeline(&self) -> Result<compiler::passes::Pipeline, Error> {
        Ok(match (&self.passes, self.no_opt) {
            (_, true) => compiler::passes::Pipeline::none(),
            (Some(names), false) => compiler::passes::Pipeline::named(names)?,
            (None, false) => compiler::passes::Pipeline::default_passes(),
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Parse a graph, infer shapes and dtypes, build its gradients; print a summary or the errors.
    Check { file: PathBuf },
    /// Print the graph with its gradient graph in the canonical text form.
    Grad {
        file: PathBuf,
        /// Print the graph after the optimizer's passes (the default ones, those of --passes,
        /// which implies it, or none with --no-opt).
        #[arg(long)]
        optimized: bool,
        #[command(flatten)]
        opt: OptArgs,
        /// Print the inference graph of a graph with a train section instead:
        /// its training flag set to 0, only what the loss and metrics need.
        #[arg(long)]
        inference: bool,
        /// The train step as `mpirun -np N gradc train` compiles it: its
        /// gradients averaged over N ranks (AllReduceMean) before the updates.
        #[arg(long, value_name = "N")]
        ranks: Option<usize>,
    },
    /// Print Graphviz DOT of the forward and backward graph.
    Dot {
        file: PathBuf,
        /// Draw the inference graph of a graph with a train section instead.
        #[arg(long)]
        inference: bool,
        /// The train step for N ranks, as `grad --ranks`.
        #[arg(long, value_name = "N")]
        ranks: Option<usize>,
    },
    /// Compile a graph and save the program, which `gradc run` runs with the runtime alone.
    Compile {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        opt: OptArgs,
        /// Print what each pass did, the node counts and the planned buffer memory.
        #[arg(long)]
        explain: bool,
    },
    /// Write a graph's inference program (or forward program) as an ONNX model.
    Export {
        file: PathBuf,
        /// The ONNX file to write (atomically).
        #[arg(long, value_name = "OUT.onnx")]
        onnx: PathBuf,
        /// The variables' values: a safetensors checkpoint, or the directory
        /// `gradc train --checkpoint` wrote; else their initializers'.
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// Seed of the variables' initializers (used unless --checkpoint gives a variable).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A value the model outputs (an output label or a node name, e.g. logits); repeatable;
        /// default: the graph's outputs (with a train section: the loss and the metrics).
        #[arg(long = "output", value_name = "NAME")]
        outputs: Vec<String>,
    },
    /// Read an ONNX model as a gradc graph file; its initializers go to a safetensors
    /// file beside it (GRAPH with the extension .safetensors), which the graph's variables load.
    Import {
        model: PathBuf,
        /// The graph file to write.
        #[arg(short, long, value_name = "GRAPH.ron")]
        output: PathBuf,
        /// Add a loss, an accuracy metric and a train section (Adam, learning rate 0.001).
        #[arg(long, value_enum)]
        loss: Option<LossArg>,
        /// The labels placeholder the loss reads.
        #[arg(long, requires = "loss", default_value = "labels")]
        labels: String,
        /// The model output the loss reads (default: the first).
        #[arg(long, requires = "loss", value_name = "NAME")]
        logits: Option<String>,
        /// The training data: a directory of MNIST files or an .npz file (needed with --loss).
        #[arg(long, requires = "loss", value_name = "PATH")]
        data: Option<PathBuf>,
    },
    /// Run a graph file or a compiled program; prints its outputs and gradients.
    Run {
        file: PathBuf,
        /// NAME=VALUE (a number or nested list) or NAME=FILE.npy; repeatable.
        #[arg(long = "feed", value_name = "NAME=VALUE")]
        feeds: Vec<String>,
        /// Node names, `node:k`, or output labels such as `d(price)/d(apple)`; default: all outputs.
        #[arg(long = "fetch", value_name = "NAME")]
        fetches: Vec<String>,
        /// Also write each fetched value to DIR as .npy.
        #[arg(long, value_name = "DIR")]
        npy_dir: Option<PathBuf>,
        /// Seed of the variables' initializers (used unless --checkpoint gives a variable's value).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Start the variables from this safetensors checkpoint, or the checkpoint.safetensors
        /// of this directory (tensors the program has no variable for, such as a train step's
        /// optimizer slots, are ignored).
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// After the run, write every variable to this safetensors checkpoint, atomically.
        #[arg(long, value_name = "FILE")]
        save_checkpoint: Option<PathBuf>,
        /// Run the fetches this many times, the variables carried from one run to the next; print the last run's values.
        #[arg(long, default_value_t = 1)]
        steps: usize,
        /// Threads for the kernels that split their work: matrix products, convolutions, pooling,
        /// large elementwise and batch-norm kernels (default: $GRADC_THREADS, else the cores
        /// available to the process; at most those cores; results do not depend on it).
        #[arg(long)]
        threads: Option<usize>,
        /// Run the inference program of a graph with a train section (its training flag 0,
        /// no update op); without --fetch, print the outputs that the feeds determine (or, when
        /// none is, the last values they do, such as the logits before a loss reads the labels).
        #[arg(long)]
        inference: bool,
    },
    /// Train a graph with a train section: one compiled train step per batch,
    /// test metrics per epoch, metrics CSV, plot, checkpoints.
    Train {
        file: PathBuf,
        #[arg(long, conflicts_with = "epochs")]
        steps: Option<usize>,
        #[arg(long)]
        epochs: Option<usize>,
        #[arg(long)]
        batch_size: Option<usize>,
        /// Overrides the optimizer's learning rate.
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long)]
        seed: Option<u64>,
        /// Threads for the kernels that split their work: matrix products, convolutions, pooling,
        /// large elementwise and batch-norm kernels (default: $GRADC_THREADS, else the cores
        /// available to the process; at most those cores; results do not depend on it).
        #[arg(long)]
        threads: Option<usize>,
        /// Where the checkpoint is written atomically after every epoch: a directory (its
        /// checkpoint.safetensors) or a FILE.safetensors.
        #[arg(long, value_name = "PATH")]
        checkpoint: Option<PathBuf>,
        /// Continue from the --checkpoint.
        #[arg(long, requires = "checkpoint")]
        resume: bool,
        /// Check every node's output for NaN/Inf and name the first node that makes one.
        #[arg(long)]
        check_numerics: bool,
        /// Directory for metrics.csv and curves.png (default: runs/<graph name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Every N steps: a row of steps.csv in --out (step, the batch's loss and metrics,
        /// learning rate, examples/s), a printed line under --quiet, and the --fetch values.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        log_every: Option<i64>,
        /// A name in the train step (a hook such as `d(loss)/d(h)`, a layer's `bn/moving_mean`)
        /// written every --log-every steps to <out>/fetched/<name>.step<k>.npy; repeatable.
        #[arg(long = "fetch", value_name = "NAME", requires = "log_every")]
        fetch: Vec<String>,
    },
    /// Evaluate the test set with the inference program and a checkpoint's variables.
    Eval {
        file: PathBuf,
        /// A safetensors checkpoint, or a directory `gradc train --checkpoint` wrote one to.
        #[arg(long, value_name = "PATH")]
        checkpoint: PathBuf,
        #[arg(long)]
        batch_size: Option<usize>,
        /// Threads for the kernels that split their work: matrix products, convolutions, pooling,
        /// large elementwise and batch-norm kernels (default: $GRADC_THREADS, else the cores
        /// available to the process; at most those cores; results do not depend on it).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Plot one column of several metrics.csv files on one chart (PNG).
    Plot {
        /// LABEL=PATH to a metrics.csv written by `gradc train`; repeatable.
        #[arg(long = "csv", value_name = "LABEL=PATH", required = true)]
        csvs: Vec<String>,
        /// The column to plot against the epoch.
        #[arg(long, default_value = "test_accuracy")]
        column: String,
        #[arg(long, default_value = "")]
        title: String,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Time the train step of the standard workloads (W1: TwoLayerNet, W2:
    /// BN-MLP 784-512-512-10, W3: a CNN) on MNIST, and the matrix-product ceiling:
    /// median ms per step, steps/s, examples/s, GFLOP/s.
    Bench {
        /// Which workload: w1, w2, w3 or all.
        #[arg(long, default_value = "all", value_parser = ["w1", "w2", "w3", "all"])]
        workload: String,
        /// Timed steps per workload (default: 2000 for W1, 300 for W2, 40 for W3).
        #[arg(long)]
        steps: Option<usize>,
        /// Untimed steps before them (default: 200 for W1, 30 for W2, 5 for W3).
        #[arg(long)]
        warmup: Option<usize>,
        /// Threads for the kernels that split their work: matrix products, convolutions, pooling,
        /// large elementwise and batch-norm kernels (default: $GRADC_THREADS, else the cores
        /// available to the process; at most those cores; results do not depend on it).
        #[arg(long)]
        threads: Option<usize>,
        /// The MNIST directory (default: data/mnist).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Skip the matrix-product ceiling.
        #[arg(long)]
        no_peak: bool,
        /// Time every node of the timed steps and print where the time goes.
        #[arg(long)]
        profile: bool,
    },
    /// Compare every requested gradient with central finite differences.
    Gradcheck {
        file: PathBuf,
        #[arg(long = "feed", value_name = "NAME=VALUE")]
        feeds: Vec<String>,
        /// Maximum relative error (default 1e-6 for f64, 1e-2 for f32).
        #[arg(long)]
        tolerance: Option<f64>,
    },
}

/// The loss `gradc import --loss` adds.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LossArg {
    /// Class indices as labels (int64 [batch]).
    SparseSoftmaxCrossEntropy,
    /// One-hot labels of the output's shape.
    SoftmaxCrossEntropy,
    /// Targets of the output's shape.
    MeanSquaredError,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The file's text and parsed graph.
fn load_spec(file: &Path) -> Result<(String, String, compiler::schema::GraphSpec), Error> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let spec = compiler::schema::parse_file(&text, &name)?;
    Ok((name, text, spec))
}

fn load_graph(file: &Path) -> Result<Graph, Error> {
    Ok(compiler::graph_from_file(file)?)
}

/// The file's spec with its train step compiled for `ranks` processes.
fn spec_for_ranks(
    file: &Path,
    ranks: Option<usize>,
) -> Result<(String, String, compiler::schema::GraphSpec), Error> {
    let (name, text, mut spec) = load_spec(file)?;
    if let Some(n) = ranks {
        let Some(train) = spec.train.as_mut() else {
            return Err(Error::Usage(format!(
                "{name}: --ranks needs a graph with a train section"
            )));
        };
        if n == 0 {
            return Err(Error::Usage("--ranks must be at least 1".into()));
        }
        train.ranks = Some(n);
    }
    Ok((name, text, spec))
}

/// The graph as built (no pass), its train step for `ranks` processes.
fn load_graph_for(file: &Path, ranks: Option<usize>) -> Result<Graph, Error> {
    if ranks.is_none() {
        return load_graph(file);
    }
    let (name, text, spec) = spec_for_ranks(file, ranks)?;
    Ok(Compiler::new(Source::file(&spec, &text, &name))
        .passes(Pipeline::none())
        .graph()?)
}

/// The inference graph of a graph file with a train section: its training
/// flag 0, pruned to the loss, the metrics and the outputs; no pass run.
fn load_inference_graph(file: &Path) -> Result<Graph, Error> {
    let (name, text, spec) = load_spec(file)?;
    let source = Source::file(&spec, &text, &name);
    Ok(Compiler::new(source)
        .inference()
        .passes(Pipeline::none())
        .graph()?)
}

/// A graph file is compiled for the run: what `fetches` name is kept, and
/// every fed node is a cut point the optimizer treats as a placeholder. A
/// saved program is loaded as it is.
fn load_program(
    file: &Path,
    feeds: &[String],
    fetches: &[String],
    inference: bool,
) -> Result<Program, Error> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    if Program::is_program_text(&text) {
        if inference {
            return Err(Error::Usage(format!(
                "{name} is a compiled program: --inference compiles the inference program of a graph file"
            )));
        }
        return Program::from_ron(&text).map_err(|e| {
            Error::Program(ProgramError::File {
                path: file.to_path_buf(),
                source: Box::new(e),
            })
        });
    }
    let spec = compiler::schema::parse_file(&text, &name)?;
    let fed: Vec<&str> = feeds
        .iter()
        .map(|f| f.split_once('=').map_or(f.as_str(), |(n, _)| n))
        .collect();
    let fetched: Vec<&str> = fetches.iter().map(String::as_str).collect();
    let names = RunNames {
        fetches: &fetched,
        feeds: &fed,
    };
    if inference && spec.train.is_none() {
        return Err(Error::Usage(format!(
            "{name}: --inference needs a graph with a train section"
        )));
    }
    let source = Source::file(&spec, &text, &name);
    let compiler = Compiler::new(source).run_names(names);
    let compiler = if inference {
        compiler.inference()
    } else {
        compiler
    };
    Ok(compiler.compile()?.program)
}

/// The program's outputs that `fed` determine: those that depend on no
/// other placeholder (what an inference program can say about an input
/// without its labels). When no output is, the values at the edge of what
/// the feeds determine instead: computed nodes none of whose readers is
/// determined (in a classifier, the logits before the loss reads the labels).
fn outputs_of(program: &Program, fed: &[&str]) -> Vec<String> {
    use gradc::runtime::Op;
    let mut known = vec![false; program.instrs.len()];
    let mut read_by_known = vec![false; program.instrs.len()];
    for (k, i) in program.instrs.iter().enumerate() {
        known[k] = match i.op {
            Op::Placeholder { .. } => fed.contains(&i.name.as_str()),
            _ => i
                .inputs
                .iter()
                .all(|v| known.get(v.node).copied().unwrap_or(false)),
        };
        if known[k] {
            for v in &i.inputs {
                if let Some(r) = read_by_known.get_mut(v.node) {
                    *r = true;
                }
            }
        }
    }
    let outputs: Vec<String> = program
        .outputs
        .iter()
        .filter(|o| known.get(o.value.node).copied().unwrap_or(false))
        .map(|o| o.label.clone())
        .collect();
    if !outputs.is_empty() {
        return outputs;
    }
    program
        .instrs
        .iter()
        .enumerate()
        .filter(|&(k, i)| {
            known[k]
                && !read_by_known[k]
                && !i.inputs.is_empty()
                && !matches!(
                    i.op,
                    Op::Placeholder { .. } | Op::Variable { .. } | Op::Const(_)
                )
        })
        .map(|(_, i)| i.name.clone())
        .collect()
}

fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Check { file } => {
            let g = load_graph(&file)?;
            let count = |r: Role| g.g.node_indices().filter(|&n| g.node(n).role == r).count();
            say!(
                "{}: ok: graph '{}', {} forward nodes, {} backward nodes, {} update nodes",
                file.display(),
                g.name,
                count(Role::Forward),
                count(Role::Backward),
                count(Role::Update)
            );
            for (label, t) in &g.outputs {
                say!("  output {label} : {}", g.ty(*t));
            }
            for r in &g.gradients {
                say!("  gradient {} : {}", r.name, g.ty(r.value));
            }
            if let Some(t) = &g.train {
                let vars: Vec<&str> = t
                    .var_list
                    .iter()
                    .map(|&v| g.node(v).name.as_str())
                    .collect();
                say!("  train: minimizes {} over {}", t.loss.0, vars.join(", "));
            }
        }
        Command::Grad {
            file,
            inference,
            optimized,
            opt,
            ranks,
        } => {
            // Checked whether or not it runs: `--passes bogus` is an error either way.
            let pipeline = opt.pipeline()?;
            // Naming passes asks for the optimized graph.
            let optimized = optimized || opt.passes.is_some();
            let g = match (inference, optimized) {
                (true, _) => {
                    let mut g = load_inference_graph(&file)?;
                    if optimized {
                        let mut pipeline = pipeline;
                        pipeline.run(&mut g)?;
                    }
                    g
                }
                (false, true) => {
                    let (name, text, spec) = spec_for_ranks(&file, ranks)?;
                    Compiler::new(Source::file(&spec, &text, &name))
                        .passes(pipeline)
                        .keep_graph()
                        .compile()?
                        .graph
                        .expect("kept")
                }
                (false, false) => load_graph_for(&file, ranks)?,
            };
            say!("{}", compiler::print::graph_text(&g)?.trim_end());
        }
        Command::Dot {
            file,
            inference,
            ranks,
        } => {
            let g = if inference {
                load_inference_graph(&file)?
            } else {
                load_graph_for(&file, ranks)?
            };
            say!("{}", compiler::print::dot(&g)?.trim_end())
        }
        Command::Export {
            file,
            onnx,
            checkpoint,
            seed,
            outputs,
        } => {
            let s =
                gradc::interop::export_graph(&file, &onnx, checkpoint.as_deref(), seed, &outputs)?;
            say!(
                "{}: {} ONNX nodes, {} initializers, {} bytes; inputs {}; outputs {}",
                onnx.display(),
                s.nodes,
                s.initializers,
                s.bytes,
                s.inputs.join(", "),
                s.outputs.join(", ")
            );
        }
        Command::Import {
            model,
            output,
            loss,
            labels,
            logits,
            data,
        } => {
            use gradc::onnx::import::Loss;
            let train = match loss {
                None => None,
                Some(l) => Some(gradc::interop::ImportTrain {
                    loss: match l {
                        LossArg::SparseSoftmaxCrossEntropy => Loss::SparseSoftmaxCrossEntropy,
                        LossArg::SoftmaxCrossEntropy => Loss::SoftmaxCrossEntropy,
                        LossArg::MeanSquaredError => Loss::MeanSquaredError,
                    },
                    labels,
                    logits,
                    data: data.ok_or_else(|| {
                        Error::Usage("--loss needs --data: the training data (a directory of MNIST files or an .npz file)".into())
                    })?,
                }),
            };
            let s = gradc::interop::import_model(&model, &output, train)?;
            say!(
                "{}: graph written; {} variables in {}",
                output.display(),
                s.variables,
                s.weights.display()
            );
        }
        Command::Compile {
            file,
            output,
            opt,
            explain,
        } => {
            let (name, text, spec) = load_spec(&file)?;
            let compiler::Output {
                program,
                prefused,
                reports,
                ..
            } = Compiler::new(Source::file(&spec, &text, &name))
                .passes(opt.pipeline()?)
                .compile()?;
            if explain {
                // The graph as built without prefuse, before any pass.
                let before = Compiler::new(Source::file(&spec, &text, &name))
                    .passes(Pipeline::none())
                    .graph()?
                    .g
                    .node_count();
                say!(
                    "{}: {before} nodes before the passes, {} instructions after",
                    file.display(),
                    program.instrs.len()
                );
                if !prefused.is_empty() {
                    let fired: Vec<String> = prefused
                        .iter()
                        .map(|(rule, n)| format!("{rule} x{n}"))
                        .collect();
                    say!("  prefuse (before differentiation): {}", fired.join(", "));
                }
                for r in &reports {
                    let fired: Vec<String> = r
                        .fired
                        .iter()
                        .map(|(rule, n)| format!("{rule} x{n}"))
                        .collect();
                    let fired = if fired.is_empty() {
                        "nothing fired".to_string()
                    } else {
                        fired.join(", ")
                    };
                    say!(
                        "  pass {:<11} {:>6} -> {:<6} nodes  {fired}",
                        r.name,
                        r.nodes_before,
                        r.nodes_after
                    );
                }
                for batch in [1, 100] {
                    let line = match planned_memory(&program, batch) {
                        Ok(m) => format!(
                            "peak {} bytes of live values, {} bytes planned ({} buffers, {} steps in place), {} bytes with one buffer per value ({} values)",
                            m.peak_bytes, m.slot_bytes, m.slots, m.in_place, m.unshared_bytes, m.values
                        ),
                        Err(e) => format!("not planned: {e}"),
                    };
                    say!("  memory of a run, every symbolic dimension {batch}: {line}");
                }
            }
            program.save(&output)?;
            say!(
                "wrote {} ({} instructions)",
                output.display(),
                program.instrs.len()
            );
            // The process ends here and the OS takes its memory back at
            // once; freeing a large program block by block would cost as
            // much as a tenth of the compile (58 ms at 220k nodes).
            std::mem::forget(program);
        }
        Command::Run {
            file,
            feeds,
            fetches,
            npy_dir,
            seed,
            checkpoint,
            save_checkpoint,
            steps,
            inference,
            threads,
        } => {
            if steps == 0 {
                return Err(Error::Usage("--steps must be at least 1".into()));
            }
            set_threads(threads)?;
            let program = load_program(&file, &feeds, &fetches, inference)?;
            let fed: Vec<&str> = feeds
                .iter()
                .map(|f| f.split_once('=').map_or(f.as_str(), |(n, _)| n))
                .collect();
            let labels: Vec<String> = match (fetches.is_empty(), inference) {
                (false, _) => fetches,
                (true, false) => program.outputs.iter().map(|o| o.label.clone()).collect(),
                (true, true) => {
                    let labels = outputs_of(&program, &fed);
                    if labels.is_empty() {
                        let needed: Vec<&str> = program
                            .instrs
                            .iter()
                            .filter(|i| matches!(i.op, gradc::runtime::Op::Placeholder { .. }))
                            .map(|i| i.name.as_str())
                            .filter(|n| !fed.contains(n))
                            .collect();
                        return Err(Error::Usage(format!(
                            "nothing in the inference program is determined by the feeds; feed {}, or name a node with --fetch",
                            needed.join(", ")
                        )));
                    }
                    labels
                }
            };
            let feeds = feeds::parse_feeds(&program, &feeds)?;
            let mut session = Session::new(program).map_err(Error::run("loading the program"))?;
            // A fetch of a node without a value (a NoOp grouping assignments)
            // runs it, as TensorFlow's `Session.run(op)` does, and prints no value.
            let mut refs: Vec<ValueRef> = Vec::with_capacity(labels.len());
            let mut targets = Vec::new();
            let mut valued = Vec::with_capacity(labels.len());
            for l in &labels {
                match session.resolve(l) {
                    Ok(r) => {
                        refs.push(r);
                        valued.push(l.as_str());
                    }
                    Err(e) => match session.resolve_target(l) {
                        Ok(t) => targets.push((l.as_str(), t)),
                        Err(_) => return Err(Error::run("fetch")(e)),
                    },
                }
            }
            if let Some(dir) = &npy_dir {
                let mut stems: Vec<(String, &str)> =
                    valued.iter().map(|l| (feeds::file_stem(l), *l)).collect();
                stems.sort();
                if let Some(w) = stems.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(Error::Usage(format!(
                        "--npy-dir: '{}' and '{}' would both be written to {}",
                        w[0].1,
                        w[1].1,
                        dir.join(format!("{}.npy", w[0].0)).display()
                    )));
                }
            }
            let target_ids: Vec<usize> = targets.iter().map(|t| t.1).collect();
            session
                .initialize(seed)
                .map_err(Error::run("initialization"))?;
            if let Some(path) = &checkpoint {
                train::restore(&mut session, &train::checkpoint_file(path))?;
            }
            let mut values = Vec::new();
            for _ in 0..steps {
                values = session
                    .run_with_targets(&feeds, &refs, &target_ids)
                    .map_err(Error::run(&file.display().to_string()))?;
            }
            if let Some(path) = &save_checkpoint {
                let vars = session.variables();
                let tensors: Vec<(&str, &gradc::runtime::Tensor)> = vars
                    .iter()
                    .filter_map(|(n, v)| v.map(|v| (*n, v)))
                    .collect();
                let metadata = std::collections::BTreeMap::from([(
                    "graph".to_string(),
                    file.display().to_string(),
                )]);
                gradc::io::checkpoint::save(path, &tensors, &metadata)?;
            }
            if let Some(dir) = &npy_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            }
            for &(label, t) in &targets {
                let op = session
                    .program()
                    .instrs
                    .get(t)
                    .map_or("node", |i| i.op.name());
                say!("{label} ran (a {op}, no value)");
            }
            for (label, value) in valued.iter().zip(&values) {
                gradc::runtime::each!(value, a => say!("{label} = {a}"));
                if let Some(dir) = &npy_dir {
                    let file = format!("{}.npy", feeds::file_stem(label));
                    feeds::write_npy(&dir.join(file), value)?;
                }
            }
            if let Some(dir) = &npy_dir {
                gradc::runtime::io::sync_dir(dir)
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            }
        }
        Command::Train {
            file,
            steps,
            epochs,
            batch_size,
            lr,
            seed,
            threads,
            checkpoint,
            resume,
            check_numerics,
            out,
            quiet,
            log_every,
            fetch,
        } => {
            set_threads(threads)?;
            let log_every = log_every
                .map(|n| {
                    usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
                        Error::Usage(format!("--log-every must be at least 1, got {n}"))
                    })
                })
                .transpose()?;
            let opts = train::TrainOptions {
                steps,
                epochs,
                batch_size,
                learning_rate: lr,
                seed,
                checkpoint_dir: checkpoint,
                resume,
                check_numerics,
                out_dir: out,
                progress: !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                log_every,
                fetch,
            };
            // Under `mpirun -np N` (the `mpi` feature), one rank of a data-parallel run.
            let distributed = gradc::distributed::init()?;
            let result = gradc::runtime::with_threads(|| train::train(&file, &opts));
            let report = match (result, &distributed) {
                (Ok(report), _) => report,
                (Err(e), None) => return Err(e),
                // The other ranks would wait for this one forever: end the run.
                (Err(e), Some(d)) => {
                    eprintln!("gradc: rank {}: error: {e}", d.rank());
                    d.abort(1)
                }
            };
            if distributed.as_ref().is_none_or(|d| d.rank() == 0) {
                say!("trained {} steps", report.steps);
            }
        }
        Command::Plot {
            csvs,
            column,
            title,
            output,
        } => {
            let mut series = Vec::new();
            for arg in &csvs {
                let (label, path) = arg
                    .split_once('=')
                    .ok_or_else(|| Error::Usage(format!("--csv '{arg}' is not LABEL=PATH")))?;
                let log = gradc::io::metrics::MetricsLog::read(Path::new(path))?;
                let points = log.points("epoch", &column).ok_or_else(|| {
                    Error::Usage(format!(
                        "{path} has no column '{column}' (it has {})",
                        log.columns().join(", ")
                    ))
                })?;
                series.push(gradc::io::plot::Series::new(label, points));
            }
            let panel = gradc::io::plot::Panel {
                title: column.clone(),
                x_label: "epoch".into(),
                y_label: column.clone(),
                series,
            };
            gradc::io::plot::plot_curves(&output, &title, &[panel])?;
            say!("wrote {}", output.display());
        }
        Command::Eval {
            file,
            checkpoint,
            batch_size,
            threads,
        } => {
            set_threads(threads)?;
            let (names, scores) =
                gradc::runtime::with_threads(|| train::eval(&file, &checkpoint, batch_size))?;
            say!("loss {:.6}", scores.loss);
            for (n, v) in names.iter().zip(&scores.metrics) {
                say!("{n} {v:.6}");
            }
        }
        Command::Bench {
            workload,
            steps,
            warmup,
            threads,
            data,
            no_peak,
            profile,
        } => {
            let threads = set_threads(threads)?;
            let opts = bench::BenchOptions {
                workloads: bench::Workload::parse(&workload)?,
                steps,
                warmup,
                threads,
                data_dir: data,
                peak: !no_peak,
                profile,
            };
            // Under `mpirun -np N` (the `mpi` feature), rank 0 reports.
            let distributed = gradc::distributed::init()?;
            let result = match distributed.as_ref().is_none_or(|d| d.rank() == 0) {
                true => bench::bench(&opts, &mut std::io::stdout().lock()),
                false => bench::bench(&opts, &mut std::io::sink()),
            };
            if let (Err(e), Some(d)) = (&result, &distributed) {
                eprintln!("gradc: rank {}: error: {e}", d.rank());
                d.abort(1)
            }
            result?;
        }
        Command::Gradcheck {
            file,
            feeds,
            tolerance,
        } => {
            let g = load_graph(&file)?;
            // Unoptimized, as the check runs it: every node can be fed.
            let program = Compiler::new(g.clone())
                .passes(Pipeline::none())
                .compile()?
                .program;
            let feeds = feeds::parse_feeds(&program, &feeds)?;
            let checks = gradcheck::gradcheck(&g, &feeds, tolerance)?;
            let mut ok = true;
            for c in &checks {
                let verdict = if c.passed() { "ok" } else { "FAILED" };
                say!(
                    "{}: max abs error {:.3e}, max rel error {:.3e} (tolerance {:.0e}) {verdict}",
                    c.name,
                    c.max_abs,
                    c.max_rel,
                    c.tolerance
                );
                ok &= c.passed();
            }
            for fc in gradcheck::check_functions(&g, &feeds, tolerance)? {
                for c in &fc.checks {
                    let verdict = if c.passed() { "ok" } else { "FAILED" };
                    say!(
                        "custom gradient of function '{}' (call '{}'), {}: max abs error {:.3e}, max rel error {:.3e} (tolerance {:.0e}) {verdict}",
                        fc.function, fc.call, c.name, c.max_abs, c.max_rel, c.tolerance
                    );
                    ok &= c.passed();
                }
            }
            if checks.is_empty() {
                say!("{}: the graph requests no gradients", file.display());
            }
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The memory plan of a run of the program's outputs and every `NoOp`
/// target (e.g. a train op), with every symbolic dimension `batch`.
fn planned_memory(p: &Program, batch: usize) -> Result<PlanMemory, RunError> {
    let fetches: Vec<ValueRef> = p.outputs.iter().map(|o| o.value).collect();
    let targets: Vec<usize> = (0..p.instrs.len())
        .filter(|&i| matches!(p.instrs[i].op, Op::NoOp))
        .collect();
    let bindings = p
        .instrs
        .iter()
        .flat_map(|i| &i.outputs)
        .flat_map(|t| &t.shape.0)
        .filter_map(|d| match d {
            Dim::Sym(s) => Some((s.to_string(), batch)),
            Dim::Known(_) => None,
        })
        .collect();
    gradc::runtime::plan_memory(p, &fetches, &targets, &bindings)
}

/// Matrix products split over `threads` threads (see
/// `gradc_runtime::set_threads`), at most one a core: more threads than cores
/// take turns on them and slow every step down (their workers spin waiting
/// for work), so a larger count is lowered to the core count, with a warning.
/// Returns the count used.
/// The count is `--threads`, else the environment's `GRADC_THREADS`, else
/// the cores available to the process (its CPU affinity and cgroup quota,
/// as `std::thread::available_parallelism` reads them).
fn set_threads(flag: Option<usize>) -> Result<usize, Error> {
    let cores = gradc::runtime::parallel::cores();
    let (threads, given) = match flag {
        Some(n) => (n, "--threads"),
        None => match std::env::var("GRADC_THREADS") {
            Ok(v) => {
                let n = v.trim().parse().map_err(|_| {
                    Error::Usage(format!("GRADC_THREADS={v:?} is not a whole number"))
                })?;
                (n, "GRADC_THREADS")
            }
            Err(std::env::VarError::NotPresent) => (cores, "the cores available"),
            Err(std::env::VarError::NotUnicode(v)) => {
                return Err(Error::Usage(format!(
                    "GRADC_THREADS={v:?} is not a whole number"
                )))
            }
        },
    };
    if threads == 0 {
        return Err(Error::Usage(format!("{given} must be at least 1")));
    }
    let used = threads.min(cores);
    if used < threads {
        eprintln!(
            "warning: {given} {threads} is more than the {cores} cores available; using {used}"
        );
    }
    gradc::runtime::set_threads(used);
    Ok(used)
}
