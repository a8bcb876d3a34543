//! The gradient of `SliceGrad` (`runtime/src/op/slice_grad.rs`).

use super::slice::swapped;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = SliceGrad(x's shape, g), linear in g: dg = Slice(dz); x's shape gets none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![None, Some(c.op(swapped(&n.op)?, &[dy(g)])?)])
}
