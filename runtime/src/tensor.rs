//! Run-time tensor values.

use crate::{DType, Shape, TensorType};
use ndarray::{ArrayD, IxDyn};

/// A dense tensor of one of the supported element types.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
        }
    }

    pub fn tensor_type(&self) -> TensorType {
        TensorType {
            dtype: self.dtype(),
            shape: Shape::known(self.shape()),
        }
    }

    /// Builds a tensor of `dtype` from row-major f64 values (narrowed for f32).
    pub fn from_f64(dtype: DType, shape: &[usize], data: Vec<f64>) -> Result<Tensor, String> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(format!("{} values do not fill shape {shape:?}", data.len()));
        }
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())?;
        Ok(match dtype {
            DType::F64 => Tensor::F64(a),
            DType::F32 => Tensor::F32(a.mapv(|v| v as f32)),
        })
    }

    pub fn scalar(dtype: DType, v: f64) -> Tensor {
        match dtype {
            DType::F64 => Tensor::F64(ArrayD::from_elem(IxDyn(&[]), v)),
            DType::F32 => Tensor::F32(ArrayD::from_elem(IxDyn(&[]), v as f32)),
        }
    }

    /// Whether every element is finite (no NaN, no Inf).
    pub fn is_finite(&self) -> bool {
        match self {
            Tensor::F32(a) => a.iter().all(|v| v.is_finite()),
            Tensor::F64(a) => a.iter().all(|v| v.is_finite()),
        }
    }

    /// Values widened to f64, in row-major order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Tensor::F32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::F64(a) => a.iter().copied().collect(),
        }
    }

    /// A copy as an f64 array.
    pub fn to_f64_array(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(|v| v as f64),
            Tensor::F64(a) => a.clone(),
        }
    }
}

impl From<ArrayD<f64>> for Tensor {
    fn from(a: ArrayD<f64>) -> Tensor {
        Tensor::F64(a)
    }
}

impl From<ArrayD<f32>> for Tensor {
    fn from(a: ArrayD<f32>) -> Tensor {
        Tensor::F32(a)
    }
}
