//! Elementwise kernels: unary maps, broadcasting binary ops, ReluGrad, AddN,
//! and the in-place updates of AssignAdd and AssignSub.
//!
//! Each also has an in-place form (`map`, `zip`, …) that overwrites one
//! input's buffer with the output: the session uses it when that input dies
//! at the op (see `super::eval_in_place`). Both forms apply the same scalar
//! functions to the same operands in the same order, so they agree to the bit.

use super::{broadcast_view, same_shape, Elem};
use crate::op::{Map1, Map2};
use crate::parallel::split_elements;
use ndarray::{ArrayD, ArrayViewD, Zip};

/// `f` applied to each element of `x` (of the output's shape).
pub(super) fn unary<T: Elem>(
    x: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
    f: impl Fn(T) -> T,
) -> Result<(), String> {
    same_shape("the input", x.shape(), out.shape())?;
    if let (Some(x), Some(y)) = (x.as_slice(), out.as_slice_mut()) {
        for (y, &v) in y.iter_mut().zip(x) {
            *y = f(v);
        }
        return Ok(());
    }
    Zip::from(out).and(x).for_each(|y, &v| *y = f(v));
    Ok(())
}

/// `unary` with the function of a table row (see `UnaryFn::with`).
pub(super) struct Unary<'v, 'a, 'o, T>(pub &'v ArrayViewD<'a, T>, pub &'o mut ArrayD<T>);

impl<T: Elem> Map1<T> for Unary<'_, '_, '_, T> {
    type Out = Result<(), String>;
    fn call(self, f: impl Fn(T) -> T + Copy + Send + Sync) -> Self::Out {
        unary(self.0, self.1, f)
    }
}

/// `map` (in place) with the function of a table row.
pub(super) struct MapInPlace<'o, T>(pub &'o mut ArrayD<T>);

impl<T: Elem> Map1<T> for MapInPlace<'_, T> {
    type Out = Result<(), String>;
    fn call(self, f: impl Fn(T) -> T + Copy + Send + Sync) -> Self::Out {
        map(self.0, f)
    }
}

/// `binary` with the function of a table row (see `BinaryFn::with`).
pub(super) struct Binary<'v, 'a, 'o, T>(
    pub &'v ArrayViewD<'a, T>,
    pub &'v ArrayViewD<'a, T>,
    pub &'o mut ArrayD<T>,
);

impl<T: Elem> Map2<T> for Binary<'_, '_, '_, T> {
    type Out = Result<(), String>;
    fn call(self, f: impl Fn(T, T) -> T + Copy + Send + Sync) -> Self::Out {
        binary(self.0, self.1, self.2, f)
    }
}

/// `zip` (in place over operand `k`) with the function of a table row.
pub(super) struct ZipInPlace<'o, 'v, 'a, T>(
    pub &'o mut ArrayD<T>,
    pub usize,
    pub &'v ArrayViewD<'a, T>,
);

impl<T: Elem> Map2<T> for ZipInPlace<'_, '_, '_, T> {
    type Out = Result<(), String>;
    fn call(self, f: impl Fn(T, T) -> T + Copy + Send + Sync) -> Self::Out {
        zip(self.0, self.1, self.2, f)
    }
}

/// How a broadcast operand meets a row-major output whose last axis has
/// `n` elements, when it does so simply: the fast paths of `binary` and `zip`.
#[derive(Clone, Copy)]
pub(super) enum Lanes<'a, T> {
    /// The output's shape, contiguous.
    Full(&'a [T]),
    /// One value for every element.
    Scalar(T),
    /// One row of `n` values, repeated for every row of the output.
    Row(&'a [T]),
    /// One value per row of the output (the last axis has size 1).
    Column(&'a [T]),
}

impl<'a, T: Elem> Lanes<'a, T> {
    /// The pattern of `x` broadcast to `shape`, if it is one of the simple ones.
    pub(super) fn of(x: &'a ArrayViewD<'_, T>, shape: &[usize]) -> Option<Self> {
        let xs = x.shape();
        if xs.len() > shape.len() {
            return None;
        }
        let data = x.as_slice()?;
        if xs == shape {
            return Some(Lanes::Full(data));
        }
        let pad = shape.len() - xs.len();
        let ones = |dims: &[usize]| dims.iter().all(|&d| d == 1);
        let (&n, outer) = shape.split_last()?;
        match xs.split_last() {
            None => data.first().map(|&v| Lanes::Scalar(v)),
            Some(_) if ones(xs) => data.first().map(|&v| Lanes::Scalar(v)),
            Some((&last, lead)) if last == n && ones(lead) => Some(Lanes::Row(data)),
            Some((1, lead)) if *lead == outer[pad..] && ones(&outer[..pad]) => {
                Some(Lanes::Column(data))
            }
            _ => None,
        }
    }

    /// The pattern for the part of the output from element `offset` on (a
    /// whole number of rows of `n` elements).
    pub(super) fn from(self, offset: usize, n: usize) -> Self {
        match self {
            Lanes::Full(s) => Lanes::Full(&s[offset.min(s.len())..]),
            Lanes::Column(s) => Lanes::Column(&s[(offset / n.max(1)).min(s.len())..]),
            other => other,
        }
    }

    /// Whether the pattern changes from row to row of the output.
    pub(super) fn per_row(&self) -> bool {
        matches!(self, Lanes::Row(_) | Lanes::Column(_))
    }

    /// The values for row `r` (of `n` elements): a slice, or one value.
    #[inline(always)]
    pub(super) fn row(&self, r: usize, n: usize) -> Result<&'a [T], T> {
        match *self {
            Lanes::Full(s) => Ok(&s[r * n..(r + 1) * n]),
            Lanes::Scalar(v) => Err(v),
            Lanes::Row(s) => Ok(s),
            Lanes::Column(s) => Err(s[r]),
        }
    }
}

/// `y = f(a, b)` over the rows of `y`, with `a` and `b` as their patterns say.
#[inline(always)]
fn lanes<T: Elem>(
    y: &mut [T],
    a: Lanes<'_, T>,
    b: Lanes<'_, T>,
    n: usize,
    f: impl Fn(T, T) -> T + Sync,
) {
    let n = n.max(1);
    let per_row = a.per_row() || b.per_row();
    split_elements(y, n, &|offset, y| {
        let (a, b) = (a.from(offset, n), b.from(offset, n));
        lanes_part(y, a, b, if per_row { n } else { y.len() }, &f);
    });
}

/// `lanes` over one part of the output (its patterns start where it starts).
#[inline(always)]
fn lanes_part<T: Elem>(
    y: &mut [T],
    a: Lanes<'_, T>,
    b: Lanes<'_, T>,
    n: usize,
    f: &impl Fn(T, T) -> T,
) {
    let n = n.max(1);
    for (r, y) in y.chunks_exact_mut(n).enumerate() {
        match (a.row(r, n), b.row(r, n)) {
            (Ok(a), Ok(b)) => {
                for ((y, &u), &v) in y.iter_mut().zip(a).zip(b) {
                    *y = f(u, v);
                }
            }
            (Ok(a), Err(v)) => {
                for (y, &u) in y.iter_mut().zip(a) {
                    *y = f(u, v);
                }
            }
            (Err(u), Ok(b)) => {
                for (y, &v) in y.iter_mut().zip(b) {
                    *y = f(u, v);
                }
            }
            (Err(u), Err(v)) => y.fill(f(u, v)),
        }
    }
}

/// `f` applied to `a` and `b` broadcast (NumPy rules) to the output's shape.
pub(super) fn binary<T: Elem>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<(), String> {
    let n = out.shape().last().copied().unwrap_or(1);
    if let (Some(pa), Some(pb)) = (Lanes::of(a, out.shape()), Lanes::of(b, out.shape())) {
        if let Some(y) = out.as_slice_mut() {
            lanes(y, pa, pb, n, f);
            return Ok(());
        }
    }
    let shape = out.raw_dim();
    let a = broadcast_view(a, &shape)?;
    let b = broadcast_view(b, &shape)?;
    Zip::from(out)
        .and(&a)
        .and(&b)
        .for_each(|y, &u, &v| *y = f(u, v));
    Ok(())
}

/// `f` applied to each element of `x`, in place (the unary ops' in-place form).
pub(super) fn map<T: Elem>(x: &mut ArrayD<T>, f: impl Fn(T) -> T) -> Result<(), String> {
    match x.as_slice_mut() {
        Some(xs) => xs.iter_mut().for_each(|v| *v = f(*v)),
        None => x.map_inplace(|v| *v = f(*v)),
    }
    Ok(())
}

/// The in-place form of `binary`: `io` holds operand `k` (0 or 1) and has the
/// output's shape; `other`, the other operand, is broadcast to it. The
/// result is `f(a, b)` with the operands in their places.
pub(super) fn zip<T: Elem>(
    io: &mut ArrayD<T>,
    k: usize,
    other: &ArrayViewD<'_, T>,
    f: impl Fn(T, T) -> T,
) -> Result<(), String> {
    let n = io.shape().last().copied().unwrap_or(1);
    if let Some(po) = Lanes::of(other, io.shape()) {
        if let Some(y) = io.as_slice_mut() {
            let n = if po.per_row() {
                n.max(1)
            } else {
                y.len().max(1)
            };
            for (r, y) in y.chunks_exact_mut(n).enumerate() {
                match (po.row(r, n), k == 0) {
                    (Ok(o), true) => y.iter_mut().zip(o).for_each(|(y, &v)| *y = f(*y, v)),
                    (Ok(o), false) => y.iter_mut().zip(o).for_each(|(y, &u)| *y = f(u, *y)),
                    (Err(v), true) => y.iter_mut().for_each(|y| *y = f(*y, v)),
                    (Err(u), false) => y.iter_mut().for_each(|y| *y = f(u, *y)),
                }
            }
            return Ok(());
        }
    }
    let shape = io.raw_dim();
    let other = broadcast_view(other, &shape)?;
    if k == 0 {
        Zip::from(io).and(&other).for_each(|y, &v| *y = f(*y, v));
    } else {
        Zip::from(io).and(&other).for_each(|y, &u| *y = f(u, *y));
    }
    Ok(())
}

pub(super) fn add<T: Elem>(a: T, b: T) -> T {
    a + b
}

/// Elementwise sum of `n` inputs of one shape, in input order.
pub(super) fn add_n<'a, T: Elem>(
    n: usize,
    x: impl Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    if n == 0 {
        return Err("AddN takes at least 1 input, got 0".into());
    }
    let first = x(0)?;
    same_shape("AddN's first input", first.shape(), out.shape())?;
    out.assign(&first);
    for k in 1..n {
        let xk = x(k)?;
        if xk.shape() != out.shape() {
            return Err(format!(
                "AddN: inputs of shapes {:?} and {:?}",
                out.shape(),
                xk.shape()
            ));
        }
        Zip::from(&mut *out).and(&xk).for_each(|a, &b| *a = *a + b);
    }
    Ok(())
}

/// `add_n` in place: `io` holds the first input; inputs 1.. are added in order.
pub(super) fn add_n_in_place<'a, T: Elem>(
    n: usize,
    x: impl Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    io: &mut ArrayD<T>,
) -> Result<(), String> {
    for k in 1..n {
        let xk = x(k)?;
        if xk.shape() != io.shape() {
            return Err(format!(
                "AddN: inputs of shapes {:?} and {:?}",
                io.shape(),
                xk.shape()
            ));
        }
        Zip::from(&mut *io).and(&xk).for_each(|a, &b| *a = *a + b);
    }
    Ok(())
}

/// `dst += delta`, or `dst -= delta` when `subtract`; the shapes must be equal.
pub(super) fn accumulate<T: Elem>(
    dst: &mut ArrayD<T>,
    delta: &ArrayD<T>,
    subtract: bool,
) -> Result<(), String> {
    if dst.shape() != delta.shape() {
        return Err(format!(
            "cannot update a variable of shape {:?} with a value of shape {:?}",
            dst.shape(),
            delta.shape()
        ));
    }
    if let (Some(d), Some(x)) = (delta.as_slice(), dst.as_slice_mut()) {
        split_elements(x, 1, &|offset, x| {
            let d = &d[offset..];
            if subtract {
                d.iter().zip(x).for_each(|(&b, a)| *a = *a - b);
            } else {
                d.iter().zip(x).for_each(|(&b, a)| *a = *a + b);
            }
        });
        return Ok(());
    }
    if subtract {
        Zip::from(dst).and(delta).for_each(|a, &b| *a = *a - b);
    } else {
        Zip::from(dst).and(delta).for_each(|a, &b| *a = *a + b);
    }
    Ok(())
}

/// The contiguous data of an update's operand of the variable's shape.
fn update_operand<'a, T: Elem>(
    x: &'a ArrayD<T>,
    var: &[usize],
    what: &str,
) -> Result<&'a [T], String> {
    if x.shape() != var {
        return Err(format!(
            "cannot update a variable of shape {var:?} with {what} of shape {:?}",
            x.shape()
        ));
    }
    x.as_slice()
        .ok_or_else(|| format!("{what} is not contiguous"))
}

/// `var -= alpha * delta`, one pass: the same two roundings as a Mul then
/// an AssignSub, so the same bits.
pub(super) fn apply_gradient_descent<T: Elem>(
    var: &mut ArrayD<T>,
    alpha: T,
    delta: &ArrayD<T>,
) -> Result<(), String> {
    let d = update_operand(delta, var.shape(), "a delta")?;
    let v = var.as_slice_mut().ok_or("the variable is not contiguous")?;
    split_elements(v, 1, &|offset, v| {
        for (v, &d) in v.iter_mut().zip(&d[offset..]) {
            *v = *v - alpha * d;
        }
    });
    Ok(())
}

/// `accum = momentum * accum + grad; var -= lr * accum` (Nesterov:
/// `var -= lr * (grad + momentum * accum)`), one pass: the roundings of
/// the Mul, Add, Assign, Mul and AssignSub that TensorFlow 1's
/// MomentumOptimizer stands for, so the same bits.
pub(super) fn apply_momentum<T: Elem>(
    var: &mut ArrayD<T>,
    accum: &mut ArrayD<T>,
    lr: T,
    grad: &ArrayD<T>,
    momentum: T,
    nesterov: bool,
) -> Result<(), String> {
    let g = update_operand(grad, var.shape(), "a gradient")?;
    if accum.shape() != var.shape() {
        return Err(format!(
            "the accumulator has shape {:?}, the variable {:?}",
            accum.shape(),
            var.shape()
        ));
    }
    let a = accum
        .as_slice_mut()
        .ok_or("the accumulator is not contiguous")?;
    let v = var.as_slice_mut().ok_or("the variable is not contiguous")?;
    let step = |v: &mut [T], a: &mut [T], g: &[T]| {
        for ((v, a), &g) in v.iter_mut().zip(a.iter_mut()).zip(g) {
            *a = momentum * *a + g;
            let direction = if nesterov { g + momentum * *a } else { *a };
            *v = *v - lr * direction;
        }
    };
    crate::parallel::split_pair(v, a, &|offset, v, a| {
        step(v, a, &g[offset..offset + v.len()]);
    });
    Ok(())
}
