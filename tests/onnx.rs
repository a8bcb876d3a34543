//! `gradc export` and `gradc import` from the command line: a forward
//! graph and a checkpoint exported, an imported model run and trained, and
//! the errors. The exported models are run by another runtime in
//! `onnx/tests/runtimes.rs`.

mod common;

use common::{gradc, repo_path, stderr};
use gradc::runtime::Tensor;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

/// `gradc export --checkpoint` writes the checkpoint's values, and names
/// the inputs and outputs as the graph does, the batch symbolic.
#[test]
fn export_writes_the_checkpoints_values() {
    use gradc::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
    use prost::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = repo_path("graphs/two_layer_net.ron");
    let w2 = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[50, 10]), |i| {
        (i[0] * 10 + i[1]) as f32 * 1e-3
    }));
    let zeros = |s: &[usize]| Tensor::F32(ArrayD::zeros(IxDyn(s)));
    let (w1, b1, b2) = (zeros(&[784, 50]), zeros(&[50]), zeros(&[10]));
    let ckpt = dir.path().join("ck.safetensors");
    gradc::io::checkpoint::save(
        &ckpt,
        &[("W1", &w1), ("b1", &b1), ("W2", &w2), ("b2", &b2)],
        &Default::default(),
    )
    .expect("save");
    let onnx = dir.path().join("m.onnx");
    let o = gradc(&[
        "export",
        file.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--output",
        "y",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = ModelProto::decode(std::fs::read(&onnx).expect("model").as_slice()).expect("decodes");
    let g = m.graph.expect("graph");
    let init = g
        .initializer
        .iter()
        .find(|t| t.name == "W2")
        .expect("W2 is an initializer");
    let values: Vec<f32> = init
        .raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[50, 10]), values).expect("shape")),
        w2
    );
    let names = |v: &[gradc::onnx::proto::ValueInfoProto]| {
        v.iter().map(|i| i.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&g.input), ["x"], "y needs the images only");
    assert_eq!(names(&g.output), ["y"]);
    let Some(type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("a tensor input");
    };
    let dims = t.shape.expect("shape").dim;
    assert_eq!(dims[0].value, Some(Value::DimParam("batch".into())));
    assert_eq!(dims[1].value, Some(Value::DimValue(784)));
    assert_eq!(m.opset_import[0].version, 17);
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
    // A compiled program is not a graph file.
    let program = dir.path().join("g.program");
    let o = gradc(&[
        "compile",
        file.to_str().unwrap(),
        "-o",
        program.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&[
        "export",
        program.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(
        stderr(&o).contains("is a compiled program; gradc export takes the graph file"),
        "{}",
        stderr(&o)
    );
    assert!(!onnx.exists(), "nothing written");
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

/// The list of supported ops in docs/onnx.md is the importer's.
#[test]
fn the_docs_list_the_ops_the_importer_reads() {
    let doc = std::fs::read_to_string(repo_path("docs/onnx.md")).expect("docs");
    let start = doc.find("Supported ONNX ops").expect("the list");
    let end = start + doc[start..].find("Poolings read").expect("its end");
    let mut listed: Vec<&str> = doc[start..end].split('`').skip(1).step_by(2).collect();
    listed.sort_unstable();
    listed.dedup();
    assert_eq!(listed, gradc::onnx::import::supported_ops());
}

/// A small ONNX model of the nodes given, its initializers and one input
/// `x` of `x_type` and shape `x_shape` (f32 elements are 1, i64 7).
fn model(
    nodes: Vec<gradc::onnx::proto::NodeProto>,
    initializers: Vec<gradc::onnx::proto::TensorProto>,
    x_type: i32,
    x_shape: &[i64],
    output: &str,
) -> Vec<u8> {
    use gradc::onnx::proto::tensor_shape_proto::{dimension, Dimension};
    use gradc::onnx::proto::*;
    use prost::Message;
    let info = |name: &str, elem: i32, shape: &[i64]| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: initializers,
            input: vec![info("x", x_type, x_shape)],
            output: vec![info(output, 1, &[])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn node(
    op: &str,
    inputs: &[&str],
    output: &str,
    attribute: Vec<gradc::onnx::proto::AttributeProto>,
) -> gradc::onnx::proto::NodeProto {
    gradc::onnx::proto::NodeProto {
        op_type: op.into(),
        name: format!("{op}_node"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

/// Imports `bytes` with the library (no files).
fn import(bytes: &[u8]) -> Result<gradc::onnx::Imported, gradc::onnx::ImportError> {
    gradc::onnx::import(
        bytes,
        &gradc::onnx::ImportOptions {
            name: "m".into(),
            weights: "m.safetensors".into(),
            source: "m.onnx".into(),
            train: None,
        },
    )
}

/// ONNX's Gather counts a negative index from the end; the imported graph
/// does too, where gradc's own Gather would refuse it.
#[test]
fn imported_gather_counts_negative_indices_from_the_end() {
    use gradc::onnx::proto::TensorProto;
    let table = TensorProto {
        name: "table".into(),
        dims: vec![4, 2],
        data_type: 1,
        float_data: (0..8).map(|v| v as f32).collect(),
        ..Default::default()
    };
    let bytes = model(
        vec![node("Gather", &["table", "x"], "y", vec![])],
        vec![table],
        7,
        &[3],
        "y",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (onnx, ron) = (dir.path().join("m.onnx"), dir.path().join("m.ron"));
    std::fs::write(&onnx, bytes).expect("write");
    let o = gradc(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        ron.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&[
        "run",
        ron.to_str().unwrap(),
        "--feed",
        "x=[-1, 0, -4]",
        "--fetch",
        "y",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = common::stdout(&o);
    let flat: String = out.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        flat.contains("[[6.0,7.0],[0.0,1.0],[0.0,1.0]]") || flat.contains("[[6,7],[0,1],[0,1]]"),
        "{out}"
    );
}

/// Import errors that name the node: an attribute of another type than
/// ONNX gives it, a depthwise filter that does not fit its channels, a
/// Dropout whose training mode is computed, a Squeeze of symbolic sizes
/// without axes; and `-o` onto the weights file's own name.
#[test]
fn import_errors_name_the_node() {
    use gradc::onnx::proto::attribute_proto::AttributeType;
    use gradc::onnx::proto::{AttributeProto, TensorProto};
    let int_alpha = AttributeProto {
        name: "alpha".into(),
        r#type: AttributeType::Int as i32,
        i: 1,
        ..Default::default()
    };
    let e = import(&model(
        vec![node("LeakyRelu", &["x"], "y", vec![int_alpha])],
        vec![],
        1,
        &[2],
        "y",
    ))
    .expect_err("an INT alpha");
    assert!(
        e.to_string()
            .contains("node 'LeakyRelu_node' (LeakyRelu): attribute alpha is INT, expected FLOAT"),
        "{e}"
    );

    let filter = TensorProto {
        name: "w".into(),
        dims: vec![3, 1, 1, 1],
        data_type: 1,
        float_data: vec![1.0; 3],
        ..Default::default()
    };
    let group = AttributeProto {
        name: "group".into(),
        r#type: AttributeType::Int as i32,
        i: 2,
        ..Default::default()
    };
    let e = import(&model(
        vec![node("Conv", &["x", "w"], "y", vec![group])],
        vec![filter],
        1,
        &[1, 2, 4, 4],
        "y",
    ))
    .expect_err("3 filters for 2 channels");
    assert!(
        e.to_string()
            .contains("(Conv): a depthwise filter [3, 1, 1, 1] for 2 channels"),
        "{e}"
    );

    let e = import(&model(
        vec![node("Dropout", &["x", "", "x"], "y", vec![])],
        vec![],
        1,
        &[2],
        "y",
    ))
    .expect_err("a computed training mode");
    assert!(
        e.to_string()
            .contains("(Dropout): its training_mode is set or computed"),
        "{e}"
    );

    let mut sym = model(
        vec![node("Squeeze", &["x"], "y", vec![])],
        vec![],
        1,
        &[1, 1],
        "y",
    );
    // The same with a symbolic first dimension.
    {
        use gradc::onnx::proto::tensor_shape_proto::dimension::Value;
        use gradc::onnx::proto::ModelProto;
        use prost::Message;
        let mut m = ModelProto::decode(sym.as_slice()).expect("decodes");
        if let Some(gradc::onnx::proto::type_proto::Value::TensorType(t)) = m
            .graph
            .as_mut()
            .and_then(|g| g.input[0].r#type.as_mut())
            .and_then(|t| t.value.as_mut())
        {
            t.shape.as_mut().expect("shape").dim[0].value = Some(Value::DimParam("batch".into()));
        }
        sym = m.encode_to_vec();
    }
    let e = import(&sym).expect_err("symbolic sizes");
    assert!(e.to_string().contains("(Squeeze): without axes"), "{e}");

    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = repo_path("tests/onnx/torch_mlp.onnx");
    let out = dir.path().join("m.safetensors");
    let o = gradc(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("needs another extension"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// An AveragePool that counts its padding imports where TensorFlow's SAME
/// pads nothing (the count is the same), and is refused where it pads.
#[test]
fn average_pool_counting_padding_is_read_only_without_padding() {
    use gradc::onnx::proto::attribute_proto::AttributeType;
    use gradc::onnx::proto::AttributeProto;
    let attrs = || {
        let ints = |name: &str, v: &[i64]| AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        };
        vec![
            ints("kernel_shape", &[2, 2]),
            ints("strides", &[2, 2]),
            AttributeProto {
                name: "auto_pad".into(),
                r#type: AttributeType::String as i32,
                s: b"SAME_UPPER".to_vec(),
                ..Default::default()
            },
            AttributeProto {
                name: "count_include_pad".into(),
                r#type: AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            },
        ]
    };
    let pool = |size: i64| {
        model(
            vec![node("AveragePool", &["x"], "y", attrs())],
            vec![],
            1,
            &[1, 1, size, size],
            "y",
        )
    };
    assert!(import(&pool(4)).is_ok(), "4x4 by 2x2 windows pads nothing");
    let e = import(&pool(5)).expect_err("5x5 pads a pixel");
    assert!(
        e.to_string()
            .contains("(AveragePool): count_include_pad 1 with padding"),
        "{e}"
    );
}

/// Models gradc refuses before reading their nodes, and a `--loss` that
/// names an output the model lacks.
#[test]
fn import_refuses_other_opsets_missing_graphs_and_unknown_loss_outputs() {
    use gradc::onnx::proto::ModelProto;
    use prost::Message;
    let mut m = ModelProto::decode(
        model(
            vec![node("Relu", &["x"], "y", vec![])],
            vec![],
            1,
            &[2],
            "y",
        )
        .as_slice(),
    )
    .expect("decodes");
    m.opset_import[0].version = 9;
    let e = import(&m.encode_to_vec()).expect_err("opset 9");
    assert!(
        e.to_string()
            .contains("opset 9 of the default ONNX domain; gradc reads opsets 13 to 22"),
        "{e}"
    );
    m.graph = None;
    let e = import(&m.encode_to_vec()).expect_err("no graph");
    assert!(e.to_string().contains("the model has no graph"), "{e}");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("m.ron");
    let onnx = repo_path("tests/onnx/torch_mlp.onnx");
    let data = repo_path("data/mnist");
    let o = gradc(&[
        "import",
        onnx.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--loss",
        "softmax-cross-entropy",
        "--logits",
        "probabilities",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the model has no output 'probabilities'; its outputs are logits"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}
