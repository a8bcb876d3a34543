//! The gradient of `Split` and `SplitV` (`runtime/src/op/split.rs`),
//! TensorFlow's `_SplitGrad` and `_SplitVGrad`.

use super::{Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y_0, …, y_k = split(x) along the axis: dx = concat(dy_0, …, dy_k) along it,
// zeros for a part whose gradient is absent
pub(super) fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (axis, stack) = match n.op {
        Op::Split { axis, .. } | Op::SplitV { axis, .. } => (axis, false),
        Op::Unstack { axis } => (axis, true),
        _ => {
            return Err(CompileError::new(
                ErrorKind::Internal,
                format!("Split's rule on {}", n.op.name()),
            ))
        }
    };
    let parts = n
        .outputs
        .iter()
        .zip(g)
        .map(|(&y, dy)| match dy {
            Some(d) => Ok(*d),
            None => c.op(Op::ZerosLike, &[y]),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let join = if stack { Op::Stack { axis } } else { Op::Concat { axis } };
    Ok(vec![Some(c.op(join, &parts)?)])
}
