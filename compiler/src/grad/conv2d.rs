//! The gradients of `Conv2D` (`runtime/src/op/conv2d.rs`), TensorFlow's `_Conv2DGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// Which convolution op, with the attributes of `op` (one of them): the
/// forward one or one of its two backprops.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Conv2D,
    BackpropInput,
    BackpropFilter,
}

/// The convolution of kind `kind` with the attributes of convolution `op`,
/// depthwise if `op` is.
pub(super) fn like(op: &Op, kind: Kind) -> Op {
    let (strides, padding, explicit_paddings, dilations, data_format, depthwise) = match op {
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
        } => (strides, padding, explicit_paddings, dilations, data_format, false),
        Op::DepthwiseConv2dNative {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::DepthwiseConv2dNativeBackpropInput {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::DepthwiseConv2dNativeBackpropFilter {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        } => (strides, padding, explicit_paddings, dilations, data_format, true),
        other => unreachable!("a convolution's rule on {}", other.name()),
    };
    let (strides, explicit_paddings, dilations) =
        (strides.clone(), explicit_paddings.clone(), dilations.clone());
    let (padding, data_format) = (*padding, *data_format);
    macro_rules! make {
        ($variant:ident) => {
            Op::$variant {
                strides,
                padding,
                explicit_paddings,
                dilations,
                data_format,
            }
        };
    }
    match (kind, depthwise) {
        (Kind::Conv2D, false) => make!(Conv2D),
        (Kind::BackpropInput, false) => make!(Conv2DBackpropInput),
        (Kind::BackpropFilter, false) => make!(Conv2DBackpropFilter),
        (Kind::Conv2D, true) => make!(DepthwiseConv2dNative),
        (Kind::BackpropInput, true) => make!(DepthwiseConv2dNativeBackpropInput),
        (Kind::BackpropFilter, true) => make!(DepthwiseConv2dNativeBackpropFilter),
    }
}

// y = conv(x, w): dx = Conv2DBackpropInput(x's shape, w, dy), dw = Conv2DBackpropFilter(x, w's shape, dy)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (x, w) = (n.x(0), n.x(1));
    let dx = c.op(like(&n.op, Kind::BackpropInput), &[x, w, dy(g)])?;
    let dw = c.op(like(&n.op, Kind::BackpropFilter), &[x, w, dy(g)])?;
    Ok(vec![Some(dx), Some(dw)])
}
