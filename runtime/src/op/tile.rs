//! `Tile`: TensorFlow's `tf.tile`: the input repeated `multiples[i]` times
//! along each axis. Its gradient is `TileGrad` (`compiler/src/grad/tile.rs`).

use super::index::{check_out, gather_by_maps, per_axis};
use super::{Arity, Op};
use crate::dtype::Value;
use crate::shape::{Dim, Shape};
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
value_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Tile { multiples } | Op::TileGrad { multiples } => format!("{{multiples: {multiples:?}}}"),
        _ => String::new(),
    }
}

/// The multiples of a Tile or TileGrad, one per axis of `rank`, none negative.
pub(super) fn multiples(op: &Op, rank: usize) -> Result<Vec<usize>, String> {
    let (Op::Tile { multiples } | Op::TileGrad { multiples }) = op else {
        return Err(format!("{} is not a tiling", op.name()));
    };
    per_axis("multiples", multiples, rank)?;
    multiples
        .iter()
        .map(|&m| usize::try_from(m).map_err(|_| format!("multiples {multiples:?} has a negative entry")))
        .collect()
}

/// The shape of `x` with each axis's size `f(size, multiple)` (a symbolic
/// axis only with multiple 1).
pub(super) fn tiled(
    op: &Op,
    x: &Shape,
    f: impl Fn(usize, usize) -> Result<usize, String>,
) -> Result<Shape, String> {
    let m = multiples(op, x.rank())?;
    let dims = x.0.iter().zip(&m).enumerate().map(|(axis, (d, &m))| match d {
        Dim::Known(d) => Ok(Dim::Known(f(*d, m)?)),
        Dim::Sym(_) if m == 1 => Ok(d.clone()),
        Dim::Sym(name) => Err(format!(
            "axis {axis} has the symbolic size {name}, which cannot be tiled {m} times"
        )),
    });
    Ok(Shape(dims.collect::<Result<_, String>>()?))
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let shape = tiled(op, &ins[0].shape, |d, m| {
        d.checked_mul(m).ok_or_else(|| "the tiled size overflows".to_string())
    })?;
    Ok(vec![TensorType { dtype: dt, shape }])
}

/// For each axis, output position o reads o mod the input's size.
pub(super) fn maps(x: &[usize], out: &[usize]) -> Vec<Vec<Option<usize>>> {
    x.iter()
        .zip(out)
        .map(|(&d, &n)| (0..n).map(|o| Some(o % d.max(1))).collect())
        .collect()
}

pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let x = input(0)?;
    let m = multiples(op, x.ndim())?;
    let shape: Vec<usize> = x.shape().iter().zip(&m).map(|(d, m)| d * m).collect();
    check_out(op, out.shape(), &shape)?;
    gather_by_maps(&x, &maps(x.shape(), &shape), T::default(), &mut out.view_mut());
    Ok(())
}
