//! gradc compiler: RON graph -> IR -> shapes -> gradients -> passes -> program.
//!
//! ```text
//! schema::parse  ->  build::build (IR + shapes + grad::gradients)  ->  passes  ->  lower  ->  Program
//! ```

pub mod build;
pub mod error;
pub mod grad;
pub mod ir;
pub mod lower;
pub mod passes;
pub mod print;
pub mod schema;

pub use error::{CompileError, ErrorKind, Result};
pub use ir::Graph;

use std::path::Path;

/// Parses and builds a graph from its text; errors carry `file` as given.
pub fn graph_from_str(text: &str, file: &str) -> Result<Graph> {
    let spec = schema::parse(text).map_err(|e| e.in_file(file))?;
    build::build(&spec, text).map_err(|e| e.in_file(file))
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
