//! ONNX node attributes, made and read, and value types.

use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::{dimension, Dimension};
use crate::proto::{type_proto, AttributeProto, TensorShapeProto, TypeProto, ValueInfoProto};
use gradc_runtime::{Dim, TensorType};

pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn float(name: &str, v: f64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: v as f32,
        ..Default::default()
    }
}

pub(crate) fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A graph input's or output's name and type, symbolic dimensions as `dim_param`.
pub(crate) fn value_info(name: &str, t: &TensorType) -> ValueInfoProto {
    let dim = t
        .shape
        .0
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Known(n) => dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: crate::tensor::onnx_dtype(t.dtype) as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A node's attributes by name, read with the types ONNX gives them: an
/// attribute of another type is an error naming it (one without a type, as
/// some old exporters write, is read as the type asked for).
pub(crate) struct Attrs<'a>(pub &'a [AttributeProto]);

impl Attrs<'_> {
    fn get(&self, name: &str, want: AttributeType) -> Result<Option<&AttributeProto>, String> {
        let Some(a) = self.0.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        if a.r#type != want as i32 && a.r#type != AttributeType::Undefined as i32 {
            let got = AttributeType::try_from(a.r#type)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| format!("type {}", a.r#type));
            return Err(format!(
                "attribute {name} is {got}, expected {}",
                want.as_str_name()
            ));
        }
        Ok(Some(a))
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        Ok(self.get(name, AttributeType::Int)?.map_or(default, |a| a.i))
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        Ok(self.get(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    pub fn float(&self, name: &str, default: f64) -> Result<f64, String> {
        Ok(self
            .get(name, AttributeType::Float)?
            .map_or(default, |a| f64::from(a.f)))
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, String> {
        Ok(self
            .get(name, AttributeType::String)?
            .map_or(default.to_string(), |a| {
                String::from_utf8_lossy(&a.s).into_owned()
            }))
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&crate::proto::TensorProto>, String> {
        Ok(self
            .get(name, AttributeType::Tensor)?
            .and_then(|a| a.t.as_ref()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|a| a.name.as_str())
    }
}
