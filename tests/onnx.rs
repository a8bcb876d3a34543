//! ONNX export and import: every example exported and run by another
//! runtime (tract) against gradc's inference program, exported models
//! imported back, PyTorch-exported models imported and run against
//! PyTorch's outputs (`tests/onnx/*.npz`, made by `tools/onnx/make_fixtures.py`),
//! and the errors.

mod common;

use common::{gradc, repo_path, stderr};
use gradc::compiler::{self, Compiler, RunNames, Source};
use gradc::io::dataset::Mnist;
use gradc::runtime::{Session, Tensor};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

/// Runs a graph file's inference program (or, without a train section,
/// its program) with its variables from `checkpoint` or its initializers.
fn gradc_run(
    file: &Path,
    checkpoint: Option<&Path>,
    feeds: &HashMap<String, Tensor>,
    fetches: &[&str],
) -> Vec<Tensor> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).expect("graph file");
    let spec = compiler::schema::parse_file(&text, &name).expect("parses");
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
    if let Some(c) = checkpoint {
        gradc::train::restore(&mut s, c).expect("restores");
    }
    let refs: Vec<_> = fetches
        .iter()
        .map(|f| s.resolve(f).expect("fetch"))
        .collect();
    s.run(feeds, &refs)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs an ONNX file with tract, each input fed by its name.
fn tract_run(model: &Path, feeds: &HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    use gradc::runtime::Tensor as G;
    use prost::Message;
    use tract_onnx::prelude::*;
    let bytes = std::fs::read(model).expect("model");
    let proto = gradc::onnx::proto::ModelProto::decode(bytes.as_slice()).expect("decodes");
    let graph = proto.graph.expect("graph");
    let mut m = tract_onnx::onnx()
        .model_for_path(model)
        .expect("tract reads it");
    let mut inputs: TVec<TValue> = tvec!();
    for (k, input) in graph.input.iter().enumerate() {
        let (fact, value) = match &feeds[&input.name] {
            G::F32(a) => (
                f32::fact(a.shape()),
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
        .unwrap_or_else(|e| panic!("tract optimizes {}: {e:?}", model.display()))
        .into_runnable()
        .expect("runnable");
    let outs = plan
        .run(inputs)
        .unwrap_or_else(|e| panic!("tract runs {}: {e:?}", model.display()));
    graph
        .output
        .iter()
        .zip(outs)
        .map(|(o, v)| {
            let v = v.into_tensor();
            let t = match v.datum_type() {
                DatumType::F32 => G::F32(v.to_plain_array_view::<f32>().expect("f32").to_owned()),
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

/// A checkpoint of the graph's variables: their initial values, the batch
/// norms' moving statistics made far from 0 and 1 so that folding them shows.
fn checkpoint(file: &Path, dir: &Path) -> PathBuf {
    let program = Compiler::new(compiler::graph_from_file(file).expect("builds"))
        .inference()
        .compile()
        .expect("compiles")
        .program;
    let mut s = Session::new(program).expect("valid");
    s.initialize(0).expect("init");
    let vars: Vec<(String, Tensor)> = s
        .variables()
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n.to_string(), v.clone())))
        .collect();
    let vars: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(n, t)| {
            let shift = |f: fn(usize) -> f32| match &t {
                Tensor::F32(a) => Tensor::F32(ArrayD::from_shape_fn(a.raw_dim(), |i| f(i[0]))),
                other => other.clone(),
            };
            let t = if n.ends_with("moving_mean") {
                shift(|i| ((i * 7) % 11) as f32 * 0.05 - 0.25)
            } else if n.ends_with("moving_variance") {
                shift(|i| 0.5 + ((i * 5) % 13) as f32 * 0.1)
            } else {
                t.clone()
            };
            (n, t)
        })
        .collect();
    let path = dir.join("checkpoint.safetensors");
    let refs: Vec<(&str, &Tensor)> = vars.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gradc::io::checkpoint::save(&path, &refs, &Default::default()).expect("saves");
    path
}

/// Every MNIST example: its inference program exported with a checkpoint,
/// run by tract and imported back, both against gradc's own run.
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
        let dir = tempfile::tempdir().expect("tempdir");
        let file = repo_path(&format!("graphs/{graph}.ron"));
        let (ckpt, onnx) = export(&file, dir.path(), &FETCHES);
        let feeds = mnist_feeds(sparse);
        round_trip(graph, &file, &ckpt, &onnx, dir.path(), &feeds, &FETCHES);
    }
}

/// What the examples' models output.
const FETCHES: [&str; 4] = ["logits", "y", "loss", "accuracy"];

/// `gradc export` of a graph file with a checkpoint (`checkpoint`) into
/// `dir`: the checkpoint's path and the model's.
fn export(file: &Path, dir: &Path, fetches: &[&str]) -> (PathBuf, PathBuf) {
    let ckpt = checkpoint(file, dir);
    let onnx = dir.join("model.onnx");
    let mut args = vec![
        "export",
        file.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ];
    args.extend(["--checkpoint", ckpt.to_str().unwrap()]);
    for f in fetches {
        args.extend(["--output", f]);
    }
    let o = gradc(&args);
    assert!(o.status.success(), "{}: {}", file.display(), stderr(&o));
    (ckpt, onnx)
}

/// The embedding example (integer ids into a `Gather`), on its test data.
#[test]
fn the_embedding_example_exports_and_imports_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = repo_path("graphs/embedding.ron");
    let (ckpt, onnx) = export(&file, dir.path(), &FETCHES);
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
    round_trip(
        "embedding",
        &file,
        &ckpt,
        &onnx,
        dir.path(),
        &feeds,
        &FETCHES,
    );
}

/// Runs an exported model in tract and imported back in gradc, both
/// against the graph file's own run.
fn round_trip(
    graph: &str,
    file: &Path,
    ckpt: &Path,
    onnx: &Path,
    dir: &Path,
    feeds: &HashMap<String, Tensor>,
    fetches: &[&str],
) {
    {
        let want = gradc_run(file, Some(ckpt), feeds, fetches);
        let got = tract_run(onnx, feeds);
        assert_eq!(got.len(), fetches.len());
        for ((name, g), w) in got.iter().zip(&want) {
            assert_close(&format!("{graph} {name} (tract)"), g, w);
        }

        let back = dir.join(format!("{graph}_imported.ron"));
        let o = gradc(&[
            "import",
            onnx.to_str().unwrap(),
            "-o",
            back.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{graph}: {}", stderr(&o));
        let again = gradc_run(&back, None, feeds, fetches);
        for ((name, g), w) in fetches.iter().zip(&again).zip(&want) {
            assert_close(&format!("{graph} {name} (imported)"), g, w);
        }
    }
}

/// A graph without a train section exports its forward graph (its
/// gradients left out), and the imported model gives the same outputs.
#[test]
fn a_forward_graph_exports_without_its_gradients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = repo_path("graphs/affine_softmax.ron");
    let onnx = dir.path().join("a.onnx");
    let o = gradc(&[
        "export",
        file.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = common::stdout(&o);
    assert!(!out.contains("d("), "gradients are not outputs: {out}");
    let back = dir.path().join("a.ron");
    let o = gradc(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |f: &Path| {
        let o = gradc(&["run", f.to_str().unwrap(), "--fetch", "loss"]);
        assert!(o.status.success(), "{}", stderr(&o));
        common::stdout(&o)
    };
    let (a, b) = (run(&file), run(&back));
    let value = |s: &str| -> f64 {
        s.trim()
            .trim_start_matches("loss = ")
            .parse()
            .expect("a number")
    };
    let (a, b) = (value(&a), value(&b));
    assert!((a - b).abs() <= 1e-12 * a.abs(), "{a} vs {b}");
}

/// The models of `tools/onnx/make_fixtures.py`, exported by PyTorch:
/// imported, they give PyTorch's outputs.
#[test]
fn pytorch_models_import_with_pytorchs_outputs() {
    for model in ["torch_mlp", "torch_cnn"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let onnx = repo_path(&format!("tests/onnx/{model}.onnx"));
        let ron = dir.path().join(format!("{model}.ron"));
        let o = gradc(&[
            "import",
            onnx.to_str().unwrap(),
            "-o",
            ron.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let mut npz = ndarray_npy::NpzReader::new(
            std::fs::File::open(repo_path(&format!("tests/onnx/{model}.npz"))).expect("fixture"),
        )
        .expect("npz");
        let x: ArrayD<f32> = npz.by_name("x").expect("x");
        let want: ArrayD<f32> = npz.by_name("logits").expect("logits");
        let feeds = HashMap::from([("x".to_string(), Tensor::F32(x))]);
        let got = gradc_run(&ron, None, &feeds, &["logits"]);
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

/// An imported model with `--loss` trains: its loss falls on MNIST, and
/// `gradc grad` shows its gradient graph.
#[test]
fn an_imported_model_trains_with_an_added_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = repo_path("tests/onnx/torch_mlp.onnx");
    let ron = dir.path().join("mlp.ron");
    let data = repo_path("data/mnist");
    let o = gradc(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        ron.to_str().unwrap(),
        "--loss",
        "sparse-softmax-cross-entropy",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&["grad", ron.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        common::stdout(&o).contains("gradients/"),
        "a backward graph"
    );
    let out = dir.path().join("run");
    let o = gradc(&[
        "train",
        ron.to_str().unwrap(),
        "--steps",
        "200",
        "--log-every",
        "20",
        "--quiet",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = std::fs::read_to_string(out.join("steps.csv")).expect("steps.csv");
    let losses: Vec<f64> = steps
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(1)
                .expect("loss column")
                .parse()
                .expect("number")
        })
        .collect();
    assert!(losses.len() >= 5, "{steps}");
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}

/// A model with ops gradc does not read: every such node is named.
#[test]
fn unsupported_onnx_ops_are_all_listed() {
    use gradc::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
    use prost::Message;
    let node = |op: &str, name: &str, i: &str, o: &str| NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: vec![i.into()],
        output: vec![o.into()],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: vec![
                node("Relu", "r", "x", "a"),
                node("LSTM", "lstm1", "a", "b"),
                node("NonMaxSuppression", "nms", "b", "c"),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, model.encode_to_vec()).expect("write");
    let out = dir.path().join("m.ron");
    let o = gradc(&[
        "import",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("2 node(s) of ops gradc does not import"), "{e}");
    assert!(
        e.contains("node 'lstm1': LSTM") && e.contains("node 'nms': NonMaxSuppression"),
        "{e}"
    );
    assert!(e.contains("supported: "), "{e}");
    assert!(
        !out.exists() && !dir.path().join("m.safetensors").exists(),
        "nothing written"
    );

    std::fs::write(&path, b"not a protobuf at all").expect("write");
    let o = gradc(&[
        "import",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("not an ONNX model"), "{}", stderr(&o));
}

/// An op with no ONNX form is an error naming the node and its op, and
/// nothing is written; so is an output the program does not have.
#[test]
fn export_errors_name_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("g.ron");
    std::fs::write(
        &file,
        r#"Graph(name: "g", nodes: [
            (name: "x", op: Placeholder(shape: ["batch", 3])),
            (name: "c", op: Cumsum(axis: 1), inputs: ["x"]),
        ], outputs: ["c"])"#,
    )
    .expect("write");
    let onnx = dir.path().join("g.onnx");
    let o = gradc(&[
        "export",
        file.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("node 'c' (Cumsum) has no ONNX counterpart"),
        "{e}"
    );
    assert!(!onnx.exists(), "nothing written");
    let o = gradc(&[
        "export",
        file.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
        "--output",
        "nope",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

/// The `Safetensors` initializer's errors: a missing tensor (the file's
/// tensors listed) and a tensor of another shape.
#[test]
fn safetensors_initializer_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = Tensor::F32(ArrayD::zeros(IxDyn(&[2, 3])));
    gradc::io::checkpoint::save(
        &dir.path().join("w.safetensors"),
        &[("w", &w)],
        &Default::default(),
    )
    .expect("save");
    for (var, shape, want) in [
        ("v", "[2, 3]", "no tensor named 'v' (it holds w)"),
        (
            "w",
            "[3, 2]",
            "tensor 'w' has shape [2, 3], the variable [3, 2]",
        ),
    ] {
        let file = dir.path().join("g.ron");
        std::fs::write(
            &file,
            format!(
                r#"Graph(name: "g", nodes: [
                    (name: "{var}", op: Variable(shape: {shape}, initializer: Safetensors("w.safetensors"))),
                    (name: "y", op: Neg, inputs: ["{var}"]),
                ], outputs: ["y"])"#
            ),
        )
        .expect("write");
        let o = gradc(&["run", file.to_str().unwrap()]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
    }
}
