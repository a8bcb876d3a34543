//! The gradient of `Cumprod` (`runtime/src/op/cumprod.rs`), TensorFlow's `_CumprodGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = cumprod(x): dx = cumsum(y·dy) the other way / x (TensorFlow's form,
// which divides by x: not defined where x is 0)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Cumprod { axis, exclusive, reverse } = n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Cumprod's rule on {}", n.op.name())));
    };
    let weighted = c.mul(n.y(), dy(g))?;
    let back = c.op(Op::Cumsum { axis, exclusive, reverse: !reverse }, &[weighted])?;
    Ok(vec![Some(c.div(back, n.x(0))?)])
}
