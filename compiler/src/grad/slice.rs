//! The gradient of `Slice` (`runtime/src/op/slice.rs`), TensorFlow's `_SliceGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// The op of the other kind (Slice ↔ SliceGrad) with the same begin and size.
pub(super) fn swapped(op: &Op) -> Result<Op, CompileError> {
    match op {
        Op::Slice { begin, size } => Ok(Op::SliceGrad {
            begin: begin.clone(),
            size: size.clone(),
        }),
        Op::SliceGrad { begin, size } => Ok(Op::Slice {
            begin: begin.clone(),
            size: size.clone(),
        }),
        _ => Err(CompileError::new(
            ErrorKind::Internal,
            format!("a slice's rule on {}", op.name()),
        )),
    }
}

// y = x[begin : begin + size]: dx = SliceGrad(x's shape, dy), dy where the slice was, zeros elsewhere
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(swapped(&n.op)?, &[n.x(0), dy(g)])?)])
}
