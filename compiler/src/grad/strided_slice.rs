//! The gradient of `StridedSlice` (`runtime/src/op/strided_slice.rs`),
//! TensorFlow's `_StridedSliceGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// The op of the other kind (StridedSlice ↔ StridedSliceGrad) with the same attributes.
pub(super) fn swapped(op: &Op) -> Result<Op, CompileError> {
    match op.clone() {
        Op::StridedSlice { begin, end, strides, begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask } => {
            Ok(Op::StridedSliceGrad { begin, end, strides, begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask })
        }
        Op::StridedSliceGrad { begin, end, strides, begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask } => {
            Ok(Op::StridedSlice { begin, end, strides, begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask })
        }
        other => Err(CompileError::new(
            ErrorKind::Internal,
            format!("a strided slice's rule on {}", other.name()),
        )),
    }
}

// y = x[b:e:s, ...]: dx = StridedSliceGrad(x's shape, dy), dy added where the slice read, zeros elsewhere
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(swapped(&n.op)?, &[n.x(0), dy(g)])?)])
}
