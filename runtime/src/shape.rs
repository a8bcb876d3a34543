//! Shapes with symbolic dimensions, shared by compile-time inference (symbols
//! such as `"batch"` stay symbolic) and run-time inference (every dim known).
//!
//! A symbolic dimension is named, like ONNX's `dim_param`: two dimensions with
//! the same name are the same size; the runtime binds each name from the feeds.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// One dimension: a known size or a named symbol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Known(usize),
    /// Shared, so copying a shape copies no text.
    Sym(Arc<str>),
}

impl Dim {
    pub fn known(&self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Sym(s) => write!(f, "{s}"),
        }
    }
}

/// A shape: one `Dim` per axis; rank 0 is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }
    pub fn known(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Known(d)).collect())
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    /// All dims as sizes, if none is symbolic.
    pub fn concrete(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::known).collect()
    }
    /// Number of elements, if known and representable.
    pub fn size(&self) -> Option<usize> {
        // Without collecting the dims: passes ask it of every node.
        self.0
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(d.known()?))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// Shapes, axes or an op's attributes that do not fit: what the message says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

impl From<ShapeError> for String {
    fn from(e: ShapeError) -> String {
        e.0
    }
}

impl From<String> for ShapeError {
    fn from(message: String) -> ShapeError {
        ShapeError(message)
    }
}

/// NumPy broadcasting of two shapes. Symbols broadcast with themselves and
/// with 1; two different symbols, or a symbol against a size other than 1,
/// are refused because the result would depend on run-time values.
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    let rank = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = axis_from_right(a, rank, i);
        let db = axis_from_right(b, rank, i);
        let d = match (da, db) {
            (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
            (x, y) if x == y => x.clone(),
            _ => return Err(ShapeError(format!("shapes {a} and {b} do not broadcast"))),
        };
        out.push(d);
    }
    Ok(Shape(out))
}

fn axis_from_right(s: &Shape, rank: usize, i: usize) -> &Dim {
    const ONE: Dim = Dim::Known(1);
    let pad = rank - s.rank();
    if i < pad {
        &ONE
    } else {
        &s.0[i - pad]
    }
}

/// Resolve possibly negative axes against `rank`; refuses duplicates and out-of-range axes.
/// One axis, negative from the end, as an index below `rank` (allocates nothing).
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, ShapeError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(ShapeError(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

pub fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, ShapeError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let r = rank as i64;
        if a < -r || a >= r {
            return Err(ShapeError(format!(
                "axis {a} is out of range for rank {rank}"
            )));
        }
        let a = if a < 0 { a + r } else { a } as usize;
        if out.contains(&a) {
            return Err(ShapeError(format!("axis {a} is repeated")));
        }
        out.push(a);
    }
    out.sort_unstable();
    Ok(out)
}
