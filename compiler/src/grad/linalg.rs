//! Gradient of MatMul (TensorFlow's `_MatMulGrad`), batched alike.

use super::{Ctx, GradFn, NodeArgs};
use crate::error::Result;
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) fn rule(op: &Op) -> Option<GradFn> {
    match op {
        Op::MatMul { .. } => Some(matmul),
        _ => None,
    }
}

fn mm(
    c: &mut Ctx,
    a: TensorRef,
    b: TensorRef,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<TensorRef> {
    c.op(
        Op::MatMul {
            transpose_a,
            transpose_b,
        },
        &[a, b],
    )
}

// y = a b: da = g b^T, db = a^T g (the transposed forms follow by transposing both sides)
fn matmul(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Result<Vec<Option<TensorRef>>> {
    let Op::MatMul {
        transpose_a,
        transpose_b,
    } = n.op
    else {
        unreachable!("matmul rule on {}", n.op.name())
    };
    let g = g[0].expect("the driver calls a single-output rule only with a gradient");
    let (a, b) = (n.x(0), n.x(1));
    let (da, db) = match (transpose_a, transpose_b) {
        (false, false) => (mm(c, g, b, false, true)?, mm(c, a, g, true, false)?),
        (false, true) => (mm(c, g, b, false, false)?, mm(c, g, a, true, false)?),
        (true, false) => (mm(c, b, g, false, true)?, mm(c, a, g, false, false)?),
        (true, true) => (mm(c, b, g, true, true)?, mm(c, g, a, true, true)?),
    };
    Ok(vec![Some(da), Some(db)])
}
