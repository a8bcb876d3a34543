//! The gradient of `SparseSoftmaxCrossEntropyWithLogits`
//! (`runtime/src/op/sparse_softmax_cross_entropy_with_logits.rs`),
//! TensorFlow's `_SparseSoftmaxCrossEntropyWithLogitsGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::shape::Dim;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// loss = logsumexp(z) − z[label]: dz = (softmax(z) − one_hot(label))·dy[..., None];
// second order through Softmax; the labels get none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let (logits, labels) = (n.x(0), n.x(1));
    let ty = c.ty(logits).clone();
    let depth = match ty.shape.0.last() {
        Some(Dim::Known(d)) => *d as i64,
        Some(Dim::Sym(s)) => {
            return Err(CompileError::new(
                ErrorKind::Shape,
                format!("the gradient needs the number of classes, the last axis of logits, which is the symbolic {s}"),
            ))
        }
        None => {
            return Err(CompileError::new(ErrorKind::Internal, "logits of rank 0".to_string()))
        }
    };
    let one_hot = Op::OneHot { depth, on_value: 1.0, off_value: 0.0, axis: -1, dtype: ty.dtype };
    let target = c.op(one_hot, &[labels])?;
    let p = c.op(Op::Softmax, &[logits])?;
    let diff = c.sub(p, target)?;
    let d = c.op(Op::ExpandDims { axes: vec![-1] }, &[dy(g)])?;
    Ok(vec![Some(c.mul(diff, d)?), None])
}
