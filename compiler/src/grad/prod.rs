//! The gradient of `Prod` (`runtime/src/op/prod.rs`), TensorFlow's `_ProdGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::shape::{normalize_axes, Dim};
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = prod(x) over the axes: dx_i = dy · (product of the other elements of
// i's group) = dy · (exclusive cumprod from the start · exclusive cumprod from
// the end), zeros included; over several axes they are moved to the front and
// flattened into one first
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Prod { axes, keep_dims } = &n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Prod's rule on {}", n.op.name())));
    };
    let x = n.x(0);
    let shape = c.ty(x).shape.clone();
    let rank = shape.rank();
    let shape_error = |e: String| CompileError::new(ErrorKind::Shape, e);
    let reduced = match axes {
        Some(a) => normalize_axes(a, rank).map_err(|e| shape_error(e.0))?,
        None => (0..rank).collect(),
    };
    // dy with the reduced axes back (size 1), broadcast to x.
    let mut d = dy(g);
    if !keep_dims && !reduced.is_empty() {
        let axes = reduced.iter().map(|&a| a as i64).collect();
        d = c.op(Op::ExpandDims { axes }, &[d])?;
    }
    let d = c.op(Op::BroadcastLike, &[d, x])?;
    let others = match reduced.as_slice() {
        [] => return Ok(vec![Some(d)]),
        &[a] => {
            let axis = a as i64;
            let left = c.op(Op::Cumprod { axis, exclusive: true, reverse: false }, &[x])?;
            let right = c.op(Op::Cumprod { axis, exclusive: true, reverse: true }, &[x])?;
            c.mul(left, right)?
        }
        _ => {
            let mut count = 1usize;
            for &a in &reduced {
                match &shape.0[a] {
                    Dim::Known(k) => count *= k,
                    Dim::Sym(s) => {
                        return Err(shape_error(format!(
                            "Prod's gradient over several axes needs their sizes; axis {a} is the symbolic {s}"
                        )))
                    }
                }
            }
            let perm: Vec<usize> = reduced.iter().copied().chain((0..rank).filter(|a| !reduced.contains(a))).collect();
            let mut inverse = vec![0; rank];
            perm.iter().enumerate().for_each(|(k, &a)| inverse[a] = k);
            let permuted = c.op(Op::Transpose { perm: Some(perm) }, &[x])?;
            let flat = c.op(Op::Reshape { shape: vec![count as i64, -1] }, &[permuted])?;
            let left = c.op(Op::Cumprod { axis: 0, exclusive: true, reverse: false }, &[flat])?;
            let right = c.op(Op::Cumprod { axis: 0, exclusive: true, reverse: true }, &[flat])?;
            let both = c.mul(left, right)?;
            let unflat = c.op(Op::ReshapeLike, &[both, permuted])?;
            c.op(Op::Transpose { perm: Some(inverse) }, &[unflat])?
        }
    };
    Ok(vec![Some(c.mul(d, others)?)])
}
