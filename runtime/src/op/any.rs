//! `Any`: TensorFlow's `tf.reduce_any`: whether any element of a Bool tensor
//! over `axes` (all when absent) is true; `All` (`all.rs`) shares it. No
//! gradient.

use super::{reduce_axes, reduced_shape, Arity, In, Op, Takes};
use crate::kernels::{input, Inputs};
use crate::{DType, Tensor, TensorType};

pub(super) const ARITY: Arity = Arity::Exactly(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Bool);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Any { axes, keep_dims } | Op::All { axes, keep_dims } => {
            let axes = axes.as_ref().map_or("all".to_string(), |a| format!("{a:?}"));
            format!("{{axes: {axes}, keep_dims: {keep_dims}}}")
        }
        _ => String::new(),
    }
}

fn parts(op: &Op) -> Result<(&Option<Vec<i64>>, bool), String> {
    match op {
        Op::Any { axes, keep_dims } | Op::All { axes, keep_dims } => Ok((axes, *keep_dims)),
        _ => Err(format!("{} is not Any or All", op.name())),
    }
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (axes, keep_dims) = parts(op)?;
    Ok(vec![TensorType {
        dtype: DType::Bool,
        shape: reduced_shape(axes, keep_dims, &ins[0].shape)?,
    }])
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let (axes, _) = parts(op)?;
    // Any folds with ||, starting false; All with &&, starting true.
    let all = matches!(op, Op::All { .. });
    let x = input::<bool>(ins, 0)?;
    let reduced = reduce_axes(axes, x.ndim())?;
    let dtype = out.dtype();
    let out = match out {
        Tensor::Bool(o) => o,
        _ => return Err(format!("the output buffer is {dtype}, not bool")),
    };
    let kept: usize = (0..x.ndim()).filter(|a| !reduced.contains(a)).map(|a| x.shape()[a]).product();
    if out.len() != kept {
        return Err(format!("{:?} reduced over {reduced:?} cannot fill {:?}", x.shape(), out.shape()));
    }
    let dst = out.as_slice_mut().ok_or("the output buffer is not in standard layout")?;
    dst.fill(all);
    for (index, &v) in x.indexed_iter() {
        // The output element: the kept axes' indices in row-major order.
        let o = (0..x.ndim())
            .filter(|a| !reduced.contains(a))
            .fold(0, |o, a| o * x.shape()[a] + index[a]);
        dst[o] = if all { dst[o] && v } else { dst[o] || v };
    }
    Ok(())
}
