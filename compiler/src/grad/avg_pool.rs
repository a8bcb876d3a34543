//! The gradient of `AvgPool` (`runtime/src/op/avg_pool.rs`), TensorFlow's `_AvgPoolGrad`.

use super::max_pool::like;
use gradc_runtime::op::PoolKind;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = mean over each window of x: dx = AvgPoolGrad(x's shape, dy), dy spread over each window
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let op = like(&n.op, PoolKind::AvgPoolGrad)?;
    Ok(vec![Some(c.op(op, &[n.x(0), dy(g)])?)])
}
