//! The gradients of `Conv2D` (`runtime/src/op/conv2d.rs`), TensorFlow's `_Conv2DGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// Which convolution op, with the attributes of `op` (one of them).
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Conv2D,
    BackpropInput,
    BackpropFilter,
}

/// The convolution of kind `kind` with the attributes of convolution `op`.
pub(super) fn like(op: &Op, kind: Kind) -> Op {
    let (strides, padding, explicit_paddings, dilations, data_format) = match op {
        Op::Conv2D {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::Conv2DBackpropInput {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::Conv2DBackpropFilter {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        } => (
            strides.clone(),
            *padding,
            explicit_paddings.clone(),
            dilations.clone(),
            *data_format,
        ),
        other => unreachable!("a convolution's rule on {}", other.name()),
    };
    match kind {
        Kind::Conv2D => Op::Conv2D {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        },
        Kind::BackpropInput => Op::Conv2DBackpropInput {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        },
        Kind::BackpropFilter => Op::Conv2DBackpropFilter {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        },
    }
}

// y = conv(x, w): dx = Conv2DBackpropInput(x's shape, w, dy), dw = Conv2DBackpropFilter(x, w's shape, dy)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (x, w) = (n.x(0), n.x(1));
    let dx = c.op(like(&n.op, Kind::BackpropInput), &[x, w, dy(g)])?;
    let dw = c.op(like(&n.op, Kind::BackpropFilter), &[x, w, dy(g)])?;
    Ok(vec![Some(dx), Some(dw)])
}
