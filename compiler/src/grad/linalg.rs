//! Gradients of MatMul (TensorFlow's `_MatMulGrad`), batched alike, of
//! Dense (the optimizer's fusion of MatMul, BiasAdd and an activation) and
//! of ActivationBiasGrad (its fused backward epilogue).

use super::{vjp_of, Ctx, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::TensorRef;
use gradc_runtime::op::Activation;
use gradc_runtime::Op;

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

/// For y = op(a) op(b) (op = transpose or not): the gradients of a and b given dy.
// y = a b: da = g b^T, db = a^T g (the transposed forms follow by transposing both sides)
fn product_grads(
    c: &mut Ctx,
    a: TensorRef,
    b: TensorRef,
    g: TensorRef,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<(TensorRef, TensorRef)> {
    Ok(match (transpose_a, transpose_b) {
        (false, false) => (mm(c, g, b, false, true)?, mm(c, a, g, true, false)?),
        (false, true) => (mm(c, g, b, false, false)?, mm(c, g, a, true, false)?),
        (true, false) => (mm(c, b, g, false, true)?, mm(c, a, g, false, false)?),
        (true, true) => (mm(c, b, g, true, true)?, mm(c, g, a, true, true)?),
    })
}

// y = a b: da = g b^T, db = a^T g
pub(super) fn matmul(
    c: &mut Ctx,
    n: &NodeArgs,
    g: &[Option<TensorRef>],
) -> Result<Vec<Option<TensorRef>>> {
    let Op::MatMul {
        transpose_a,
        transpose_b,
    } = n.op
    else {
        unreachable!("matmul rule on {}", n.op.name())
    };
    let g = g[0].expect("the driver calls a single-output rule only with a gradient");
    let (da, db) = product_grads(c, n.x(0), n.x(1), g, transpose_a, transpose_b)?;
    Ok(vec![Some(da), Some(db)])
}

// y = act(a w + bias): dz = act'(y) dy; MatMul's rule for a and w; dbias = sum of dz over all but the last axis
pub(super) fn dense(
    c: &mut Ctx,
    n: &NodeArgs,
    g: &[Option<TensorRef>],
) -> Result<Vec<Option<TensorRef>>> {
    let Op::Dense {
        transpose_a,
        transpose_b,
        activation,
    } = n.op
    else {
        unreachable!("dense rule on {}", n.op.name())
    };
    let dy = g[0].expect("the driver calls a single-output rule only with a gradient");
    let rank = c.ty(n.y()).shape.rank();
    let (dz, db) = bias_activation_grads(c, activation, dy, n.y(), rank.saturating_sub(1))?;
    let (da, dw) = product_grads(c, n.x(0), n.x(1), dz, transpose_a, transpose_b)?;
    Ok(vec![Some(da), Some(dw), Some(db)])
}

/// dz = act'(y) dy, the derivative of the activation's row of the
/// elementwise table, as its own rule builds it, and db = the sum of dz over
/// every axis but `channels` (BiasAdd's rule).
pub(super) fn bias_activation_grads(
    c: &mut Ctx,
    activation: Activation,
    dy: TensorRef,
    y: TensorRef,
    channels: usize,
) -> Result<(TensorRef, TensorRef)> {
    let dz = match activation.unary().and_then(|f| f.derivative()) {
        None => dy,
        Some(d) => {
            // The activation's derivative reads y only: x's place holds y.
            let regs = c.program(&d.steps, &[dy, y, y])?;
            let dz = d.outputs[0].map(|r| regs[r]);
            dz.ok_or_else(|| {
                CompileError::new(
                    ErrorKind::Internal,
                    format!("the {activation:?} activation's derivative is zero"),
                )
            })?
        }
    };
    let rank = c.ty(y).shape.rank();
    let db = c.op(
        Op::Sum {
            axes: Some(
                (0..rank)
                    .filter(|&a| a != channels)
                    .map(|a| a as i64)
                    .collect(),
            ),
            keep_dims: false,
        },
        &[dz],
    )?;
    Ok((dz, db))
}

// dz, db = ActivationBiasGrad(dy, y): the gradient of its decomposition into
// the ops it fuses (bias_activation_grads), so second order works
pub(super) fn activation_bias_grad(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::ActivationBiasGrad { activation } = n.op else {
        unreachable!("activation_bias_grad rule on {}", n.op.name())
    };
    let rank = c.ty(n.x(1)).shape.rank();
    let (dz, db) = bias_activation_grads(c, activation, n.x(0), n.x(1), rank.saturating_sub(1))?;
    vjp_of(c, &[dz, db], g, &n.inputs)
}
