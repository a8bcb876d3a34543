//! `Range`: TensorFlow's `tf.range`: start, start + delta, … up to (not
//! including) limit, as `dtype` (I32 unless given), ceil((limit − start) /
//! delta) values; no inputs. A zero delta, or one that never reaches limit,
//! is an error (TensorFlow's: "Requires start <= limit when delta > 0").

use super::{Arity, In, Op, Takes};
use crate::dtype::{Num, Value};
use crate::kernels::Inputs;
use crate::shape::Shape;
use crate::{by_dtype, DType, Tensor, TensorType};

pub(super) const ARITY: Arity = Arity::Exactly(0);
pub(super) const TAKES: Takes = Takes::Uniform(In::Any);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Range {
            start,
            limit,
            delta,
            dtype,
        } => format!(
            "{{start: {}, limit: {}, delta: {}, dtype: {dtype:?}}}",
            super::fmt_f64(*start),
            super::fmt_f64(*limit),
            super::fmt_f64(*delta)
        ),
        _ => String::new(),
    }
}

/// (start, delta, count, dtype).
fn parts(op: &Op) -> Result<(f64, f64, usize, DType), String> {
    let Op::Range {
        start,
        limit,
        delta,
        dtype,
    } = *op
    else {
        return Err(format!("{} is not a Range", op.name()));
    };
    if dtype == DType::Bool {
        return Err("Range makes numbers, not bools".into());
    }
    let fits = delta != 0.0
        && [start, limit, delta].iter().all(|v| v.is_finite())
        && (delta > 0.0 && start <= limit || delta < 0.0 && start >= limit);
    if !fits {
        return Err(format!(
            "delta {delta} does not go from start {start} to limit {limit}"
        ));
    }
    let count = ((limit - start) / delta).ceil();
    if count > (isize::MAX as f64) / 8.0 {
        return Err(format!("Range of {count} values is too large"));
    }
    Ok((start, delta, count as usize, dtype))
}

pub(super) fn infer(op: &Op, _: DType, _: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (_, _, count, dtype) = parts(op)?;
    Ok(vec![TensorType {
        dtype,
        shape: Shape::known(&[count]),
    }])
}

pub(super) fn run(op: &Op, _: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let (start, delta, count, dtype) = parts(op)?;
    if out.dtype() != dtype || out.len() != count {
        return Err(format!("the output buffer {} does not hold {count} values", out.tensor_type()));
    }
    by_dtype!(dtype, T => {
        let y = T::array_mut(out).ok_or("the output buffer has another dtype")?;
        for (k, v) in y.iter_mut().enumerate() {
            *v = T::from_num(Num::F(start + k as f64 * delta));
        }
    });
    Ok(())
}
