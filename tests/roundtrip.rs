//! RON round trip: parse -> print -> parse gives the same graph.

mod common;

use gradc::compiler::schema;

#[test]
fn every_example_round_trips() {
    let dir = common::repo_path("graphs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("graphs/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "ron") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let spec = schema::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let printed = schema::to_ron(&spec).expect("prints");
            let again = schema::parse(&printed)
                .unwrap_or_else(|e| panic!("reparse {}: {e}\n{printed}", path.display()));
            assert_eq!(spec, again, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 5, "found {n} examples");
}

#[test]
fn every_op_round_trips() {
    let text = r#"Graph(name: "all", dtype: F32, nodes: [
        (name: "p", op: Placeholder(shape: ["batch", 3])),
        (name: "c", op: Const([[1.0, 2.0, 3.0]]), dtype: F32),
        (name: "s", op: Sum(axes: [-1], keep_dims: true), inputs: ["p"]),
        (name: "m", op: Mean(), inputs: ["p"]),
        (name: "mm", op: MatMul(transpose_b: true), inputs: ["p", "c"]),
        (name: "pw", op: Pow(exponent: 2.5), inputs: ["p"]),
        (name: "r", op: Reshape(shape: [-1]), inputs: ["p"]),
        (name: "t", op: Transpose(perm: [1, 0]), inputs: ["p"]),
        (name: "a", op: ArgMax(axis: 1), inputs: ["p"]),
    ], outputs: ["mm", "s"], gradients: [(of: "m", wrt: ["p"], grad_ys: "m")])"#;
    let spec = schema::parse(text).expect("parses");
    let again = schema::parse(&schema::to_ron(&spec).expect("prints")).expect("reparses");
    assert_eq!(spec, again);
}
