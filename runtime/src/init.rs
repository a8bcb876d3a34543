//! Variable initializers, seeded and reproducible across platforms.

use crate::op::Initializer;
use crate::tensor::TensorError;
use crate::{DType, Shape, Tensor, TooLarge};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// FNV-1a: a stable hash of a variable's name (std's hasher may change between releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Why a variable's first value cannot be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InitError {
    /// A shape with a symbolic dimension.
    #[error("a variable's shape must be fully known, got {0}")]
    NotConcrete(Shape),
    /// A shape whose element count overflows `usize`.
    #[error("shape {0} is too large")]
    Overflow(Shape),
    /// A value (or the f64 values it is drawn as) larger than the memory
    /// this process can have.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The values do not make a tensor of the shape.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

/// The first value of variable `name`: the same for the same seed, name and initializer.
pub fn initial_value(
    name: &str,
    dtype: DType,
    shape: &Shape,
    init: &Initializer,
    seed: u64,
) -> Result<Tensor, InitError> {
    let dims = shape
        .concrete()
        .ok_or_else(|| InitError::NotConcrete(shape.clone()))?;
    let n = crate::op::checked_product(dims.iter().copied())
        .ok_or_else(|| InitError::Overflow(shape.clone()))?;
    // The values are drawn as f64 before narrowing: check that buffer too.
    crate::memory::check_alloc(dtype, &dims)
        .and_then(|_| crate::memory::check_alloc(DType::F64, &dims))?;
    let stream = |own: &Option<u64>| {
        ChaCha8Rng::seed_from_u64(seed ^ own.unwrap_or_else(|| fnv1a(name)).rotate_left(17))
    };
    let data: Vec<f64> = match init {
        Initializer::Zeros => vec![0.0; n],
        Initializer::Ones => vec![1.0; n],
        Initializer::Constant(v) => vec![*v; n],
        Initializer::RandomNormal {
            mean,
            stddev,
            seed: own,
        } => normal(&mut stream(own), n, *mean, *stddev, None),
        Initializer::TruncatedNormal {
            mean,
            stddev,
            seed: own,
        } => normal(&mut stream(own), n, *mean, *stddev, Some(2.0)),
        Initializer::GlorotUniform { seed: own } => {
            let (fan_in, fan_out) = fans(&dims);
            let limit = (6.0 / (fan_in + fan_out).max(1.0)).sqrt();
            let mut rng = stream(own);
            (0..n).map(|_| rng.random_range(-limit..=limit)).collect()
        }
    };
    Ok(Tensor::from_f64(dtype, &dims, data)?)
}

/// `n` draws of `mean + stddev * z`, `z` standard normal; with `within`,
/// each `z` farther than that from 0 is drawn again (a truncated normal).
fn normal(rng: &mut ChaCha8Rng, n: usize, mean: f64, stddev: f64, within: Option<f64>) -> Vec<f64> {
    (0..n)
        .map(|_| loop {
            let z: f64 = StandardNormal.sample(rng);
            if within.is_none_or(|w| z.abs() <= w) {
                break mean + stddev * z;
            }
        })
        .collect()
}

/// Fan-in and fan-out as Keras computes them.
fn fans(dims: &[usize]) -> (f64, f64) {
    match dims {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [i, o] => (*i as f64, *o as f64),
        _ => {
            // In f64: a shape that overflows `usize` is refused before
            // initializing, but the fans need no exact count.
            let rf: f64 = dims[..dims.len() - 2].iter().map(|&d| d as f64).product();
            (
                dims[dims.len() - 2] as f64 * rf,
                dims[dims.len() - 1] as f64 * rf,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dim;

    #[test]
    fn each_init_error_names_the_shape() {
        let zeros = Initializer::Zeros;
        let t = initial_value("w", DType::F32, &Shape::known(&[2, 3]), &zeros, 1).unwrap();
        assert_eq!((t.dtype(), t.shape()), (DType::F32, &[2, 3][..]));

        let symbolic = Shape(vec![Dim::Sym("batch".into()), Dim::Known(3)]);
        let e = initial_value("w", DType::F32, &symbolic, &zeros, 1).unwrap_err();
        assert_eq!(e, InitError::NotConcrete(symbolic));
        assert_eq!(
            e.to_string(),
            "a variable's shape must be fully known, got [batch,3]"
        );

        let overflowing = Shape::known(&[usize::MAX, 2]);
        let e = initial_value("w", DType::F64, &overflowing, &zeros, 1).unwrap_err();
        assert_eq!(e, InitError::Overflow(overflowing));
        assert_eq!(
            e.to_string(),
            format!("shape [{},2] is too large", usize::MAX)
        );

        // Larger than any machine's memory.
        let huge = Shape::known(&[1 << 31, 1 << 30]);
        let e = initial_value("w", DType::F32, &huge, &zeros, 1).unwrap_err();
        assert!(
            matches!(&e, InitError::TooLarge(t) if t.shape == [1 << 31, 1 << 30]),
            "{e}"
        );

        // What `Tensor::from_f64` refuses, which the checks above leave no
        // shape to reach, is reported as it says.
        let e = InitError::from(TensorError::Length {
            len: 1,
            shape: vec![2],
        });
        assert_eq!(e.to_string(), "1 values do not fill shape [2]");
    }
}
