//! The gradient of `MaxPoolGradGrad` (`runtime/src/op/max_pool_grad_grad.rs`),
//! TensorFlow's `_MaxPoolGradGradGrad`.

use super::max_pool::like;
use gradc_runtime::op::PoolKind;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = MaxPoolGradGrad(x, y, g), linear in g: dg = MaxPoolGrad(x, y, dz); x and y get none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let op = like(&n.op, PoolKind::MaxPoolGrad)?;
    let dg = c.op(op, &[n.x(0), n.x(1), dy(g)])?;
    Ok(vec![None, None, Some(dg)])
}
