//! The gradient of `Reverse` (`runtime/src/op/reverse.rs`), TensorFlow's `_ReverseV2Grad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = reverse(x) along the axes, a permutation: dx = reverse(dy) along the same axes
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(n.op.clone(), &[dy(g)])?)])
}
