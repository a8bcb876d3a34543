//! gradc tensors and dtypes as ONNX `TensorProto`s and element types.

use crate::proto::tensor_proto::{DataLocation, DataType};
use crate::proto::TensorProto;
use gradc_runtime::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};

/// The ONNX element type of a gradc dtype.
pub(crate) fn onnx_dtype(d: DType) -> DataType {
    match d {
        DType::F32 => DataType::Float,
        DType::F64 => DataType::Double,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::Bool => DataType::Bool,
    }
}

/// The gradc dtype of an ONNX element type, if gradc has it.
pub(crate) fn gradc_dtype(t: i32) -> Option<DType> {
    match DataType::try_from(t).ok()? {
        DataType::Float => Some(DType::F32),
        DataType::Double => Some(DType::F64),
        DataType::Int32 => Some(DType::I32),
        DataType::Int64 => Some(DType::I64),
        DataType::Bool => Some(DType::Bool),
        _ => None,
    }
}

/// The name of an ONNX element type, for errors.
pub(crate) fn onnx_dtype_name(t: i32) -> String {
    DataType::try_from(t)
        .map(|d| d.as_str_name().to_string())
        .unwrap_or_else(|_| format!("element type {t}"))
}

/// A tensor as an initializer named `name`, its elements little-endian in `raw_data`.
pub(crate) fn to_proto(name: &str, t: &Tensor) -> TensorProto {
    let mut raw = Vec::with_capacity(t.len() * t.dtype().size_of());
    match t {
        Tensor::F32(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
        Tensor::F64(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
        Tensor::I32(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
        Tensor::I64(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
        Tensor::Bool(a) => a.iter().for_each(|&v| raw.push(u8::from(v))),
    }
    TensorProto {
        name: name.to_string(),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: onnx_dtype(t.dtype()) as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// The values of an initializer or a `Constant`'s tensor.
pub(crate) fn from_proto(t: &TensorProto) -> Result<Tensor, String> {
    if t.data_location == DataLocation::External as i32 || !t.external_data.is_empty() {
        return Err("its data is in an external file, which gradc does not read".into());
    }
    let dtype = gradc_dtype(t.data_type).ok_or_else(|| {
        format!(
            "its element type {} is not one gradc has (float, double, int32, int64, bool)",
            onnx_dtype_name(t.data_type)
        )
    })?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape
            .push(usize::try_from(d).map_err(|_| format!("a negative dimension in {:?}", t.dims))?);
    }
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let size = dtype.size_of();
    let wrong = |got: usize| format!("shape {shape:?} holds {n} elements, its data has {got}");
    fn array<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, String> {
        ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())
    }
    if !t.raw_data.is_empty() || n == 0 {
        if Some(t.raw_data.len()) != n.checked_mul(size) {
            return Err(wrong(t.raw_data.len() / size.max(1)));
        }
        let chunks = t.raw_data.chunks_exact(size);
        return Ok(match dtype {
            DType::F32 => Tensor::F32(array(
                &shape,
                chunks
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )?),
            DType::F64 => Tensor::F64(array(
                &shape,
                chunks
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )?),
            DType::I32 => Tensor::I32(array(
                &shape,
                chunks
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )?),
            DType::I64 => Tensor::I64(array(
                &shape,
                chunks
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )?),
            DType::Bool => Tensor::Bool(array(&shape, chunks.map(|c| c[0] != 0).collect())?),
        });
    }
    // The typed fields: float_data (float), double_data, int64_data, and
    // int32_data (int32 and bool).
    let got = match dtype {
        DType::F32 => t.float_data.len(),
        DType::F64 => t.double_data.len(),
        DType::I64 => t.int64_data.len(),
        DType::I32 | DType::Bool => t.int32_data.len(),
    };
    if got != n {
        return Err(wrong(got));
    }
    Ok(match dtype {
        DType::F32 => Tensor::F32(array(&shape, t.float_data.clone())?),
        DType::F64 => Tensor::F64(array(&shape, t.double_data.clone())?),
        DType::I64 => Tensor::I64(array(&shape, t.int64_data.clone())?),
        DType::I32 => Tensor::I32(array(&shape, t.int32_data.clone())?),
        DType::Bool => Tensor::Bool(array(
            &shape,
            t.int32_data.iter().map(|&v| v != 0).collect(),
        )?),
    })
}
