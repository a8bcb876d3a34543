//! The gradient of `Cumsum` (`runtime/src/op/cumsum.rs`), TensorFlow's `_CumsumGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = cumsum(x) along the axis, linear: dx = cumsum(dy) the other way (reverse flipped, exclusive kept)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Cumsum {
        axis,
        exclusive,
        reverse,
    } = n.op
    else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Cumsum's rule on {}", n.op.name())));
    };
    let back = Op::Cumsum {
        axis,
        exclusive,
        reverse: !reverse,
    };
    Ok(vec![Some(c.op(back, &[dy(g)])?)])
}
