//! Semantics of the backward driver: intermediates, unconnected inputs,
//! grad_ys, fan-out, and gradients used as inputs (Hessian-vector products).

mod common;

use common::{assert_close, assert_gradcheck, graph, run};
use std::collections::HashMap;

#[test]
fn gradient_of_an_intermediate() {
    // PyTorch's autograd.grad(z, y): z = y^2, y = 3x.
    let g = graph(
        r#"Graph(name: "i", dtype: F64, nodes: [
            (name: "x", op: Const([1.0, 2.0])),
            (name: "three", op: Const(3.0)),
            (name: "y", op: Mul, inputs: ["x", "three"]),
            (name: "z", op: Square, inputs: ["y"]),
        ], gradients: [(of: "z", wrt: ["y", "x"])])"#,
    );
    let v = run(&g, &HashMap::new(), &["d(z)/d(y)", "d(z)/d(x)"]);
    assert_close(&v[0], &[6.0, 12.0], 1e-15, "dz/dy = 2y");
    assert_close(&v[1], &[18.0, 36.0], 1e-15, "dz/dx = 18x");
    assert_gradcheck("intermediate", &g, &HashMap::new(), None);
}

#[test]
fn unconnected_inputs_get_zeros_and_stop_gradient_blocks() {
    let g = graph(
        r#"Graph(name: "u", dtype: F64, nodes: [
            (name: "a", op: Const([1.0, 2.0])),
            (name: "b", op: Const([5.0, 7.0])),
            (name: "sb", op: StopGradient, inputs: ["b"]),
            (name: "y", op: Mul, inputs: ["a", "sb"]),
            (name: "lonely", op: Const([[1.0]])),
        ], gradients: [(of: "y", wrt: ["a", "b", "lonely"])])"#,
    );
    let v = run(
        &g,
        &HashMap::new(),
        &["d(y)/d(a)", "d(y)/d(b)", "d(y)/d(lonely)"],
    );
    assert_eq!(v, vec![vec![5.0, 7.0], vec![0.0, 0.0], vec![0.0]]);
}

#[test]
fn grad_ys_weights_the_outputs() {
    let g = graph(
        r#"Graph(name: "w", dtype: F64, nodes: [
            (name: "x", op: Const([1.0, 2.0, 3.0])),
            (name: "y", op: Exp, inputs: ["x"]),
            (name: "gy", op: Const([1.0, 0.0, -2.0])),
        ], gradients: [(of: "y", wrt: ["x"], grad_ys: "gy")])"#,
    );
    let v = run(&g, &HashMap::new(), &["d(y)/d(x)"]);
    assert_close(
        &v[0],
        &[1f64.exp(), 0.0, -2.0 * 3f64.exp()],
        1e-15,
        "gy * exp(x)",
    );
    assert_gradcheck("grad_ys", &g, &HashMap::new(), None);
}

#[test]
fn fan_out_contributions_are_summed_once() {
    let g = graph(
        r#"Graph(name: "f", dtype: F64, nodes: [
            (name: "x", op: Const(2.0)),
            (name: "a", op: Square, inputs: ["x"]),
            (name: "b", op: Exp, inputs: ["x"]),
            (name: "c", op: Neg, inputs: ["x"]),
            (name: "y", op: AddN, inputs: ["a", "b", "c"]),
        ], gradients: [(of: "y", wrt: ["x"])])"#,
    );
    let text = gradc::compiler::print::graph_text(&g).expect("prints");
    assert_eq!(
        text.matches("= AddN(").count(),
        2,
        "the forward AddN and one sum of three contributions:\n{text}"
    );
    let v = run(&g, &HashMap::new(), &["d(y)/d(x)"]);
    assert_close(&v[0], &[4.0 + 2f64.exp() - 1.0], 1e-15, "2x + e^x - 1");
}

#[test]
fn hessian_vector_product_through_a_node_that_uses_a_gradient() {
    // f = sum(x^3) * 0.5, grad = 1.5 x^2, H v = 3 x * v.
    let g = graph(
        r#"Graph(name: "hvp", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: ["n"])),
            (name: "v", op: Placeholder(shape: ["n"])),
            (name: "x3", op: Pow(exponent: 3.0), inputs: ["x"]),
            (name: "half", op: Const(0.5)),
            (name: "fx", op: Mul, inputs: ["x3", "half"]),
            (name: "f", op: Sum(), inputs: ["fx"]),
            (name: "gv", op: Mul, inputs: ["d(f)/d(x)", "v"]),
            (name: "gv_sum", op: Sum(), inputs: ["gv"]),
        ], outputs: ["f"], gradients: [
            (of: "f", wrt: ["x"]),
            (of: "gv_sum", wrt: ["x"]),
        ])"#,
    );
    let feeds: HashMap<_, _> = [("x", vec![1.0, -2.0, 0.5]), ("v", vec![0.3, 1.0, -4.0])]
        .into_iter()
        .map(|(n, d)| {
            (
                n.to_string(),
                gradc::runtime::Tensor::from_f64(gradc::runtime::DType::F64, &[3], d)
                    .expect("fits"),
            )
        })
        .collect();
    let v = run(&g, &feeds, &["d(gv_sum)/d(x)"]);
    assert_close(
        &v[0],
        &[3.0 * 1.0 * 0.3, 3.0 * -2.0 * 1.0, 3.0 * 0.5 * -4.0],
        1e-14,
        "H v",
    );
    assert_gradcheck("hvp", &g, &feeds, None);
}

/// Gradient pruning: nothing is computed for inputs nobody asked for. With
/// y = x·w and the gradient asked for w alone, the backward graph holds the
/// product for dw (xᵀ·dy) and not the one for dx (dy·wᵀ); asked for both,
/// it holds both. The data placeholder of the examples gets no gradient
/// either: TwoLayerNet's backward has three products, none of them dx.
#[test]
fn no_gradient_is_built_for_inputs_nobody_asked_for() {
    let text = |wrt: &str| {
        format!(
            r#"Graph(name: "p", dtype: F64, nodes: [
                (name: "x", op: Placeholder(shape: [2, 3])),
                (name: "w", op: Placeholder(shape: [3, 4])),
                (name: "y", op: MatMul(), inputs: ["x", "w"]),
                (name: "t", op: Tanh, inputs: ["y"]),
                (name: "loss", op: Sum(), inputs: ["t"]),
            ], gradients: [(of: "loss", wrt: {wrt})])"#
        )
    };
    let backward_products = |text: &str| {
        let g = graph(text);
        let mut names: Vec<String> = g
            .g
            .node_indices()
            .map(|n| g.node(n))
            .filter(|n| n.role == gradc::compiler::ir::Role::Backward && n.op.name() == "MatMul")
            .map(|n| n.op.attrs_text())
            .collect();
        names.sort();
        names
    };
    // dw = xᵀ·dy (transpose_a); dx = dy·wᵀ (transpose_b).
    let dw = "{transpose_a: true, transpose_b: false}".to_string();
    let dx = "{transpose_a: false, transpose_b: true}".to_string();
    assert_eq!(
        backward_products(&text(r#"["w"]"#)),
        std::slice::from_ref(&dw)
    );
    assert_eq!(
        backward_products(&text(r#"["x"]"#)),
        std::slice::from_ref(&dx)
    );
    assert_eq!(backward_products(&text(r#"["x", "w"]"#)), [dx, dw]);

    let path = common::repo_path("graphs/two_layer_net.ron");
    let g = gradc::compiler::graph_from_file(&path).expect("builds");
    let x = g.find("x").expect("the data placeholder");
    let reads_of_x: Vec<String> =
        g.g.node_indices()
            .filter(|&n| g.inputs(n).iter().any(|t| t.node == x))
            .map(|n| g.node(n).name.clone())
            .collect();
    // x is read by the first layer's product and by dW1 = xᵀ·dh, nothing else.
    assert_eq!(reads_of_x.len(), 2, "{reads_of_x:?}");
    let products =
        g.g.node_indices()
            .filter(|&n| g.node(n).role == gradc::compiler::ir::Role::Backward)
            .filter(|&n| g.node(n).op.name() == "MatMul")
            .count();
    assert_eq!(products, 3, "dW2, dh and dW1");
}
