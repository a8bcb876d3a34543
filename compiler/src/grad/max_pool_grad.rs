//! The gradient of `MaxPoolGrad` (`runtime/src/op/max_pool_grad.rs`),
//! TensorFlow's `_MaxPoolGradGrad`.

use super::max_pool::like;
use gradc_runtime::op::PoolKind;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = MaxPoolGrad(x, y, g), linear in g with a piecewise-constant routing:
// dg = MaxPoolGradGrad(x, y, dz); x and y get none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let op = like(&n.op, PoolKind::MaxPoolGradGrad)?;
    let dg = c.op(op, &[n.x(0), n.x(1), dy(g)])?;
    Ok(vec![None, None, Some(dg)])
}
