//! The gradient of `AvgPoolGrad` (`runtime/src/op/avg_pool_grad.rs`),
//! TensorFlow's `_AvgPoolGradGrad`.

use super::max_pool::like;
use gradc_runtime::op::PoolKind;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = AvgPoolGrad(x's shape, g), linear in g: dg = AvgPool(dz); x's shape gets none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let op = like(&n.op, PoolKind::AvgPool)?;
    Ok(vec![None, Some(c.op(op, &[dy(g)])?)])
}
