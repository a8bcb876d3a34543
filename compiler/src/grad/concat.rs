//! The gradient of `Concat` (`runtime/src/op/concat.rs`), TensorFlow's `_ConcatGradV2`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::shape::{normalize_axes, Dim};
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = concat(x_0, …, x_k) along the axis: dx_i = Slice(dy) at x_i's place along the axis, all of every other axis
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Concat { axis } = n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Concat's rule on {}", n.op.name())));
    };
    let rank = c.ty(n.x(0)).shape.rank();
    let axis = normalize_axes(&[axis], rank).map_err(|e| CompileError::new(ErrorKind::Shape, e.to_string()))?[0];
    let mut offset = 0usize;
    let mut grads = Vec::new();
    for (k, &x) in n.inputs.iter().enumerate() {
        let last = k + 1 == n.inputs.len();
        // Size -1 reaches the end: the last input's size may be symbolic.
        let size = match (&c.ty(x).shape.0[axis], last) {
            (Dim::Known(d), _) => *d as i64,
            (Dim::Sym(_), true) => -1,
            (Dim::Sym(s), false) => {
                return Err(CompileError::new(
                    ErrorKind::Shape,
                    format!("Concat's gradient needs the size along axis {axis} of input {k}, which is the symbolic {s}"),
                ))
            }
        };
        let mut begin = vec![0; rank];
        let mut sizes = vec![-1; rank];
        begin[axis] = offset as i64;
        sizes[axis] = size;
        grads.push(Some(c.op(Op::Slice { begin, size: sizes }, &[dy(g)])?));
        offset += size.max(0) as usize;
    }
    Ok(grads)
}
