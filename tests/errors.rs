//! Bad input: one test per error kind. Each asserts the kind, the line, the node
//! and the op where they apply, and that the message says what is wrong.

mod common;

use common::{compile_error, graph};
use gradc::compiler::{passes::Pipeline, Compiler, ErrorKind, Source};
use gradc::runtime::{DType, InvalidProgram, ProgramError, RunError, Session, Tensor};
use std::collections::HashMap;

fn wrap(nodes: &str) -> String {
    format!("Graph(\n    name: \"bad\",\n    dtype: F64,\n    nodes: [\n{nodes}\n    ],\n)")
}

#[test]
fn parse_error_names_the_line() {
    let e = compile_error("Graph(\n    name: \"bad\",\n    nodes: [\n        (name: \"a\" op: Const(1.0)),\n    ],\n)");
    assert_eq!(e.kind, ErrorKind::Parse);
    assert_eq!(e.line, Some(4));
    assert!(e.to_string().starts_with("test.ron:4: error"), "{e}");
}

#[test]
fn unknown_op_suggests_the_closest() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const(1.0)),\n        (name: \"b\", op: Mull, inputs: [\"a\", \"a\"]),"));
    assert_eq!(e.kind, ErrorKind::UnknownOp);
    assert_eq!(e.line, Some(6));
    assert!(
        e.message.contains("unknown op 'Mull'") && e.message.contains("did you mean 'Mul'"),
        "{e}"
    );
}

#[test]
fn unknown_attribute_suggests_the_closest() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const([1.0, 2.0])),\n        (name: \"s\", op: Sum(axis: [0]), inputs: [\"a\"]),"));
    assert_eq!(e.kind, ErrorKind::UnknownAttr);
    assert_eq!(e.line, Some(6));
    assert!(
        e.message.contains("'axis'") && e.message.contains("did you mean 'axes'"),
        "{e}"
    );
}

#[test]
fn missing_attribute_is_named() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const([1.0, 2.0])),\n        (name: \"r\", op: Reshape(), inputs: [\"a\"]),"));
    assert_eq!(e.kind, ErrorKind::UnknownAttr);
    assert!(e.message.contains("missing attribute 'shape'"), "{e}");
}

#[test]
fn op_with_attributes_written_bare_says_how_to_write_it() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const([1.0, 2.0])),\n        (name: \"b\", op: BiasAdd, inputs: [\"a\", \"a\"]),"));
    assert_eq!(e.kind, ErrorKind::Parse);
    assert_eq!(e.line, Some(6));
    assert!(e.message.contains("`BiasAdd()`"), "{e}");
    let e = compile_error(&wrap(
        "        (name: \"w\", op: Variable(shape: [2], initializer: GlorotUniform)),",
    ));
    assert_eq!((&e.kind, e.line), (&ErrorKind::Parse, Some(5)));
    assert!(
        e.message
            .contains("GlorotUniform has attributes, written in parentheses: `GlorotUniform()`"),
        "{e}"
    );
}

#[test]
fn unknown_input_names_node_line_and_suggestion() {
    let e = compile_error(&wrap("        (name: \"apple\", op: Const(1.0)),\n        (name: \"price\", op: Mul, inputs: [\"aple\", \"apple\"]),"));
    assert_eq!(e.kind, ErrorKind::UnknownNode);
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("price"), Some("Mul"), Some(6))
    );
    assert!(
        e.message.contains("'aple'") && e.message.contains("did you mean 'apple'"),
        "{e}"
    );
}

#[test]
fn unknown_gradient_target_is_refused() {
    let text = "Graph(name: \"bad\", nodes: [\n (name: \"a\", op: Const(1.0)),\n], gradients: [\n (of: \"a\", wrt: [\"b\"]),\n])";
    let e = compile_error(text);
    assert_eq!(e.kind, ErrorKind::UnknownNode);
    assert_eq!(e.line, Some(4));
}

#[test]
fn duplicate_names_are_refused() {
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const(1.0)),\n        (name: \"a\", op: Const(2.0)),",
    ));
    assert_eq!(e.kind, ErrorKind::DuplicateName);
    assert_eq!((e.node.as_deref(), e.line), (Some("a"), Some(6)));
}

#[test]
fn cycles_are_refused() {
    let e = compile_error(&wrap(
        "        (name: \"c\", op: Const(1.0)),\n        (name: \"a\", op: Add, inputs: [\"b\", \"c\"]),\n        (name: \"b\", op: Add, inputs: [\"a\", \"c\"]),",
    ));
    assert_eq!(e.kind, ErrorKind::Cycle);
    assert_eq!((e.node.as_deref(), e.line), (Some("a"), Some(6)));
}

#[test]
fn a_gradient_of_its_own_result_is_a_cycle() {
    let text = "Graph(name: \"bad\", nodes: [(name: \"x\", op: Const(1.0)), (name: \"y\", op: Square, inputs: [\"x\"])],\n gradients: [(of: \"d(y)/d(x)\", wrt: [\"x\"]), (of: \"y\", wrt: [\"x\"], grad_ys: \"d(d(y)/d(x))/d(x)\")])";
    assert_eq!(compile_error(text).kind, ErrorKind::Cycle);
}

#[test]
fn shape_mismatch_names_node_op_line_and_shapes() {
    let e = compile_error(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [\"batch\", 3])),\n        (name: \"w\", op: Const([[1.0, 2.0]])),\n        (name: \"xw\", op: MatMul(), inputs: [\"x\", \"w\"]),",
    ));
    assert_eq!(e.kind, ErrorKind::Shape);
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("xw"), Some("MatMul"), Some(7))
    );
    assert!(
        e.message.contains("[batch,3]") && e.message.contains("[1,2]"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("test.ron:7: error in node 'xw' (MatMul)"),
        "{e}"
    );
}

#[test]
fn broadcasting_mismatch_is_a_shape_error() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const([1.0, 2.0])),\n        (name: \"b\", op: Const([1.0, 2.0, 3.0])),\n        (name: \"c\", op: Add, inputs: [\"a\", \"b\"]),"));
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(e.message.contains("[2] and [3] do not broadcast"), "{e}");
}

#[test]
fn mixed_dtypes_are_refused() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const(1.0), dtype: F32),\n        (name: \"b\", op: Const(1.0)),\n        (name: \"c\", op: Add, inputs: [\"a\", \"b\"]),"));
    assert_eq!(e.kind, ErrorKind::DType);
    assert_eq!((e.node.as_deref(), e.line), (Some("c"), Some(7)));
    assert!(
        e.message.contains("f32") && e.message.contains("f64"),
        "{e}"
    );
}

#[test]
fn a_declared_dtype_must_match_the_inferred_one() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const(1.0)),\n        (name: \"c\", op: Neg, inputs: [\"a\"], dtype: F32),"));
    assert_eq!(e.kind, ErrorKind::DType);
    assert_eq!(e.node.as_deref(), Some("c"));
}

#[test]
fn an_op_without_gradient_on_the_path_is_named() {
    let text = "Graph(name: \"bad\", dtype: F64, nodes: [\n (name: \"x\", op: Const([[1.0, 3.0]])),\n (name: \"v\", op: Variable(shape: [1, 2], initializer: Zeros)),\n (name: \"a\", op: Assign, inputs: [\"v\", \"x\"]),\n (name: \"y\", op: Mul, inputs: [\"a\", \"x\"]),\n], gradients: [(of: \"y\", wrt: [\"x\"])])";
    let e = compile_error(text);
    assert_eq!(e.kind, ErrorKind::NoGradient);
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("a"), Some("Assign"), Some(4))
    );
}

#[test]
fn dropout_refuses_a_rate_outside_0_1_and_an_integer_input() {
    let e = compile_error(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [2, 3])),\n        (name: \"d\", op: Dropout(rate: 1.0), inputs: [\"x\"]),",
    ));
    assert_eq!(e.kind, ErrorKind::Shape);
    assert_eq!((e.node.as_deref(), e.op), (Some("d"), Some("Dropout")));
    assert!(e.message.contains("rate must be in [0, 1), got 1"), "{e}");
    let e = compile_error(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [2, 3]), dtype: I32),\n        (name: \"d\", op: Dropout(rate: 0.5), inputs: [\"x\"]),",
    ));
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(
        e.message
            .contains("Dropout takes a float input, got i32[2,3]"),
        "{e}"
    );
}

#[test]
fn a_strided_slice_names_the_axis_it_cannot_take() {
    let e = compile_error(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [\"batch\", 3])),\n        (name: \"s\", op: StridedSlice(begin: [1], end: [2]), inputs: [\"x\"]),",
    ));
    assert_eq!((e.node.as_deref(), e.op), (Some("s"), Some("StridedSlice")));
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(e.message.contains("axis 0 is the symbolic batch"), "{e}");
    let e = compile_error(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [2, 3])),\n        (name: \"s\", op: StridedSlice(begin: [0, 3], end: [0, 4], shrink_axis_mask: 2), inputs: [\"x\"]),",
    ));
    assert!(
        e.message
            .contains("axis 1: slice index 3 is out of bounds for size 3"),
        "{e}"
    );
    let e = compile_error(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [2, 3])),\n        (name: \"s\", op: StridedSlice(begin: [0], end: [2], strides: [0]), inputs: [\"x\"]),",
    ));
    assert!(e.message.contains("strides[0] must be non-zero"), "{e}");
}

#[test]
fn a_range_that_never_reaches_its_limit_is_refused() {
    let e = compile_error(&wrap(
        "        (name: \"r\", op: Range(start: 5.0, limit: 1.0, delta: 1.0)),",
    ));
    assert_eq!((e.node.as_deref(), e.op), (Some("r"), Some("Range")));
    assert!(
        e.message
            .contains("delta 1 does not go from start 5 to limit 1"),
        "{e}"
    );
}

#[test]
fn a_learning_rate_schedule_that_does_not_fit_is_refused() {
    for (schedule, says) in [
        (
            "PiecewiseConstant(boundaries: [10, 5], values: [1.0, 0.5, 0.1])",
            "increasing boundaries",
        ),
        (
            "PiecewiseConstant(boundaries: [10], values: [1.0])",
            "one value more than boundaries",
        ),
        (
            "ExponentialDecay(decay_steps: 0, decay_rate: 0.5)",
            "decay_steps > 0",
        ),
        (
            "CosineDecay(decay_steps: 0)",
            "CosineDecay needs decay_steps > 0 and a finite alpha, got 0 and 0",
        ),
    ] {
        let text = format!(
            "Graph(name: \"s\", dtype: F64, nodes: [\n (name: \"w\", op: Variable(shape: [2], initializer: Ones)),\n (name: \"loss\", op: Sum(), inputs: [\"w\"]),\n], train: (loss: \"loss\", optimizer: GradientDescent(learning_rate: 0.1), learning_rate_schedule: {schedule}))"
        );
        let e = compile_error(&text);
        assert_eq!(e.kind, ErrorKind::Train, "{e}");
        assert!(e.message.contains(says), "{schedule}: {e}");
    }
}

#[test]
fn an_integer_in_float_arithmetic_is_a_dtype_error() {
    // TensorFlow's rule: ArgMax gives I64, and Mul takes one dtype.
    let text = "Graph(name: \"bad\", dtype: F64, nodes: [\n (name: \"x\", op: Const([[1.0, 3.0]])),\n (name: \"i\", op: ArgMax(axis: 1), inputs: [\"x\"]),\n (name: \"y\", op: Mul, inputs: [\"i\", \"x\"]),\n])";
    let e = compile_error(text);
    assert_eq!(e.kind, ErrorKind::DType);
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("y"), Some("Mul"), Some(4))
    );
    assert!(e.message.contains("i64 and f64"), "{e}");
    // An op that takes floats only names the input and the dtypes it takes.
    let text = "Graph(name: \"bad\", dtype: F64, nodes: [\n (name: \"x\", op: Const([[1.0, 3.0]])),\n (name: \"i\", op: ArgMax(axis: 1), inputs: [\"x\"]),\n (name: \"y\", op: Exp, inputs: [\"i\"]),\n])";
    let e = compile_error(text);
    assert_eq!(e.kind, ErrorKind::DType);
    assert!(
        e.message
            .contains("input 0 of Exp must be a float (f32 or f64) dtype, got i64"),
        "{e}"
    );
}

#[test]
fn ragged_constants_are_refused() {
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const([[1.0, 2.0], [3.0]])),",
    ));
    assert_eq!(e.kind, ErrorKind::Shape);
    assert_eq!((e.node.as_deref(), e.line), (Some("a"), Some(5)));
}

#[test]
fn missing_file_names_the_file() {
    let e = gradc::compiler::graph_from_file(std::path::Path::new("no/such/file.ron"))
        .expect_err("missing");
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.to_string().starts_with("no/such/file.ron"), "{e}");
}

// Run-time errors: feeds checked against placeholders, symbols bound consistently.

fn session() -> Session {
    let g = graph(&wrap(
        "        (name: \"x\", op: Placeholder(shape: [\"batch\", 3])),\n        (name: \"t\", op: Placeholder(shape: [\"batch\"])),\n        (name: \"s\", op: Sum(axes: [1]), inputs: [\"x\"]),\n        (name: \"d\", op: Sub, inputs: [\"s\", \"t\"]),",
    ));
    Session::new(Compiler::new(g).compile().expect("compiles").program).expect("valid")
}

fn feed(pairs: &[(&str, &[usize])], dtype: DType) -> HashMap<String, Tensor> {
    pairs
        .iter()
        .map(|(n, s)| {
            (
                n.to_string(),
                Tensor::from_f64(dtype, s, vec![1.0; s.iter().product()]).expect("fits"),
            )
        })
        .collect()
}

#[test]
fn a_feed_of_the_wrong_shape_is_refused() {
    let mut s = session();
    let d = s.resolve("d").expect("exists");
    let e = s
        .run(&feed(&[("x", &[2, 4]), ("t", &[2])], DType::F64), &[d])
        .expect_err("bad shape");
    assert!(
        matches!(&e, RunError::FeedShape { name, .. } if name == "x"),
        "{e}"
    );
    assert!(
        e.to_string().contains("[2, 4]") && e.to_string().contains("[batch,3]"),
        "{e}"
    );
}

#[test]
fn symbols_must_agree_across_feeds() {
    let mut s = session();
    let d = s.resolve("d").expect("exists");
    let e = s
        .run(&feed(&[("x", &[2, 3]), ("t", &[5])], DType::F64), &[d])
        .expect_err("batch differs");
    assert!(e.to_string().contains("'batch' is 2"), "{e}");
}

#[test]
fn a_missing_feed_is_named() {
    let mut s = session();
    let d = s.resolve("d").expect("exists");
    let e = s
        .run(&feed(&[("x", &[2, 3])], DType::F64), &[d])
        .expect_err("t missing");
    assert!(
        matches!(&e, RunError::MissingFeed { name, .. } if name == "t"),
        "{e}"
    );
}

#[test]
fn an_integer_division_by_zero_names_the_node() {
    let g = graph(&wrap(
        "        (name: \"a\", op: Placeholder(shape: [3]), dtype: I32),\n        (name: \"b\", op: Placeholder(shape: [3]), dtype: I32),\n        (name: \"q\", op: FloorDiv, inputs: [\"a\", \"b\"]),",
    ));
    let mut s = Session::new(Compiler::new(g).compile().expect("compiles").program).expect("valid");
    let q = s.resolve("q").expect("exists");
    let ints = |v: Vec<f64>| Tensor::from_f64(DType::I32, &[3], v).expect("fits");
    let feeds: HashMap<String, Tensor> = [
        ("a".to_string(), ints(vec![7.0, -7.0, 1.0])),
        ("b".to_string(), ints(vec![2.0, 2.0, 2.0])),
    ]
    .into();
    let got = s.run(&feeds, &[q]).expect("runs");
    assert_eq!(got[0], ints(vec![3.0, -4.0, 0.0]));
    let feeds: HashMap<String, Tensor> = [
        ("a".to_string(), ints(vec![7.0, -7.0, 1.0])),
        ("b".to_string(), ints(vec![2.0, 0.0, 2.0])),
    ]
    .into();
    let e = s.run(&feeds, &[q]).expect_err("division by zero");
    assert!(matches!(&e, RunError::Node { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("'q'")
            && text.contains("FloorDiv")
            && text.contains("integer division by zero"),
        "{text}"
    );
}

#[test]
fn an_index_out_of_range_names_the_node_the_index_and_the_bound() {
    // TensorFlow's CPU kernels: `indices[1,0] = 5 is not in [0, 4)`.
    let g = graph(&wrap(
        "        (name: \"table\", op: Placeholder(shape: [4, 2])),\n        (name: \"ids\", op: Placeholder(shape: [2, 2]), dtype: I64),\n        (name: \"rows\", op: Gather(), inputs: [\"table\", \"ids\"]),\n        (name: \"labels\", op: Placeholder(shape: [4]), dtype: I32),\n        (name: \"xe\", op: SparseSoftmaxCrossEntropyWithLogits, inputs: [\"table\", \"labels\"]),",
    ));
    let mut s = Session::new(Compiler::new(g).compile().expect("compiles").program).expect("valid");
    let (rows, xe) = (
        s.resolve("rows").expect("exists"),
        s.resolve("xe").expect("exists"),
    );
    let table = Tensor::from_f64(DType::F64, &[4, 2], vec![0.5; 8]).expect("fits");
    let ids = Tensor::from_f64(DType::I64, &[2, 2], vec![0.0, 3.0, 5.0, 1.0]).expect("fits");
    let feeds: HashMap<String, Tensor> = [
        ("table".to_string(), table.clone()),
        ("ids".to_string(), ids),
    ]
    .into();
    let e = s.run(&feeds, &[rows]).expect_err("5 is out of range");
    assert!(matches!(&e, RunError::Node { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("'rows'")
            && text.contains("Gather")
            && text.contains("indices[1,0] = 5 is not in [0, 4)"),
        "{text}"
    );
    let labels = Tensor::from_f64(DType::I32, &[4], vec![0.0, 1.0, -1.0, 1.0]).expect("fits");
    let feeds: HashMap<String, Tensor> =
        [("table".to_string(), table), ("labels".to_string(), labels)].into();
    let text = s
        .run(&feeds, &[xe])
        .expect_err("-1 is out of range")
        .to_string();
    assert!(
        text.contains("'xe'") && text.contains("labels[2] = -1 is not in [0, 2)"),
        "{text}"
    );
}

#[test]
fn a_feed_of_the_wrong_dtype_is_refused() {
    let mut s = session();
    let d = s.resolve("d").expect("exists");
    let e = s
        .run(&feed(&[("x", &[2, 3]), ("t", &[2])], DType::F32), &[d])
        .expect_err("f32 fed to f64");
    assert!(matches!(e, RunError::FeedDtype { .. }), "{e}");
}

#[test]
fn unknown_fetches_and_feeds_are_refused() {
    let mut s = session();
    assert!(matches!(
        s.resolve("nope"),
        Err(RunError::UnknownFetch { .. })
    ));
    let d = s.resolve("d").expect("exists");
    let e = s
        .run(
            &feed(&[("x", &[2, 3]), ("t", &[2]), ("zz", &[1])], DType::F64),
            &[d],
        )
        .expect_err("zz");
    assert!(matches!(e, RunError::UnknownFeed { .. }), "{e}");
}

#[test]
fn a_corrupt_program_file_is_refused() {
    let g = || {
        graph(&wrap(
            "        (name: \"a\", op: Const(1.0)),\n        (name: \"b\", op: Neg, inputs: [\"a\"]),",
        ))
    };
    // Point the first reference to node 0 at node 1, a reference forward or
    // to nothing, which validation refuses. Optimized, b is folded into the
    // one constant, and the reference is the output's.
    let corrupt = |program: gradc::runtime::Program| {
        let text = program.to_ron().expect("serializes");
        let broken = text.replacen("node: 0", "node: 1", 1);
        assert_ne!(broken, text);
        let e = gradc::runtime::Program::from_ron(&broken).expect_err("invalid");
        assert!(e.to_string().contains("missing or later value"), "{e}");
        e
    };
    let e = corrupt(Compiler::new(g()).compile().expect("compiles").program);
    assert!(
        matches!(
            &e,
            ProgramError::Invalid(InvalidProgram::Output { label, .. }) if label == "b"
        ),
        "{e}"
    );
    // Unoptimized, it is b's input, pointed at b itself.
    let unoptimized = Compiler::new(g()).passes(Pipeline::none());
    let e = corrupt(unoptimized.compile().expect("compiles").program);
    assert!(
        matches!(
            &e,
            ProgramError::Invalid(InvalidProgram::Input { instr: 1, name, .. }) if name == "b"
        ),
        "{e}"
    );
    assert!(matches!(
        gradc::runtime::Program::from_ron("GradcProgram(format: \"other\")"),
        Err(ProgramError::Parse(_))
    ));
}

#[test]
fn assigning_to_a_non_variable_is_refused() {
    let e = compile_error(&wrap("        (name: \"a\", op: Const(1.0)),\n        (name: \"b\", op: Assign, inputs: [\"a\", \"a\"]),"));
    assert_eq!(e.kind, ErrorKind::NotAVariable);
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("b"), Some("Assign"), Some(6))
    );
}

#[test]
fn a_gradient_through_an_assignment_is_refused() {
    let text = "Graph(name: \"bad\", dtype: F64, nodes: [\n (name: \"v\", op: Variable(shape: [], initializer: Zeros)),\n (name: \"x\", op: Const(2.0)),\n (name: \"set\", op: Assign, inputs: [\"v\", \"x\"]),\n], gradients: [(of: \"set\", wrt: [\"x\"])])";
    let e = compile_error(text);
    assert_eq!(e.kind, ErrorKind::NoGradient);
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("set"), Some("Assign"), Some(4))
    );
}

#[test]
fn train_section_errors_name_the_problem() {
    let base = |loss: &str, extra: &str| {
        format!(
            "Graph(name: \"t\", dtype: F64, nodes: [\n (name: \"w\", op: Variable(shape: [2], initializer: Zeros{extra})),\n (name: \"s\", op: Sum(), inputs: [\"w\"]),\n],\ntrain: (loss: \"{loss}\", optimizer: GradientDescent(learning_rate: 0.1)))"
        )
    };
    let e = compile_error(&base("w", ""));
    assert_eq!((&e.kind, e.line), (&ErrorKind::Train, Some(5)));
    assert!(e.message.contains("must be a scalar"), "{e}");
    let e = compile_error(&base("s", ", trainable: false"));
    assert!(e.message.contains("no trainable variable"), "{e}");
    let e = compile_error(&base("loss", ""));
    assert_eq!(e.kind, ErrorKind::UnknownNode);
    let e = compile_error(&base("s", "").replace(
        "learning_rate: 0.1)",
        "learning_rate: 0.1), steps: 10, epochs: 2",
    ));
    assert_eq!((&e.kind, e.line), (&ErrorKind::Train, Some(5)));
    assert!(
        e.message
            .contains("gives both steps (10) and epochs (2): give one"),
        "{e}"
    );
}

/// A name that is not one of an enum's variants is called what the enum is
/// (optimizer, data source, dtype, initializer, schedule) and the error
/// lists the choices.
#[test]
fn unknown_variants_name_the_construct_and_list_the_choices() {
    let cases = [
        (
            "Graph(name: \"t\", nodes: [], train: (loss: \"l\", optimizer: SGD(learning_rate: 0.1)))",
            "unknown optimizer 'SGD': expected one of GradientDescent, Momentum, Adam, AdamW, RMSProp, Adagrad",
        ),
        (
            "Graph(name: \"t\", nodes: [], train: (loss: \"l\", optimizer: Adam(), data: (source: Nptz(\"a\"), features: \"x\", labels: \"y\")))",
            "unknown data source 'Nptz' (did you mean 'Npz'?): expected one of Mnist, Npz",
        ),
        (
            "Graph(name: \"t\", nodes: [(name: \"x\", op: Placeholder(shape: []), dtype: I16)])",
            "unknown dtype 'I16': expected one of F32, F64, I32, I64, Bool",
        ),
        (
            "Graph(name: \"t\", nodes: [(name: \"w\", op: Variable(shape: [2], initializer: Glorot))])",
            "unknown initializer 'Glorot' (did you mean 'GlorotNormal'?): expected one of Zeros, Ones,",
        ),
        (
            "Graph(name: \"t\", nodes: [], train: (loss: \"l\", optimizer: Adam(), learning_rate_schedule: Cosine(decay_steps: 2)))",
            "unknown learning-rate schedule 'Cosine' (did you mean 'CosineDecay'?): expected one of ExponentialDecay, PiecewiseConstant, CosineDecay",
        ),
    ];
    for (text, message) in cases {
        let e = compile_error(text);
        assert_eq!(e.kind, ErrorKind::Parse, "{e}");
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains(message), "{e}");
    }
}

#[test]
fn an_op_without_attributes_written_with_parentheses_says_how_to_write_it() {
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const(1.0)),\n        (name: \"m\", op: Mul(), inputs: [\"a\", \"a\"]),",
    ));
    assert_eq!((&e.kind, e.line), (&ErrorKind::Parse, Some(6)));
    assert!(
        e.message
            .contains("Mul takes no attributes: write `Mul`, without parentheses"),
        "{e}"
    );
}

#[test]
fn reading_an_output_that_a_node_does_not_have_says_what_it_has() {
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const(1.0)),\n        (name: \"g\", op: NoOp),\n        (name: \"m\", op: Mul, inputs: [\"a\", \"g\"]),",
    ));
    assert_eq!(e.kind, ErrorKind::UnknownNode);
    assert_eq!((e.node.as_deref(), e.line), (Some("m"), Some(7)));
    assert!(
        e.message.contains("input 'g' is a NoOp, which has no output to read: to run it first, name it in control_inputs"),
        "{e}"
    );
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const(1.0)),\n        (name: \"m\", op: Mul, inputs: [\"a\", \"a:2\"]),",
    ));
    assert!(
        e.message
            .contains("input 'a:2': node 'a' (Const) has one output, 'a' (or 'a:0')"),
        "{e}"
    );
}

fn bn_graph(shape: &str, attrs: &str) -> String {
    format!(
        "Graph(name: \"bn\", dtype: F32, nodes: [\n (name: \"x\", op: Placeholder(shape: {shape})),\n (name: \"bn\", op: BatchNorm({attrs}), inputs: [\"x\"]),\n])"
    )
}

#[test]
fn batch_norm_layer_errors_name_the_node() {
    for (shape, attrs, needle) in [
        (r#"["batch", "c"]"#, "", "channel dimension"),
        (r#"["batch", 3, 4]"#, "", "rank 2 or 4"),
        (r#"["batch", 3]"#, "decay: 1.5", "decay must be in [0, 1]"),
        (
            r#"["batch", 3]"#,
            "epsilon: -0.1",
            "epsilon must be finite and >= 0",
        ),
        (
            r#"["batch", 3]"#,
            "is_training: \"nope\"",
            "is_training names 'nope'",
        ),
        (
            r#"["batch", 3]"#,
            "sync: true, fused: true",
            "sync: true averages the statistics of the unfused path",
        ),
        (
            r#"[4, 3, 2, 2]"#,
            "data_format: NCHW, is_training: \"x\"",
            "must be a scalar",
        ),
    ] {
        let e = compile_error(&bn_graph(shape, attrs));
        assert_eq!(
            (e.node.as_deref(), e.op, e.line),
            (Some("bn"), Some("BatchNorm"), Some(3)),
            "{e}"
        );
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
    // An axis out of range, in the ops the layer is made of.
    let e = compile_error("Graph(name: \"m\", nodes: [\n (name: \"x\", op: Placeholder(shape: [2, 3])),\n (name: \"m\", op: Moments(axes: [2]), inputs: [\"x\"]),\n])");
    assert!(
        e.message.contains("axis 2 is out of range for rank 2"),
        "{e}"
    );
    let e = compile_error("Graph(name: \"f\", nodes: [\n (name: \"x\", op: Placeholder(shape: [2, 3])),\n (name: \"p\", op: Placeholder(shape: [4])),\n (name: \"f\", op: FusedBatchNorm(), inputs: [\"x\", \"p\", \"p\", \"p\", \"p\"]),\n])");
    assert!(e.message.contains("does not match 3 channels"), "{e}");
    // ActivationBiasGrad: dy and y of different shapes, and scalars.
    let e = compile_error("Graph(name: \"g\", nodes: [\n (name: \"d\", op: Placeholder(shape: [2, 3])),\n (name: \"y\", op: Placeholder(shape: [2, 4])),\n (name: \"g\", op: ActivationBiasGrad(activation: Relu), inputs: [\"d\", \"y\"]),\n])");
    let shown = e.to_string();
    assert!(
        shown.contains("node 'g' (ActivationBiasGrad)") && shown.contains("[2,3] and [2,4] differ"),
        "{e}"
    );
    let e = compile_error("Graph(name: \"g\", nodes: [\n (name: \"d\", op: Placeholder(shape: [])),\n (name: \"g\", op: ActivationBiasGrad(), inputs: [\"d\", \"d\"]),\n])");
    assert!(e.message.contains("rank >= 1"), "{e}");
}

#[test]
fn a_checkpoint_with_moving_statistics_of_the_wrong_shape_is_refused() {
    let path = common::repo_path("graphs/bn_mlp.ron");
    let text = std::fs::read_to_string(&path).expect("read");
    let spec = gradc::compiler::schema::parse(&text).expect("parses");
    let p = Compiler::new(Source::file(&spec, &text, "bn_mlp.ron"))
        .compile_train()
        .expect("compiles");
    let s = Session::new(p.eval).expect("valid");
    let mut tensors = Vec::new();
    for (name, ty) in s.variable_types() {
        let mut dims = ty.shape.concrete().expect("variables are concrete");
        if name == "bn1/moving_mean" {
            dims = vec![50];
        }
        let n = dims.iter().product();
        tensors.push((
            name,
            Tensor::from_f64(DType::F32, &dims, vec![0.0; n]).expect("fits"),
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("c.safetensors");
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    gradc::io::checkpoint::save(&ckpt, &refs, &Default::default()).expect("saves");
    let e = gradc::train::eval(&path, &ckpt, None).expect_err("wrong shape");
    let msg = e.to_string();
    assert!(
        msg.contains("bn1/moving_mean") && msg.contains("[100]") && msg.contains("[50]"),
        "{msg}"
    );
}

#[test]
fn training_ops_check_their_variables_and_shapes() {
    let vars = "        (name: \"w\", op: Variable(shape: [2], initializer: Zeros)),\n        \
                (name: \"m\", op: Variable(shape: [2], initializer: Zeros)),\n        \
                (name: \"lr\", op: Const(0.1)),\n        \
                (name: \"g\", op: Const([1.0, 2.0])),\n";
    // ApplyMomentum's accumulator (its second input) must be a variable too.
    let e = compile_error(&wrap(&format!(
        "{vars}        (name: \"u\", op: ApplyMomentum(), inputs: [\"w\", \"g\", \"lr\", \"g\", \"lr\"]),"
    )));
    assert_eq!(e.kind, ErrorKind::NotAVariable);
    assert!(e.to_string().contains("second input 'g'"), "{e}");
    assert_eq!(
        (e.node.as_deref(), e.op, e.line),
        (Some("u"), Some("ApplyMomentum"), Some(9))
    );
    // The learning rate must be a scalar, the gradient of the variable's shape.
    let e = compile_error(&wrap(&format!(
        "{vars}        (name: \"u\", op: ApplyGradientDescent, inputs: [\"w\", \"g\", \"g\"]),"
    )));
    assert_eq!(e.kind, ErrorKind::Shape);
    assert!(e.to_string().contains("must be a scalar"), "{e}");
    let e = compile_error(&wrap(&format!(
        "{vars}        (name: \"u\", op: ApplyGradientDescent, inputs: [\"w\", \"lr\", \"lr\"]),"
    )));
    assert_eq!(e.kind, ErrorKind::Shape);
    // The variable and its accumulator must be two variables.
    let g = graph(&wrap(&format!(
        "{vars}        (name: \"u\", op: ApplyMomentum(), inputs: [\"w\", \"w\", \"lr\", \"g\", \"lr\"]),"
    )));
    let e = Compiler::new(g)
        .compile()
        .map_err(|e| e.to_string())
        .and_then(|out| {
            gradc::runtime::Session::new(out.program)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .expect_err("refused");
    assert!(e.contains("given the same one twice"), "{e}");
    // A valid update compiles, and runs: w = 0 - 0.1 * [1, 2].
    let g = graph(&wrap(&format!(
        "{vars}        (name: \"u\", op: ApplyMomentum(use_nesterov: true), inputs: [\"w\", \"m\", \"lr\", \"g\", \"lr\"]),"
    )));
    let mut s = gradc::runtime::Session::new(Compiler::new(g).compile().expect("compiles").program)
        .expect("valid");
    s.initialize(0).expect("initializes");
    let out = s
        .run(&Default::default(), &[s.resolve("u").expect("u")])
        .expect("runs");
    // accum = 0 * 0.1 + g = g; Nesterov: w -= 0.1 * (g + 0.1 * accum) = 0.11 g.
    assert_eq!(
        out[0].to_f64_vec(),
        vec![-0.1 * (1.0 + 0.1 * 1.0), -0.1 * (2.0 + 0.1 * 2.0)]
    );
}

#[test]
fn an_unknown_pass_is_its_own_kind() {
    let Err(e) = gradc::compiler::passes::pass("simplfy") else {
        panic!("an unknown pass is refused");
    };
    assert_eq!(e.kind, ErrorKind::UnknownPass, "{e}");
    assert!(e.message.contains("did you mean 'simplify'"), "{e}");
}

#[test]
fn inputs_of_different_dtypes_are_a_dtype_error() {
    let text = r#"Graph(name: "g", nodes: [
        (name: "a", op: Placeholder(shape: [2]), dtype: F32),
        (name: "b", op: Placeholder(shape: [2]), dtype: F64),
        (name: "c", op: Add, inputs: ["a", "b"]),
    ])"#;
    let e = compile_error(text);
    assert_eq!(e.kind, ErrorKind::DType, "{e}");
    assert!(e.message.contains("different dtypes"), "{e}");
}

#[test]
fn convolution_errors_name_the_problem() {
    let conv = |x: &str, k: &str, attrs: &str| {
        let text = format!(
            r#"Graph(name: "g", dtype: F64, nodes: [
        (name: "x", op: Placeholder(shape: {x})),
        (name: "k", op: Placeholder(shape: {k})),
        (name: "y", op: Conv2D({attrs}), inputs: ["x", "k"]),
    ])"#
        );
        compile_error(&text)
    };
    let cases = [
        // A filter larger than the input with VALID padding.
        ("[1, 2, 2, 1]", "[3, 3, 1, 1]", "strides: [1, 1, 1, 1], padding: VALID", "larger than the input"),
        // A stride of 0, and a stride on the batch.
        ("[1, 4, 4, 1]", "[2, 2, 1, 1]", "strides: [1, 0, 1, 1], padding: SAME", "strides must be"),
        ("[1, 4, 4, 1]", "[2, 2, 1, 1]", "strides: [2, 1, 1, 1], padding: SAME", "strides must be"),
        ("[1, 4, 4, 1]", "[2, 2, 1, 1]", "strides: [1, 1, 1, 1], padding: SAME, dilations: [1, 0, 1, 1]", "dilations must be"),
        // Channels that disagree (NCHW reads the channels from axis 1).
        ("[1, 4, 4, 3]", "[2, 2, 2, 1]", "strides: [1, 1, 1, 1], padding: SAME", "channels"),
        ("[1, 4, 4, 3]", "[2, 2, 3, 1]", "strides: [1, 1, 1, 1], padding: SAME, data_format: NCHW", "channels"),
        // A filter of another rank, an input of another rank.
        ("[1, 4, 4, 1]", "[2, 2, 1]", "strides: [1, 1, 1, 1], padding: SAME", "rank 4"),
        ("[4, 4, 1]", "[2, 2, 1, 1]", "strides: [1, 1, 1, 1], padding: SAME", "rank 4"),
        // explicit_paddings without EXPLICIT, and a negative one.
        ("[1, 4, 4, 1]", "[2, 2, 1, 1]", "strides: [1, 1, 1, 1], padding: SAME, explicit_paddings: [0, 0, 1, 1, 1, 1, 0, 0]", "explicit_paddings"),
        ("[1, 4, 4, 1]", "[2, 2, 1, 1]", "strides: [1, 1, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, -1, 1, 1, 1, 0, 0]", "explicit_paddings"),
        // Sizes past what a machine can index are refused, not wrapped.
        ("[1, 4, 4, 1]", "[2, 2, 1, 1]", "strides: [1, 1, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, 9223372036854775807, 9223372036854775807, 0, 0, 0, 0]", "too large"),
    ];
    for (x, k, attrs, says) in cases {
        let e = conv(x, k, attrs);
        assert_eq!(e.kind, ErrorKind::Shape, "{attrs}: {e}");
        assert_eq!(e.node.as_deref(), Some("y"), "{e}");
        assert_eq!(e.op, Some("Conv2D"), "{e}");
        assert!(e.message.contains(says), "{attrs}: {e}");
        assert!(e.message.contains("(inputs x: f64"), "{e}");
    }
}

/// Each case, a node added to a graph of `placeholders`, fails to build
/// with a shape error of its op whose message says `says`.
fn shape_errors(placeholders: &str, cases: &[(&str, &str, &str)]) {
    for &(node, op, says) in cases {
        let e = compile_error(&format!(
            "Graph(name: \"g\", dtype: F64, nodes: [\n{placeholders}\n        {node},\n    ])"
        ));
        assert_eq!(e.kind, ErrorKind::Shape, "{node}: {e}");
        assert_eq!(e.op, Some(op), "{e}");
        assert!(e.message.contains(says), "{node}: {e}");
    }
}

#[test]
fn pooling_and_backprop_errors_name_the_problem() {
    let placeholders = r#"        (name: "x", op: Placeholder(shape: [1, 4, 4, 2])),
        (name: "k", op: Placeholder(shape: [2, 2, 2, 3])),
        (name: "g", op: Placeholder(shape: [1, 3, 3, 3])),"#;
    let cases = [
        // A window on the channels, and padding that pooling does not have.
        (
            r#"(name: "y", op: MaxPool(ksize: [1, 2, 2, 2], strides: [1, 1, 1, 1], padding: SAME), inputs: ["x"])"#,
            "MaxPool",
            "ksize must be",
        ),
        (
            r#"(name: "y", op: AvgPool(ksize: [1, 2, 2, 1], strides: [1, 1, 1, 1], padding: EXPLICIT), inputs: ["x"])"#,
            "AvgPool",
            "VALID or SAME",
        ),
        (
            r#"(name: "y", op: MaxPool(ksize: [1, 5, 5, 1], strides: [1, 1, 1, 1], padding: VALID), inputs: ["x"])"#,
            "MaxPool",
            "larger than the input",
        ),
        // A gradient of a shape the pooling does not make.
        (
            r#"(name: "y", op: MaxPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: VALID), inputs: ["x", "x", "x"])"#,
            "MaxPoolGrad",
            "is not MaxPool's shape",
        ),
        (
            r#"(name: "y", op: AvgPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: VALID), inputs: ["x", "x"])"#,
            "AvgPoolGrad",
            "is not AvgPool's shape",
        ),
        // out_backprop that the convolution does not make (SAME gives 4x4).
        (
            r#"(name: "y", op: Conv2DBackpropInput(strides: [1, 1, 1, 1], padding: SAME), inputs: ["x", "k", "g"])"#,
            "Conv2DBackpropInput",
            "is not what Conv2D makes",
        ),
        (
            r#"(name: "y", op: Conv2DBackpropFilter(strides: [1, 1, 1, 1], padding: SAME), inputs: ["x", "k", "g"])"#,
            "Conv2DBackpropFilter",
            "is not what Conv2D makes",
        ),
        (
            r#"(name: "y", op: DepthwiseConv2dNativeBackpropInput(strides: [1, 1, 1, 1], padding: VALID), inputs: ["x", "k", "g"])"#,
            "DepthwiseConv2dNativeBackpropInput",
            "is not what DepthwiseConv2dNative makes",
        ),
        // A fused convolution's bias of the wrong length (k makes 3 channels).
        (
            r#"(name: "y", op: FusedConv2D(strides: [1, 1, 1, 1], padding: SAME, activation: Relu), inputs: ["x", "k", "k"])"#,
            "FusedConv2D",
            "one value for each of the output's 3 channels",
        ),
        // A depthwise filter whose input channels are not the input's.
        (
            r#"(name: "y", op: DepthwiseConv2dNative(strides: [1, 1, 1, 1], padding: SAME), inputs: ["g", "k"])"#,
            "DepthwiseConv2dNative",
            "channels",
        ),
    ];
    shape_errors(placeholders, &cases);
}

#[test]
fn shaping_errors_name_the_problem() {
    let placeholders = r#"        (name: "x", op: Placeholder(shape: [2, 3])),
        (name: "v", op: Placeholder(shape: ["batch", 3])),
        (name: "w", op: Placeholder(shape: [2, 4])),
        (name: "e", op: Placeholder(shape: [0, 3])),"#;
    let cases = [
        (
            r#"(name: "y", op: Slice(begin: [1, 2], size: [1, 2]), inputs: ["x"])"#,
            "Slice",
            "begin 2 and size 2 on axis 1 leave the dimension 3",
        ),
        (
            r#"(name: "y", op: Slice(begin: [0], size: [1]), inputs: ["x"])"#,
            "Slice",
            "begin has 1 entries, the input has rank 2",
        ),
        (
            r#"(name: "y", op: Slice(begin: [1, 0], size: [-1, 1]), inputs: ["v"])"#,
            "Slice",
            "must begin at 0",
        ),
        (
            r#"(name: "y", op: Pad(paddings: [[0, 0], [3, 0]], mode: REFLECT), inputs: ["x"])"#,
            "Pad",
            "more than the 2 values",
        ),
        (
            r#"(name: "y", op: Pad(paddings: [[0, 0], [-1, 0]]), inputs: ["x"])"#,
            "Pad",
            "(before, after) pair of counts",
        ),
        (
            r#"(name: "y", op: Pad(paddings: [[1, 0], [0, 0]]), inputs: ["v"])"#,
            "Pad",
            "symbolic size batch",
        ),
        (
            r#"(name: "y", op: Concat(axis: 0), inputs: ["x", "w"])"#,
            "Concat",
            "off the axis 0",
        ),
        (
            r#"(name: "y", op: Concat(axis: 2), inputs: ["x", "x"])"#,
            "Concat",
            "axis",
        ),
        (
            r#"(name: "y", op: Reverse(axes: [1, -1]), inputs: ["x"])"#,
            "Reverse",
            "axis 1 is repeated",
        ),
        (
            r#"(name: "y", op: Tile(multiples: [2, -1]), inputs: ["x"])"#,
            "Tile",
            "negative",
        ),
        (
            r#"(name: "y", op: Max(axes: [0]), inputs: ["e"])"#,
            "Max",
            "Max over an empty axis of [0,3]",
        ),
        (
            r#"(name: "y", op: ClipByValue, inputs: ["x", "w", "x"])"#,
            "ClipByValue",
            "clip_value_min [2,4] does not broadcast to t [2,3]",
        ),
    ];
    shape_errors(placeholders, &cases);
}

#[test]
fn an_initial_value_of_another_shape_names_both() {
    let e = compile_error(&wrap(
        "        (name: \"w\", op: Variable(shape: [2, 2], initializer: Value([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))),",
    ));
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    assert_eq!((e.node.as_deref(), e.line), (Some("w"), Some(5)), "{e}");
    assert!(
        e.message
            .contains("the initial value has shape [2, 3], the variable [2,2]"),
        "{e}"
    );
}

#[test]
fn all_reduce_mean_takes_floats_of_one_dtype_and_at_least_one_rank() {
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const(1.0)),\n        (name: \"b\", op: Const(2.0), dtype: F32),\n        (name: \"r\", op: AllReduceMean(ranks: 2), inputs: [\"a\", \"b\"]),",
    ));
    assert_eq!((e.node.as_deref(), e.line), (Some("r"), Some(7)));
    assert!(
        e.message
            .contains("inputs have different dtypes: f64 and f32"),
        "{e}"
    );
    let e = compile_error(&wrap(
        "        (name: \"a\", op: Const(1.0)),\n        (name: \"r\", op: AllReduceMean(ranks: 0), inputs: [\"a\"]),",
    ));
    assert!(e.message.contains("ranks must be at least 1, got 0"), "{e}");
}
