//! The gradient of `ClipByValue` (`runtime/src/op/clip_by_value.rs`),
//! TensorFlow's `_ClipByValueGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = clip(t, lo, hi): dt = dy where lo ≤ t ≤ hi; dlo = dy where t < lo and
// dhi = dy where t > hi, each summed to its input's shape
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (t, lo, hi) = (n.x(0), n.x(1), n.x(2));
    let above_lo = c.op(Op::GreaterEqualMask, &[t, lo])?;
    let below_hi = c.op(Op::GreaterEqualMask, &[hi, t])?;
    let inside = c.mul(above_lo, below_hi)?;
    let one = c.scalar(1.0, t)?;
    let under = c.sub(one, above_lo)?;
    let over = c.sub(one, below_hi)?;
    let dt = c.mul(dy(g), inside)?;
    let to_lo = c.mul(dy(g), under)?;
    let to_hi = c.mul(dy(g), over)?;
    let dlo = c.op(Op::SumToLike, &[to_lo, lo])?;
    let dhi = c.op(Op::SumToLike, &[to_hi, hi])?;
    Ok(vec![Some(dt), Some(dlo), Some(dhi)])
}
