//! Inputs whose size could cost time out of proportion to it: each is handled
//! in a thread that must finish within a loose bound (a hang fails the test
//! instead of stalling it).

use gradc::compiler::{self, passes::Pipeline, Compiler, ErrorKind, Source};
use gradc::runtime::{DType, Session, Tensor};
use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// `f`'s result, computed in a thread; fails if it takes over `secs` seconds.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: still running after {secs} s"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the thread panicked"),
    }
}

/// A graph of `x` and `y = x * x` with `rest` written after its nodes.
fn small_graph(extra_nodes: &str, rest: &str) -> String {
    format!(
        "Graph(\n    name: \"g\",\n    dtype: F64,\n    nodes: [\n        (name: \"x\", op: Placeholder(shape: [])),\n        (name: \"y\", op: Mul, inputs: [\"x\", \"x\"]),\n{extra_nodes}    ],\n{rest})"
    )
}

const MEGABYTE: usize = 1 << 20;

/// An unbounded "did you mean" search would compare a megabyte name with
/// every candidate, the request's own result `d(y)/d(<name>)` among them, in
/// time quadratic in their lengths: minutes for a megabyte.
#[test]
fn a_megabyte_name_in_a_gradient_request_is_a_prompt_error() {
    let name = "a".repeat(MEGABYTE);
    let text = small_graph(
        "",
        &format!("    gradients: [(of: \"y\", wrt: [\"{name}\"])],\n"),
    );
    let e = within(10, "a 1 MB wrt name", move || {
        compiler::graph_from_str(&text, "test.ron").err()
    })
    .expect("the graph does not build");
    assert_eq!(e.kind, ErrorKind::UnknownNode);
    assert_eq!(e.line, Some(8));
    assert!(
        e.message.contains("does not exist") && !e.message.contains("did you mean"),
        "{}",
        &e.message[..200.min(e.message.len())]
    );
}

/// A megabyte input name next to a node of almost the same name: a
/// suggestion would compare the two whole.
#[test]
fn a_megabyte_input_name_is_a_prompt_error() {
    let near = format!("{}b", "a".repeat(MEGABYTE - 1));
    let name = "a".repeat(MEGABYTE);
    let text = small_graph(
        &format!(
            "        (name: \"{near}\", op: Neg, inputs: [\"x\"]),\n        (name: \"z\", op: Neg, inputs: [\"{name}\"]),\n"
        ),
        "",
    );
    let e = within(10, "a 1 MB input name", move || {
        compiler::graph_from_str(&text, "test.ron").err()
    })
    .expect("the graph does not build");
    assert_eq!(e.kind, ErrorKind::UnknownNode);
    assert_eq!((e.node.as_deref(), e.line), (Some("z"), Some(8)));
}

/// A chain of `n` nodes `a{i} = op(a{i-1}, s)` from `a0 = op(x, s)`, each
/// also reading `s` (`x` itself, or written by `shared`, a node named `s`),
/// with `extra` nodes before it; its end is the output, differentiated with
/// respect to `x`.
fn chain(n: usize, op: &str, shared: Option<&str>, extra: &str) -> String {
    let mut text = String::from(
        "Graph(\n    name: \"chain\",\n    dtype: F64,\n    nodes: [\n        (name: \"x\", op: Placeholder(shape: [])),\n",
    );
    text.push_str(extra);
    let s = match shared {
        Some(node) => {
            text.push_str(&format!("        {node},\n"));
            "s"
        }
        None => "x",
    };
    text.push_str(&format!(
        "        (name: \"a0\", op: {op}, inputs: [\"x\", \"{s}\"]),\n"
    ));
    for i in 1..n {
        text.push_str(&format!(
            "        (name: \"a{i}\", op: {op}, inputs: [\"a{}\", \"{s}\"]),\n",
            i - 1
        ));
    }
    let last = n - 1;
    text.push_str(&format!(
        "    ],\n    outputs: [\"a{last}\"],\n    gradients: [(of: \"a{last}\", wrt: [\"x\"])],\n)"
    ));
    text
}

/// Compiles `text` as `gradc run` does and runs it at x = `x`, fetching the
/// output `a{n-1}` and its gradient if requested; with the time it all took.
fn compile_and_run(text: String, n: usize, x: f64) -> (Vec<f64>, Duration) {
    let start = Instant::now();
    let spec = compiler::schema::parse(&text).expect("parses");
    let program = Compiler::new(Source::file(&spec, &text, "chain.ron"))
        .compile()
        .expect("compiles")
        .program;
    let mut s = Session::new(program).expect("valid program");
    let last = format!("a{}", n - 1);
    let mut fetches = vec![s.resolve(&last).expect("the output")];
    if let Ok(grad) = s.resolve(&format!("d({last})/d(x)")) {
        fetches.push(grad);
    }
    let feeds = HashMap::from([("x".to_string(), Tensor::scalar(DType::F64, x))]);
    let values = s
        .run(&feeds, &fetches)
        .expect("runs")
        .iter()
        .flat_map(Tensor::to_f64_vec)
        .collect();
    (values, start.elapsed())
}

/// Elementwise fusion turns the chain into Fused groups and DCE removes the
/// rest: were removing each node to walk the whole list of `x`'s edges, and
/// rewriting each group's root to remove and add its edge from `x` the same
/// way, compiling would take time quadratic in the chain (200k nodes take
/// about 2 s in a test build).
#[test]
fn a_long_chain_of_adds_compiles_in_linear_time() {
    let n = 200_000;
    let (values, took) = within(30, "a chain of 200k Adds", move || {
        compile_and_run(chain(n, "Add", None, ""), n, 1.0)
    });
    let want = (n + 1) as f64;
    assert_eq!(values, [want, want]);
    eprintln!("a chain of {n} Adds compiled and ran in {took:?}");
}

/// The chain's shared operand a node of its own (`s = -x`): elementwise
/// fusion asked, for each member of each group, for every use of `s`,
/// collected and sorted (100k nodes: 65 s in a release build).
#[test]
fn a_long_chain_of_adds_of_a_computed_value_compiles_in_linear_time() {
    let n = 100_000;
    let shared = "(name: \"s\", op: Neg, inputs: [\"x\"])";
    let (values, took) = within(30, "a chain of 100k Adds of -x", move || {
        compile_and_run(chain(n, "Add", Some(shared), ""), n, 1.0)
    });
    // a = x - n x, d/dx = 1 - n.
    let want = 1.0 - n as f64;
    assert_eq!(values, [want, want]);
    eprintln!("a chain of {n} Adds of -x compiled and ran in {took:?}");
}

/// 50k equal nodes `b{i} = x * x`, summed by a chain `a{i} = a{i-1} +
/// b{i}` and merged by common-subexpression elimination: removing each
/// merged node walked `x`'s list of edges (50k: 32 s in a release build).
#[test]
fn merging_many_equal_nodes_takes_linear_time() {
    let n = 50_000;
    let mut text = String::from(
        "Graph(\n    name: \"equal\",\n    dtype: F64,\n    nodes: [\n        (name: \"x\", op: Placeholder(shape: [])),\n        (name: \"a0\", op: Add, inputs: [\"x\", \"x\"]),\n",
    );
    for i in 1..n {
        text.push_str(&format!(
            "        (name: \"b{i}\", op: Mul, inputs: [\"x\", \"x\"]),\n        (name: \"a{i}\", op: Add, inputs: [\"a{}\", \"b{i}\"]),\n",
            i - 1
        ));
    }
    let last = n - 1;
    text.push_str(&format!("    ],\n    outputs: [\"a{last}\"],\n)"));
    let (values, took) = within(30, "50k equal nodes", move || compile_and_run(text, n, 2.0));
    // a = 2x + (n - 1) x^2 at x = 2.
    let (x, m) = (2.0, (n - 1) as f64);
    assert_eq!(values, [2.0 * x + m * x * x]);
    eprintln!("{n} equal nodes merged, compiled and ran in {took:?}");
}

/// An AddN of 300k values, each `-x` (kept apart: no optimizer pass runs):
/// its plan searched the inputs before each for a repeat (what the gradient
/// of a long chain of Muls, one part per node, meets).
#[test]
fn an_addn_of_many_inputs_is_planned_in_linear_time() {
    let n = 300_000;
    let mut text = String::from(
        "Graph(\n    name: \"sum\",\n    dtype: F64,\n    nodes: [\n        (name: \"x\", op: Placeholder(shape: [])),\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "        (name: \"n{i}\", op: Neg, inputs: [\"x\"]),\n"
        ));
    }
    let inputs: Vec<String> = (0..n).map(|i| format!("\"n{i}\"")).collect();
    text.push_str(&format!(
        "        (name: \"sum\", op: AddN, inputs: [{}]),\n    ],\n    outputs: [\"sum\"],\n)",
        inputs.join(", ")
    ));
    let (value, took) = within(30, "an AddN of 300k inputs", move || {
        let start = Instant::now();
        let g = compiler::graph_from_str(&text, "sum.ron").expect("builds");
        let program = Compiler::new(g)
            .passes(Pipeline::none())
            .compile()
            .expect("compiles")
            .program;
        let mut s = Session::new(program).expect("valid program");
        let sum = s.resolve("sum").expect("the output");
        let feeds = HashMap::from([("x".to_string(), Tensor::scalar(DType::F64, 1.0))]);
        let value = s.run(&feeds, &[sum]).expect("runs")[0].to_f64_vec();
        (value, start.elapsed())
    });
    assert_eq!(value, [-(n as f64)]);
    eprintln!("an AddN of {n} inputs compiled and ran in {took:?}");
}
