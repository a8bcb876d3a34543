//! Inputs whose size once cost time out of proportion to it: each is handled
//! in a thread that must finish within a loose bound (a hang fails the test
//! instead of stalling it).

use gradc::compiler::{self, ErrorKind};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

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

/// The "did you mean" search once compared a megabyte name with every
/// candidate, the request's own result `d(y)/d(<name>)` among them, in time
/// quadratic in their lengths: minutes for a megabyte.
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
