//! Compile errors. Each names where it happened: file, line, node and op when known.

use std::fmt;

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not valid RON or does not match the graph schema.
    Parse,
    /// An op name that does not exist.
    UnknownOp,
    /// An attribute the op does not have, or a required one missing.
    UnknownAttr,
    /// An input or gradient request names a node that does not exist.
    UnknownNode,
    /// Two nodes share a name.
    DuplicateName,
    /// The nodes (with gradient requests) depend on each other in a cycle.
    Cycle,
    /// Shapes do not fit the op.
    Shape,
    /// Dtypes do not fit the op, or a declared dtype disagrees with the inferred one.
    DType,
    /// An assignment whose first input is not a variable.
    NotAVariable,
    /// The `train` section is inconsistent (no trainable variable, a non-scalar loss, ...).
    Train,
    /// A function is called wrongly, calls itself, or its custom gradient does not fit.
    Function,
    /// An op on the path to a requested gradient has no gradient rule.
    NoGradient,
    /// A graph invariant broke inside the compiler (a bug, named with the pass).
    Internal,
    /// Reading a file failed.
    Io,
    /// A run feeds a node that cannot be fed (several outputs, or it changes a variable).
    Feed,
}

/// A compile error with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub kind: ErrorKind,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub node: Option<String>,
    pub op: Option<&'static str>,
    pub message: String,
}

pub type Result<T, E = CompileError> = std::result::Result<T, E>;

impl CompileError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CompileError {
        CompileError {
            kind,
            file: None,
            line: None,
            node: None,
            op: None,
            message: message.into(),
        }
    }
    pub fn at_node(mut self, node: &str, op: &'static str) -> CompileError {
        self.node.get_or_insert_with(|| node.to_string());
        self.op.get_or_insert(op);
        self
    }
    pub fn at_line(mut self, line: Option<usize>) -> CompileError {
        if self.line.is_none() {
            self.line = line;
        }
        self
    }
    pub fn in_file(mut self, file: &str) -> CompileError {
        self.file.get_or_insert_with(|| file.to_string());
        self
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        write!(f, "error")?;
        match (&self.node, self.op) {
            (Some(n), Some(op)) => write!(f, " in node '{n}' ({op})")?,
            (Some(n), None) => write!(f, " in node '{n}'")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for CompileError {}

/// The closest of `candidates` to `name`, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ` (did you mean 'x'?)` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}
