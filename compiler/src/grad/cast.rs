//! The gradient of `Cast` (`runtime/src/op/cast.rs`), TensorFlow's `_CastGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = cast(x): between floats dx = cast(dy) back to x's dtype; an integer or
// bool on either side stops the gradient
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let from = c.ty(n.x(0)).dtype;
    let to = c.ty(n.y()).dtype;
    if !(from.is_float() && to.is_float()) {
        return Ok(vec![None]);
    }
    Ok(vec![Some(c.op(Op::Cast { to: from }, &[dy(g)])?)])
}
