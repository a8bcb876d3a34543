//! `Reverse`: TensorFlow's `tf.reverse` (ReverseV2): the order of the values
//! along each of `axes` (negative from the end) reversed. It is its own
//! gradient (`compiler/src/grad/reverse.rs`).

use super::index::gather_by_maps;
use super::{Arity, Op};
use crate::dtype::Value;
use crate::shape::normalize_axes;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
value_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Reverse { axes } => format!("{{axes: {axes:?}}}"),
        _ => String::new(),
    }
}

fn axes(op: &Op, rank: usize) -> Result<Vec<usize>, String> {
    let Op::Reverse { axes } = op else {
        return Err(format!("{} is not Reverse", op.name()));
    };
    // Each axis once: normalize_axes refuses a repeated one.
    Ok(normalize_axes(axes, rank)?)
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    axes(op, ins[0].shape.rank())?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: ins[0].shape.clone(),
    }])
}

pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let x = input(0)?;
    let ax = axes(op, x.ndim())?;
    super::index::check_out(op, out.shape(), x.shape())?;
    let maps: Vec<Vec<Option<usize>>> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(a, &d)| {
            let flip = ax.contains(&a);
            (0..d).map(|o| Some(if flip { d - 1 - o } else { o })).collect()
        })
        .collect();
    gather_by_maps(&x, &maps, T::default(), &mut out.view_mut());
    Ok(())
}
