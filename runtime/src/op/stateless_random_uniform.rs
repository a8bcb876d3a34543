//! `StatelessRandomUniform`: uniform values in [0, 1) of the shape and float
//! dtype of its first input, drawn from its second, an integer scalar seed
//! (TensorFlow's `tf.random.stateless_uniform`, whose seed is a tensor as
//! here): the same seed gives the same values, whatever the thread count.
//! The values are a ChaCha8 stream seeded by the seed, one draw per element
//! in row-major order (24 random bits for f32, 53 for f64): gradc's stream,
//! not TensorFlow's Philox. Not differentiable. The `Dropout` layer draws its
//! masks with it.

use super::{Arity, In, Op, Takes};
use crate::kernels::Inputs;
use crate::{DType, Tensor, TensorType};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(super) const ARITY: Arity = Arity::Exactly(2);
pub(super) const TAKES: Takes = Takes::Each(&[In::Float, In::Int]);

pub(super) fn attrs_text(_: &Op) -> String {
    String::new()
}

/// The first input's type; the seed must be a scalar.
pub(super) fn infer(_: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    if ins[1].shape.rank() != 0 {
        return Err(format!("the seed must be a scalar, got shape {}", ins[1].shape));
    }
    Ok(vec![ins[0].clone()])
}

pub(super) fn run(_: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let seed = ins
        .get(1)
        .and_then(|t| match t {
            Tensor::I64(s) => s.first().copied(),
            Tensor::I32(s) => s.first().map(|&v| i64::from(v)),
            _ => None,
        })
        .ok_or("the seed (input 1) must be an integer scalar")?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed as u64);
    match out {
        Tensor::F32(y) => y
            .iter_mut()
            .for_each(|v| *v = (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)),
        Tensor::F64(y) => y
            .iter_mut()
            .for_each(|v| *v = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)),
        y => return Err(format!("StatelessRandomUniform has no {} kernel", y.dtype())),
    }
    Ok(())
}
