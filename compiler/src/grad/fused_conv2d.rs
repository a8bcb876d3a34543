//! The gradients of `FusedConv2D` (`runtime/src/op/fused_conv2d.rs`): those
//! of the activation, BiasAdd and Conv2D it fuses, in that order.

use super::conv2d::like;
use super::linalg::bias_activation_grads;
use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::op::ConvKind;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = act(conv(x, w) + b): dz = act'(y) dy, db = the sum of dz over all but the
// channels, dx = Conv2DBackpropInput(x's shape, w, dz), dw = Conv2DBackpropFilter(x, w's shape, dz)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::FusedConv2D {
        activation,
        data_format,
        ..
    } = n.op
    else {
        return Err(CompileError::new(
            ErrorKind::Internal,
            format!("FusedConv2D's rule on {}", n.op.name()),
        ));
    };
    let channels = data_format.channel_axis(4);
    let (dz, db) = bias_activation_grads(c, activation, dy(g), n.y(), channels)?;
    let (x, w) = (n.x(0), n.x(1));
    let dx = c.op(like(&n.op, ConvKind::BackpropInput)?, &[x, w, dz])?;
    let dw = c.op(like(&n.op, ConvKind::BackpropFilter)?, &[x, w, dz])?;
    Ok(vec![Some(dx), Some(dw), Some(db)])
}
