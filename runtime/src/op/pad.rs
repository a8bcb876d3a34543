//! `Pad`: TensorFlow's `tf.pad`: `paddings` a (before, after) pair per axis,
//! `mode` CONSTANT (with `constant_values`), REFLECT or SYMMETRIC
//! (TensorFlow's `MirrorPad`). Its gradient is `PadGrad`
//! (`compiler/src/grad/pad.rs`).

use super::index::{check_out, check_reach, gather_by_maps, pad_map, pad_pairs, PadMode};
use super::{Arity, Op};
use crate::dtype::Value;
use crate::shape::{Dim, Shape};
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
value_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Pad {
            paddings,
            mode,
            constant_values,
        } => format!("{{paddings: {paddings:?}, mode: {mode:?}, constant_values: {constant_values:?}}}"),
        Op::PadGrad { paddings, mode } => format!("{{paddings: {paddings:?}, mode: {mode:?}}}"),
        _ => String::new(),
    }
}

/// (paddings, mode) of a Pad or PadGrad.
pub(super) fn parts(op: &Op) -> Result<(&[Vec<i64>], PadMode), String> {
    match op {
        Op::Pad { paddings, mode, .. } | Op::PadGrad { paddings, mode } => Ok((paddings, *mode)),
        _ => Err(format!("{} is not a padding", op.name())),
    }
}

/// The padded shape of `x` (`unpad`: the unpadded shape of a padded `x`),
/// checked: a symbolic axis unpadded, a mirror within the unpadded size.
pub(super) fn padded(op: &Op, x: &Shape, unpad: bool) -> Result<Shape, String> {
    let (paddings, mode) = parts(op)?;
    let pairs = pad_pairs(paddings, x.rank())?;
    let dims = x.0.iter().zip(&pairs).enumerate().map(|(axis, (d, &(b, a)))| match d {
        Dim::Known(d) => {
            let sized = if unpad {
                d.checked_sub(b).and_then(|n| n.checked_sub(a)).ok_or_else(|| {
                    format!("a dimension of {d} is smaller than its padding ({b}, {a})")
                })?
            } else {
                d.checked_add(b)
                    .and_then(|n| n.checked_add(a))
                    .ok_or("the padded size overflows")?
            };
            check_reach(mode, if unpad { sized } else { *d }, (b, a))?;
            Ok(Dim::Known(sized))
        }
        Dim::Sym(_) if (b, a) == (0, 0) => Ok(d.clone()),
        Dim::Sym(name) => Err(format!(
            "axis {axis} has the symbolic size {name}, which cannot be padded by ({b}, {a})"
        )),
    });
    Ok(Shape(dims.collect::<Result<_, String>>()?))
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let shape = padded(op, &ins[0].shape, false)?;
    Ok(vec![TensorType { dtype: dt, shape }])
}

pub(super) fn kernel<'a, T: Value>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let Op::Pad {
        constant_values, ..
    } = op
    else {
        return Err(format!("{} is not Pad", op.name()));
    };
    let (paddings, mode) = parts(op)?;
    let x = input(0)?;
    let pairs = pad_pairs(paddings, x.ndim())?;
    let maps = x
        .shape()
        .iter()
        .zip(&pairs)
        .map(|(&d, &p)| pad_map(mode, d, p))
        .collect::<Result<Vec<_>, String>>()?;
    let shape: Vec<usize> = maps.iter().map(Vec::len).collect();
    check_out(op, out.shape(), &shape)?;
    gather_by_maps(&x, &maps, T::from_num(crate::dtype::Num::F(*constant_values)), &mut out.view_mut());
    Ok(())
}
