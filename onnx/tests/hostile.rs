//! Hostile models: the PyTorch fixtures mutated at random (fields of the
//! protobuf messages set to odd values, ops swapped, inputs dropped, bytes
//! flipped), imported and, where that succeeds, compiled. Each is an error
//! or a graph, never a panic. Seeded, so a failure names its input.

use gradc_onnx::proto::{AttributeProto, ModelProto};
use gradc_onnx::{import, ImportOptions};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/onnx/{name}.onnx"));
    std::fs::read(path).expect("fixture")
}

/// Values that break arithmetic and indexing.
const ODD: [i64; 9] = [-1, 0, 1, 2, 3, 7, 1 << 40, i64::MAX, i64::MIN];

fn odd(rng: &mut ChaCha8Rng) -> i64 {
    ODD[rng.random_range(0..ODD.len())]
}

/// One random change to a model.
fn mutate(m: &mut ModelProto, rng: &mut ChaCha8Rng) {
    let ops = gradc_onnx::import::supported_ops();
    let Some(g) = m.graph.as_mut() else { return };
    match rng.random_range(0..8) {
        0 if !g.node.is_empty() => {
            let k = rng.random_range(0..g.node.len());
            g.node[k].op_type = ops[rng.random_range(0..ops.len())].to_string();
        }
        1 if !g.node.is_empty() => {
            let k = rng.random_range(0..g.node.len());
            let n = &mut g.node[k];
            if !n.input.is_empty() {
                let i = rng.random_range(0..n.input.len());
                n.input.remove(i);
            }
        }
        2 if !g.node.is_empty() => {
            let k = rng.random_range(0..g.node.len());
            for a in &mut g.node[k].attribute {
                a.i = odd(rng);
                for v in &mut a.ints {
                    *v = odd(rng);
                }
                if rng.random_bool(0.3) {
                    a.r#type = rng.random_range(0..10);
                }
            }
        }
        3 if !g.node.is_empty() => {
            let k = rng.random_range(0..g.node.len());
            let name = [
                "axis",
                "group",
                "perm",
                "pads",
                "kernel_shape",
                "strides",
                "to",
                "keepdims",
            ][rng.random_range(0..8)];
            g.node[k].attribute.push(AttributeProto {
                name: name.into(),
                r#type: rng.random_range(0..10),
                i: odd(rng),
                ints: vec![odd(rng), odd(rng)],
                ..Default::default()
            });
        }
        4 if !g.initializer.is_empty() => {
            let k = rng.random_range(0..g.initializer.len());
            let t = &mut g.initializer[k];
            if !t.dims.is_empty() {
                let d = rng.random_range(0..t.dims.len());
                t.dims[d] = odd(rng);
            }
            if rng.random_bool(0.3) {
                t.data_type = rng.random_range(0..20);
            }
        }
        5 => {
            use gradc_onnx::proto::tensor_shape_proto::dimension::Value;
            use gradc_onnx::proto::type_proto;
            for i in &mut g.input {
                if let Some(type_proto::Value::TensorType(t)) =
                    i.r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    if let Some(s) = t.shape.as_mut() {
                        for d in &mut s.dim {
                            if rng.random_bool(0.5) {
                                d.value = Some(Value::DimValue(odd(rng)));
                            }
                        }
                    }
                }
            }
        }
        6 if !g.node.is_empty() => {
            let k = rng.random_range(0..g.node.len());
            g.node.remove(k);
        }
        _ => {
            for o in &mut m.opset_import {
                o.version = odd(rng);
            }
        }
    }
}

/// Imports the bytes and compiles what that gives; a panic fails the test.
/// Whether the import made a graph that builds.
fn check(what: &str, bytes: &[u8]) -> bool {
    let options = ImportOptions {
        name: "m".into(),
        weights: "m.safetensors".into(),
        source: "m.onnx".into(),
        train: None,
    };
    let result = std::panic::catch_unwind(|| match import(bytes, &options) {
        // A graph gradc reads; building it may still find errors.
        Ok(imported) => gradc_compiler::graph_from_str(&imported.text, "m.ron").is_ok(),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    });
    match result {
        Ok(built) => built,
        Err(_) => panic!("{what} panicked"),
    }
}

#[test]
fn mutated_models_are_errors_or_graphs_never_panics() {
    for name in ["torch_mlp", "torch_cnn"] {
        let base = ModelProto::decode(fixture(name).as_slice()).expect("decodes");
        let mut built = 0;
        for seed in 0..300u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut m = base.clone();
            for _ in 0..rng.random_range(1..4) {
                mutate(&mut m, &mut rng);
            }
            built += usize::from(check(&format!("{name}, seed {seed}"), &m.encode_to_vec()));
        }
        // The mutations reach past the decoder and the checks: some still build.
        assert!((10..290).contains(&built), "{name}: {built} of 300 built");
    }
}

#[test]
fn flipped_bytes_are_errors_or_graphs_never_panics() {
    let base = fixture("torch_cnn");
    for seed in 0..300u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut bytes = base.clone();
        for _ in 0..rng.random_range(1..8) {
            let k = rng.random_range(0..bytes.len());
            bytes[k] = rng.random();
        }
        check(
            &format!("torch_cnn with bytes flipped, seed {seed}"),
            &bytes,
        );
    }
}
