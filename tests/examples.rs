//! The numbers of every example in graphs/, against the source texts' values
//! and closed forms.

mod common;

use common::{assert_close, assert_gradcheck, repo_path, run};
use gradc::compiler;
use std::collections::HashMap;

fn example(name: &str) -> gradc::compiler::Graph {
    compiler::graph_from_file(&repo_path(&format!("graphs/{name}.ron"))).expect("example builds")
}

#[test]
fn apple() {
    let g = example("apple");
    let v = run(
        &g,
        &HashMap::new(),
        &[
            "price",
            "d(price)/d(apple)",
            "d(price)/d(apple_num)",
            "d(price)/d(tax)",
        ],
    );
    assert_close(&v.concat(), &[220.0, 2.2, 110.0, 200.0], 1e-12, "apple");
}

#[test]
fn apple_orange() {
    let g = example("apple_orange");
    let fetch = [
        "price",
        "d(price)/d(apple_num)",
        "d(price)/d(apple)",
        "d(price)/d(orange)",
        "d(price)/d(orange_num)",
        "d(price)/d(tax)",
    ];
    let v = run(&g, &HashMap::new(), &fetch);
    assert_close(
        &v.concat(),
        &[715.0, 110.0, 2.2, 3.3, 165.0, 650.0],
        1e-12,
        "apple_orange",
    );
}

#[test]
fn sigmoid_composite_gradient_is_y_times_one_minus_y() {
    let g = example("sigmoid_composite");
    let v = run(&g, &HashMap::new(), &["x", "y", "d(y)/d(x)"]);
    let (x, y, dy) = (&v[0], &v[1], &v[2]);
    let sigmoid: Vec<f64> = x.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
    assert_close(y, &sigmoid, 1e-15, "y");
    let expected: Vec<f64> = y.iter().map(|y| y * (1.0 - y)).collect();
    assert_close(dy, &expected, 1e-14, "dy/dx");
}

#[test]
fn x2_exp_first_and_second_derivatives() {
    let g = example("x2_exp");
    let v = run(
        &g,
        &HashMap::new(),
        &["x", "d(y)/d(x)", "d(d(y)/d(x))/d(x)"],
    );
    let x = &v[0];
    let first: Vec<f64> = x.iter().map(|x| (2.0 * x + x * x) * x.exp()).collect();
    let second: Vec<f64> = x
        .iter()
        .map(|x| (2.0 + 4.0 * x + x * x) * x.exp())
        .collect();
    assert_close(&v[1], &first, 1e-14, "first derivative");
    assert_close(&v[2], &second, 1e-14, "second derivative");
}

#[test]
fn affine_softmax_passes_gradcheck_in_f64() {
    let g = example("affine_softmax");
    let checks = assert_gradcheck("affine_softmax", &g, &HashMap::new(), Some(1e-6));
    assert_eq!(checks.len(), 4);
    for c in &checks {
        assert!(c.max_rel < 1e-6, "{c:?}");
    }
}

#[test]
fn affine_softmax_batch_gradient_of_bias_is_sum_over_batch() {
    // The source text's Affine backward: dB = sum of dY over axis 0.
    let g = example("affine_softmax");
    let v = run(&g, &HashMap::new(), &["logits", "t", "d(loss)/d(b2)"]);
    let (logits, t) = (&v[0], &v[1]);
    let mut db = [0.0; 3];
    for (row, trow) in logits.chunks(3).zip(t.chunks(3)) {
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|l| (l - m).exp()).sum();
        for k in 0..3 {
            db[k] += ((row[k] - m).exp() / z - trow[k]) / 4.0;
        }
    }
    assert_close(&v[2], &db, 1e-14, "dB");
}
