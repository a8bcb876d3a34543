use crate::Tensor;
use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DType {
    F32,
    #[default]
    F64,
    I32,
    I64,
    Bool,
}

impl DType {
    /// Every dtype, floats first.
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

    /// Bytes per element.
    pub fn size_of(self) -> usize {
        match self {
            DType::F32 => std::mem::size_of::<f32>(),
            DType::F64 => std::mem::size_of::<f64>(),
            DType::I32 => std::mem::size_of::<i32>(),
            DType::I64 => std::mem::size_of::<i64>(),
            DType::Bool => std::mem::size_of::<bool>(),
        }
    }

    /// F32 or F64: the dtypes gradients flow through.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// I32 or I64.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        })
    }
}

/// A value of any dtype, widened: what `Cast` converts through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    F(f64),
    I(i64),
    B(bool),
}

/// The element types of tensors (f32, f64, i32, i64, bool): what kernels
/// that only move, compare or convert values are generic over.
pub trait Value:
    Copy + Default + PartialEq + PartialOrd + fmt::Debug + Send + Sync + 'static
{
    const DTYPE: DType;
    /// A view of the tensor's data, if it holds this type.
    fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>>;
    /// The tensor's array, if it holds this type, for writing.
    fn array_mut(t: &mut Tensor) -> Option<&mut ArrayD<Self>>;
    /// The value widened (floats to f64, integers to i64).
    fn to_num(self) -> Num;
    /// The value converted as TensorFlow's `Cast` (and C++'s `static_cast`)
    /// does: floats to integers truncate toward zero (saturating, NaN to 0),
    /// integers narrow by wrapping, anything to bool is `!= 0`, bool to a
    /// number is 0 or 1.
    fn from_num(v: Num) -> Self;
}

macro_rules! impl_value {
    ($t:ty, $variant:ident, |$v:ident| $from:expr) => {
        impl Value for $t {
            const DTYPE: DType = DType::$variant;
            fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>> {
                match t {
                    Tensor::$variant(a) => Some(a.view()),
                    _ => None,
                }
            }
            fn array_mut(t: &mut Tensor) -> Option<&mut ArrayD<Self>> {
                match t {
                    Tensor::$variant(a) => Some(a),
                    _ => None,
                }
            }
            fn to_num(self) -> Num {
                let $v = self;
                $from
            }
            fn from_num(v: Num) -> Self {
                match v {
                    Num::F(f) => f as $t,
                    Num::I(i) => i as $t,
                    Num::B(b) => <$t>::from(u8::from(b)),
                }
            }
        }
    };
}

impl_value!(f32, F32, |v| Num::F(f64::from(v)));
impl_value!(f64, F64, |v| Num::F(v));
impl_value!(i32, I32, |v| Num::I(i64::from(v)));
impl_value!(i64, I64, |v| Num::I(v));

impl Value for bool {
    const DTYPE: DType = DType::Bool;
    fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>> {
        match t {
            Tensor::Bool(a) => Some(a.view()),
            _ => None,
        }
    }
    fn array_mut(t: &mut Tensor) -> Option<&mut ArrayD<Self>> {
        match t {
            Tensor::Bool(a) => Some(a),
            _ => None,
        }
    }
    fn to_num(self) -> Num {
        Num::B(self)
    }
    fn from_num(v: Num) -> Self {
        match v {
            Num::F(f) => f != 0.0,
            Num::I(i) => i != 0,
            Num::B(b) => b,
        }
    }
}

impl Num {
    /// The value as an f64 (integers rounded to the nearest f64).
    pub fn to_f64(self) -> f64 {
        match self {
            Num::F(f) => f,
            Num::I(i) => i as f64,
            Num::B(b) => f64::from(u8::from(b)),
        }
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
pub trait Scalar: num_traits::Float + Value {
    /// Converts from f64; f32 rounds, and overflows to infinity like `as`.
    fn from_f64(v: f64) -> Self;
    /// The Gauss error function (libm's).
    fn erf(self) -> Self;
    /// 1 − erf, without its cancellation (libm's).
    fn erfc(self) -> Self;
}

impl Scalar for f32 {
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
