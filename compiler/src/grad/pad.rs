//! The gradient of `Pad` (`runtime/src/op/pad.rs`), TensorFlow's `_PadGrad`
//! and `_MirrorPadGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = pad(x): dx = PadGrad(dy), the sum of dy over the positions that read each value
// (the slice of dy inside the border for CONSTANT); the constant gets none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Pad { paddings, mode, .. } = &n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Pad's rule on {}", n.op.name())));
    };
    let grad = Op::PadGrad {
        paddings: paddings.clone(),
        mode: *mode,
    };
    Ok(vec![Some(c.op(grad, &[dy(g)])?)])
}
