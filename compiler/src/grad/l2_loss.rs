//! The gradient of `L2Loss` (`runtime/src/op/l2_loss.rs`).

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = sum(x²) / 2: dx = x * dy (TensorFlow's `_L2LossGrad`)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.mul(n.x(0), dy(g))?)])
}
