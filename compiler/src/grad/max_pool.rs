//! The gradient of `MaxPool` (`runtime/src/op/max_pool.rs`), TensorFlow's `_MaxPoolGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::TensorRef;
use gradc_runtime::op::PoolKind;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// The pooling op of `kind` with the attributes of pooling `op`.
pub(super) fn like(op: &Op, kind: PoolKind) -> Result<Op> {
    op.pool_like(kind).ok_or_else(|| {
        CompileError::new(
            ErrorKind::Internal,
            format!("a pooling's rule on {}", op.name()),
        )
    })
}

// y = max over each window of x: dx = MaxPoolGrad(x, y, dy), dy to each window's first maximum
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let grad = like(&n.op, PoolKind::MaxPoolGrad)?;
    Ok(vec![Some(c.op(grad, &[n.x(0), n.y(), dy(g)])?)])
}
