//! The gradients of `Conv2D` (`runtime/src/op/conv2d.rs`), TensorFlow's `_Conv2DGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::TensorRef;
use gradc_runtime::op::ConvKind;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// The convolution op of `kind` with the attributes of convolution `op`
/// (depthwise if `op` is).
pub(super) fn like(op: &Op, kind: ConvKind) -> Result<Op> {
    op.conv_like(kind).ok_or_else(|| {
        CompileError::new(
            ErrorKind::Internal,
            format!("a convolution's rule on {}", op.name()),
        )
    })
}

// y = conv(x, w): dx = Conv2DBackpropInput(x's shape, w, dy), dw = Conv2DBackpropFilter(x, w's shape, dy)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (x, w) = (n.x(0), n.x(1));
    let dx = c.op(like(&n.op, ConvKind::BackpropInput)?, &[x, w, dy(g)])?;
    let dw = c.op(like(&n.op, ConvKind::BackpropFilter)?, &[x, w, dy(g)])?;
    Ok(vec![Some(dx), Some(dw)])
}
