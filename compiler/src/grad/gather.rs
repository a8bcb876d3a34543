//! The gradient of `Gather` (`runtime/src/op/gather.rs`), TensorFlow's
//! `_GatherV2Grad` densified: the IndexedSlices summed by `UnsortedSegmentSum`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::shape::{normalize_axis, Dim};
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = gather(params, indices) along axis a: dparams[.., n, ..] = the sum of
// dy[.., j, ..] over the positions j where indices[j] = n, i.e. an
// unsorted segment sum of dy by the indices, with dy's index axes moved to
// the front for it and the result's segment axis moved back to a; indices get none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Gather { axis } = n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Gather's rule on {}", n.op.name())));
    };
    let (params, indices) = (n.x(0), n.x(1));
    let p = c.ty(params).shape.clone();
    let r_idx = c.ty(indices).shape.rank();
    let a = normalize_axis(axis, p.rank()).map_err(|e| CompileError::new(ErrorKind::Shape, e.to_string()))?;
    let segments = match &p.0[a] {
        Dim::Known(d) => *d as i64,
        Dim::Sym(s) => {
            return Err(CompileError::new(
                ErrorKind::Shape,
                format!("Gather's gradient needs the size of params' axis {a}, which is the symbolic {s}"),
            ))
        }
    };
    let sum = Op::UnsortedSegmentSum { num_segments: segments };
    if a == 0 {
        return Ok(vec![Some(c.op(sum, &[dy(g), indices])?), None]);
    }
    // dy: [p_0 … p_{a−1}, i_0 … i_{r−1}, p_{a+1} …] → the index axes first.
    let rank_y = p.rank() - 1 + r_idx;
    let perm: Vec<usize> = (a..a + r_idx).chain(0..a).chain(a + r_idx..rank_y).collect();
    let front = c.op(Op::Transpose { perm: Some(perm) }, &[dy(g)])?;
    let summed = c.op(sum, &[front, indices])?;
    // [n, p_0 … p_{a−1}, p_{a+1} …] → n back at axis a.
    let back: Vec<usize> = (1..=a).chain([0]).chain(a + 1..p.rank()).collect();
    Ok(vec![Some(c.op(Op::Transpose { perm: Some(back) }, &[summed])?), None])
}
