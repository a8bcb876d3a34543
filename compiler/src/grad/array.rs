//! Gradients of shape and reduction ops.

use super::{dy, Ctx, Grads, NodeArgs};
use crate::error::Result;
use crate::ir::TensorRef;
use gradc_runtime::shape::normalize_axes;
use gradc_runtime::Op;

// dx = reshape(dy, shape of x); the shape input of ReshapeLike gets none
pub(super) fn reshape(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let dx = c.op(Op::ReshapeLike, &[dy(g), n.x(0)])?;
    let mut out = vec![Some(dx)];
    out.resize(n.inputs.len(), None);
    Ok(out)
}

// dx = transpose(dy, inverse perm)
pub(super) fn transpose(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Transpose { perm } = &n.op else {
        unreachable!("transpose rule on {}", n.op.name())
    };
    let rank = c.ty(n.x(0)).shape.rank();
    let perm = perm.clone().unwrap_or_else(|| (0..rank).rev().collect());
    let mut inverse = vec![0; rank];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    Ok(vec![Some(c.op(
        Op::Transpose {
            perm: Some(inverse),
        },
        &[dy(g)],
    )?)])
}

// dx = squeeze(dy, axes)
pub(super) fn expand_dims(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::ExpandDims { axes } = &n.op else {
        unreachable!("expand_dims rule on {}", n.op.name())
    };
    Ok(vec![Some(
        c.op(Op::Squeeze { axes: axes.clone() }, &[dy(g)])?,
    )])
}

// dx = expand_dims(dy, axes)
pub(super) fn squeeze(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Squeeze { axes } = &n.op else {
        unreachable!("squeeze rule on {}", n.op.name())
    };
    Ok(vec![Some(
        c.op(Op::ExpandDims { axes: axes.clone() }, &[dy(g)])?,
    )])
}

/// dy with the reduced axes put back as size 1, then broadcast to x's shape.
pub(super) fn unreduce(c: &mut Ctx, n: &NodeArgs, g: TensorRef) -> Result<TensorRef> {
    let (Op::Sum { axes, keep_dims } | Op::Mean { axes, keep_dims }) = &n.op else {
        unreachable!("unreduce on {}", n.op.name())
    };
    let rank = c.ty(n.x(0)).shape.rank();
    let g = if *keep_dims || rank == 0 {
        g
    } else {
        let axes: Vec<i64> = match axes {
            Some(a) => normalize_axes(a, rank)
                .map_err(|e| crate::error::CompileError::new(crate::error::ErrorKind::Shape, e))?
                .into_iter()
                .map(|a| a as i64)
                .collect(),
            None => (0..rank as i64).collect(),
        };
        if axes.is_empty() {
            g
        } else {
            c.op(Op::ExpandDims { axes }, &[g])?
        }
    };
    c.op(Op::BroadcastLike, &[g, n.x(0)])
}

// dx = broadcast(dy) to x's shape
pub(super) fn sum(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(unreduce(c, n, dy(g))?)])
}

// dx = broadcast(dy) / (number of reduced elements)
pub(super) fn mean(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Mean { axes, .. } = &n.op else {
        unreachable!("mean rule on {}", n.op.name())
    };
    let b = unreduce(c, n, dy(g))?;
    let count = c.op(Op::ReducedSize { axes: axes.clone() }, &[n.x(0)])?;
    Ok(vec![Some(c.div(b, count)?)])
}

// dvalue = sum(dy)
pub(super) fn fill(c: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(
        Op::Sum {
            axes: None,
            keep_dims: false,
        },
        &[dy(g)],
    )?)])
}

// SumToLike and BroadcastLike are each other's transpose; the shape input gets none.
pub(super) fn sum_to_like(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(Op::BroadcastLike, &[dy(g), n.x(0)])?), None])
}

pub(super) fn broadcast_like(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.op(Op::SumToLike, &[dy(g), n.x(0)])?), None])
}
