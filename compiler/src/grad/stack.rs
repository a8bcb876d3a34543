//! The gradient of `Stack` (`runtime/src/op/stack.rs`), TensorFlow's `_PackGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::shape::normalize_axes;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = stack(x_0, …, x_k) on a new axis: dx_i = dy at index i of that axis (a Slice of size 1, squeezed)
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Stack { axis } = n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Stack's rule on {}", n.op.name())));
    };
    let rank = c.ty(n.y()).shape.rank();
    let axis = normalize_axes(&[axis], rank).map_err(|e| CompileError::new(ErrorKind::Shape, e.to_string()))?[0];
    (0..n.inputs.len())
        .map(|k| {
            let mut begin = vec![0; rank];
            let mut size = vec![-1; rank];
            begin[axis] = k as i64;
            size[axis] = 1;
            let slice = c.op(Op::Slice { begin, size }, &[dy(g)])?;
            let squeezed = c.op(Op::Squeeze { axes: vec![axis as i64] }, &[slice])?;
            Ok(Some(squeezed))
        })
        .collect()
}
