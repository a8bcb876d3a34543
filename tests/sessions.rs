//! Sessions reuse plans and buffers across runs: results match fresh
//! sessions whatever the order of feed shapes, feeding by `FeedId` matches
//! feeding by name, and in-place assignment keeps the state semantics
//! (reads see the start of the run, assignments count in program order).

mod common;

use common::graph;
use gradc::compiler::Compiler;
use gradc::runtime::{DType, RunError, Session, Tensor};
use std::collections::HashMap;

fn session(text: &str) -> Session {
    Session::new(
        Compiler::new(graph(text))
            .compile()
            .expect("compiles")
            .program,
    )
    .expect("valid")
}

fn t64(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F64, shape, data.to_vec()).expect("fits")
}

const BATCHED: &str = r#"Graph(name: "b", dtype: F64, nodes: [
    (name: "x", op: Placeholder(shape: ["batch", 3])),
    (name: "w", op: Const([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]])),
    (name: "xw", op: MatMul(), inputs: ["x", "w"]),
    (name: "sm", op: Softmax, inputs: ["xw"]),
    (name: "s", op: Sum(axes: [0]), inputs: ["sm"]),
    (name: "m", op: Mean(), inputs: ["xw"]),
    (name: "r", op: Relu, inputs: ["xw"]),
])"#;

fn batch(rows: usize) -> Tensor {
    let data: Vec<f64> = (0..rows * 3)
        .map(|i| ((i * 7) % 11) as f64 / 3.0 - 1.5)
        .collect();
    t64(&[rows, 3], &data)
}

#[test]
fn reused_plans_and_buffers_give_what_fresh_sessions_give() {
    let mut s = session(BATCHED);
    let x = s.resolve_feed("x").expect("placeholder");
    let fetches: Vec<_> = ["s", "m", "r"]
        .iter()
        .map(|n| s.resolve(n).expect("node"))
        .collect();
    let mut out = Vec::new();
    // More distinct batch sizes than the session keeps plans for, then again.
    let sizes = [2, 5, 2, 1, 5, 3, 4, 6, 7, 8, 9, 10, 2, 5, 1];
    for rows in sizes {
        let value = batch(rows);
        s.run_with_targets_into(&[(x, &value)], &fetches, &[], &mut out)
            .expect("runs");
        let mut fresh = session(BATCHED);
        let want = fresh
            .run(&HashMap::from([("x".to_string(), value)]), &fetches)
            .expect("runs");
        assert_eq!(out, want, "batch of {rows}");
    }
}

#[test]
fn the_fetch_buffers_take_the_fetched_types() {
    let mut s = session(BATCHED);
    let x = s.resolve_feed("x").expect("placeholder");
    let m = s.resolve("m").expect("node");
    let value = batch(4);
    // Wrong dtype, wrong shape, one too many: all replaced or dropped.
    let mut out = vec![Tensor::scalar(DType::F32, 1.0), t64(&[2], &[0.0, 0.0])];
    s.run_with_targets_into(&[(x, &value)], &[m], &[], &mut out)
        .expect("runs");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].tensor_type().to_string(), "f64[]");
}

#[test]
fn feeds_by_id_are_checked_like_feeds_by_name() {
    let mut s = session(BATCHED);
    let x = s.resolve_feed("x").expect("placeholder");
    let m = s.resolve("m").expect("node");
    let value = batch(2);
    let e = s
        .run_with_targets_into(&[(x, &value), (x, &value)], &[m], &[], &mut Vec::new())
        .expect_err("fed twice");
    assert_eq!(e, RunError::DuplicateFeed { name: "x".into() });
    let e = s
        .run_with_targets_into(&[], &[m], &[], &mut Vec::new())
        .expect_err("missing");
    assert!(matches!(e, RunError::MissingFeed { name, .. } if name == "x"));
    let wrong = t64(&[2, 4], &[0.0; 8]);
    let e = s
        .run_with_targets_into(&[(x, &wrong)], &[m], &[], &mut Vec::new())
        .expect_err("shape");
    assert!(matches!(e, RunError::FeedShape { name, .. } if name == "x"));
    // An id from a larger program's session is refused, not a panic.
    let mut big = String::from(r#"Graph(name: "big", dtype: F64, nodes: ["#);
    for i in 0..20 {
        big.push_str(&format!(r#"(name: "p{i}", op: Placeholder(shape: [1])),"#));
    }
    big.push_str("])");
    let far = session(&big).resolve_feed("p19").expect("placeholder");
    let e = s
        .run_with_targets_into(&[(far, &value)], &[m], &[], &mut Vec::new())
        .expect_err("foreign id");
    assert!(matches!(e, RunError::UnknownFeed { .. }), "{e}");
    // After errors the session still runs, and a fed NaN is named under check_numerics.
    s.run_with_targets_into(&[(x, &value)], &[m], &[], &mut Vec::new())
        .expect("runs");
    s.check_numerics = true;
    let nan = t64(&[1, 3], &[0.0, f64::NAN, 1.0]);
    let e = s
        .run_with_targets_into(&[(x, &nan)], &[m], &[], &mut Vec::new())
        .expect_err("NaN fed");
    assert!(
        matches!(&e, RunError::NonFinite { node, .. } if node == "x"),
        "{e}"
    );
}

const STATE: &str = r#"Graph(name: "state", dtype: F64, nodes: [
    (name: "w", op: Variable(shape: [2], initializer: Constant(1.0))),
    (name: "one", op: Const([1.0, 1.0])),
    (name: "inc", op: AssignAdd, inputs: ["w", "one"]),
    (name: "inc2", op: AssignAdd, inputs: ["w", "one"]),
    (name: "after", op: Add, inputs: ["w", "inc"]),
    (name: "v", op: Variable(shape: [], initializer: Constant(2.0))),
    (name: "sq", op: Square, inputs: ["v"]),
    (name: "set", op: Assign, inputs: ["v", "sq"]),
    (name: "u", op: Variable(shape: [], initializer: Constant(5.0))),
    (name: "keep", op: Assign, inputs: ["u", "u"]),
])"#;

fn values(out: &[Tensor]) -> Vec<Vec<f64>> {
    out.iter().map(Tensor::to_f64_vec).collect()
}

#[test]
fn in_place_assignments_keep_start_of_run_reads() {
    let mut s = session(STATE);
    s.initialize(0).expect("init");
    let fetches: Vec<_> = ["w", "inc", "inc2", "after", "set", "v", "keep", "u"]
        .iter()
        .map(|n| s.resolve(n).expect("node"))
        .collect();
    let mut out = Vec::new();
    s.run_with_targets_into(&[], &fetches, &[], &mut out)
        .expect("runs");
    // w is read at the start of the run (1) though both increments ran before
    // `after`; each increment outputs the value it made; v is squared; u = u.
    assert_eq!(
        values(&out),
        [
            vec![1.0, 1.0],
            vec![2.0, 2.0],
            vec![3.0, 3.0],
            vec![3.0, 3.0],
            vec![4.0],
            vec![2.0],
            vec![5.0],
            vec![5.0]
        ]
    );
    s.run_with_targets_into(&[], &fetches, &[], &mut out)
        .expect("runs");
    assert_eq!(
        values(&out),
        [
            vec![3.0, 3.0],
            vec![4.0, 4.0],
            vec![5.0, 5.0],
            vec![7.0, 7.0],
            vec![16.0],
            vec![4.0],
            vec![5.0],
            vec![5.0]
        ]
    );
}

#[test]
fn a_fed_variable_is_read_from_the_feed_and_assigned_in_the_store() {
    let mut s = session(STATE);
    s.initialize(0).expect("init");
    let after = s.resolve("after").expect("node");
    let w = s.resolve("w").expect("node");
    let fed = t64(&[2], &[10.0, 20.0]);
    let id = s.resolve_feed("w").expect("a variable can be fed");
    let mut out = Vec::new();
    s.run_with_targets_into(&[(id, &fed)], &[after], &[], &mut out)
        .expect("runs");
    // `after` = fed w + (stored w + 1); only `inc` is needed, so w is now 2.
    assert_eq!(values(&out), [vec![12.0, 22.0]]);
    s.run_with_targets_into(&[], &[w], &[], &mut out)
        .expect("runs");
    assert_eq!(values(&out), [vec![2.0, 2.0]]);
    assert!(matches!(
        s.resolve_feed("inc"),
        Err(RunError::UnknownFeed { .. })
    ));
}

#[test]
fn profiling_times_each_step_that_runs_and_changes_no_result() {
    let mut s = session(BATCHED);
    let x = s.resolve_feed("x").expect("placeholder");
    let fetches: Vec<_> = ["s", "r"]
        .iter()
        .map(|n| s.resolve(n).expect("node"))
        .collect();
    let value = batch(4);
    let mut plain = Vec::new();
    s.run_with_targets_into(&[(x, &value)], &fetches, &[], &mut plain)
        .expect("runs");
    assert!(
        s.profile().is_empty(),
        "nothing is timed before profiling is on"
    );
    s.set_profiling(true);
    let mut out = Vec::new();
    for _ in 0..3 {
        s.run_with_targets_into(&[(x, &value)], &fetches, &[], &mut out)
            .expect("runs");
    }
    assert_eq!(out, plain, "profiling changes no result");
    let profile = s.profile();
    let names: Vec<&str> = profile.iter().map(|p| p.node.as_str()).collect();
    // The plan runs x (a feed), w, xw, sm, s and r; not m, which nothing fetches.
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["r", "s", "sm", "w", "x", "xw"], "{profile:?}");
    assert!(profile.iter().all(|p| p.calls == 3), "{profile:?}");
    assert!(
        profile.windows(2).all(|w| w[0].total >= w[1].total),
        "slowest first: {profile:?}"
    );
    assert_eq!(
        profile.iter().find(|p| p.node == "xw").map(|p| p.op),
        Some("MatMul")
    );
    s.set_profiling(false);
    assert!(s.profile().is_empty(), "off again");
}

/// A variable initialized from a `.npy` file next to the graph file: its
/// values converted to the variable's dtype; a file of another shape, or
/// none, is an error naming the variable and the file.
#[test]
fn npy_initializers_read_the_file_next_to_the_graph() {
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let values = ndarray::arr2(&[[1.5f64, -2.0, 3.25], [0.1, 5.0, -6.0]]).into_dyn();
    let mut bytes = Vec::new();
    values.write_npy(&mut bytes).expect("writes");
    std::fs::write(dir.path().join("w.npy"), &bytes).expect("writes");
    let graph_file = |shape: &str, dtype: &str, file: &str| {
        let path = dir.path().join("g.ron");
        let text = format!(
            r#"Graph(name: "npy", dtype: {dtype}, nodes: [(name: "w", op: Variable(shape: {shape}, initializer: Npy("{file}")))])"#
        );
        std::fs::write(&path, text).expect("writes");
        path
    };
    let start = |path: &std::path::Path| {
        let g = gradc::compiler::graph_from_file(path).expect("builds");
        let mut s =
            Session::new(Compiler::new(g).compile().expect("compiles").program).expect("valid");
        s.initialize(0).map(|()| s)
    };
    let mut s = start(&graph_file("[2, 3]", "F32", "w.npy")).expect("initializes");
    let w = s.resolve("w").expect("w");
    let got = s.run(&HashMap::new(), &[w]).expect("runs");
    let want: Vec<f64> = values.iter().map(|&v| f64::from(v as f32)).collect();
    assert_eq!((got[0].dtype(), got[0].to_f64_vec()), (DType::F32, want));

    let e = start(&graph_file("[3, 2]", "F64", "w.npy"))
        .err()
        .expect("wrong shape");
    let text = e.to_string();
    assert!(
        text.contains("'w'") && text.contains("w.npy: holds shape [2, 3], the variable [3, 2]"),
        "{text}"
    );
    let e = start(&graph_file("[2, 3]", "F64", "missing.npy"))
        .err()
        .expect("no file");
    assert!(e.to_string().contains("missing.npy"), "{e}");
    // A file cut short after its header is refused before its data is read.
    std::fs::write(dir.path().join("short.npy"), &bytes[..bytes.len() - 8]).expect("writes");
    let e = start(&graph_file("[2, 3]", "F64", "short.npy"))
        .err()
        .expect("truncated");
    assert!(
        e.to_string()
            .contains("40 bytes of data, 6 elements of f64 need 48"),
        "{e}"
    );
}
