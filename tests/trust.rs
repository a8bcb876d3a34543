//! The optimizer never changes an answer: graphs where a pass could drop a
//! gradient, lose a named tensor or half-apply a feed if it were careless,
//! each compared with the unoptimized program and with values worked out by
//! hand.

mod common;

use common::{assert_close, repo_path};
use gradc::compiler::{passes::Pipeline, schema, Compiler, ErrorKind, RunNames, Source};
use gradc::runtime::{DType, Literal, Op, Program, RunError, Session, Tensor};
use std::collections::HashMap;

/// The program of `text` compiled for a run that names `names`, unoptimized or
/// with the default pipeline (prefuse included, verifier on).
fn program(text: &str, names: RunNames, optimize: bool) -> Program {
    let spec = schema::parse(text).expect("parses");
    let pipeline = if optimize {
        Pipeline::default_passes().verify_always()
    } else {
        Pipeline::none()
    };
    Compiler::new(Source::file(&spec, text, "test.ron"))
        .passes(pipeline)
        .run_names(names)
        .compile()
        .unwrap_or_else(|e| panic!("compiles (optimize: {optimize}): {e}"))
        .program
}

/// Runs `p` with `feeds` and fetches every label.
fn fetch(p: Program, feeds: &HashMap<String, Tensor>, labels: &[&str]) -> Vec<Tensor> {
    let mut s = Session::new(p).expect("valid program");
    let refs: Vec<_> = labels
        .iter()
        .map(|l| s.resolve(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    s.run(feeds, &refs).expect("runs")
}

fn tensor(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F64, shape, data.to_vec()).expect("fits")
}

/// Optimized and unoptimized programs of `text`, compiled for fetching
/// `labels` and feeding `feeds`, give the same values (1e-12 relative); returns them.
fn same_both_ways(text: &str, feeds: &HashMap<String, Tensor>, labels: &[&str]) -> Vec<Vec<f64>> {
    let fed: Vec<&str> = feeds.keys().map(String::as_str).collect();
    let names = RunNames {
        fetches: labels,
        feeds: &fed,
    };
    let plain = fetch(program(text, names, false), feeds, labels);
    let optimized = fetch(program(text, names, true), feeds, labels);
    for ((a, b), label) in plain.iter().zip(&optimized).zip(labels) {
        assert_eq!(a.shape(), b.shape(), "{label}: shapes");
        let scale = a.to_f64_vec().iter().fold(1e-300f64, |m, v| m.max(v.abs()));
        assert_close(
            &b.to_f64_vec(),
            &a.to_f64_vec(),
            1e-12 * scale.max(1.0),
            label,
        );
    }
    plain.iter().map(Tensor::to_f64_vec).collect()
}

const XENT: &str = r#"Graph(name: "xent", dtype: F64, nodes: [
  (name: "z", op: Placeholder(shape: [2, 3])), (name: "t", op: Placeholder(shape: [2, 3])),
  (name: "p", op: Softmax, inputs: ["z"]), (name: "lp", op: Log, inputs: ["p"]),
  (name: "tlp", op: Mul, inputs: ["t", "lp"]), (name: "s", op: Sum(axes: [1]), inputs: ["tlp"]),
  (name: "ns", op: Neg, inputs: ["s"]), (name: "L", op: Mean(), inputs: ["ns"]),
], outputs: ["L"], gradients: [(of: "L", wrt: ["z", "t"])])"#;

fn xent_feeds(t: &[f64]) -> HashMap<String, Tensor> {
    HashMap::from([
        ("z".into(), tensor(&[2, 3], &[1.0, 2.0, 3.0, 0.0, 0.0, 1.0])),
        ("t".into(), tensor(&[2, 3], t)),
    ])
}

#[test]
fn prefused_cross_entropy_keeps_the_label_gradient() {
    let feeds = xent_feeds(&[0.0, 0.0, 1.0, 0.5, 0.5, 0.0]);
    let v = same_both_ways(XENT, &feeds, &["L", "d(L)/d(z)", "d(L)/d(t)"]);
    // d(L)/d(t) = -log_softmax(z) / 2; row 0: -([1,2,3] - logsumexp) / 2.
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let want: Vec<f64> = [1.0, 2.0, 3.0].iter().map(|z| (lse - z) / 2.0).collect();
    assert_close(&v[2][..3], &want, 1e-12, "d(L)/d(t) row 0");
    assert_close(
        &v[2][..3],
        &[1.2038, 0.7038, 0.2038],
        1e-4,
        "the issue's numbers",
    );
    // The pattern still fires: the optimized program holds the fused op.
    let names = RunNames::default();
    let p = program(XENT, names, true);
    assert!(p
        .instrs
        .iter()
        .any(|i| matches!(i.op, Op::SoftmaxCrossEntropyWithLogits)));
}

#[test]
fn prefused_cross_entropy_is_exact_for_labels_that_are_not_distributions() {
    // Rows summing to 2 and 0.3: the composite's gradient is sum(t) softmax - t.
    let feeds = xent_feeds(&[0.0, 1.0, 1.0, 0.1, 0.2, 0.0]);
    same_both_ways(XENT, &feeds, &["L", "d(L)/d(z)", "d(L)/d(t)"]);
}

const SIGMOID: &str = r#"Graph(name: "sig", dtype: F64, nodes: [
    (name: "x",     op: Const([-4.0, -1.5, 0.0, 0.5, 3.0])),
    (name: "neg",   op: Neg, inputs: ["x"]),
    (name: "exp",   op: Exp, inputs: ["neg"]),
    (name: "one",   op: Const(1.0)),
    (name: "denom", op: Add, inputs: ["one", "exp"]),
    (name: "y",     op: Div, inputs: ["one", "denom"]),
  ], gradients: [REQUESTS])"#;

#[test]
fn a_request_naming_an_intermediate_keeps_it_through_prefuse() {
    let none = HashMap::new();
    let text = SIGMOID.replace("REQUESTS", r#"(of: "y", wrt: ["exp"])"#);
    let v = same_both_ways(&text, &none, &["y", "d(y)/d(exp)"]);
    // dy/d(exp) = -1 / denom^2
    let want: Vec<f64> = [-4.0f64, -1.5, 0.0, 0.5, 3.0]
        .iter()
        .map(|x| -1.0 / (1.0 + (-x).exp()).powi(2))
        .collect();
    assert_close(&v[1], &want, 1e-12, "d(y)/d(exp)");

    let text = SIGMOID.replace(
        "REQUESTS",
        r#"(of: "y", wrt: ["x"]), (of: "denom", wrt: ["x"], grad_ys: "x")"#,
    );
    let v = same_both_ways(&text, &none, &["d(y)/d(x)", "d(denom)/d(x)", "denom"]);
    // d(denom)/d(x) weighted by x: -exp(-x) * x
    let want: Vec<f64> = [-4.0f64, -1.5, 0.0, 0.5, 3.0]
        .iter()
        .map(|x| -(-x).exp() * x)
        .collect();
    assert_close(&v[1], &want, 1e-12, "d(denom)/d(x)");
}

#[test]
fn a_gradient_with_respect_to_a_patterns_root_keeps_the_patterns_gradient() {
    // Sigmoid's fused gradient y(1 - y) reads y, where the composite's chain
    // does not: differentiating it with respect to y would differ.
    let none = HashMap::new();
    let text = SIGMOID.replace(
        "REQUESTS",
        r#"(of: "y", wrt: ["x"]), (of: "d(y)/d(x)", wrt: ["y"])"#,
    );
    same_both_ways(&text, &none, &["d(y)/d(x)", "d(d(y)/d(x))/d(y)"]);
}

#[test]
fn a_request_naming_softmax_keeps_its_gradient() {
    let text = r#"Graph(name: "ce", dtype: F64, nodes: [
      (name: "z", op: Placeholder(shape: [1, 3])), (name: "t", op: Placeholder(shape: [1, 3])),
      (name: "sm", op: Softmax, inputs: ["z"]), (name: "lg", op: Log, inputs: ["sm"]),
      (name: "m", op: Mul, inputs: ["t", "lg"]), (name: "s", op: Sum(axes: [-1]), inputs: ["m"]),
      (name: "ce", op: Neg, inputs: ["s"]),
    ], gradients: [(of: "ce", wrt: ["z", "sm"])])"#;
    let feeds = HashMap::from([
        ("z".into(), tensor(&[1, 3], &[0.5, 1.0, -0.5])),
        ("t".into(), tensor(&[1, 3], &[0.0, 1.0, 0.0])),
    ]);
    let v = same_both_ways(text, &feeds, &["d(ce)/d(z)", "d(ce)/d(sm)"]);
    // d(ce)/d(sm) = -t / sm, shape [1, 3].
    let e = [0.5f64.exp(), 1f64.exp(), (-0.5f64).exp()];
    let sm1 = e[1] / (e[0] + e[1] + e[2]);
    assert_close(&v[1], &[0.0, -1.0 / sm1, 0.0], 1e-12, "d(ce)/d(sm)");
}

#[test]
fn batch_norm_over_its_moments_with_its_output_named_still_compiles() {
    let text = r#"Graph(name: "bn", dtype: F64, nodes: [
      (name: "x", op: Placeholder(shape: [4, 3])),
      (name: "m", op: Moments(axes: [0]), inputs: ["x"]),
      (name: "y", op: BatchNormalization(variance_epsilon: 0.001, offset: false, scale: false),
       inputs: ["x", "m", "m:1"]),
      (name: "sq", op: Square, inputs: ["y"]),
      (name: "L", op: Sum(), inputs: ["sq"]),
    ], outputs: ["y", "L"], gradients: [(of: "L", wrt: ["x"])])"#;
    let x: Vec<f64> = (0..12).map(|i| ((i * 7) % 5) as f64 - 1.5).collect();
    let feeds = HashMap::from([("x".into(), tensor(&[4, 3], &x))]);
    same_both_ways(text, &feeds, &["y", "L", "d(L)/d(x)"]);
    // Fused, and `y` is the fused op's output under its own name.
    let p = program(text, RunNames::default(), true);
    let y = p.instrs.iter().find(|i| i.name == "y").expect("y is there");
    assert!(matches!(y.op, Op::FusedBatchNorm { .. }), "{:?}", y.op);
}

fn apple() -> String {
    std::fs::read_to_string(repo_path("graphs/apple.ron")).expect("reads")
}

#[test]
fn a_fed_intermediate_is_a_cut_point_for_every_pass() {
    let feeds = HashMap::from([("apple_price".into(), Tensor::scalar(DType::F64, 1000.0))]);
    let labels = ["price", "d(price)/d(tax)", "d(price)/d(apple)"];
    let v = same_both_ways(&apple(), &feeds, &labels);
    assert_close(&v[0], &[1100.0], 1e-12, "price");
    assert_close(&v[1], &[1000.0], 1e-12, "d(price)/d(tax)");
    assert_close(&v[2], &[2.2], 1e-12, "d(price)/d(apple)");
}

#[test]
fn a_fed_node_that_prefuse_would_fuse_away_can_be_fed() {
    let text = SIGMOID.replace("REQUESTS", r#"(of: "y", wrt: ["x"])"#);
    let feeds = HashMap::from([("exp".into(), tensor(&[5], &[1.0, 2.0, 3.0, 4.0, 5.0]))]);
    let v = same_both_ways(&text, &feeds, &["y", "d(y)/d(x)"]);
    let want: Vec<f64> = [1.0, 2.0, 3.0, 4.0, 5.0]
        .iter()
        .map(|e| 1.0 / (1.0 + e))
        .collect();
    assert_close(&v[0], &want, 1e-12, "y from the fed exp");
}

#[test]
fn an_optimized_program_refuses_a_feed_it_may_have_folded() {
    let p = program(&apple(), RunNames::default(), true);
    assert!(p.optimized);
    let s = Session::new(p.clone()).expect("valid");
    assert!(matches!(
        s.resolve_feed("apple_price"),
        Err(RunError::NotFeedable { .. })
    ));
    // Saved and loaded, it still knows.
    let loaded = Program::from_ron(&p.to_ron().expect("saves")).expect("loads");
    let s = Session::new(loaded).expect("valid");
    let e = s.resolve_feed("apple_price").expect_err("refused");
    assert!(e.to_string().contains("--no-opt"), "{e}");
    // Unoptimized, any single-output node can be fed.
    let plain = program(&apple(), RunNames::default(), false);
    assert!(!plain.optimized);
    assert!(Session::new(plain)
        .expect("valid")
        .resolve_feed("apple_price")
        .is_ok());
}

#[test]
fn a_feed_of_a_node_with_several_outputs_is_a_located_error() {
    let text = r#"Graph(name: "m", dtype: F64, nodes: [
      (name: "x", op: Placeholder(shape: [4, 3])),
      (name: "m", op: Moments(axes: [0]), inputs: ["x"]),
    ], outputs: ["m"])"#;
    let spec = schema::parse(text).expect("parses");
    let names = RunNames {
        fetches: &[],
        feeds: &["m"],
    };
    let e = Compiler::new(Source::file(&spec, text, "m.ron"))
        .run_names(names)
        .compile()
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::Feed, "{e}");
    assert_eq!(e.node.as_deref(), Some("m"), "{e}");
    let names = RunNames {
        fetches: &[],
        feeds: &["nope"],
    };
    let e = Compiler::new(Source::file(&spec, text, "m.ron"))
        .run_names(names)
        .compile()
        .expect_err("refused");
    assert_eq!(e.kind, ErrorKind::UnknownNode, "{e}");
}

#[test]
fn gradcheck_of_a_custom_gradient_calling_another_function() {
    let text = r#"Graph(name: "nested", dtype: F64,
      functions: [
        (name: "Inner", inputs: ["a"], outputs: ["s"], nodes: [
            (name: "s", op: Square, inputs: ["a"]),
        ]),
        (name: "Outer", inputs: ["x"], outputs: ["y"], nodes: [
            (name: "i", op: Call("Inner"), inputs: ["x"]),
            (name: "y", op: Exp, inputs: ["i"]),
        ], gradient: (
            nodes: [
                (name: "two", op: Const(2.0)),
                (name: "tx", op: Mul, inputs: ["two", "x"]),
                (name: "dy", op: Mul, inputs: ["y", "tx"]),
                (name: "gx", op: Mul, inputs: ["dy", "d(y)"]),
            ],
            returns: ["gx"],
        )),
      ],
      nodes: [
        (name: "x", op: Const([0.5, -0.25, 1.0])),
        (name: "o", op: Call("Outer"), inputs: ["x"]),
      ],
      gradients: [(of: "o", wrt: ["x"])])"#;
    let g = common::graph(text);
    let checks = gradc::gradcheck::check_functions(&g, &HashMap::new(), None)
        .expect("checks nested functions");
    assert_eq!(checks.len(), 1);
    assert!(checks[0].checks.iter().all(|c| c.passed()), "{checks:?}");
}

#[test]
fn a_noop_used_as_an_input_in_a_function_body_is_a_clean_error() {
    let text = r#"Graph(name: "f", dtype: F64,
      functions: [
        (name: "F", inputs: ["a"], outputs: ["y"], nodes: [
            (name: "n", op: NoOp),
            (name: "y", op: Add, inputs: ["a", "n"]),
        ]),
      ],
      nodes: [
        (name: "x", op: Const(1.0)),
        (name: "o", op: Call("F"), inputs: ["x"]),
      ])"#;
    let e = common::compile_error(text);
    assert_eq!(e.kind, ErrorKind::UnknownNode, "{e}");
    let message = e.to_string();
    assert!(
        message.contains("input 'n' has no such output") && message.contains("function 'F'"),
        "{message}"
    );
    // Outside a function, the same graph gets the same kind of error.
    let flat = r#"Graph(name: "f", dtype: F64, nodes: [
        (name: "x", op: Const(1.0)),
        (name: "n", op: NoOp),
        (name: "y", op: Add, inputs: ["x", "n"]),
      ])"#;
    let flat_e = common::compile_error(flat);
    assert_eq!(e.kind, flat_e.kind, "{e} / {flat_e}");
}

#[test]
fn the_fused_batch_norm_layer_forms_one_minus_decay_in_float32() {
    let layer = |fused: bool| {
        format!(
            r#"Graph(name: "bn", dtype: F32, nodes: [
          (name: "x", op: Placeholder(shape: [4, 3])),
          (name: "y", op: BatchNorm(decay: 0.999, fused: {fused}, is_training: true), inputs: ["x"]),
          (name: "L", op: Sum(), inputs: ["y"]),
        ], outputs: ["L"])"#
        )
    };
    let factors = |fused: bool| -> Vec<f64> {
        let g = common::graph(&layer(fused));
        g.g.node_indices()
            .filter_map(|n| match &g.node(n).op {
                Op::Const(Literal::Scalar(v)) if (v - 1e-3).abs() < 1e-6 => Some(*v),
                _ => None,
            })
            .collect()
    };
    // TensorFlow's fused path: decay is a float32 tensor, 1 - decay in float32.
    let f32_route = f64::from(1.0f32 - 0.999f32);
    assert_eq!(factors(true), vec![f32_route; 2]);
    // The unfused path: 1.0 - decay in double precision (a Python float).
    assert_eq!(factors(false), vec![1.0 - 0.999; 2]);
    assert_ne!(f32_route as f32, (1.0f64 - 0.999) as f32);
}

#[test]
fn constants_folded_only_where_a_literal_holds_them() {
    // [1e8, 0] holds nothing but would nest 1e8 empty lists; [0, 5] reads
    // back as [0]: both stay computed, with their shapes.
    for (shape, want) in [
        ("[100000000, 0]", vec![100_000_000, 0]),
        ("[0, 5]", vec![0, 5]),
    ] {
        let text = format!(
            r#"Graph(name: "f", dtype: F64, nodes: [
              (name: "v", op: Const(2.0)),
              (name: "f", op: Fill(shape: {shape}), inputs: ["v"]),
            ], outputs: ["f"])"#
        );
        let p = program(&text, RunNames::default(), true);
        let v = fetch(p, &HashMap::new(), &["f"]);
        assert_eq!(v[0].shape(), want.as_slice());
    }
    // ReducedSize of a large known shape folds without making that tensor.
    let text = r#"Graph(name: "r", dtype: F32, nodes: [
      (name: "x", op: Placeholder(shape: [100000, 100000])),
      (name: "n", op: ReducedSize(axes: [0, -1]), inputs: ["x"]),
    ], outputs: ["n"])"#;
    let p = program(text, RunNames::default(), true);
    let n = p.instrs.iter().find(|i| i.name == "n").expect("n");
    assert!(
        matches!(n.op, Op::Const(Literal::Scalar(v)) if v == 1e10),
        "{:?}",
        n.op
    );
}

#[test]
fn a_folded_shape_only_node_still_runs_the_assignment_it_read() {
    // ZerosLike(Assign) folds to zeros, but fetching it still assigns.
    let text = r#"Graph(name: "z", dtype: F64, nodes: [
      (name: "v", op: Variable(shape: [2], initializer: Zeros)),
      (name: "one", op: Const([1.0, 1.0])),
      (name: "inc", op: AssignAdd, inputs: ["v", "one"]),
      (name: "z", op: ZerosLike, inputs: ["inc"]),
    ], outputs: ["z"])"#;
    for optimize in [false, true] {
        let p = program(text, RunNames::default(), optimize);
        let mut s = Session::new(p).expect("valid");
        s.initialize(0).expect("init");
        let z = s.resolve("z").expect("z");
        for _ in 0..3 {
            s.run(&HashMap::new(), &[z]).expect("runs");
        }
        let v = s.resolve("v").expect("v");
        let got = s.run(&HashMap::new(), &[v]).expect("reads")[0].to_f64_vec();
        assert_eq!(got, vec![3.0, 3.0], "optimize: {optimize}");
    }
}

#[test]
fn an_assignment_to_a_non_variable_in_a_function_body_is_a_located_error() {
    let text = r#"Graph(name: "f", dtype: F64,
      functions: [
        (name: "F", inputs: ["a", "b"], outputs: ["y"], nodes: [
            (name: "y", op: Assign, inputs: ["a", "b"]),
        ]),
      ],
      nodes: [
        (name: "x", op: Const(1.0)),
        (name: "o", op: Call("F"), inputs: ["x", "x"]),
      ])"#;
    let e = common::compile_error(text);
    assert_eq!(e.kind, ErrorKind::NotAVariable, "{e}");
    assert!(e.to_string().contains("'F'"), "{e}");
}
