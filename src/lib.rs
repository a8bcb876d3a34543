//! gradc: a static-graph compiler with ahead-of-time differentiation.
//!
//! This crate is the command-line tool and a thin library over the two crates
//! that do the work: [`compiler`] (RON graphs, IR, shapes, gradients, passes,
//! lowering) and [`runtime`] (programs, kernels, sessions).

pub use gradc_compiler as compiler;
pub use gradc_io as io;
pub use gradc_onnx as onnx;
pub use gradc_runtime as runtime;

pub mod bench;
pub mod distributed;
pub mod feeds;
pub mod gradcheck;
pub mod interop;
pub mod train;

use compiler::CompileError;
use runtime::RunError;
use thiserror::Error;

/// Any error of the command-line tool.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Compile(Box<CompileError>),
    #[error("{context}: {source}")]
    Run {
        context: String,
        source: Box<RunError>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Data(#[from] gradc_io::dataset::DataError),
    #[error("{0}")]
    Checkpoint(#[from] gradc_io::checkpoint::CheckpointError),
    #[error("{0}")]
    Metrics(#[from] gradc_io::metrics::MetricsError),
    #[error("{0}")]
    Plot(#[from] gradc_io::plot::PlotError),
    /// A saved program that cannot be read or written.
    #[error("{0}")]
    Program(#[from] runtime::ProgramError),
    /// Values that do not make a tensor.
    #[error("{0}")]
    Tensor(#[from] runtime::TensorError),
    /// A program that cannot be written as ONNX.
    #[error("{file}: {source}")]
    Export {
        file: String,
        source: Box<gradc_onnx::ExportError>,
    },
    /// An ONNX model that cannot be read as a gradc graph.
    #[error("{file}: {source}")]
    Import {
        file: String,
        source: Box<gradc_onnx::ImportError>,
    },
    #[error("training stopped at step {step}: {detail}")]
    NonFinite { step: usize, detail: String },
    #[error("{0}")]
    Io(String),
    #[error("cannot resume from {}: {problem}; the checkpoint is left as it is", path.display())]
    ResumeStep {
        path: std::path::PathBuf,
        problem: BadStep,
    },
    #[error("{}: holds {got} values, the node is {expected}", path.display())]
    NpyDtype {
        path: std::path::PathBuf,
        got: runtime::DType,
        expected: runtime::DType,
    },
}

/// Why a checkpoint's `step` metadata cannot be resumed from.
#[derive(Debug, Error)]
pub enum BadStep {
    #[error("its metadata has no \"step\"")]
    Missing,
    #[error("its step {0:?} is not a whole number of steps (0 or more)")]
    NotANumber(String),
    #[error("its step {step} is past the end of this run ({total} steps)")]
    PastTheRun { step: usize, total: usize },
}

impl From<CompileError> for Error {
    fn from(e: CompileError) -> Error {
        Error::Compile(Box::new(e))
    }
}

impl Error {
    /// Wraps a run error with what was being run.
    pub fn run(context: &str) -> impl Fn(RunError) -> Error + '_ {
        move |source| Error::Run {
            context: context.to_string(),
            source: Box::new(source),
        }
    }
}
