//! Exported models run by another runtime: every example's inference
//! program exported and run by tract (a pure-Rust ONNX runtime) against
//! gradc's own run, then imported back; PyTorch-exported models
//! (`tests/onnx/*.npz` at the repository root, made by
//! `tools/onnx/make_fixtures.py`) imported and run against PyTorch's outputs.

use gradc_compiler::{schema, Compiler, RunNames, Source};
use gradc_io::dataset::Mnist;
use gradc_onnx::{export, import, ExportOptions, ImportOptions};
use gradc_runtime::{Session, Tensor};
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A path from the repository's root.
fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The MNIST test images and labels the comparisons feed.
const N: usize = 64;

fn mnist() -> &'static Mnist {
    static M: OnceLock<Mnist> = OnceLock::new();
    M.get_or_init(|| Mnist::load(repo_path("data/mnist")).expect("the vendored MNIST"))
}

/// The feeds of an MNIST classifier: images `x`, labels `t` (one-hot, or
/// class indices where the placeholder is an integer vector).
fn mnist_feeds(sparse: bool) -> HashMap<String, Tensor> {
    let m = mnist();
    let x = m
        .test_images
        .slice(ndarray::s![..N, ..])
        .to_owned()
        .into_dyn();
    let labels = &m.test_labels[..N];
    let t = if sparse {
        Tensor::I64(ArrayD::from_shape_fn(IxDyn(&[N]), |i| {
            i64::from(labels[i[0]])
        }))
    } else {
        Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[N, 10]), |i| {
            f32::from(u8::from(usize::from(labels[i[0]]) == i[1]))
        }))
    };
    HashMap::from([("x".to_string(), Tensor::F32(x)), ("t".to_string(), t)])
}

/// A session of a graph file's inference program (or, without a train
/// section, its program) that offers `fetches`, its variables initialized,
/// the batch norms' moving statistics then set far from 0 and 1 so that
/// folding them shows.
fn session(file: &Path, fetches: &[&str]) -> Session {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).expect("graph file");
    let spec = schema::parse_file(&text, &name).expect("parses");
    let c = Compiler::new(Source::file(&spec, &text, &name)).run_names(RunNames {
        fetches,
        feeds: &[],
    });
    let program = if spec.train.is_some() {
        c.inference()
    } else {
        c
    }
    .compile()
    .unwrap_or_else(|e| panic!("{name}: {e}"))
    .program;
    let mut s = Session::new(program).expect("valid program");
    s.initialize(0).expect("initializers");
    let stats: Vec<(String, Tensor)> = s
        .variables()
        .into_iter()
        .filter_map(|(n, v)| {
            let v = v?;
            let f = |g: fn(usize) -> f32| match v {
                Tensor::F32(a) => {
                    Some(Tensor::F32(ArrayD::from_shape_fn(a.raw_dim(), |i| g(i[0]))))
                }
                _ => None,
            };
            let t = if n.ends_with("moving_mean") {
                f(|i| ((i * 7) % 11) as f32 * 0.05 - 0.25)
            } else if n.ends_with("moving_variance") {
                f(|i| 0.5 + ((i * 5) % 13) as f32 * 0.1)
            } else {
                None
            };
            Some((n.to_string(), t?))
        })
        .collect();
    for (n, t) in stats {
        s.set_variable(&n, t).expect("same type");
    }
    s
}

fn run(s: &mut Session, feeds: &HashMap<String, Tensor>, fetches: &[&str]) -> Vec<Tensor> {
    let refs: Vec<_> = fetches
        .iter()
        .map(|f| s.resolve(f).expect("fetch"))
        .collect();
    s.run(feeds, &refs).expect("runs")
}

/// Runs an ONNX model with tract, each input fed by its name.
fn tract_run(bytes: &[u8], feeds: &HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    use gradc_runtime::Tensor as G;
    use tract_onnx::prelude::*;
    let proto = gradc_onnx::proto::ModelProto::decode(bytes).expect("decodes");
    let graph = proto.graph.expect("graph");
    let mut m = tract_onnx::onnx()
        .model_for_read(&mut &*bytes)
        .expect("tract reads it");
    let mut inputs: TVec<TValue> = tvec!();
    for (k, input) in graph.input.iter().enumerate() {
        let (fact, value) = match &feeds[&input.name] {
            G::F32(a) => (
                f32::fact(a.shape()),
                Tensor::from_shape(a.shape(), a.as_slice().expect("standard")),
            ),
            G::F64(a) => (
                f64::fact(a.shape()),
                Tensor::from_shape(a.shape(), a.as_slice().expect("standard")),
            ),
            G::I64(a) => (
                i64::fact(a.shape()),
                Tensor::from_shape(a.shape(), a.as_slice().expect("standard")),
            ),
            G::I32(a) => (
                i32::fact(a.shape()),
                Tensor::from_shape(a.shape(), a.as_slice().expect("standard")),
            ),
            other => panic!("no {} feeds here", other.dtype()),
        };
        m = m.with_input_fact(k, fact.into()).expect("input fact");
        inputs.push(value.expect("tensor").into());
    }
    let plan = m
        .into_optimized()
        .unwrap_or_else(|e| panic!("tract optimizes the model: {e:?}"))
        .into_runnable()
        .expect("runnable");
    let outs = plan
        .run(inputs)
        .unwrap_or_else(|e| panic!("tract runs the model: {e:?}"));
    graph
        .output
        .iter()
        .zip(outs)
        .map(|(o, v)| {
            let v = v.into_tensor();
            let t = match v.datum_type() {
                DatumType::F32 => G::F32(v.to_plain_array_view::<f32>().expect("f32").to_owned()),
                DatumType::F64 => G::F64(v.to_plain_array_view::<f64>().expect("f64").to_owned()),
                DatumType::I64 => G::I64(v.to_plain_array_view::<i64>().expect("i64").to_owned()),
                DatumType::I32 => G::I32(v.to_plain_array_view::<i32>().expect("i32").to_owned()),
                d => panic!("output {} of type {d:?}", o.name),
            };
            (o.name.clone(), t)
        })
        .collect()
}

/// Floats to 1e-5 of the reference's largest magnitude (1e-5 relative, f32);
/// integers exactly.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    match (got, want) {
        (Tensor::I64(a), Tensor::I64(b)) => assert_eq!(a, b, "{what}"),
        (Tensor::I32(a), Tensor::I32(b)) => assert_eq!(a, b, "{what}"),
        _ => {
            let (a, b) = (got.to_f64_vec(), want.to_f64_vec());
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
            let err = a
                .iter()
                .zip(&b)
                .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                err <= 1e-5 * scale,
                "{what}: max |difference| {err:e} over max |value| {scale:e}"
            );
        }
    }
}

/// Imports a model into `dir/name.ron` and its weights file; the graph's path.
fn import_to(bytes: &[u8], dir: &Path, name: &str) -> PathBuf {
    let imported = import(
        bytes,
        &ImportOptions {
            name: name.into(),
            weights: format!("{name}.safetensors"),
            source: format!("{name}.onnx"),
            train: None,
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let tensors: Vec<(&str, &Tensor)> = imported
        .weights
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    gradc_io::checkpoint::save(
        &dir.join(format!("{name}.safetensors")),
        &tensors,
        &Default::default(),
    )
    .expect("weights");
    let ron = dir.join(format!("{name}.ron"));
    std::fs::write(&ron, imported.text).expect("graph");
    ron
}

/// What the examples' models output.
const FETCHES: [&str; 4] = ["logits", "y", "loss", "accuracy"];

/// A graph file's model exported, run in tract and imported back, both
/// against the graph's own run.
fn round_trip(graph: &str, feeds: &HashMap<String, Tensor>) {
    let file = repo_path(&format!("graphs/{graph}.ron"));
    let mut s = session(&file, &FETCHES);
    let want = run(&mut s, feeds, &FETCHES);
    let options = ExportOptions {
        outputs: FETCHES.iter().map(|f| f.to_string()).collect(),
    };
    let bytes = export(&mut s, &options)
        .unwrap_or_else(|e| panic!("{graph}: {e}"))
        .encode_to_vec();
    let got = tract_run(&bytes, feeds);
    assert_eq!(got.len(), FETCHES.len());
    for ((name, g), w) in got.iter().zip(&want) {
        assert_close(&format!("{graph} {name} (tract)"), g, w);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let back = import_to(&bytes, dir.path(), graph);
    let mut again = session(&back, &FETCHES);
    let again = run(&mut again, feeds, &FETCHES);
    for ((name, g), w) in FETCHES.iter().zip(&again).zip(&want) {
        assert_close(&format!("{graph} {name} (imported)"), g, w);
    }
}

/// Every MNIST example: its inference program exported, run by tract and
/// imported back.
#[test]
fn examples_export_run_in_tract_and_import_back() {
    for (graph, sparse) in [
        ("two_layer_net", false),
        ("mlp", false),
        ("bn_mlp", false),
        ("bn_mlp_512", false),
        ("two_layer_net_dropout", true),
        ("lenet5", false),
        ("cnn", false),
        ("cnn_bn", false),
    ] {
        round_trip(graph, &mnist_feeds(sparse));
    }
}

/// The embedding example (integer ids into a `Gather`), on its test data.
#[test]
fn the_embedding_example_exports_and_imports_back() {
    let mut npz = ndarray_npy::NpzReader::new(
        std::fs::File::open(repo_path("data/embedding_test.npz")).expect("data"),
    )
    .expect("npz");
    let x: ArrayD<i32> = npz.by_name("x").expect("x");
    let y: ArrayD<i32> = npz.by_name("y").expect("y");
    let feeds = HashMap::from([
        ("ids".to_string(), Tensor::I32(x)),
        ("label".to_string(), Tensor::I32(y)),
    ]);
    round_trip("embedding", &feeds);
}

/// The models of `tools/onnx/make_fixtures.py`, exported by PyTorch:
/// imported, they give PyTorch's outputs.
#[test]
fn pytorch_models_import_with_pytorchs_outputs() {
    for model in ["torch_mlp", "torch_cnn"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = std::fs::read(repo_path(&format!("tests/onnx/{model}.onnx"))).expect("fixture");
        let ron = import_to(&bytes, dir.path(), model);
        let mut npz = ndarray_npy::NpzReader::new(
            std::fs::File::open(repo_path(&format!("tests/onnx/{model}.npz"))).expect("fixture"),
        )
        .expect("npz");
        let x: ArrayD<f32> = npz.by_name("x").expect("x");
        let want: ArrayD<f32> = npz.by_name("logits").expect("logits");
        let feeds = HashMap::from([("x".to_string(), Tensor::F32(x))]);
        let mut s = session(&ron, &["logits"]);
        let got = run(&mut s, &feeds, &["logits"]);
        assert_close(model, &got[0], &Tensor::F32(want));
        if model == "torch_cnn" {
            let text = std::fs::read_to_string(&ron).expect("graph");
            insta::assert_snapshot!("torch_cnn_imported", text);
            assert!(
                text.contains("(name: \"1.running_mean\", op: Variable(shape: [4], initializer: Safetensors(\"torch_cnn.safetensors\"), trainable: false))"),
                "batch norm statistics are not trained"
            );
        }
    }
}

/// A reduction over no axes is the identity (ONNX's empty axes would reduce
/// all of them), and a OneHot of a negative index is a row of off values,
/// in tract as in gradc.
#[test]
fn export_keeps_tensorflows_edge_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("g.ron");
    std::fs::write(
        &file,
        r#"Graph(name: "g", nodes: [
            (name: "x", op: Placeholder(shape: [2, 3])),
            (name: "i", op: Placeholder(shape: [3]), dtype: I64),
            (name: "s", op: Sum(axes: []), inputs: ["x"]),
            (name: "h", op: OneHot(depth: 4), inputs: ["i"]),
        ], outputs: ["s", "h"])"#,
    )
    .expect("write");
    let feeds = HashMap::from([
        (
            "x".to_string(),
            Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| {
                (i[0] * 3 + i[1]) as f32
            })),
        ),
        (
            "i".to_string(),
            Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![2, -1, 7]).expect("shape")),
        ),
    ]);
    let mut s = session(&file, &["s", "h"]);
    let want = run(&mut s, &feeds, &["s", "h"]);
    let bytes = export(&mut s, &ExportOptions::default())
        .expect("exports")
        .encode_to_vec();
    let got = tract_run(&bytes, &feeds);
    for ((name, g), w) in got.iter().zip(&want) {
        assert_close(&format!("{name} (tract)"), g, w);
    }
    assert_eq!(want[0].shape(), [2, 3], "nothing reduced");
    assert_eq!(
        want[1].to_f64_vec()[4..8],
        [0.0; 4],
        "TensorFlow's off values for -1"
    );
}

/// The other examples (the forward graphs, and the train graphs not fed
/// MNIST above) exported with their default outputs, run by tract on
/// generated feeds and imported back.
#[test]
fn every_other_example_exports_and_imports_back() {
    for graph in [
        "affine_softmax",
        "apple",
        "apple_orange",
        "custom_sigmoid",
        "multiply_add",
        "sigmoid_composite",
        "softplus",
        "x2_exp",
        "linear_regression",
        "row_rnn",
        "two_layer_net_adam",
    ] {
        let file = repo_path(&format!("graphs/{graph}.ron"));
        let mut s = session(&file, &[]);
        // The outputs, without the gradients a forward graph also asks for.
        let fetches: Vec<String> = s
            .program()
            .outputs
            .iter()
            .map(|o| o.label.clone())
            .filter(|l| !l.starts_with("d("))
            .collect();
        let fetch: Vec<&str> = fetches.iter().map(String::as_str).collect();
        // Each placeholder fed values of its type, a symbolic size 4.
        let feeds: HashMap<String, Tensor> = s
            .program()
            .instrs
            .iter()
            .filter(|i| matches!(i.op, gradc_runtime::Op::Placeholder { .. }))
            .map(|i| {
                let t = &i.outputs[0];
                let dims: Vec<usize> = t.shape.0.iter().map(|d| d.known().unwrap_or(4)).collect();
                let n = dims.iter().product::<usize>();
                let v = (0..n).map(|k| ((k as f64) * 0.37).sin()).collect();
                let value = Tensor::from_f64(t.dtype, &dims, v).expect("a tensor");
                (i.name.clone(), value)
            })
            .collect();
        let want = run(&mut s, &feeds, &fetch);
        let options = ExportOptions {
            outputs: fetches.clone(),
        };
        let bytes = export(&mut s, &options)
            .unwrap_or_else(|e| panic!("{graph}: {e}"))
            .encode_to_vec();
        let got = tract_run(&bytes, &feeds);
        assert_eq!(got.len(), fetch.len(), "{graph}");
        for ((name, g), w) in got.iter().zip(&want) {
            assert_close(&format!("{graph} {name} (tract)"), g, w);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let back = import_to(&bytes, dir.path(), graph);
        let mut again = session(&back, &fetch);
        let again = run(&mut again, &feeds, &fetch);
        for ((name, g), w) in fetch.iter().zip(&again).zip(&want) {
            assert_close(&format!("{graph} {name} (imported)"), g, w);
        }
    }
}
