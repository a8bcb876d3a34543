//! The gradient of `StridedSliceGrad` (`runtime/src/op/strided_slice_grad.rs`).

use super::strided_slice::swapped;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = StridedSliceGrad(x's shape, g), linear in g: dg = StridedSlice(dz); x's shape gets none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![None, Some(c.op(swapped(&n.op)?, &[dy(g)])?)])
}
