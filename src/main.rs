//! The `gradc` command-line tool.

use clap::{Parser, Subcommand};
use gradc::compiler::ir::Role;
use gradc::compiler::{self, Graph};
use gradc::runtime::{Program, Session, ValueRef};
use gradc::{feeds, gradcheck, Error};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

#[derive(Subcommand)]
enum Command {
    /// Parse a graph, infer shapes and dtypes, build its gradients; print a summary or the errors.
    Check { file: PathBuf },
    /// Print the graph with its gradient graph in the canonical text form.
    Grad { file: PathBuf },
    /// Print Graphviz DOT of the forward and backward graph.
    Dot { file: PathBuf },
    /// Compile a graph and save the program, which `gradc run` runs with the runtime alone.
    Compile {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
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

fn load_graph(file: &Path) -> Result<Graph, Error> {
    Ok(compiler::graph_from_file(file)?)
}

/// A graph file is compiled; a saved program is loaded as it is.
fn load_program(file: &Path) -> Result<Program, Error> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{}: {e}", file.display())))?;
    if Program::is_program_text(&text) {
        return Program::from_ron(&text).map_err(|e| Error::Io(format!("{}: {e}", file.display())));
    }
    let g = compiler::graph_from_str(&text, &file.display().to_string())?;
    Ok(compiler::compile(g)?)
}

fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Check { file } => {
            let g = load_graph(&file)?;
            let count = |r: Role| g.g.node_indices().filter(|&n| g.node(n).role == r).count();
            println!(
                "{}: ok: graph '{}', {} forward nodes, {} backward nodes, {} update nodes",
                file.display(),
                g.name,
                count(Role::Forward),
                count(Role::Backward),
                count(Role::Update)
            );
            for (label, t) in &g.outputs {
                println!("  output {label} : {}", g.ty(*t));
            }
            for r in &g.gradients {
                println!("  gradient {} : {}", r.name, g.ty(r.value));
            }
            if let Some(t) = &g.train {
                let vars: Vec<&str> = t
                    .var_list
                    .iter()
                    .map(|&v| g.node(v).name.as_str())
                    .collect();
                println!("  train: minimizes {} over {}", t.loss.0, vars.join(", "));
            }
        }
        Command::Grad { file } => print!("{}", compiler::print::graph_text(&load_graph(&file)?)?),
        Command::Dot { file } => print!("{}", compiler::print::dot(&load_graph(&file)?)?),
        Command::Compile { file, output } => {
            let program = compiler::compile(load_graph(&file)?)?;
            program.save(&output).map_err(Error::Io)?;
            println!(
                "wrote {} ({} instructions)",
                output.display(),
                program.instrs.len()
            );
        }
        Command::Run {
            file,
            feeds,
            fetches,
            npy_dir,
        } => {
            let program = load_program(&file)?;
            let feeds = feeds::parse_feeds(&program, &feeds)?;
            let labels: Vec<String> = if fetches.is_empty() {
                program.outputs.iter().map(|o| o.label.clone()).collect()
            } else {
                fetches
            };
            let mut session = Session::new(program).map_err(Error::run("loading the program"))?;
            let refs: Vec<ValueRef> = labels
                .iter()
                .map(|l| session.resolve(l))
                .collect::<Result<_, _>>()
                .map_err(Error::run("fetch"))?;
            let values = session
                .run(&feeds, &refs)
                .map_err(Error::run(&file.display().to_string()))?;
            if let Some(dir) = &npy_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            }
            for (label, value) in labels.iter().zip(&values) {
                match value {
                    gradc::runtime::Tensor::F32(a) => println!("{label} = {a}"),
                    gradc::runtime::Tensor::F64(a) => println!("{label} = {a}"),
                }
                if let Some(dir) = &npy_dir {
                    let safe: String = label
                        .chars()
                        .map(|c| {
                            if c.is_alphanumeric() || c == '_' || c == '-' {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    feeds::write_npy(&dir.join(format!("{safe}.npy")), value)?;
                }
            }
        }
        Command::Gradcheck {
            file,
            feeds,
            tolerance,
        } => {
            let g = load_graph(&file)?;
            let program = compiler::compile(g.clone())?;
            let feeds = feeds::parse_feeds(&program, &feeds)?;
            let checks = gradcheck::gradcheck(&g, &feeds, tolerance)?;
            let mut ok = true;
            for c in &checks {
                let verdict = if c.passed() { "ok" } else { "FAILED" };
                println!(
                    "{}: max abs error {:.3e}, max rel error {:.3e} (tolerance {:.0e}) {verdict}",
                    c.name, c.max_abs, c.max_rel, c.tolerance
                );
                ok &= c.passed();
            }
            if checks.is_empty() {
                println!("{}: the graph requests no gradients", file.display());
            }
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
