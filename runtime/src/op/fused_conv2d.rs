//! `FusedConv2D`: `activation(Conv2D(x, filter) + bias)`, TensorFlow's
//! `_FusedConv2D` with `fused_ops: ["BiasAdd", <activation>]`. The optimizer's
//! fusion pass makes it from Conv2D, BiasAdd and an optional Relu, Sigmoid or
//! Tanh (`compiler/src/passes/fuse.rs`). The bias and the activation are
//! applied to each chunk of output rows right after its product, while they
//! are in cache: the same operations as the three ops, so the same bits.
//! Its gradient is the activation's, BiasAdd's and Conv2D's
//! (`compiler/src/grad/fused_conv2d.rs`).

use super::conv::{self, Conv};
use super::conv_gemm::Epilogue;
use super::{unify, Activation, Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(3);
float_kernel!();

/// Conv2D's attributes, then the activation.
pub(super) fn attrs_text(op: &Op) -> String {
    let conv = conv::attrs_text(op);
    match op {
        Op::FusedConv2D { activation, .. } => {
            format!("{}, activation: {activation:?}}}", conv.trim_end_matches('}'))
        }
        _ => conv,
    }
}

fn activation(op: &Op) -> Result<Activation, String> {
    match op {
        Op::FusedConv2D { activation, .. } => Ok(*activation),
        _ => Err(format!("{} is not FusedConv2D", op.name())),
    }
}

/// Conv2D's shape rule; the bias has rank 1 and one value per output channel.
pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let out = super::conv2d::infer(op, dt, &ins[..2])?;
    let (y, b) = (&out[0].shape, &ins[2].shape);
    let channels = &y.0[Conv::of(op)?.axes()[3]];
    if b.rank() != 1 || unify(channels, &b.0[0]).is_err() {
        return Err(format!(
            "the bias {b} is not one value for each of the output's {channels} channels"
        ));
    }
    Ok(out)
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let activation = activation(op)?;
    let bias = input(2)?;
    let bias = bias
        .as_slice()
        .ok_or("FusedConv2D: the bias is not contiguous")?;
    let epilogue = Epilogue { bias, activation };
    super::conv2d::drive("FusedConv2D", op, input, out, Some(epilogue))
}
