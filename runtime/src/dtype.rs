use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DType {
    F32,
    #[default]
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size_of(self) -> usize {
        match self {
            DType::F32 => std::mem::size_of::<f32>(),
            DType::F64 => std::mem::size_of::<f64>(),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        })
    }
}

/// The static type of one tensor: element type and (possibly symbolic) shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: crate::Shape,
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// The float types of tensors as scalars: what the elementwise table's
/// functions and derivatives compute with (f32 and f64).
pub trait Scalar: num_traits::Float + std::fmt::Debug + Send + Sync + 'static {
    const DTYPE: DType;
    /// Converts from f64; f32 rounds, and overflows to infinity like `as`.
    fn from_f64(v: f64) -> Self;
    /// The Gauss error function (libm's).
    fn erf(self) -> Self;
    /// 1 − erf, without its cancellation (libm's).
    fn erfc(self) -> Self;
}

impl Scalar for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(v: f64) -> f32 {
        v as f32
    }
    fn erf(self) -> f32 {
        libm::erff(self)
    }
    fn erfc(self) -> f32 {
        libm::erfcf(self)
    }
}

impl Scalar for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(v: f64) -> f64 {
        v
    }
    fn erf(self) -> f64 {
        libm::erf(self)
    }
    fn erfc(self) -> f64 {
        libm::erfc(self)
    }
}
