//! The gradient of `PadGrad` (`runtime/src/op/pad_grad.rs`).

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = PadGrad(g), linear in g, the adjoint of padding with zeros: dg = Pad(dz) with 0 as the constant
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::PadGrad { paddings, mode } = &n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("PadGrad's rule on {}", n.op.name())));
    };
    let pad = Op::Pad {
        paddings: paddings.clone(),
        mode: *mode,
        constant_values: 0.0,
    };
    Ok(vec![Some(c.op(pad, &[dy(g)])?)])
}
