//! The gradients of `Conv2DBackpropInput` (`runtime/src/op/conv2d_backprop_input.rs`),
//! TensorFlow's `_Conv2DBackpropInputGrad`: so second order works through a convolution.

use super::conv2d::like;
use gradc_runtime::op::ConvKind;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = BackpropInput(x's shape, w, g), linear in w and in g:
// dw = Conv2DBackpropFilter(dz, w's shape, g), dg = Conv2D(dz, w); x's shape gets none
fn rule(c: &mut Ctx, n: &NodeArgs, grads: &[Option<TensorRef>]) -> Grads {
    let (w, g) = (n.x(1), n.x(2));
    let dz = dy(grads);
    let dw = c.op(like(&n.op, ConvKind::BackpropFilter)?, &[dz, w, g])?;
    let dg = c.op(like(&n.op, ConvKind::Forward)?, &[dz, w])?;
    Ok(vec![None, Some(dw), Some(dg)])
}
