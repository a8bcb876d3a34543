//! The gradients of `Conv2DBackpropFilter` (`runtime/src/op/conv2d_backprop_filter.rs`),
//! TensorFlow's `_Conv2DBackpropFilterGrad`: so second order works through a convolution.

use super::conv2d::like;
use gradc_runtime::op::ConvKind;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = BackpropFilter(x, w's shape, g), linear in x and in g:
// dx = Conv2DBackpropInput(x's shape, dz, g), dg = Conv2D(x, dz); w's shape gets none
fn rule(c: &mut Ctx, n: &NodeArgs, grads: &[Option<TensorRef>]) -> Grads {
    let (x, g) = (n.x(0), n.x(2));
    let dz = dy(grads);
    let dx = c.op(like(&n.op, ConvKind::BackpropInput)?, &[x, dz, g])?;
    let dg = c.op(like(&n.op, ConvKind::Forward)?, &[x, dz])?;
    Ok(vec![Some(dx), None, Some(dg)])
}
