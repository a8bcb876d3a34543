//! The errors of loading and running a program, shared by the session and
//! the planner (which reports missing feeds, shape errors and sizes before
//! anything runs).

use crate::TensorType;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum RunError {
    #[error("no feed for placeholder '{name}' ({expected})")]
    MissingFeed { name: String, expected: TensorType },
    #[error("'{name}' is fed but the program has no single-output node of that name")]
    UnknownFeed { name: String },
    #[error("'{name}' ({op}) cannot be fed: the program is optimized, so its intermediate nodes may be folded or fused into their consumers; feed it where the program is compiled (`gradc run GRAPH --feed`), or compile with --no-opt")]
    NotFeedable { name: String, op: &'static str },
    #[error("'{name}' is fed twice in one run")]
    DuplicateFeed { name: String },
    #[error("feed '{name}' has dtype {got}, the node is {expected}")]
    FeedDtype {
        name: String,
        expected: TensorType,
        got: crate::DType,
    },
    #[error("feed '{name}' has shape {got:?}, the node is {expected}{detail}")]
    FeedShape {
        name: String,
        expected: TensorType,
        got: Vec<usize>,
        detail: String,
    },
    #[error("no output or node named '{name}' to fetch")]
    UnknownFetch { name: String },
    #[error("invalid program: {message}")]
    InvalidProgram { message: String },
    #[error("variable '{name}' has no value: initialize the session or load a checkpoint")]
    Uninitialized { name: String },
    #[error("no variable named '{name}'")]
    UnknownVariable { name: String },
    #[error("variable '{name}' is {expected}, the value given is {got}")]
    VariableType {
        name: String,
        expected: TensorType,
        got: TensorType,
    },
    #[error("node '{node}' ({op}) produced a non-finite value (NaN or Inf)")]
    NonFinite { node: String, op: &'static str },
    #[error("node '{node}' ({op}): {source}")]
    TooLarge {
        node: String,
        op: &'static str,
        source: crate::TooLarge,
    },
    #[error(
        "the run's buffers and fetched values take {bytes} bytes together, more than the {limit} \
         bytes of memory this process can have; the largest value is node '{largest}' ({largest_bytes} bytes)"
    )]
    BuffersTooLarge {
        bytes: usize,
        limit: u64,
        largest: String,
        largest_bytes: usize,
    },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
}
