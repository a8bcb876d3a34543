//! The gradient of `UnsortedSegmentSum` (`runtime/src/op/unsorted_segment_sum.rs`),
//! TensorFlow's `_UnsortedSegmentSumGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y[s] = sum of data[j] over the j with segment_ids[j] = s: ddata[j] = dy[segment_ids[j]],
// a Gather of dy by the ids; the ids get none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(Op::Gather { axis: 0 }, &[dy(g), n.x(1)])?), None])
}
