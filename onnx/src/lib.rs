//! ONNX in and out of gradc.
//!
//! - [`export`]: an inference program (its variables as initializers) as an
//!   ONNX model, opset 17, each gradc op written as standard ONNX ops.
//! - [`import`]: an ONNX model as a readable gradc graph file, one node per
//!   ONNX node, its initializers written to a safetensors file that the
//!   graph's variables load.
//!
//! The protobuf messages are generated from the vendored `onnx.proto3`
//! (`proto/generate.sh`).

mod attr;
pub mod export;
pub mod import;
mod tensor;

/// The ONNX protobuf messages (`onnx.proto3`, ONNX v1.23.0).
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod proto {
    include!("proto/onnx.rs");
}

pub use export::{export, ExportError, ExportOptions};
pub use import::{import, ImportError, ImportOptions, Imported};

/// `base`, or `base_1`, `base_2`, … : the first name not in `used`, which it joins.
pub(crate) fn unique_name(used: &mut std::collections::HashSet<String>, base: String) -> String {
    let mut name = base.clone();
    let mut k = 1;
    while used.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    used.insert(name.clone());
    name
}

/// The opset gradc writes (it reads opsets 13 to 22).
pub const OPSET: i64 = 17;
