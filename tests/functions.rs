//! Functions and custom gradients: the examples' numbers, verification of
//! custom gradients against their bodies, and every error kind.

mod common;

use common::{assert_close, compile_error, gradc, graph, repo_path, run, stdout};
use gradc::compiler::ErrorKind;
use gradc::gradcheck::check_functions;
use std::collections::HashMap;

fn example(name: &str) -> gradc::compiler::Graph {
    gradc::compiler::graph_from_file(&repo_path(&format!("graphs/{name}.ron")))
        .expect("example builds")
}

#[test]
fn multiply_add_gradients_are_x_w_and_one() {
    let g = example("multiply_add");
    let v = run(
        &g,
        &HashMap::new(),
        &["z", "d(z)/d(w)", "d(z)/d(x)", "d(z)/d(b)"],
    );
    assert_close(
        &v.concat(),
        &[0.0806 + 0.5, 1.0, 0.0806, 1.0],
        1e-15,
        "MultiplyAdd",
    );
    // The call is a CustomGradient node: autodiff never enters the body.
    let text = gradc::compiler::print::graph_text(&g).expect("prints");
    assert!(
        text.contains("z = CustomGradient{function: \"MultiplyAdd\", inputs: 3}(w, x, b, z/out)"),
        "{text}"
    );
    assert!(
        !text.contains("gradients/z/wx"),
        "the body is not differentiated:\n{text}"
    );
}

#[test]
fn custom_sigmoid_equals_builtin_and_composite_to_second_order() {
    let g = example("custom_sigmoid");
    for (what, a, b, c) in [
        ("value", "custom", "builtin", "composite"),
        (
            "first",
            "d(custom)/d(x)",
            "d(builtin)/d(x)",
            "d(composite)/d(x)",
        ),
        (
            "second",
            "d(d(custom)/d(x))/d(x)",
            "d(d(builtin)/d(x))/d(x)",
            "d(d(composite)/d(x))/d(x)",
        ),
    ] {
        let v = run(&g, &HashMap::new(), &[a, b, c]);
        assert_close(&v[0], &v[1], 1e-14, what);
        assert_close(&v[0], &v[2], 1e-14, what);
    }
}

#[test]
fn softplus_custom_gradient_is_stable_where_the_naive_one_overflows() {
    let g = example("softplus");
    let v = run(
        &g,
        &HashMap::new(),
        &["stable", "naive", "d(stable)/d(x)", "d(naive)/d(x)"],
    );
    // x = [-1000, -1, 0, 1, 1000]
    assert_eq!(v[0][4], 1000.0);
    assert!(v[1][4].is_infinite(), "naive value at 1000: {}", v[1][4]);
    assert_eq!(v[2][4], 1.0, "custom gradient at 1000");
    assert!(v[3][4].is_nan(), "naive gradient at 1000: {}", v[3][4]);
    let sigmoid: Vec<f64> = [-1000.0f64, -1.0, 0.0, 1.0, 1000.0]
        .iter()
        .map(|x| 1.0 / (1.0 + (-x).exp()))
        .collect();
    assert_close(&v[2], &sigmoid, 1e-15, "d softplus = sigmoid");
}

#[test]
fn every_custom_gradient_of_the_examples_matches_its_body() {
    for name in ["multiply_add", "custom_sigmoid", "softplus"] {
        let checks = check_functions(&example(name), &HashMap::new(), None).expect("runs");
        assert!(!checks.is_empty(), "{name} has a custom gradient");
        for fc in checks {
            assert!(fc.checks.iter().all(|c| c.passed()), "{name}: {fc:?}");
        }
    }
}

fn with_function(gradient: &str, extra: &str) -> String {
    format!(
        r#"Graph(name: "f", dtype: F64,
        functions: [(
            name: "Square",
            inputs: ["x"],
            outputs: ["y"],
            nodes: [(name: "y", op: Mul, inputs: ["x", "x"])],
            gradient: (nodes: [{gradient}], returns: ["g"]),
            {extra}
        )],
        nodes: [
            (name: "a", op: Const([1.0, -2.0, 3.0])),
            (name: "sq", op: Call("Square"), inputs: ["a"]),
        ],
        gradients: [(of: "sq", wrt: ["a"])])"#
    )
}

#[test]
fn a_wrong_custom_gradient_is_caught_and_named() {
    // d(x^2) is 2x dy; this one forgets the 2.
    let g = graph(&with_function(
        r#"(name: "g", op: Mul, inputs: ["x", "d(y)"])"#,
        "",
    ));
    let checks = check_functions(&g, &HashMap::new(), None).expect("runs");
    assert_eq!(checks.len(), 1);
    assert_eq!(
        (checks[0].function.as_str(), checks[0].call.as_str()),
        ("Square", "sq")
    );
    let c = &checks[0].checks[0];
    assert!(!c.passed() && c.max_rel > 0.4, "{c:?}");
    // The CLI reports it and exits 1.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("wrong.ron");
    std::fs::write(
        &file,
        with_function(r#"(name: "g", op: Mul, inputs: ["x", "d(y)"])"#, ""),
    )
    .expect("write");
    let o = gradc(&["gradcheck", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("custom gradient of function 'Square' (call 'sq')") && out.contains("FAILED"),
        "{out}"
    );
}

#[test]
fn once_differentiable_refuses_second_order_by_name() {
    let right = r#"(name: "two", op: Const(2.0)), (name: "tx", op: Mul, inputs: ["two", "x"]), (name: "g", op: Mul, inputs: ["tx", "d(y)"])"#;
    // First order works.
    let g = graph(&with_function(right, "once_differentiable: true,"));
    assert_close(
        &run(&g, &HashMap::new(), &["d(sq)/d(a)"])[0],
        &[2.0, -4.0, 6.0],
        1e-15,
        "first order",
    );
    // Second order through it is an error naming the function; without the flag it works.
    let second = |extra: &str| {
        with_function(right, extra).replace(
            r#"gradients: [(of: "sq", wrt: ["a"])]"#,
            r#"gradients: [(of: "sq", wrt: ["a"]), (of: "d(sq)/d(a)", wrt: ["a"])]"#,
        )
    };
    let e = compile_error(&second("once_differentiable: true,"));
    assert_eq!(e.kind, ErrorKind::Function);
    assert!(
        e.message
            .contains("function 'Square' is once_differentiable"),
        "{e}"
    );
    assert_eq!(e.line, Some(3), "{e}");
    let g = graph(&second(""));
    assert_close(
        &run(&g, &HashMap::new(), &["d(d(sq)/d(a))/d(a)"])[0],
        &[2.0, 2.0, 2.0],
        1e-15,
        "second order",
    );
}

#[test]
fn function_errors_name_the_function_and_line() {
    // Recursion between functions.
    let e = compile_error(
        r#"Graph(name: "r", functions: [
            (name: "A", inputs: ["x"], outputs: ["y"], nodes: [(name: "y", op: Call("B"), inputs: ["x"])]),
            (name: "B", inputs: ["x"], outputs: ["y"], nodes: [(name: "y", op: Call("A"), inputs: ["x"])]),
        ], nodes: [(name: "c", op: Const(1.0)), (name: "z", op: Call("A"), inputs: ["c"])])"#,
    );
    assert_eq!(
        (e.kind.clone(), e.line),
        (ErrorKind::Function, Some(2)),
        "{e}"
    );
    assert!(
        e.message.contains("function 'A' calls itself: A -> B -> A"),
        "{e}"
    );
    // A call with the wrong number of inputs.
    let e = compile_error(
        &with_function(r#"(name: "g", op: Identity, inputs: ["d(y)"])"#, "").replace(
            r#"op: Call("Square"), inputs: ["a"]"#,
            r#"op: Call("Square"), inputs: ["a", "a"]"#,
        ),
    );
    assert_eq!(
        (e.kind.clone(), e.node.as_deref()),
        (ErrorKind::Function, Some("sq")),
        "{e}"
    );
    assert!(
        e.message
            .contains("function 'Square' takes 1 inputs (x), the call passes 2"),
        "{e}"
    );
    assert_eq!(e.line, Some(12), "{e}");
    // Shapes checked per call: the body's error names the function and the call.
    let e = compile_error(
        r#"Graph(name: "s", functions: [
            (name: "F", inputs: ["x", "w"], outputs: ["y"], nodes: [(name: "y", op: MatMul(), inputs: ["x", "w"])]),
        ], nodes: [
            (name: "a", op: Const([[1.0, 2.0]])), (name: "b", op: Const([[1.0, 2.0]])),
            (name: "c", op: Call("F"), inputs: ["a", "b"]),
        ])"#,
    );
    assert_eq!(e.kind, ErrorKind::Shape, "{e}");
    assert!(
        e.message.contains("in function 'F' (called by 'c')")
            && e.message.contains("[1,2] x [1,2]"),
        "{e}"
    );
    assert_eq!(e.node.as_deref(), Some("c/y"), "{e}");
    // A custom gradient with the wrong number of gradients.
    let e = compile_error(
        &with_function(r#"(name: "g", op: Identity, inputs: ["d(y)"])"#, "")
            .replace(r#"returns: ["g"]"#, r#"returns: ["g", "g"]"#),
    );
    assert_eq!(e.kind, ErrorKind::Function);
    assert!(
        e.message.contains("returns 2 gradients for 1 inputs"),
        "{e}"
    );
    assert_eq!(e.line, Some(3), "{e}");
    // A custom gradient of the wrong shape.
    let e = compile_error(&with_function(
        r#"(name: "g", op: Sum(), inputs: ["d(y)"])"#,
        "",
    ));
    assert_eq!(e.kind, ErrorKind::Function);
    assert!(
        e.message
            .contains("returns f64[] for input 'x', which is f64[3]"),
        "{e}"
    );
    // Calling a function that does not exist.
    let e = compile_error(
        &with_function(r#"(name: "g", op: Identity, inputs: ["d(y)"])"#, "")
            .replace(r#"Call("Square")"#, r#"Call("Sqare")"#),
    );
    assert!(
        e.message.contains("'Sqare', which is not a function")
            && e.message.contains("did you mean 'Square'"),
        "{e}"
    );
}
