//! The gradient of `Max` (`runtime/src/op/max.rs`), TensorFlow's `_MaxGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::shape::normalize_axes;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = max(x) over the axes: dx = dy · [x = y] / (the number of such x), the
// gradient shared evenly among ties (y and dy broadcast back over the axes)
pub(super) fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (Op::Max { axes, keep_dims } | Op::Min { axes, keep_dims }) = &n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Max's rule on {}", n.op.name())));
    };
    let x = n.x(0);
    let rank = c.ty(x).shape.rank();
    let ax: Vec<i64> = match axes {
        Some(a) => normalize_axes(a, rank)
            .map_err(|e| CompileError::new(ErrorKind::Shape, e.to_string()))?
            .into_iter()
            .map(|a| a as i64)
            .collect(),
        None => (0..rank as i64).collect(),
    };
    // The result and its gradient with the reduced axes kept, to broadcast.
    let kept = |c: &mut Ctx, t: TensorRef| -> Result<TensorRef, CompileError> {
        if *keep_dims {
            Ok(t)
        } else {
            c.op(Op::ExpandDims { axes: ax.clone() }, &[t])
        }
    };
    let (y, g) = (kept(c, n.y())?, kept(c, dy(g))?);
    let hits = c.op(Op::EqualMask, &[x, y])?;
    let count = c.op(
        Op::Sum {
            axes: Some(ax.clone()),
            keep_dims: true,
        },
        &[hits],
    )?;
    let share = c.div(hits, count)?;
    Ok(vec![Some(c.mul(share, g)?)])
}
