//! Run-time tensor values.

use crate::dtype::{Num, Value};
use crate::{DType, Shape, TensorType, TooLarge};
use ndarray::{ArrayD, IxDyn};

/// Why a tensor cannot be made, or a buffer cannot hold a value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// Values that do not fill the shape, one for one.
    #[error("{len} values do not fill shape {shape:?}")]
    Length { len: usize, shape: Vec<usize> },
    /// A shape ndarray refuses (its element count, zero-length axes left
    /// out, past `isize::MAX`).
    #[error("{0}")]
    Layout(ndarray::ShapeError),
    /// A tensor larger than the memory this process can have.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// A buffer given a shape of another element count.
    #[error("a buffer of {len} elements cannot hold shape {shape:?}")]
    BufferSize { len: usize, shape: Vec<usize> },
    /// A buffer given a value of another dtype or shape.
    #[error("a {buffer} buffer cannot hold a {value} value")]
    BufferType {
        buffer: TensorType,
        value: TensorType,
    },
}

/// A dense tensor of one of the supported element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// `each!(t, a => expr)`: `expr` with `a` bound to the array of whichever
/// variant `t` is (the same code for every element type).
#[macro_export]
macro_rules! each {
    ($t:expr, $a:ident => $e:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $e,
            $crate::Tensor::F64($a) => $e,
            $crate::Tensor::I32($a) => $e,
            $crate::Tensor::I64($a) => $e,
            $crate::Tensor::Bool($a) => $e,
        }
    };
}

/// `by_dtype!(dtype, T => expr)`: `expr` with the type `T` of `dtype`'s elements.
#[macro_export]
macro_rules! by_dtype {
    ($d:expr, $t:ident => $e:expr) => {
        match $d {
            $crate::DType::F32 => {
                type $t = f32;
                $e
            }
            $crate::DType::F64 => {
                type $t = f64;
                $e
            }
            $crate::DType::I32 => {
                type $t = i32;
                $e
            }
            $crate::DType::I64 => {
                type $t = i64;
                $e
            }
            $crate::DType::Bool => {
                type $t = bool;
                $e
            }
        }
    };
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        each!(self, a => a.shape())
    }

    pub fn tensor_type(&self) -> TensorType {
        TensorType {
            dtype: self.dtype(),
            shape: Shape::known(self.shape()),
        }
    }

    /// Builds a tensor of `dtype` from row-major f64 values, each converted
    /// as `Cast` converts (narrowed for f32, truncated for integers).
    pub fn from_f64(dtype: DType, shape: &[usize], data: Vec<f64>) -> Result<Tensor, TensorError> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(TensorError::Length {
                len: data.len(),
                shape: shape.to_vec(),
            });
        }
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(TensorError::Layout)?;
        Ok(match dtype {
            DType::F64 => Tensor::F64(a),
            _ => by_dtype!(dtype, T => Tensor::from(a.mapv(|v| T::from_num(Num::F(v))))),
        })
    }

    /// A tensor of zeros (false for bool); an error rather than a panic for
    /// shapes too large to allocate.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<Tensor, TensorError> {
        crate::memory::check_alloc(dtype, shape)?;
        Ok(by_dtype!(dtype, T => Tensor::from(ArrayD::<T>::default(IxDyn(shape)))))
    }

    /// Whether the tensor has this dtype and shape (so it can hold such a value without allocating).
    pub fn has_type(&self, dtype: DType, shape: &[usize]) -> bool {
        self.dtype() == dtype && self.shape() == shape
    }

    /// Makes `self` a copy of `src`. Reuses `self`'s memory when the dtypes
    /// match, so a copy between tensors of one dtype and size allocates nothing.
    pub fn copy_from(&mut self, src: &Tensor) {
        match (self, src) {
            (Tensor::F32(a), Tensor::F32(b)) => copy_array(a, b),
            (Tensor::F64(a), Tensor::F64(b)) => copy_array(a, b),
            (Tensor::I32(a), Tensor::I32(b)) => copy_array(a, b),
            (Tensor::I64(a), Tensor::I64(b)) => copy_array(a, b),
            (Tensor::Bool(a), Tensor::Bool(b)) => copy_array(a, b),
            (dst, src) => *dst = src.clone(),
        }
    }

    /// An empty tensor (no elements, no allocation): what a buffer holds while
    /// its tensor is lent out.
    pub(crate) fn empty() -> Tensor {
        Tensor::F32(ndarray::Array1::from_vec(Vec::new()).into_dyn())
    }

    /// A flat buffer of `len` zeros for the session's pool. `len` must be the
    /// element count of a shape `memory::check_alloc` accepted.
    pub(crate) fn buffer(dtype: DType, len: usize) -> Tensor {
        by_dtype!(dtype, T => Tensor::from(ArrayD::<T>::default(IxDyn(&[len]))))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives the tensor `shape`, which must have as many elements, keeping its
    /// memory and standard layout (the session's shared buffers hold values of
    /// several shapes in turn). The values are kept in row-major order; callers
    /// overwrite them. Allocates nothing for shapes of rank at most 4.
    pub(crate) fn reshape_buffer(&mut self, shape: &[usize]) -> Result<(), TensorError> {
        each!(self, a => reshape_array(a, shape))
    }

    /// Writes `src`'s values into `self`, which must have its dtype and shape;
    /// unlike `copy_from`, keeps `self`'s layout (standard) whatever `src`'s is.
    pub(crate) fn assign_from(&mut self, src: &Tensor) -> Result<(), TensorError> {
        if self.dtype() != src.dtype() || self.shape() != src.shape() {
            return Err(TensorError::BufferType {
                buffer: self.tensor_type(),
                value: src.tensor_type(),
            });
        }
        match (self, src) {
            (Tensor::F32(a), Tensor::F32(b)) => copy_array(a, b),
            (Tensor::F64(a), Tensor::F64(b)) => copy_array(a, b),
            (Tensor::I32(a), Tensor::I32(b)) => copy_array(a, b),
            (Tensor::I64(a), Tensor::I64(b)) => copy_array(a, b),
            (Tensor::Bool(a), Tensor::Bool(b)) => copy_array(a, b),
            _ => {}
        }
        Ok(())
    }

    /// The f32 array, if the tensor holds f32.
    pub fn as_f32_mut(&mut self) -> Option<&mut ArrayD<f32>> {
        f32::array_mut(self)
    }

    /// The f64 array, if the tensor holds f64.
    pub fn as_f64_mut(&mut self) -> Option<&mut ArrayD<f64>> {
        f64::array_mut(self)
    }

    /// The first element (in row-major order) widened to f64, e.g. a scalar
    /// loss; None for an empty tensor. Allocates nothing, unlike `to_f64_vec`.
    pub fn first_f64(&self) -> Option<f64> {
        each!(self, a => a.iter().next().map(|v| v.to_num().to_f64()))
    }

    /// A scalar of `dtype` holding `v`, converted as `Cast` converts.
    pub fn scalar(dtype: DType, v: f64) -> Tensor {
        by_dtype!(dtype, T => Tensor::from(ArrayD::from_elem(IxDyn(&[]), T::from_num(Num::F(v)))))
    }

    /// Whether every element is finite (no NaN, no Inf); integers and bools always are.
    pub fn is_finite(&self) -> bool {
        match self {
            Tensor::F32(a) => a.iter().all(|v| v.is_finite()),
            Tensor::F64(a) => a.iter().all(|v| v.is_finite()),
            Tensor::I32(_) | Tensor::I64(_) | Tensor::Bool(_) => true,
        }
    }

    /// Values widened to f64, in row-major order (bools as 0 and 1).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        each!(self, a => a.iter().map(|v| v.to_num().to_f64()).collect())
    }

    /// A copy as an f64 array.
    pub fn to_f64_array(&self) -> ArrayD<f64> {
        each!(self, a => a.mapv(|v| v.to_num().to_f64()))
    }

    /// The values converted to `dtype` as `Cast` converts them.
    pub fn cast(&self, dtype: DType) -> Tensor {
        each!(self, a => by_dtype!(dtype, T => Tensor::from(a.mapv(|v| T::from_num(v.to_num())))))
    }
}

/// `Tensor::reshape_buffer` for one element type.
fn reshape_array<T: Clone + Default>(
    a: &mut ArrayD<T>,
    shape: &[usize],
) -> Result<(), TensorError> {
    if a.shape() == shape {
        return Ok(());
    }
    let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if elements != Some(a.len()) {
        return Err(TensorError::BufferSize {
            len: a.len(),
            shape: shape.to_vec(),
        });
    }
    let whole = std::mem::replace(a, ndarray::Array1::from_vec(Vec::new()).into_dyn());
    // A standard-layout array reshapes without copying; anything else (never
    // made by the session) is replaced by a fresh buffer.
    *a = whole
        .into_shape_with_order(IxDyn(shape))
        .ok()
        .filter(|r| r.is_standard_layout())
        .unwrap_or_else(|| ArrayD::default(IxDyn(shape)));
    Ok(())
}

macro_rules! impl_from {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<ArrayD<$t>> for Tensor {
            fn from(a: ArrayD<$t>) -> Tensor {
                Tensor::$variant(a)
            }
        }
    )*};
}

impl_from!(f32 => F32, f64 => F64, i32 => I32, i64 => I64, bool => Bool);

/// `dst = src` (a copy of `src`, shape included). Contiguous arrays of one
/// shape are copied as slices, split between two threads when large (see
/// `parallel::split_elements`); anything else as ndarray's `clone_from`.
fn copy_array<T: Copy + Send + Sync>(dst: &mut ArrayD<T>, src: &ArrayD<T>) {
    if dst.shape() == src.shape() && dst.is_standard_layout() {
        if let (Some(d), Some(s)) = (dst.as_slice_mut(), src.as_slice()) {
            crate::parallel::split_elements(d, 1, &|offset, part| {
                part.copy_from_slice(&s[offset..offset + part.len()]);
            });
            return;
        }
    }
    dst.clone_from(src);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tensor_error_says_what_does_not_fit() {
        let e = Tensor::from_f64(DType::F64, &[2, 3], vec![1.0; 5]).unwrap_err();
        assert_eq!(
            e,
            TensorError::Length {
                len: 5,
                shape: vec![2, 3]
            }
        );
        assert_eq!(e.to_string(), "5 values do not fill shape [2, 3]");
        // No values fill a shape with a zero-length axis, but ndarray refuses
        // one whose other axes hold more than `isize::MAX` elements.
        let e = Tensor::from_f64(DType::F32, &[0, usize::MAX], vec![]).unwrap_err();
        assert!(matches!(e, TensorError::Layout(_)), "{e}");
        let e = Tensor::zeros(DType::F64, &[usize::MAX / 4, 4]).unwrap_err();
        assert!(
            matches!(&e, TensorError::TooLarge(t) if t.shape == [usize::MAX / 4, 4]),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("f64[4611686018427387903, 4] needs"),
            "{e}"
        );

        let mut buffer = Tensor::zeros(DType::F64, &[2, 3]).unwrap();
        let e = buffer.reshape_buffer(&[4, 2]).unwrap_err();
        assert_eq!(
            e,
            TensorError::BufferSize {
                len: 6,
                shape: vec![4, 2]
            }
        );
        assert_eq!(
            e.to_string(),
            "a buffer of 6 elements cannot hold shape [4, 2]"
        );
        buffer.reshape_buffer(&[3, 2]).unwrap();
        assert_eq!(buffer.shape(), [3, 2]);
        let e = buffer
            .assign_from(&Tensor::zeros(DType::F32, &[3, 2]).unwrap())
            .unwrap_err();
        assert!(matches!(e, TensorError::BufferType { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "a f64[3,2] buffer cannot hold a f32[3,2] value"
        );
        buffer
            .assign_from(&Tensor::F64(ArrayD::ones(IxDyn(&[3, 2]))))
            .unwrap();
        assert_eq!(buffer.to_f64_vec(), [1.0; 6]);
    }
}
