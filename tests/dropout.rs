//! The `Dropout` layer: TensorFlow's `tf.nn.dropout` semantics (kept values
//! scaled by 1/(1 − rate), the rest 0), its gradient through the same mask,
//! masks reproducible from the run's seed and advanced by the update op,
//! and the identity when not training.

mod common;

use common::graph;
use gradc::compiler::{passes::Pipeline, Compiler};
use gradc::runtime::{DType, Program, Session, Tensor};
use std::collections::HashMap;

/// x [rows, 50] → Dropout(rate 0.3) → loss = sum(y · w), w = 1, 2, 3, …
fn text(dtype: &str, is_training: &str) -> String {
    format!(
        r#"Graph(name: "dropout", dtype: {dtype}, nodes: [
    (name: "x", op: Placeholder(shape: ["rows", 50])),
    (name: "d", op: Dropout(rate: 0.3{is_training}), inputs: ["x"]),
    (name: "w", op: Placeholder(shape: [50])),
    (name: "yw", op: Mul, inputs: ["d", "w"]),
    (name: "loss", op: Sum(), inputs: ["yw"]),
], gradients: [(of: "loss", wrt: ["x"])])"#
    )
}

fn feeds(dtype: DType) -> HashMap<String, Tensor> {
    let x: Vec<f64> = (0..200).map(|i| 0.25 + f64::from(i % 17) * 0.5).collect();
    let w: Vec<f64> = (0..50).map(|i| 1.0 + f64::from(i)).collect();
    [
        (
            "x".to_string(),
            Tensor::from_f64(dtype, &[4, 50], x).expect("fits"),
        ),
        (
            "w".to_string(),
            Tensor::from_f64(dtype, &[50], w).expect("fits"),
        ),
    ]
    .into()
}

/// The unoptimized program, which keeps every node (the update op included).
fn program(text: &str) -> Program {
    Compiler::new(graph(text))
        .passes(Pipeline::none())
        .compile()
        .expect("compiles")
        .program
}

fn session(text: &str, seed: u64) -> Session {
    let program = program(text);
    let mut s = Session::new(program).expect("valid");
    s.initialize(seed).expect("initializes");
    s
}

/// (y, dloss/dx) of one run.
fn step(s: &mut Session, f: &HashMap<String, Tensor>) -> (Vec<f64>, Vec<f64>) {
    let y = s.resolve("d").expect("d");
    let dx = s.resolve("d(loss)/d(x)").expect("gradient");
    let out = s.run(f, &[y, dx]).expect("runs");
    (out[0].to_f64_vec(), out[1].to_f64_vec())
}

#[test]
fn kept_values_are_scaled_and_the_gradient_uses_the_same_mask() {
    for dtype in [DType::F64, DType::F32] {
        let f = feeds(dtype);
        let mut s = session(&text(&format!("{dtype:?}"), ""), 7);
        let (y, dx) = step(&mut s, &f);
        let x = f["x"].to_f64_vec();
        let w = f["w"].to_f64_vec();
        // TensorFlow's arithmetic in the graph's dtype: x · (1/(1 − rate)), then · mask.
        let scale = |v: f64| match dtype {
            DType::F32 => f64::from(v as f32 * (1.0 / 0.7f64) as f32),
            _ => v * (1.0 / 0.7),
        };
        let mut dropped = 0;
        for i in 0..y.len() {
            if y[i] == 0.0 {
                dropped += 1;
                assert_eq!(dx[i], 0.0, "{dtype}: a dropped value gets no gradient");
            } else {
                assert_eq!(y[i], scale(x[i]), "{dtype}: element {i} kept and scaled");
                assert_eq!(dx[i], scale(w[i % 50]), "{dtype}: its gradient is w scaled");
            }
        }
        // 200 draws at rate 0.3: 60 expected; 30 to 90 is beyond five sigma.
        assert!(
            (30..=90).contains(&dropped),
            "{dtype}: {dropped} of 200 dropped"
        );
    }
}

#[test]
fn the_seed_decides_the_mask_and_the_update_advances_it() {
    let f = feeds(DType::F64);
    let text = text("F64", "");
    let (mut a, mut b, mut c) = (session(&text, 7), session(&text, 7), session(&text, 8));
    let first = step(&mut a, &f).0;
    assert_eq!(first, step(&mut b, &f).0, "the same seed, the same mask");
    assert_ne!(first, step(&mut c, &f).0, "another seed, another mask");
    assert_eq!(
        first,
        step(&mut a, &f).0,
        "the mask holds until the update runs"
    );
    let next = a.resolve_target("d/next_seed").expect("the update op");
    let y = a.resolve("d").expect("d");
    a.run_with_targets(&f, &[], &[next]).expect("updates");
    let second = a.run(&f, &[y]).expect("runs")[0].to_f64_vec();
    assert_ne!(first, second, "the next step draws a new mask");
}

#[test]
fn not_training_it_is_the_identity_without_a_variable() {
    let f = feeds(DType::F64);
    let text = text("F64", ", is_training: false");
    let program = program(&text);
    assert!(
        program.instrs.iter().all(|i| !i.name.starts_with("d/")),
        "no dropout nodes: {:?}",
        program.instrs.iter().map(|i| &i.name).collect::<Vec<_>>()
    );
    let mut s = Session::new(program).expect("valid");
    let (y, dx) = step(&mut s, &f);
    assert_eq!(y, f["x"].to_f64_vec());
    assert_eq!(dx, f["w"].to_f64_vec().repeat(4));
}
