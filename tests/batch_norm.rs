//! Batch normalization: fused and unfused paths agree, and the statistics
//! follow TensorFlow's definitions.

mod common;

use common::{assert_close, graph, run};
use gradc::compiler::Compiler;
use gradc::runtime::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn random(rng: &mut ChaCha8Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f64(
        DType::F64,
        shape,
        (0..n).map(|_| rng.random_range(lo..hi)).collect(),
    )
    .expect("fits")
}

/// The same normalization written twice: Moments + BatchNormalization, and
/// FusedBatchNorm; a loss that weights every output differently.
fn both_paths(shape: &[usize], format: &str) -> String {
    let nchw = format == "NCHW" && shape.len() == 4;
    let axes = if nchw {
        "[0, 2, 3]"
    } else if shape.len() == 4 {
        "[0, 1, 2]"
    } else {
        "[0]"
    };
    let params = if nchw {
        r#"(name: "sb", op: Reshape(shape: [1, -1, 1, 1]), inputs: ["s"]),
           (name: "ob", op: Reshape(shape: [1, -1, 1, 1]), inputs: ["o"]),"#
    } else {
        r#"(name: "sb", op: Identity, inputs: ["s"]), (name: "ob", op: Identity, inputs: ["o"]),"#
    };
    format!(
        r#"Graph(name: "bn", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: {shape:?})),
            (name: "w", op: Placeholder(shape: {shape:?})),
            (name: "s", op: Placeholder(shape: [3])),
            (name: "o", op: Placeholder(shape: [3])),
            (name: "zero", op: Const([0.0, 0.0, 0.0])),
            (name: "one", op: Const([1.0, 1.0, 1.0])),
            {params}
            (name: "mv", op: Moments(axes: {axes}, keep_dims: true), inputs: ["x"]),
            (name: "unfused", op: BatchNormalization(variance_epsilon: 0.001), inputs: ["x", "mv", "mv:1", "ob", "sb"]),
            (name: "fused", op: FusedBatchNorm(epsilon: 0.001, data_format: {format}), inputs: ["x", "s", "o", "zero", "one"]),
            (name: "uw", op: Mul, inputs: ["unfused", "w"]),
            (name: "fw", op: Mul, inputs: ["fused", "w"]),
            (name: "loss_unfused", op: Sum(), inputs: ["uw"]),
            (name: "loss_fused", op: Sum(), inputs: ["fw"]),
        ], gradients: [
            (of: "loss_unfused", wrt: ["x", "s", "o"]),
            (of: "loss_fused", wrt: ["x", "s", "o"]),
        ])"#
    )
}

#[test]
fn fused_and_unfused_agree_to_1e_10_forward_and_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (shape, format) in [
        (vec![8, 3], "NHWC"),
        (vec![4, 3, 3, 2], "NCHW"),
        (vec![4, 3, 2, 3], "NHWC"),
    ] {
        let g = graph(&both_paths(&shape, format));
        let feeds = HashMap::from([
            ("x".to_string(), random(&mut rng, &shape, -3.0, 5.0)),
            ("w".to_string(), random(&mut rng, &shape, -1.0, 1.0)),
            ("s".to_string(), random(&mut rng, &[3], 0.5, 2.0)),
            ("o".to_string(), random(&mut rng, &[3], -1.0, 1.0)),
        ]);
        let what = format!("{shape:?} {format}");
        let v = run(&g, &feeds, &["unfused", "fused"]);
        assert_close(&v[0], &v[1], 1e-10, &format!("{what}: y"));
        for x in ["x", "s", "o"] {
            let d = run(
                &g,
                &feeds,
                &[
                    &format!("d(loss_unfused)/d({x})"),
                    &format!("d(loss_fused)/d({x})"),
                ],
            );
            assert_close(&d[0], &d[1], 1e-10, &format!("{what}: d/d{x}"));
        }
    }
}

#[test]
fn moments_are_population_statistics_and_fused_moving_variance_is_bessel_corrected() {
    let g = graph(
        r#"Graph(name: "m", dtype: F64, nodes: [
            (name: "x", op: Const([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0], [6.0, 30.0]])),
            (name: "mv", op: Moments(axes: [0]), inputs: ["x"]),
            (name: "s", op: Const([1.0, 1.0])), (name: "o", op: Const([0.0, 0.0])),
            (name: "f", op: FusedBatchNorm(), inputs: ["x", "s", "o", "o", "s"]),
        ])"#,
    );
    let v = run(&g, &HashMap::new(), &["mv", "mv:1", "f:1", "f:2", "f:4"]);
    assert_eq!(v[0], vec![3.0, 30.0]);
    // population variance: mean squared deviation, divided by n = 4
    assert_close(&v[1], &[3.5, 350.0], 1e-15, "variance");
    assert_eq!(v[2], v[0], "the fused batch mean");
    // batch_variance (for the moving average) is Bessel-corrected, n / (n - 1)
    assert_close(
        &v[3],
        &[3.5 * 4.0 / 3.0, 350.0 * 4.0 / 3.0],
        1e-14,
        "batch variance",
    );
    // and the normalization used the population variance
    assert_close(&v[4], &v[1], 1e-15, "saved variance");
}

#[test]
fn moving_averages_follow_the_formulas() {
    let batches: [[f64; 2]; 5] = [
        [1.0, -2.0],
        [3.0, 0.5],
        [-1.0, 4.0],
        [2.0, 2.0],
        [0.0, -3.0],
    ];
    for decay in [0.9, 0.999] {
        for zero_debias in [false, true] {
            let text = format!(
                r#"Graph(name: "ama", dtype: F64, nodes: [
                    (name: "v", op: Variable(shape: [2], initializer: Constant(5.0), trainable: false)),
                    (name: "x", op: Placeholder(shape: [2])),
                    (name: "upd", op: AssignMovingAverage(decay: {decay}, zero_debias: {zero_debias}), inputs: ["v", "x"]),
                ])"#
            );
            let p = Compiler::new(graph(&text))
                .compile()
                .expect("compiles")
                .program;
            let mut s = gradc::runtime::Session::new(p).expect("valid");
            s.initialize(0).expect("init");
            let upd = s.resolve_target("upd").expect("upd");
            let v = s.resolve("v").expect("v");
            let (mut want, mut biased) = ([5.0f64; 2], [0.0f64; 2]);
            for (t, x) in batches.iter().enumerate() {
                let feeds = HashMap::from([(
                    "x".to_string(),
                    Tensor::from_f64(DType::F64, &[2], x.to_vec()).expect("fits"),
                )]);
                s.run_with_targets(&feeds, &[], &[upd]).expect("update");
                for i in 0..2 {
                    if zero_debias {
                        biased[i] -= (biased[i] - x[i]) * (1.0 - decay);
                        want[i] = biased[i] / (1.0 - decay.powi(t as i32 + 1));
                    } else {
                        want[i] -= (want[i] - x[i]) * (1.0 - decay);
                    }
                }
                let got = s.run(&HashMap::new(), &[v]).expect("read")[0].to_f64_vec();
                assert_close(
                    &got,
                    &want,
                    1e-12,
                    &format!("decay {decay}, zero_debias {zero_debias}, step {t}"),
                );
            }
        }
    }
}

fn layer_graph(attrs: &str) -> String {
    format!(
        r#"Graph(name: "l", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: ["batch", 2])),
            (name: "training", op: Placeholder(shape: [])),
            (name: "bn", op: BatchNorm(decay: 0.5, {attrs}), inputs: ["x"]),
        ], outputs: ["bn"])"#
    )
}

fn feeds(training: f64) -> HashMap<String, Tensor> {
    HashMap::from([
        (
            "x".to_string(),
            Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, 10.0, 3.0, 30.0]).expect("fits"),
        ),
        ("training".to_string(), Tensor::scalar(DType::F64, training)),
    ])
}

#[test]
fn is_training_decided_at_run_time_and_updates_forced_in_place() {
    // updates_collections: None forces the updates: computing the output runs them.
    for fused in [false, true] {
        let g = graph(&layer_graph(&format!(
            r#"is_training: "training", updates_collections: None, fused: {fused}"#
        )));
        let p = Compiler::new(g).compile().expect("compiles").program;
        let mut s = gradc::runtime::Session::new(p).expect("valid");
        s.initialize(0).expect("init");
        let (y, mm, mv) = (
            s.resolve("bn").expect("bn"),
            s.resolve("bn/moving_mean").expect("mm"),
            s.resolve("bn/moving_variance").expect("mv"),
        );
        // Training: batch statistics (mean 2 and 20, variance 1 and 100), moving averages move halfway.
        // (x - mean) / sqrt(var + 0.001): epsilon moves the result by 5e-4, and by
        // 5e-6 in the second column, both far above the tolerance.
        let out = s.run(&feeds(1.0), &[y]).expect("runs")[0].to_f64_vec();
        let (a, b) = (1.0 / 1.001f64.sqrt(), 10.0 / 100.001f64.sqrt());
        assert_close(
            &out,
            &[-a, -b, a, b],
            1e-12,
            "normalized with batch statistics",
        );
        let m = s.run(&HashMap::new(), &[mm, mv]).expect("reads");
        assert_close(
            &m[0].to_f64_vec(),
            &[1.0, 10.0],
            1e-12,
            "moving mean: 0 -> halfway to the batch mean",
        );
        // The variance fed to the moving average: population (1, 100) unfused, Bessel-corrected (2, 200) fused.
        let var = if fused { [1.5, 100.5] } else { [1.0, 50.5] };
        assert_close(&m[1].to_f64_vec(), &var, 1e-12, "moving variance");
        // Not training: normalized with the moving averages, which do not change.
        let out = s.run(&feeds(0.0), &[y]).expect("runs")[0].to_f64_vec();
        let want: Vec<f64> = [1.0, 10.0, 3.0, 30.0]
            .iter()
            .enumerate()
            .map(|(k, x)| (x - m[0].to_f64_vec()[k % 2]) / (var[k % 2] + 0.001f64).sqrt())
            .collect();
        assert_close(&out, &want, 1e-12, "normalized with the moving averages");
        let again = s.run(&HashMap::new(), &[mm, mv]).expect("reads");
        assert_eq!(again, m, "inference changes no variable");
    }
}

#[test]
fn zero_debiased_moving_mean_in_the_layer() {
    let g = graph(&layer_graph(
        "is_training: true, zero_debias_moving_mean: true",
    ));
    let p = Compiler::new(g).compile().expect("compiles").program;
    let mut s = gradc::runtime::Session::new(p).expect("valid");
    s.initialize(0).expect("init");
    let update = s.resolve_target("bn/AssignMovingAvg").expect("update op");
    s.run_with_targets(&feeds(1.0), &[], &[update])
        .expect("runs");
    let mm = s.resolve("bn/moving_mean").expect("mm");
    // biased = 0.5 * mean, corrected by 1 - 0.5: exactly the batch mean after one step.
    assert_close(
        &s.run(&HashMap::new(), &[mm]).expect("reads")[0].to_f64_vec(),
        &[2.0, 20.0],
        1e-12,
        "debiased",
    );
}

/// Nodes are written in any order: a layer's `is_training` node may come
/// after the layer, and the program is the same as with it before.
#[test]
fn is_training_may_be_written_after_the_layer() {
    let before = layer_graph(r#"is_training: "training""#);
    let after = before.replace(
        r#"            (name: "training", op: Placeholder(shape: [])),
            (name: "bn", op: BatchNorm(decay: 0.5, is_training: "training"), inputs: ["x"]),"#,
        r#"            (name: "bn", op: BatchNorm(decay: 0.5, is_training: "training"), inputs: ["x"]),
            (name: "training", op: Placeholder(shape: [])),"#,
    );
    assert_ne!(before, after, "the layer is written first");
    let program = |text: &str| {
        Compiler::new(graph(text))
            .compile()
            .expect("compiles")
            .program
    };
    assert_eq!(program(&after).instrs.len(), program(&before).instrs.len());
    let dropout = r#"Graph(name: "d", dtype: F64, nodes: [
        (name: "x", op: Placeholder(shape: [2])),
        (name: "drop", op: Dropout(rate: 0.5, is_training: "training"), inputs: ["x"]),
        (name: "training", op: Placeholder(shape: [])),
    ], outputs: ["drop"])"#;
    let p = program(dropout);
    assert!(p.instrs.iter().any(|i| i.name == "training"));
}

/// The variables a layer makes are nodes like any other: an input of a node
/// written anywhere in the file, and a `wrt` of a gradient request.
#[test]
fn a_layers_variables_are_inputs_and_gradient_targets() {
    let text = r#"Graph(name: "v", dtype: F64, nodes: [
        (name: "m", op: Identity, inputs: ["bn/moving_mean"]),
        (name: "x", op: Placeholder(shape: [2, 2])),
        (name: "bn", op: BatchNorm(scale: true), inputs: ["x"]),
        (name: "g2", op: Square, inputs: ["bn/gamma"]),
        (name: "l", op: Sum(), inputs: ["g2"]),
        (name: "s", op: Sum(), inputs: ["bn"]),
        (name: "loss", op: Add, inputs: ["s", "l"]),
    ], gradients: [(of: "loss", wrt: ["bn/gamma", "bn/beta"])], outputs: ["loss", "m"])"#;
    let p = Compiler::new(graph(text))
        .compile()
        .expect("compiles")
        .program;
    let mut s = gradc::runtime::Session::new(p).expect("valid");
    s.initialize(0).expect("init");
    let x = Tensor::from_f64(DType::F64, &[2, 2], vec![1.0, 2.0, 3.0, 5.0]).expect("fits");
    let fetch: Vec<_> = ["m", "d(loss)/d(bn/gamma)", "d(loss)/d(bn/beta)"]
        .iter()
        .map(|n| s.resolve(n).expect("fetchable"))
        .collect();
    let out: Vec<Vec<f64>> = s
        .run(&HashMap::from([("x".to_string(), x)]), &fetch)
        .expect("runs")
        .iter()
        .map(Tensor::to_f64_vec)
        .collect();
    assert_eq!(out[0], vec![0.0, 0.0], "the moving mean starts at zeros");
    // gamma = 1: d/dgamma [sum(gamma * xhat + beta) + sum(gamma^2)] = sum(xhat) + 2 gamma = 0 + 2.
    assert_close(&out[1], &[2.0, 2.0], 1e-9, "d/d gamma");
    // d/d beta = the batch size.
    assert_close(&out[2], &[2.0, 2.0], 1e-12, "d/d beta");
    let e = common::compile_error(&text.replace("bn/gamma\"]),", "bn/gama\"]),"));
    assert!(
        e.message
            .contains("input 'bn/gama' does not exist (did you mean 'bn/gamma'?)"),
        "{e}"
    );
}
