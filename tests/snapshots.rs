//! One snapshot of the canonical gradient-graph text per file in graphs/.
//! A new example gets a snapshot the first time the tests run (and fails CI
//! until that snapshot is committed).

use gradc::compiler;

#[test]
fn gradient_graphs() {
    insta::glob!("../graphs", "*.ron", |path| {
        let g = compiler::graph_from_file(path).unwrap_or_else(|e| panic!("{e}"));
        let text = compiler::print::graph_text(&g).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn printing_is_deterministic() {
    insta::glob!("../graphs", "*.ron", |path| {
        let a = compiler::print::graph_text(&compiler::graph_from_file(path).expect("builds"))
            .expect("prints");
        let b = compiler::print::graph_text(&compiler::graph_from_file(path).expect("builds"))
            .expect("prints");
        assert_eq!(a, b);
    });
}
