//! What the comparison, logical and predicate ops share (`Equal`, `Less`,
//! …, `LogicalAnd`, …, `IsNan`, `IsFinite`): each a Bool tensor of its inputs
//! broadcast (NumPy rules), with no gradient. One file per op holds its function.

use super::{In, Takes};
use crate::dtype::Value;
use crate::kernels::{input, Inputs};
use crate::shape::broadcast;
use crate::{by_dtype, DType, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD, Dimension, IxDyn, Zip};

/// Two numbers of one dtype (an order needs numbers).
pub(super) const NUMBERS: Takes = Takes::Uniform(In::Numeric);
/// Two values of one dtype, any.
pub(super) const VALUES: Takes = Takes::Uniform(In::Any);
/// Bool inputs.
pub(super) const BOOLS: Takes = Takes::Uniform(In::Bool);

pub(super) fn attrs_text(_: &super::Op) -> String {
    String::new()
}

/// Floats (IsNan, IsFinite).
pub(super) const FLOATS: Takes = Takes::Uniform(In::Float);

/// The inputs' shapes broadcast, as Bool.
pub(super) fn infer(
    _: &super::Op,
    _: DType,
    ins: &[&TensorType],
) -> Result<Vec<TensorType>, String> {
    let mut shape = ins[0].shape.clone();
    for t in &ins[1..] {
        shape = broadcast(&shape, &t.shape)?;
    }
    Ok(vec![TensorType {
        dtype: DType::Bool,
        shape,
    }])
}

/// `x` broadcast to `shape`, or an error naming input `k`.
fn spread<'a, T>(
    x: &'a ArrayViewD<'_, T>,
    k: usize,
    shape: &IxDyn,
) -> Result<ArrayViewD<'a, T>, String> {
    x.broadcast(shape.clone()).ok_or_else(|| {
        format!(
            "input {k} of shape {:?} does not broadcast to {:?}",
            x.shape(),
            shape.slice()
        )
    })
}

fn bools(out: &mut Tensor) -> Result<&mut ArrayD<bool>, String> {
    let dtype = out.dtype();
    bool::array_mut(out).ok_or_else(|| format!("the output buffer is {dtype}, not bool"))
}

/// A comparison of two inputs of one dtype: `out = f(a, b)` elementwise.
pub(super) fn compare(
    ins: &dyn Inputs,
    out: &mut Tensor,
    f: fn(std::cmp::Ordering) -> bool,
) -> Result<(), String> {
    let out = bools(out)?;
    let dtype = ins.get(0).ok_or("input 0 is missing")?.dtype();
    let shape = out.raw_dim();
    by_dtype!(dtype, T => {
        let (a, b) = (input::<T>(ins, 0)?, input::<T>(ins, 1)?);
        let (a, b) = (spread(&a, 0, &shape)?, spread(&b, 1, &shape)?);
        // NaN is unordered: only NotEqual holds for it (as IEEE and TensorFlow have it).
        Zip::from(out).and(&a).and(&b).for_each(|o, a, b| {
            *o = a.partial_cmp(b).map_or(f(std::cmp::Ordering::Less) && f(std::cmp::Ordering::Greater), f)
        });
    });
    Ok(())
}

/// A predicate of floats (IsNan, IsFinite): `out = f(x)`, Bool.
pub(super) fn predicate(
    ins: &dyn Inputs,
    out: &mut Tensor,
    f: fn(f64) -> bool,
) -> Result<(), String> {
    let out = bools(out)?;
    match ins.get(0).ok_or("input 0 is missing")? {
        Tensor::F32(x) => Zip::from(out).and(x).for_each(|o, &v| *o = f(f64::from(v))),
        Tensor::F64(x) => Zip::from(out).and(x).for_each(|o, &v| *o = f(v)),
        other => return Err(format!("a float input, got {}", other.dtype())),
    }
    Ok(())
}

/// A logical op on Bool inputs: `out = f(a, b)` (b = a for one input).
pub(super) fn logical(
    ins: &dyn Inputs,
    out: &mut Tensor,
    f: fn(bool, bool) -> bool,
) -> Result<(), String> {
    let out = bools(out)?;
    let shape = out.raw_dim();
    let a = input::<bool>(ins, 0)?;
    let b = if ins.len() > 1 {
        input::<bool>(ins, 1)?
    } else {
        a.clone()
    };
    let (a, b) = (spread(&a, 0, &shape)?, spread(&b, 1, &shape)?);
    Zip::from(out)
        .and(&a)
        .and(&b)
        .for_each(|o, &a, &b| *o = f(a, b));
    Ok(())
}
