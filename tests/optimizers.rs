//! Optimizer update ops against TensorFlow 1's update rules computed by hand,
//! and the state semantics they rely on (start-of-step reads, UPDATE_OPS).

mod common;

use common::{assert_close, graph};
use gradc::compiler::Compiler;
use gradc::runtime::{DType, Session, Tensor};
use std::collections::HashMap;

const W0: [f64; 3] = [1.0, -2.0, 0.5];
const A: [f64; 3] = [0.5, 1.0, 2.0];

/// loss = sum(a * w^2), so dloss/dw = 2 a w. Returns w after each of `steps` train steps.
fn train(optimizer: &str, extra: &str, steps: usize) -> Vec<Vec<f64>> {
    let text = format!(
        r#"Graph(name: "opt", dtype: F64, nodes: [
            (name: "w", op: Variable(shape: [3], initializer: Zeros)),
            (name: "a", op: Const([0.5, 1.0, 2.0])),
            (name: "w2", op: Square, inputs: ["w"]),
            (name: "aw2", op: Mul, inputs: ["a", "w2"]),
            (name: "loss", op: Sum(), inputs: ["aw2"]),
        ], train: (loss: "loss", optimizer: {optimizer}{extra}))"#
    );
    let p = Compiler::new(graph(&text))
        .compile_train()
        .expect("compiles");
    let mut s = Session::new(p.train).expect("valid");
    s.initialize(0).expect("init");
    s.set_variable(
        "w",
        Tensor::from_f64(DType::F64, &[3], W0.to_vec()).expect("fits"),
    )
    .expect("set");
    let target = s.resolve_target(&p.train_op).expect("train op");
    let w = s.resolve("w").expect("w");
    (0..steps)
        .map(|_| {
            s.run_with_targets(&HashMap::new(), &[], &[target])
                .expect("step");
            s.run(&HashMap::new(), &[w]).expect("read w")[0].to_f64_vec()
        })
        .collect()
}

fn grad(w: &[f64]) -> Vec<f64> {
    w.iter().zip(A).map(|(w, a)| 2.0 * a * w).collect()
}

#[test]
fn gradient_descent() {
    let got = train("GradientDescent(learning_rate: 0.1)", "", 3);
    let mut w = W0.to_vec();
    for step in got {
        let g = grad(&w);
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g);
        assert_close(&step, &w, 1e-15, "sgd");
    }
}

/// `hyperparameter_dtype: F32` on f64 variables: TensorFlow 1's
/// `GradientDescentOptimizer(0.1)` makes 0.1 a float32 tensor and casts it
/// to float64, so the step is taken with f64(f32(0.1)), not 0.1.
#[test]
fn hyperparameters_given_in_f32_are_rounded_as_tensorflow_1_rounds_them() {
    let rounded = f64::from(0.1f32);
    assert_ne!(rounded, 0.1);
    let got = train(
        "GradientDescent(learning_rate: 0.1)",
        ", hyperparameter_dtype: F32",
        2,
    );
    let mut w = W0.to_vec();
    for step in got {
        let g = grad(&w);
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= rounded * g);
        assert_eq!(step, w, "w -= f64(f32(0.1)) * g, exactly");
    }
}

/// TensorFlow 1's schedules on the learning rate, read from `global_step`
/// at the start of each step: piecewise constant (boundaries inclusive) and
/// exponential decay with a staircase.
#[test]
fn learning_rate_schedules_follow_the_global_step() {
    let sgd = |lrs: &[f64]| {
        let mut w = W0.to_vec();
        lrs.iter()
            .map(|&lr| {
                let g = grad(&w);
                w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g);
                w.clone()
            })
            .collect::<Vec<_>>()
    };
    let got = train(
        "GradientDescent(learning_rate: 1.0)",
        ", learning_rate_schedule: PiecewiseConstant(boundaries: [1, 2], values: [0.1, 0.05, 0.01])",
        4,
    );
    assert_eq!(
        got,
        sgd(&[0.1, 0.1, 0.05, 0.01]),
        "steps 0 and 1 ≤ 1, step 2 ≤ 2, then the last"
    );
    let got = train(
        "GradientDescent(learning_rate: 0.1)",
        ", learning_rate_schedule: ExponentialDecay(decay_steps: 2, decay_rate: 0.5, staircase: true)",
        4,
    );
    for (step, want) in got.iter().zip(sgd(&[0.1, 0.1, 0.05, 0.05])) {
        assert_close(step, &want, 1e-15, "0.1 · 0.5^floor(step / 2)");
    }
    let got = train(
        "GradientDescent(learning_rate: 0.1)",
        ", learning_rate_schedule: ExponentialDecay(decay_steps: 2, decay_rate: 0.5)",
        3,
    );
    let smooth = [0.1, 0.1 * 0.5f64.sqrt(), 0.05];
    for (step, want) in got.iter().zip(sgd(&smooth)) {
        assert_close(step, &want, 1e-15, "0.1 · 0.5^(step / 2)");
    }
}

fn momentum(nesterov: bool) {
    let opt = format!("Momentum(learning_rate: 0.05, momentum: 0.9, use_nesterov: {nesterov})");
    let got = train(&opt, "", 4);
    let (mut w, mut accum) = (W0.to_vec(), [0.0; 3]);
    for step in got {
        let g = grad(&w);
        for i in 0..3 {
            accum[i] = 0.9 * accum[i] + g[i];
            w[i] -= if nesterov {
                0.05 * (g[i] + 0.9 * accum[i])
            } else {
                0.05 * accum[i]
            };
        }
        assert_close(&step, &w, 1e-15, "momentum");
    }
}

#[test]
fn momentum_plain() {
    momentum(false);
}

#[test]
fn momentum_nesterov() {
    momentum(true);
}

#[test]
fn adam_tf1_form() {
    let got = train(
        "Adam(learning_rate: 0.1, beta1: 0.8, beta2: 0.95, epsilon: 1e-3)",
        "",
        5,
    );
    let (mut w, mut m, mut v) = (W0.to_vec(), [0.0; 3], [0.0; 3]);
    let (mut b1p, mut b2p) = (0.8f64, 0.95f64);
    for step in got {
        let g = grad(&w);
        let lr_t = 0.1 * (1.0 - b2p).sqrt() / (1.0 - b1p);
        for i in 0..3 {
            m[i] = 0.8 * m[i] + 0.2 * g[i];
            v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
            // epsilon is added to sqrt(v), not to the bias-corrected sqrt(v_hat)
            w[i] -= lr_t * m[i] / (v[i].sqrt() + 1e-3);
        }
        b1p *= 0.8;
        b2p *= 0.95;
        assert_close(&step, &w, 1e-14, "adam");
    }
}

/// TensorFlow 1's `AdamWOptimizer` (`tf.contrib.opt`): the decay
/// `w -= weight_decay * w` comes first, unscaled by the learning rate, then
/// Adam's step, both from the start-of-step `w`.
#[test]
fn adamw_decouples_the_weight_decay() {
    let got = train(
        "AdamW(weight_decay: 0.01, learning_rate: 0.1, beta1: 0.8, beta2: 0.95, epsilon: 1e-3)",
        "",
        5,
    );
    let (mut w, mut m, mut v) = (W0.to_vec(), [0.0; 3], [0.0; 3]);
    let (mut b1p, mut b2p) = (0.8f64, 0.95f64);
    for step in got {
        let g = grad(&w);
        let lr_t = 0.1 * (1.0 - b2p).sqrt() / (1.0 - b1p);
        for i in 0..3 {
            m[i] = 0.8 * m[i] + 0.2 * g[i];
            v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
            w[i] = (w[i] - 0.01 * w[i]) - lr_t * m[i] / (v[i].sqrt() + 1e-3);
        }
        b1p *= 0.8;
        b2p *= 0.95;
        assert_close(&step, &w, 1e-14, "adamw");
    }
}

/// TensorFlow 1's `RMSPropOptimizer` (`ApplyRMSProp`, `ApplyCenteredRMSProp`):
/// the mean square starts at ones, the momentum accumulates the scaled step.
fn rmsprop(momentum: f64, centered: bool) {
    let opt = format!(
        "RMSProp(learning_rate: 0.01, decay: 0.8, momentum: {momentum:?}, epsilon: 1e-6, centered: {centered})"
    );
    let got = train(&opt, "", 5);
    let (mut w, mut ms, mut mg, mut mom) = (W0.to_vec(), [1.0; 3], [0.0; 3], [0.0; 3]);
    for step in got {
        let g = grad(&w);
        for i in 0..3 {
            ms[i] += (g[i] * g[i] - ms[i]) * (1.0 - 0.8);
            let mut den = ms[i];
            if centered {
                mg[i] += (g[i] - mg[i]) * (1.0 - 0.8);
                den -= mg[i] * mg[i];
            }
            mom[i] = momentum * mom[i] + g[i] * 0.01 / (den + 1e-6).sqrt();
            w[i] -= mom[i];
        }
        assert_close(&step, &w, 1e-14, &opt);
    }
}

#[test]
fn rmsprop_plain() {
    rmsprop(0.0, false);
}

#[test]
fn rmsprop_with_momentum() {
    rmsprop(0.9, false);
}

#[test]
fn rmsprop_centered_with_momentum() {
    rmsprop(0.5, true);
}

/// TensorFlow 1's `AdagradOptimizer`: the accumulator starts at
/// `initial_accumulator_value` (0.1 by default) and has no epsilon.
#[test]
fn adagrad_tf1_form() {
    for (opt, init) in [
        ("Adagrad(learning_rate: 0.1)", 0.1),
        (
            "Adagrad(learning_rate: 0.1, initial_accumulator_value: 2.0)",
            2.0,
        ),
    ] {
        let got = train(opt, "", 4);
        let (mut w, mut accum) = (W0.to_vec(), [init; 3]);
        for step in got {
            let g = grad(&w);
            for i in 0..3 {
                accum[i] += g[i] * g[i];
                w[i] -= 0.1 * g[i] / accum[i].sqrt();
            }
            assert_close(&step, &w, 1e-14, opt);
        }
    }
    let text = r#"Graph(name: "a", dtype: F64, nodes: [
        (name: "w", op: Variable(shape: [], initializer: Zeros)),
        (name: "loss", op: Square, inputs: ["w"]),
    ], train: (loss: "loss", optimizer: Adagrad(learning_rate: 0.1, initial_accumulator_value: 0.0)))"#;
    let e = common::compile_error(text).to_string();
    assert!(
        e.contains("test.ron:4:")
            && e.contains("initial_accumulator_value must be positive, got 0"),
        "{e}"
    );
}

/// `tf.compat.v1.train.cosine_decay`: half a cosine from the full rate to
/// `alpha` times it over `decay_steps`, then held.
#[test]
fn cosine_decay_reaches_alpha_and_holds() {
    let got = train(
        "GradientDescent(learning_rate: 0.1)",
        ", learning_rate_schedule: CosineDecay(decay_steps: 4, alpha: 0.2)",
        6,
    );
    let mut w = W0.to_vec();
    for (k, step) in got.iter().enumerate() {
        let t = (k as f64).min(4.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t / 4.0).cos());
        let lr = 0.1 * ((1.0 - 0.2) * cosine + 0.2);
        let g = grad(&w);
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * g);
        assert_close(step, &w, 1e-14, &format!("cosine step {k}"));
    }
}

#[test]
fn weight_decay_and_global_norm_clipping() {
    // The variable has rank 1, so weight decay (weights of rank >= 2 only) does not apply to it.
    let got = train(
        "GradientDescent(learning_rate: 0.1)",
        ", weight_decay: 0.5, clip_global_norm: 1.0",
        2,
    );
    let mut w = W0.to_vec();
    for step in got {
        let g = grad(&w);
        let norm = g.iter().map(|g| g * g).sum::<f64>().sqrt();
        let scale = 1.0 / norm.max(1.0);
        w.iter_mut()
            .zip(&g)
            .for_each(|(w, g)| *w -= 0.1 * g * scale);
        assert_close(&step, &w, 1e-15, "clipped");
    }
}

#[test]
fn weight_decay_applies_to_matrices() {
    let text = r#"Graph(name: "wd", dtype: F64, nodes: [
        (name: "w", op: Variable(shape: [1, 2], initializer: Constant(2.0))),
        (name: "loss", op: Sum(), inputs: ["w"]),
    ], train: (loss: "loss", optimizer: GradientDescent(learning_rate: 0.1), weight_decay: 0.5))"#;
    let p = Compiler::new(graph(text))
        .compile_train()
        .expect("compiles");
    let mut s = Session::new(p.train).expect("valid");
    s.initialize(0).expect("init");
    let t = s.resolve_target(&p.train_op).expect("train");
    s.run_with_targets(&HashMap::new(), &[], &[t])
        .expect("step");
    let w = s.resolve("w").expect("w");
    // d/dw [sum(w) + 0.25 * sum(w^2)] = 1 + 0.5 w = 2; w = 2 - 0.1 * 2
    assert_close(
        &s.run(&HashMap::new(), &[w]).expect("read")[0].to_f64_vec(),
        &[1.8, 1.8],
        1e-15,
        "wd",
    );
}

#[test]
fn update_ops_run_with_every_train_step_and_reads_see_the_start_of_the_step() {
    // A counter in UPDATE_OPS, and a node that reads it in the same step.
    let text = r#"Graph(name: "u", dtype: F64, nodes: [
        (name: "w", op: Variable(shape: [], initializer: Constant(3.0))),
        (name: "steps", op: Variable(shape: [], initializer: Zeros, trainable: false)),
        (name: "one", op: Const(1.0)),
        (name: "count", op: AssignAdd, inputs: ["steps", "one"], collections: ["UPDATE_OPS"]),
        (name: "seen", op: Identity, inputs: ["steps"]),
        (name: "loss", op: Square, inputs: ["w"]),
    ], train: (loss: "loss", optimizer: GradientDescent(learning_rate: 0.25), metrics: ["seen"]))"#;
    let p = Compiler::new(graph(text))
        .compile_train()
        .expect("compiles");
    let mut s = Session::new(p.train).expect("valid");
    s.initialize(0).expect("init");
    let t = s.resolve_target(&p.train_op).expect("train");
    let seen = s.resolve("seen").expect("metric");
    for k in 0..3 {
        let v = s
            .run_with_targets(&HashMap::new(), &[seen], &[t])
            .expect("step");
        assert_eq!(
            v[0].to_f64_vec(),
            vec![k as f64],
            "a read sees the start-of-step value"
        );
    }
    let vars: HashMap<_, _> = s
        .variables()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.expect("set").to_f64_vec()))
        .collect();
    assert_eq!(vars["steps"], vec![3.0]);
    // w: 3 -> 3 - 0.25 * 6 = 1.5 -> 0.75 -> 0.375
    assert_eq!(vars["w"], vec![0.375]);
}

#[test]
fn the_inference_program_has_no_gradient_and_no_update() {
    let text = r#"Graph(name: "i", dtype: F64, nodes: [
        (name: "w", op: Variable(shape: [], initializer: Constant(3.0))),
        (name: "loss", op: Square, inputs: ["w"]),
    ], train: (loss: "loss", optimizer: Adam()))"#;
    let p = Compiler::new(graph(text))
        .compile_train()
        .expect("compiles");
    assert!(p
        .eval
        .instrs
        .iter()
        .all(|i| !i.op.is_stateful() && !i.name.starts_with("gradients")));
    assert_eq!(p.eval.instrs.len(), 2);
    assert!(p.train.instrs.iter().any(|i| i.name == "w/Adam_1"));
}

#[test]
fn initialization_is_seeded_and_reproducible() {
    let text = r#"Graph(name: "s", dtype: F32, nodes: [
        (name: "w", op: Variable(shape: [50, 10], initializer: RandomNormal(stddev: 0.01))),
        (name: "g", op: Variable(shape: [50, 10], initializer: GlorotUniform())),
        (name: "t", op: Variable(shape: [1000], initializer: TruncatedNormal(mean: 1.0, stddev: 0.5))),
    ])"#;
    let p = Compiler::new(graph(text))
        .compile()
        .expect("compiles")
        .program;
    let values = |seed: u64| {
        let mut s = Session::new(p.clone()).expect("valid");
        s.initialize(seed).expect("init");
        s.variables()
            .into_iter()
            .map(|(_, v)| v.expect("set").to_f64_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(values(1), values(1));
    assert_ne!(values(1), values(2));
    let v = values(1);
    let std = (v[0].iter().map(|x| x * x).sum::<f64>() / 500.0).sqrt();
    assert!((std - 0.01).abs() < 0.002, "stddev {std}");
    let limit = (6.0f64 / 60.0).sqrt();
    assert!(v[1].iter().all(|x| x.abs() <= limit + 1e-7));
    assert!(
        v[2].iter().all(|x| (x - 1.0).abs() <= 1.0 + 1e-6),
        "truncated at two stddevs"
    );
}

#[test]
fn hooks_fetch_the_gradient_of_an_intermediate_from_the_train_step() {
    // loss = sum(relu(x w)^2): d(loss)/d(h) = 2 h where h = relu(x w).
    let text = r#"Graph(name: "h", dtype: F64, nodes: [
        (name: "x", op: Const([[1.0, -2.0], [0.5, 3.0]])),
        (name: "w", op: Variable(shape: [2, 2], initializer: Constant(0.5))),
        (name: "xw", op: MatMul(), inputs: ["x", "w"]),
        (name: "h", op: Relu, inputs: ["xw"]),
        (name: "h2", op: Square, inputs: ["h"]),
        (name: "loss", op: Sum(), inputs: ["h2"]),
    ], train: (loss: "loss", optimizer: GradientDescent(learning_rate: 0.01), hooks: ["h", "xw"]))"#;
    let p = Compiler::new(graph(text))
        .compile_train()
        .expect("compiles");
    let mut s = Session::new(p.train).expect("valid");
    s.initialize(0).expect("init");
    let t = s.resolve_target(&p.train_op).expect("train");
    let fetch: Vec<_> = ["h", "d(loss)/d(h)", "d(loss)/d(xw)"]
        .iter()
        .map(|n| s.resolve(n).expect("fetchable"))
        .collect();
    let v = s
        .run_with_targets(&HashMap::new(), &fetch, &[t])
        .expect("step");
    let h = v[0].to_f64_vec();
    let want: Vec<f64> = h.iter().map(|h| 2.0 * h).collect();
    assert_close(&v[1].to_f64_vec(), &want, 1e-15, "d(loss)/d(h) = 2h");
    // Through the ReLU: zero where xw < 0 (x w = [-0.5, -0.5], [1.75, 1.75]).
    assert_close(
        &v[2].to_f64_vec(),
        &[0.0, 0.0, want[2], want[3]],
        1e-15,
        "d(loss)/d(xw)",
    );
}

#[test]
fn hyper_parameters_are_one_constant_shared_by_every_update() {
    // TensorFlow's Optimizer._prepare makes each hyper-parameter a tensor once.
    let cases = [
        (
            "GradientDescent(learning_rate: 0.1)",
            vec!["GradientDescent/learning_rate"],
        ),
        (
            "Momentum(learning_rate: 0.1, momentum: 0.9)",
            vec!["Momentum/learning_rate", "Momentum/momentum"],
        ),
        (
            "Adam()",
            vec![
                "Adam/beta1",
                "Adam/one_minus_beta1",
                "Adam/beta2",
                "Adam/one_minus_beta2",
                "Adam/epsilon",
            ],
        ),
        (
            "AdamW(weight_decay: 0.01)",
            vec!["AdamW/beta1", "AdamW/epsilon", "AdamW/weight_decay"],
        ),
        (
            "RMSProp(learning_rate: 0.1, momentum: 0.9, centered: true)",
            vec![
                "RMSProp/learning_rate",
                "RMSProp/decay",
                "RMSProp/momentum",
                "RMSProp/epsilon",
            ],
        ),
        ("Adagrad(learning_rate: 0.1)", vec!["Adagrad/learning_rate"]),
    ];
    for (optimizer, names) in cases {
        let text = format!(
            r#"Graph(name: "h", dtype: F64, nodes: [
                (name: "u", op: Variable(shape: [2], initializer: Constant(1.0))),
                (name: "w", op: Variable(shape: [2], initializer: Constant(2.0))),
                (name: "uw", op: Mul, inputs: ["u", "w"]),
                (name: "loss", op: Sum(), inputs: ["uw"]),
            ], train: (loss: "loss", optimizer: {optimizer}))"#
        );
        let g = graph(&text);
        for name in names {
            let n = g
                .find(name)
                .unwrap_or_else(|| panic!("{optimizer}: no {name}"));
            let readers = g.consumers(n);
            assert_eq!(
                readers.len(),
                2,
                "{optimizer}: {name} is read by {readers:?}"
            );
            for r in readers {
                let reader = &g.node(r).name;
                assert!(
                    reader.contains("update_u/") || reader.contains("update_w/"),
                    "{optimizer}: {name} read by {reader}"
                );
            }
        }
        // Adam reads its learning rate once, into lr_t, which every update reads.
        if let Some(scope) = ["AdamW", "Adam"]
            .into_iter()
            .find(|s| optimizer.starts_with(s))
        {
            let lr = g
                .find(&format!("{scope}/learning_rate"))
                .expect("learning_rate");
            assert_eq!(g.consumers(lr).len(), 1);
        }
        // No per-variable copy of a hyper-parameter is left behind.
        let per_variable = g
            .g
            .node_indices()
            .filter(|&n| {
                let node = g.node(n);
                matches!(node.op, gradc::runtime::Op::Const(_)) && node.name.contains("/update_")
            })
            .count();
        assert_eq!(per_variable, 0, "{optimizer}");
    }
}

#[test]
fn initializers_have_their_distributions_moments() {
    let text = r#"Graph(name: "s", dtype: F64, nodes: [
        (name: "n", op: Variable(shape: [100, 100], initializer: RandomNormal(mean: 0.5, stddev: 0.01))),
        (name: "g", op: Variable(shape: [200, 300], initializer: GlorotUniform())),
        (name: "t", op: Variable(shape: [20000], initializer: TruncatedNormal(mean: 1.0, stddev: 0.5))),
        (name: "c", op: Variable(shape: [4], initializer: Constant(2.5))),
        (name: "z", op: Variable(shape: [4], initializer: Zeros)),
        (name: "o", op: Variable(shape: [4], initializer: Ones)),
    ])"#;
    let p = Compiler::new(graph(text))
        .compile()
        .expect("compiles")
        .program;
    let mut s = Session::new(p).expect("valid");
    s.initialize(5).expect("init");
    let value = |name: &str| -> Vec<f64> {
        s.variables()
            .into_iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.map(|t| t.to_f64_vec()))
            .expect("initialized")
    };
    let moments = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    };
    // Each mean within 4 standard errors, each standard deviation within 3%.
    let (mean, std) = moments(&value("n"));
    assert!(
        (mean - 0.5).abs() < 4.0 * 0.01 / 100.0,
        "normal mean {mean}"
    );
    assert!((std / 0.01 - 1.0).abs() < 0.03, "normal stddev {std}");
    // Uniform(-l, l), l = sqrt(6 / (fan_in + fan_out)): variance l^2 / 3.
    let l = (6.0f64 / 500.0).sqrt();
    let g = value("g");
    let (mean, std) = moments(&g);
    assert!(g.iter().all(|x| x.abs() <= l), "within the limit");
    assert!(
        mean.abs() < 4.0 * l / 3f64.sqrt() / 60000f64.sqrt(),
        "glorot mean {mean}"
    );
    assert!(
        (std / (l / 3f64.sqrt()) - 1.0).abs() < 0.03,
        "glorot stddev {std}"
    );
    // A normal truncated at two stddevs keeps 0.8796 of its stddev.
    let (mean, std) = moments(&value("t"));
    assert!(
        (mean - 1.0).abs() < 4.0 * 0.44 / 20000f64.sqrt(),
        "truncated mean {mean}"
    );
    assert!(
        (std / (0.5 * 0.87962) - 1.0).abs() < 0.03,
        "truncated stddev {std}"
    );
    assert_eq!(value("c"), vec![2.5; 4]);
    assert_eq!(value("z"), vec![0.0; 4]);
    assert_eq!(value("o"), vec![1.0; 4]);
}
