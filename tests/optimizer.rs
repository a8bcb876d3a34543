//! The optimizer preserves results: for every example in graphs/ and for
//! randomly generated graphs (of random shapes and dtypes, with variables,
//! batch norm and train steps), optimized and unoptimized programs give the
//! same outputs, gradients (second order included) and variable updates,
//! within 1e-12 relative in f64 (1e-9 for second order) and 1e-5 in f32; so
//! do the gradients with respect to, the fetches of and the feeds of every
//! node an example names, one at a time, and of a random node of each random
//! graph. The random cases come from fixed seeds, so every run checks the
//! same graphs.

mod common;

use common::repo_path;
use gradc::compiler::{self, passes::Pipeline, schema, Compiler, RunNames, Source};
use gradc::runtime::{DType, Op, Program, Session, Tensor};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-12,
        DType::F32 => 1e-5,
        // Integers and bools match exactly.
        _ => 0.0,
    }
}

/// Relative error as gradcheck measures it: the largest absolute difference
/// over the larger of the two tensors' max-norms (NaN and inf must match
/// exactly, position by position).
fn assert_same(a: &Tensor, b: &Tensor, what: &str) {
    assert_same_at_least(a, b, what, 0.0);
}

/// `assert_same`, each tensor judged by its own max-norm, with an absolute
/// floor of the rounding of what it was computed from: `ROUNDINGS` units in
/// the last place of `floor`, the size of its sources (for a gradient, what
/// it differentiates, see `compare_outputs`). A tensor that is zero in exact
/// arithmetic (the second derivative of a sum of softmax's outputs, the
/// gradient of a bias under a batch norm) is left with that rounding; any
/// other tensor is held to its own scale.
fn assert_same_at_least(a: &Tensor, b: &Tensor, what: &str, floor: f64) {
    assert_same_within(a, b, what, [floor, floor], tolerance(a.dtype()), ROUNDINGS);
}

/// How many units in the last place of its sources' size a tensor's
/// rounding may reach (sums over a batch, a normalization's cancellations;
/// 20 seen in f32).
const ROUNDINGS: f64 = 32.0;

/// `assert_same_at_least` with the relative tolerance `tol`, `roundings` ulps
/// of `floor` as the absolute floor, and `noise`, the size of the largest
/// values a tensor's computation passes through: a tensor no larger than
/// `roundings` ulps of it is rounding noise (zero in exact arithmetic), and
/// its difference is held to that.
fn assert_same_within(
    a: &Tensor,
    b: &Tensor,
    what: &str,
    [floor, noise]: [f64; 2],
    tol: f64,
    roundings: f64,
) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let mut max_diff: f64 = 0.0;
    let mut scale: f64 = 0.0;
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        if !p.is_finite() || !q.is_finite() {
            assert!(
                p == q || (p.is_nan() && q.is_nan()),
                "{what}[{i}]: optimized {q} vs unoptimized {p}"
            );
            continue;
        }
        max_diff = max_diff.max((p - q).abs());
        scale = scale.max(p.abs()).max(q.abs());
    }
    let ulp = match a.dtype() {
        DType::F32 => f64::from(f32::EPSILON),
        DType::F64 => f64::EPSILON,
        _ => 0.0,
    };
    let noise = roundings * ulp * noise;
    let allowed = if scale <= noise {
        noise
    } else {
        (tol * scale).max(roundings * ulp * floor)
    };
    assert!(
        max_diff <= allowed,
        "{what}: max difference {max_diff:e} over max-norm {scale:e} exceeds {tol:e} \
         (absolute floor {:e}: {roundings} ulps of the sources' size {floor:e}; noise {noise:e})",
        roundings * ulp * floor
    );
}

/// Random values for every placeholder (symbolic dims of size 4), the same for both programs.
fn feeds(p: &Program, seed: u64) -> HashMap<String, Tensor> {
    common::random_feeds(p, 4, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// Every labelled output of both programs, compared.
fn compare_outputs(
    plain: Program,
    optimized: Program,
    feeds: &HashMap<String, Tensor>,
    what: &str,
) {
    let labels: Vec<String> = plain.outputs.iter().map(|o| o.label.clone()).collect();
    let run = |p: Program| {
        let mut s = Session::new(p).expect("valid");
        s.initialize(3).expect("init");
        let refs: Vec<_> = labels
            .iter()
            .map(|l| s.resolve(l).expect("label survives"))
            .collect();
        s.run(feeds, &refs).expect("runs")
    };
    let (a, b) = (run(plain), run(optimized));
    let norm = |t: &Tensor| t.to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    // d(OF)/d(V) is measured against the size of OF too, and of what OF
    // differentiates in turn, when they are outputs: the values whose
    // rounding it carries.
    let floor = |label: &str| {
        let mut floor = 0.0f64;
        let mut label = label;
        while let Some(of) = label
            .strip_prefix("d(")
            .and_then(|l| l.rfind(")/d(").map(|i| &l[..i]))
        {
            if let Some(i) = labels.iter().position(|l| l == of) {
                floor = floor.max(norm(&a[i]));
            }
            label = of;
        }
        floor
    };
    for ((x, y), label) in a.iter().zip(&b).zip(&labels) {
        // A second derivative through a batch norm (fused on one side,
        // decomposed on the other) cancels terms larger than itself: 1e-9 in
        // f64 (the largest seen over the random graphs is 1.1e-10), the same
        // as first order in f32, and 1024 ulps of its sources where it is
        // zero in exact arithmetic (seen: 70).
        let (tol, roundings) = match (label.starts_with("d(d("), x.dtype()) {
            (true, DType::F64) => (1e-9, 1024.0),
            (true, _) => (tolerance(x.dtype()), 1024.0),
            _ => (tolerance(x.dtype()), ROUNDINGS),
        };
        let what = format!("{what}: {label}");
        let floor = floor(label);
        assert_same_within(x, y, &what, [floor, floor], tol, roundings);
    }
}

/// Every graph file in `graphs/`: its path, text and parsed spec.
fn examples() -> Vec<(String, String, schema::GraphSpec)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo_path("graphs")).expect("graphs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let spec = schema::parse(&text).expect("parses");
        files.push((path.display().to_string(), text, spec));
    }
    files
}

#[test]
fn every_example_gives_the_same_results_optimized() {
    for (file, text, spec) in examples() {
        if spec.train.is_some() {
            compare_training(&spec, &text, &file);
        } else {
            // The default pipeline as `gradc compile` runs it, prefuse included.
            let source = || Source::file(&spec, &text, &file);
            let plain = Compiler::new(source())
                .passes(Pipeline::none())
                .compile()
                .expect("plain")
                .program;
            let optimized = Compiler::new(source())
                .passes(Pipeline::default_passes().verify_always())
                .compile()
                .expect("optimized")
                .program;
            let f = feeds(&plain, 5);
            compare_outputs(plain, optimized, &f, &file);
        }
    }
}

#[test]
fn compiling_for_the_program_alone_gives_the_same_program() {
    // `compile` (what `gradc compile` runs) moves the graph into the
    // program; with `keep_graph` it copies it out and keeps the graph.
    for (file, text, spec) in examples() {
        let source = || Source::file(&spec, &text, &file);
        let copied = Compiler::new(source())
            .keep_graph()
            .compile()
            .expect("compiles");
        let g = copied.graph.expect("kept");
        let moved = Compiler::new(source()).compile().expect("compiles");
        assert!(moved.graph.is_none(), "{file}");
        // As saved (`==` would fail on a NaN constant even for one program).
        let saved = |p: &gradc::runtime::Program| p.to_ron().expect("saves");
        assert_eq!(saved(&copied.program), saved(&moved.program), "{file}");
        assert_eq!(g.prefused, moved.prefused, "{file}");
        assert_eq!(copied.prefused, moved.prefused, "{file}");
        assert_eq!(copied.reports, moved.reports, "{file}");
    }
}

/// A graph with a train section, compiled as `gradc train` does and with no
/// optimization: three train steps from the same start give the same losses
/// and variables (moving averages included), and the inference programs the
/// same loss with the variables reached.
fn compare_training(spec: &schema::GraphSpec, text: &str, file: &str) {
    // Every trainable variable hooked: the train step reports its gradient.
    let mut spec = spec.clone();
    let trained: Vec<String> = spec
        .nodes
        .iter()
        .filter(|n| {
            matches!(
                n.op.op(),
                Some(Op::Variable {
                    trainable: true,
                    ..
                })
            )
        })
        .map(|n| n.name.clone())
        .collect();
    let Some(train) = &mut spec.train else {
        panic!("{file}: no train section");
    };
    train.hooks.extend(trained.iter().cloned());
    let gradient_labels: Vec<String> = trained
        .iter()
        .map(|v| schema::gradient_name(&train.loss, v))
        .collect();
    let spec = &spec;
    // Three train steps from the same start: same losses, gradients and variables.
    let plain = Compiler::new(Source::file(spec, text, file))
        .passes(Pipeline::none())
        .compile_train()
        .expect("plain");
    let optimized = Compiler::new(Source::file(spec, text, file))
        .compile_train()
        .expect("optimized");
    assert!(
        optimized.train.instrs.len() <= plain.train.instrs.len(),
        "{file}: the optimizer added nodes"
    );
    let f = feeds(&plain.train, 11);
    let mut sessions = [
        (plain.train.clone(), &plain.train_op),
        (optimized.train.clone(), &optimized.train_op),
    ]
    .map(|(p, op)| {
        let mut s = Session::new(p).expect("valid");
        s.initialize(3).expect("init");
        let t = s.resolve_target(op).expect("train op");
        (s, t)
    });
    // The sizes of the loss and of the largest gradient: the scales of what
    // a gradient (or a trained variable, or its optimizer slot) and another
    // variable (a moving average) are computed from, whose rounding a
    // tensor that is zero in exact arithmetic keeps (a bias before a batch
    // norm, say).
    let mut loss_size = 0.0f64;
    let mut grad_size = 0.0f64;
    let norm = |t: &Tensor| t.to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for step in 0..3 {
        let fetched: Vec<Vec<Tensor>> = sessions
            .iter_mut()
            .map(|(s, t)| {
                let refs: Vec<_> = std::iter::once(&plain.loss)
                    .chain(&gradient_labels)
                    .chain(&plain.metrics)
                    .map(|l| s.resolve(l).expect("loss, gradients and metrics"))
                    .collect();
                s.run_with_targets(&f, &refs, &[*t]).expect("step")
            })
            .collect();
        assert_same(
            &fetched[0][0],
            &fetched[1][0],
            &format!("{file}: loss at step {step}"),
        );
        loss_size = fetched[0][0]
            .to_f64_vec()
            .iter()
            .fold(loss_size, |m, v| m.max(v.abs()));
        let metrics = 1 + gradient_labels.len();
        for (k, label) in plain.metrics.iter().enumerate() {
            assert_same(
                &fetched[0][metrics + k],
                &fetched[1][metrics + k],
                &format!("{file}: metric {label} at step {step}"),
            );
        }
        let step_grads = fetched[0][1..metrics].iter().map(norm).fold(0.0, f64::max);
        grad_size = grad_size.max(step_grads);
        for (k, label) in gradient_labels.iter().enumerate() {
            assert_same_within(
                &fetched[0][k + 1],
                &fetched[1][k + 1],
                &format!("{file}: {label} at step {step}"),
                // A bias's gradient sums upstream values larger than itself.
                [step_grads.max(loss_size), loss_size],
                tolerance(fetched[0][k + 1].dtype()),
                ROUNDINGS,
            );
        }
    }
    // The inference programs, with the variables the train steps reached: same loss.
    let eval_loss = |p: &Program, from: &Session| {
        let mut s = Session::new(p.clone()).expect("valid");
        for (name, _) in s.variable_types() {
            let v = from
                .variables()
                .into_iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.cloned());
            s.set_variable(&name, v.expect("trained")).expect("set");
        }
        let f = feeds(p, 13);
        let loss = s.resolve(&plain.loss).expect("loss");
        s.run(&f, &[loss]).expect("inference").remove(0)
    };
    let (a, b) = (
        eval_loss(&plain.eval, &sessions[0].0),
        eval_loss(&optimized.eval, &sessions[1].0),
    );
    assert_same(&a, &b, &format!("{file}: inference loss"));
    let vars = |s: &Session| -> Vec<(String, Tensor)> {
        s.variables()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.expect("set").clone()))
            .collect()
    };
    let (a, b) = (vars(&sessions[0].0), vars(&sessions[1].0));
    assert_eq!(a.len(), b.len(), "{file}: variables");
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        let trained_or_slot = trained
            .iter()
            .any(|v| n == v || n.starts_with(&format!("{v}/")));
        let floor = if trained_or_slot {
            grad_size
        } else {
            loss_size
        };
        let what = format!("{file}: variable {n} after 3 steps");
        let tol = tolerance(x.dtype());
        assert_same_within(x, y, &what, [floor, loss_size], tol, ROUNDINGS);
    }
}

#[test]
fn the_passes_fire_on_the_examples() {
    let g = compiler::graph_from_file(&repo_path("graphs/two_layer_net.ron")).expect("builds");
    let compiler::Output {
        program: p,
        reports,
        ..
    } = Compiler::new(g)
        .passes(Pipeline::default_passes().verify_always())
        .compile()
        .expect("compiles");
    let fired: HashMap<&str, usize> = reports
        .iter()
        .flat_map(|r| r.fired.iter().copied())
        .collect();
    assert_eq!(fired.get("dense_with_activation"), Some(&1), "{reports:?}");
    assert_eq!(fired.get("dense"), Some(&1), "{reports:?}");
    assert!(
        p.instrs.iter().all(|i| !matches!(i.op, Op::BiasAdd { .. })),
        "every BiasAdd fused"
    );
    // apple: every value is known at compile time.
    let g = compiler::graph_from_file(&repo_path("graphs/apple.ron")).expect("builds");
    let p = Compiler::new(g).compile().expect("compiles").program;
    assert!(
        p.instrs.iter().all(|i| matches!(i.op, Op::Const(_))),
        "{:?}",
        p.instrs.iter().map(|i| i.op.name()).collect::<Vec<_>>()
    );
}

/// Each pass alone, on every example: it reaches a fixpoint, keeps the
/// graph valid and the results the same.
#[test]
fn every_pass_alone_preserves_every_example() {
    for (file, text, spec) in examples() {
        for &name in compiler::passes::PASS_NAMES {
            let pipeline = Pipeline::named(&[name]).expect("a pass").verify_always();
            let source = || Source::file(&spec, &text, &file);
            let optimized = Compiler::new(source())
                .passes(pipeline)
                .compile()
                .unwrap_or_else(|e| panic!("{file}, {name} alone: {e:?}"))
                .program;
            let plain = Compiler::new(source())
                .passes(Pipeline::none())
                .compile()
                .expect("plain")
                .program;
            let f = feeds(&plain, 2);
            compare_outputs(plain, optimized, &f, &format!("{file}, {name} alone"));
        }
    }
}

/// Each simplification rule on a small graph: how often it fires (0 where
/// its invariant does not hold), with optimized and unoptimized results
/// compared. Inputs: `x` [3, 4], `r` [4] (a row), `c` [3, 1] (a column).
/// The identity rules, run by the pass on IEEE's edge values (±0, ±inf,
/// NaN, the smallest normal and subnormal numbers): x·1, 1·x, x/1, −(−x),
/// x − 0, x^1, Identity, AddN of one input give the unsimplified program's
/// bits; x + 0 its value (−0 + 0 is +0, equal to −0 but not the same bits,
/// which is why the rule's invariant is "equal", not "identical").
#[test]
fn identity_rules_keep_ieee_edge_values() {
    let cases: &[(&str, &str, bool)] = &[
        (
            "mul_one",
            r#"(name: "y", op: Mul, inputs: ["x", "one"])"#,
            true,
        ),
        (
            "mul_one",
            r#"(name: "y", op: Mul, inputs: ["one", "x"])"#,
            true,
        ),
        (
            "div_one",
            r#"(name: "y", op: Div, inputs: ["x", "one"])"#,
            true,
        ),
        (
            "neg_neg",
            r#"(name: "n", op: Neg, inputs: ["x"]), (name: "y", op: Neg, inputs: ["n"])"#,
            true,
        ),
        (
            "sub_zero",
            r#"(name: "y", op: Sub, inputs: ["x", "zero"])"#,
            true,
        ),
        (
            "pow_one",
            r#"(name: "y", op: Pow(exponent: 1.0), inputs: ["x"])"#,
            true,
        ),
        (
            "identity",
            r#"(name: "y", op: Identity, inputs: ["x"])"#,
            true,
        ),
        (
            "add_n_of_one",
            r#"(name: "y", op: AddN, inputs: ["x"])"#,
            true,
        ),
        (
            "add_zero",
            r#"(name: "y", op: Add, inputs: ["x", "zero"])"#,
            false,
        ),
        (
            "add_zero",
            r#"(name: "y", op: Add, inputs: ["zero", "x"])"#,
            false,
        ),
    ];
    let edges = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 4.0,
        -1.5,
    ];
    for &(rule, nodes, identical) in cases {
        let text = format!(
            r#"Graph(name: "edges", dtype: F64, nodes: [
                (name: "x", op: Placeholder(shape: [{}])),
                (name: "one", op: Const(1.0)), (name: "zero", op: Const(0.0)),
                {nodes}], outputs: ["y"])"#,
            edges.len()
        );
        let g = compiler::graph_from_str(&text, "edges.ron").expect("builds");
        let plain = Compiler::new(g.clone())
            .passes(Pipeline::none())
            .compile()
            .expect("plain")
            .program;
        let pipeline = Pipeline::named(&["simplify"])
            .expect("a pass")
            .verify_always();
        let compiler::Output {
            program: simplified,
            reports,
            ..
        } = Compiler::new(g)
            .passes(pipeline)
            .compile()
            .expect("simplifies");
        let fired = reports
            .iter()
            .flat_map(|r| r.fired.iter())
            .any(|(n, _)| *n == rule);
        assert!(fired, "{rule} did not fire on {nodes}: {reports:?}");
        let feeds = HashMap::from([(
            "x".to_string(),
            Tensor::from_f64(DType::F64, &[edges.len()], edges.to_vec()).expect("fits"),
        )]);
        let run = |p: Program| {
            let mut s = Session::new(p).expect("valid");
            let y = s.resolve("y").expect("y");
            s.run(&feeds, &[y]).expect("runs").remove(0).to_f64_vec()
        };
        let (want, got) = (run(plain), run(simplified));
        for ((w, g), x) in want.iter().zip(&got).zip(edges) {
            let same = if identical {
                w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan())
            } else {
                w == g || (w.is_nan() && g.is_nan())
            };
            assert!(same, "{rule} on {nodes}, x = {x:e}: {g:e} instead of {w:e}");
        }
    }
}

#[test]
fn simplification_rules_fire_exactly_where_they_hold() {
    let cases: &[(&str, &str, usize)] = &[
        (
            "mul_one",
            r#"(name: "one", op: Const(1.0)), (name: "y", op: Mul, inputs: ["x", "one"])"#,
            1,
        ),
        // x * 1 with the one of a larger shape changes the shape: no rule
        (
            "mul_one",
            r#"(name: "one", op: Const([[[1.0]]])), (name: "y", op: Mul, inputs: ["x", "one"])"#,
            0,
        ),
        (
            "neg_neg",
            r#"(name: "n", op: Neg, inputs: ["x"]), (name: "y", op: Neg, inputs: ["n"])"#,
            1,
        ),
        (
            "pow_two_is_square",
            r#"(name: "y", op: Pow(exponent: 2.0), inputs: ["x"])"#,
            1,
        ),
        (
            "transpose_of_transpose",
            r#"(name: "t", op: Transpose(), inputs: ["x"]), (name: "y", op: Transpose(), inputs: ["t"])"#,
            1,
        ),
        (
            "reshape_of_reshape",
            r#"(name: "a", op: Reshape(shape: [12]), inputs: ["x"]), (name: "y", op: Reshape(shape: [4, 3]), inputs: ["a"])"#,
            1,
        ),
        // the mean over the rows of a repeated row is the row
        (
            "mean_of_broadcast",
            r#"(name: "b", op: BroadcastLike, inputs: ["r", "x"]), (name: "y", op: Mean(axes: [0]), inputs: ["b"])"#,
            1,
        ),
        // and over the columns of a repeated column, the column
        (
            "mean_of_broadcast",
            r#"(name: "b", op: BroadcastLike, inputs: ["c", "x"]), (name: "y", op: Mean(axes: [-1], keep_dims: true), inputs: ["b"])"#,
            1,
        ),
        // the mean over axis 1 of a row repeated as [4, 4] averages the row: no rule
        (
            "mean_of_broadcast",
            r#"(name: "sq", op: Const([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])), (name: "b", op: BroadcastLike, inputs: ["r", "sq"]), (name: "y", op: Mean(axes: [1]), inputs: ["b"])"#,
            0,
        ),
        // over every axis the result is a scalar, not r: no rule
        (
            "mean_of_broadcast",
            r#"(name: "b", op: BroadcastLike, inputs: ["r", "x"]), (name: "y", op: Mean(), inputs: ["b"])"#,
            0,
        ),
    ];
    for &(rule, nodes, want) in cases {
        let text = format!(
            r#"Graph(name: "rule", dtype: F64, nodes: [
                (name: "x", op: Placeholder(shape: [3, 4])),
                (name: "r", op: Placeholder(shape: [4])),
                (name: "c", op: Placeholder(shape: [3, 1])),
                {nodes}], outputs: ["y"])"#
        );
        let g = compiler::graph_from_str(&text, "rule.ron").expect("builds");
        let plain = Compiler::new(g.clone())
            .passes(Pipeline::none())
            .compile()
            .expect("plain")
            .program;
        let compiler::Output {
            program: optimized,
            reports,
            ..
        } = Compiler::new(g)
            .passes(
                Pipeline::named(&["simplify"])
                    .expect("a pass")
                    .verify_always(),
            )
            .compile()
            .unwrap_or_else(|e| panic!("{rule} on {nodes}: {e:?}"));
        let fired: usize = reports
            .iter()
            .flat_map(|r| r.fired.iter())
            .filter(|(name, _)| *name == rule)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(fired, want, "{rule} on {nodes}: {reports:?}");
        let f = feeds(&plain, 5);
        compare_outputs(plain, optimized, &f, nodes);
    }
}

/// One random op applied to earlier tensors (all of shape [3, 4]).
#[derive(Clone, Debug)]
struct Step {
    op: usize,
    a: usize,
    b: usize,
}

const UNARY: &[&str] = &[
    "Neg",
    "Tanh",
    "Sigmoid",
    "Relu",
    "Square",
    "Identity",
    "StopGradient",
    "Abs",
    "Sin",
    "Atan",
    "Erf",
    "Softsign",
    "Elu",
    "Selu",
    "LeakyRelu(alpha: 0.2)",
    "Gelu",
    "GeluTanh",
];

fn random_graph(steps: &[Step]) -> String {
    let mut nodes = vec![
        r#"(name: "t0", op: Placeholder(shape: [3, 4]))"#.to_string(),
        r#"(name: "t1", op: Const([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -0.5, 0.0], [0.3, 0.2, 0.1, -2.0]]))"#.to_string(),
        r#"(name: "w", op: Placeholder(shape: [4, 4]))"#.to_string(),
        r#"(name: "bias", op: Placeholder(shape: [4]))"#.to_string(),
        r#"(name: "one", op: Const(1.0))"#.to_string(),
        r#"(name: "zero", op: Const(0.0))"#.to_string(),
    ];
    let mut tensors = vec!["t0".to_string(), "t1".to_string()];
    for (k, s) in steps.iter().enumerate() {
        let (a, b) = (&tensors[s.a % tensors.len()], &tensors[s.b % tensors.len()]);
        let name = format!("n{k}");
        const PERMS: [&str; 6] = [
            "[0, 1, 2]",
            "[0, 2, 1]",
            "[1, 0, 2]",
            "[1, 2, 0]",
            "[2, 0, 1]",
            "[2, 1, 0]",
        ];
        let act = ["Linear", "Relu", "Sigmoid", "Tanh"][s.b % 4];
        let node = match s.op % 18 {
            0 => format!(r#"(name: "{name}", op: Add, inputs: ["{a}", "{b}"])"#),
            1 => format!(r#"(name: "{name}", op: Mul, inputs: ["{a}", "{b}"])"#),
            2 => format!(r#"(name: "{name}", op: Sub, inputs: ["{a}", "{b}"])"#),
            3 => format!(r#"(name: "{name}", op: Mul, inputs: ["{a}", "one"])"#),
            4 => format!(r#"(name: "{name}", op: Add, inputs: ["zero", "{a}"])"#),
            5 => format!(
                r#"(name: "{name}_m", op: MatMul(), inputs: ["{a}", "w"]), (name: "{name}", op: BiasAdd(), inputs: ["{name}_m", "bias"])"#
            ),
            6 => format!(
                r#"(name: "{name}_m", op: MatMul(), inputs: ["{a}", "w"]), (name: "{name}_b", op: BiasAdd(), inputs: ["{name}_m", "bias"]), (name: "{name}", op: Relu, inputs: ["{name}_b"])"#
            ),
            7 => format!(
                r#"(name: "{name}_t", op: Transpose(), inputs: ["{a}"]), (name: "{name}", op: Transpose(), inputs: ["{name}_t"])"#
            ),
            8 => format!(
                r#"(name: "{name}_s", op: Sum(axes: [-1], keep_dims: true), inputs: ["{a}"]), (name: "{name}", op: Add, inputs: ["{name}_s", "{b}"])"#
            ),
            9 => format!(
                r#"(name: "{name}_n", op: Neg, inputs: ["{a}"]), (name: "{name}", op: Neg, inputs: ["{name}_n"])"#
            ),
            10 => format!(r#"(name: "{name}", op: AddN, inputs: ["{a}"])"#),
            11 => format!(
                r#"(name: "{name}_s", op: Sum(axes: [0]), inputs: ["{a}"]), (name: "{name}_b", op: BroadcastLike, inputs: ["{name}_s", "{b}"]), (name: "{name}_m", op: Mean(axes: [0]), inputs: ["{name}_b"]), (name: "{name}", op: Add, inputs: ["{b}", "{name}_m"])"#
            ),
            // two rank-3 transposes (the rule composing them), back to [3, 4]
            13 => format!(
                r#"(name: "{name}_r", op: Reshape(shape: [3, 2, 2]), inputs: ["{a}"]), (name: "{name}_t", op: Transpose(perm: {}), inputs: ["{name}_r"]), (name: "{name}_u", op: Transpose(perm: {}), inputs: ["{name}_t"]), (name: "{name}", op: Reshape(shape: [3, 4]), inputs: ["{name}_u"])"#,
                PERMS[s.b % 6],
                PERMS[(s.b / 6) % 6]
            ),
            // a batched product of [3, 2, 2] matrices
            14 => format!(
                r#"(name: "{name}_a", op: Reshape(shape: [3, 2, 2]), inputs: ["{a}"]), (name: "{name}_b", op: Reshape(shape: [3, 2, 2]), inputs: ["{b}"]), (name: "{name}_m", op: MatMul(transpose_b: true), inputs: ["{name}_a", "{name}_b"]), (name: "{name}", op: Reshape(shape: [3, 4]), inputs: ["{name}_m"])"#
            ),
            // Dense with transpose_a over a transposed input
            15 => format!(
                r#"(name: "{name}_t", op: Transpose(), inputs: ["{a}"]), (name: "{name}", op: Dense(transpose_a: true, activation: {act}), inputs: ["{name}_t", "w", "bias"])"#
            ),
            // the sum filled back to the shape
            16 => format!(
                r#"(name: "{name}_s", op: Sum(), inputs: ["{a}"]), (name: "{name}_f", op: Fill(shape: [3, 4]), inputs: ["{name}_s"]), (name: "{name}", op: Mul, inputs: ["{name}_f", "{b}"])"#
            ),
            17 => format!(
                r#"(name: "{name}_i", op: IdentityN, inputs: ["{a}", "{b}"]), (name: "{name}", op: Sub, inputs: ["{name}_i:1", "{name}_i"])"#
            ),
            _ => format!(
                r#"(name: "{name}", op: {}, inputs: ["{a}"])"#,
                UNARY[s.b % UNARY.len()]
            ),
        };
        nodes.push(node);
        tensors.push(name);
    }
    let last = tensors.last().expect("tensors");
    nodes.push(format!(r#"(name: "sq", op: Square, inputs: ["{last}"])"#));
    nodes.push(r#"(name: "loss", op: Sum(), inputs: ["sq"])"#.to_string());
    format!(
        r#"Graph(name: "random", dtype: F64, nodes: [{}], outputs: ["loss"], gradients: [
            (of: "loss", wrt: ["t0", "w", "bias"]),
            (of: "d(loss)/d(t0)", wrt: ["t0", "w"]),
        ])"#,
        nodes.join(",\n")
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2560,
        rng_seed: proptest::test_runner::RngSeed::Fixed(4),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_graphs_give_the_same_values_and_gradients_optimized(
        steps in prop::collection::vec((0usize..100, 0usize..100, 0usize..100).prop_map(|(op, a, b)| Step { op, a, b }), 1..10),
    ) {
        let text = random_graph(&steps);
        let g = compiler::graph_from_str(&text, "random.ron").expect("builds");
        let plain = Compiler::new(g.clone()).passes(Pipeline::none()).compile().expect("plain").program;
        let optimized = Compiler::new(g).passes(Pipeline::default_passes().verify_always()).compile().expect("optimized").program;
        let f = feeds(&plain, 9);
        compare_outputs(plain, optimized, &f, &text);
    }
}

/// The loss of a random graph on its last tensor and the labels `t`: the
/// mean squared error, or the mean of -sum(t log softmax(last)) over the
/// last axis, which the optimizer fuses into the cross-entropy op.
fn loss_nodes(last: &str, squared_error: bool) -> Vec<String> {
    if squared_error {
        vec![
            format!(r#"(name: "d", op: Sub, inputs: ["{last}", "t"])"#),
            r#"(name: "sq", op: Square, inputs: ["d"])"#.to_string(),
            r#"(name: "loss", op: Mean(), inputs: ["sq"])"#.to_string(),
        ]
    } else {
        vec![
            format!(r#"(name: "p", op: Softmax, inputs: ["{last}"])"#),
            r#"(name: "lp", op: Log, inputs: ["p"])"#.to_string(),
            r#"(name: "tl", op: Mul, inputs: ["t", "lp"])"#.to_string(),
            r#"(name: "s", op: Sum(axes: [-1]), inputs: ["tl"])"#.to_string(),
            r#"(name: "ce", op: Neg, inputs: ["s"])"#.to_string(),
            r#"(name: "loss", op: Mean(), inputs: ["ce"])"#.to_string(),
        ]
    }
}

/// A random training graph: `steps` applied to tensors of a random shape
/// [m, n] and its broadcasts (rows [n], columns [m, 1], scalars), with
/// variables (a dense layer's weights and bias, a scale), batch norm layers
/// whose moving averages are updated every step, the patterns the optimizer
/// fuses (dense, sigmoid and softmax cross-entropy composites, elementwise
/// chains), and a squared-error or cross-entropy loss.
fn random_training_graph(m: usize, n: usize, f32: bool, momentum: bool, steps: &[Step]) -> String {
    let dtype = if f32 { "F32" } else { "F64" };
    let mut nodes = vec![
        format!(r#"(name: "x", op: Placeholder(shape: [{m}, {n}]))"#),
        format!(r#"(name: "t_raw", op: Placeholder(shape: [{m}, {n}]))"#),
        r#"(name: "t", op: Softmax, inputs: ["t_raw"])"#.to_string(),
        r#"(name: "training", op: Placeholder(shape: []))"#.to_string(),
        format!(r#"(name: "W", op: Variable(shape: [{n}, {n}], initializer: GlorotUniform()))"#),
        format!(
            r#"(name: "b", op: Variable(shape: [{n}], initializer: RandomNormal(stddev: 0.5)))"#
        ),
        format!(
            r#"(name: "g", op: Variable(shape: [{n}], initializer: RandomNormal(stddev: 0.5)))"#
        ),
        r#"(name: "one", op: Const(1.0))"#.to_string(),
        r#"(name: "half", op: Const(0.5))"#.to_string(),
    ];
    let mut full = vec!["x".to_string()];
    let mut rows = vec!["b".to_string(), "g".to_string()];
    let mut cols: Vec<String> = Vec::new();
    let scalars = ["half".to_string(), "one".to_string()];
    for (k, s) in steps.iter().enumerate() {
        let a = full[s.a % full.len()].clone();
        // The other operand: full, a row, a column or a scalar.
        let pools: [&[String]; 4] = [&full, &rows, &cols, &scalars];
        let pool = pools[s.b % 4];
        let b = if pool.is_empty() {
            a.clone()
        } else {
            pool[(s.b / 4) % pool.len()].clone()
        };
        let name = format!("n{k}");
        let node = |op: &str, ins: &[&str]| {
            let ins: Vec<String> = ins.iter().map(|i| format!("{i:?}")).collect();
            format!(
                r#"(name: "{name}", op: {op}, inputs: [{}])"#,
                ins.join(", ")
            )
        };
        let part = |suffix: &str, op: &str, ins: &[&str]| {
            let ins: Vec<String> = ins.iter().map(|i| format!("{i:?}")).collect();
            format!(
                r#"(name: "{name}_{suffix}", op: {op}, inputs: [{}])"#,
                ins.join(", ")
            )
        };
        let (p1, p2, p3) = (
            format!("{name}_1"),
            format!("{name}_2"),
            format!("{name}_3"),
        );
        match s.op % 22 {
            0 => nodes.push(node("Add", &[&a, &b])),
            1 => nodes.push(node("Mul", &[&a, &b])),
            2 => nodes.push(node("Sub", &[&b, &a])),
            // a / (1 + b^2)
            3 => nodes.extend([
                part("1", "Square", &[&b]),
                part("2", "Add", &["one", &p1]),
                node("Div", &[&a, &p2]),
            ]),
            4 => {
                let f = ["Maximum", "Minimum", "SquaredDifference"][(s.b / 4) % 3];
                nodes.push(node(f, &[&a, &b]));
            }
            // dense: a W + b, then an activation
            5 => {
                let act = ["Relu", "Tanh", "Sigmoid", "Identity"][s.b % 4];
                nodes.extend([
                    part("1", "MatMul()", &[&a, "W"]),
                    part("2", "BiasAdd()", &[&p1, "b"]),
                    node(act, &[&p2]),
                ]);
            }
            6 => nodes.push(node(UNARY[s.b % UNARY.len()], &[&a])),
            // exp(tanh a) + log(1 + a^2)
            7 => nodes.extend([
                part("1", "Tanh", &[&a]),
                part("2", "Exp", &[&p1]),
                part("3", "Square", &[&a]),
                part("4", "Add", &["one", &p3]),
                part("5", "Log", &[&format!("{name}_4")]),
                node("Add", &[&p2, &format!("{name}_5")]),
            ]),
            // a column from a row sum, times a
            8 => {
                nodes.extend([
                    part("1", "Sum(axes: [-1], keep_dims: true)", &[&a]),
                    node("Mul", &[&a, &p1]),
                ]);
                cols.push(p1);
            }
            // a row from a column mean, subtracted from a
            9 => {
                nodes.extend([part("1", "Mean(axes: [0])", &[&a]), node("Sub", &[&a, &p1])]);
                rows.push(p1);
            }
            // batch norm (training: batch statistics, moving averages updated), scaled by g
            10 => nodes.extend([
                part(
                    "1",
                    r#"BatchNorm(decay: 0.9, is_training: "training")"#,
                    &[&a],
                ),
                node("Mul", &[&p1, "g"]),
            ]),
            // the sigmoid composite 1 / (1 + exp(-a))
            11 => nodes.extend([
                part("1", "Neg", &[&a]),
                part("2", "Exp", &[&p1]),
                part("3", "Add", &["one", &p2]),
                node("Div", &["one", &p3]),
            ]),
            // transpose twice, reshape to a vector and back
            12 => nodes.extend([
                part("1", "Transpose()", &[&a]),
                part("2", "Transpose()", &[&p1]),
                part("3", &format!("Reshape(shape: [{}])", m * n), &[&p2]),
                node(&format!("Reshape(shape: [{m}, {n}])"), &[&p3]),
            ]),
            // a reversed along its columns, plus a
            14 => nodes.extend([
                part("1", "Reverse(axes: [-1])", &[&a]),
                node("Add", &[&a, &p1]),
            ]),
            // a padded by a column on each side (mirrored, or a constant), a
            // tile of it, cut back to [m, n] from an offset
            15 => {
                let mode = ["SYMMETRIC", "CONSTANT, constant_values: 0.5"][s.b % 2];
                nodes.extend([
                    part(
                        "1",
                        &format!("Pad(paddings: [[0, 0], [1, 1]], mode: {mode})"),
                        &[&a],
                    ),
                    part("2", "Tile(multiples: [1, 2])", &[&p1]),
                    node(
                        &format!("Slice(begin: [0, {}], size: [-1, {n}])", 1 + s.b % 3),
                        &[&p2],
                    ),
                ]);
            }
            // a and x side by side, the n columns from the second on
            16 => nodes.extend([
                part("1", "Concat(axis: -1)", &[&a, "x"]),
                node(&format!("Slice(begin: [0, 1], size: [{m}, {n}])"), &[&p1]),
            ]),
            // dropout in training (a mask drawn each step), plus a
            17 => nodes.extend([
                part("1", r#"Dropout(rate: 0.3, is_training: "training")"#, &[&a]),
                node("Add", &[&a, &p1]),
            ]),
            // a's rows reversed by a strided slice, times a
            18 => nodes.extend([
                part(
                    "1",
                    "StridedSlice(begin: [0], end: [0], strides: [-1], begin_mask: 1, end_mask: 1)",
                    &[&a],
                ),
                node("Mul", &[&a, &p1]),
            ]),
            // a's columns gathered in reverse by integer indices
            19 => {
                let reversed: Vec<String> = (0..n).rev().map(|i| format!("{i}.0")).collect();
                nodes.extend([
                    format!(
                        r#"(name: "{name}_i", op: Const([{}]), dtype: I32)"#,
                        reversed.join(", ")
                    ),
                    node("Gather(axis: 1)", &[&a, &format!("{name}_i")]),
                ]);
            }
            // a unstacked into its rows and stacked back in reverse
            20 => {
                let rows_back: Vec<String> = (0..m)
                    .rev()
                    .map(|r| {
                        if r == 0 {
                            p1.clone()
                        } else {
                            format!("{p1}:{r}")
                        }
                    })
                    .collect();
                let refs: Vec<&str> = rows_back.iter().map(String::as_str).collect();
                nodes.extend([
                    part("1", "Unstack(axis: 0)", &[&a]),
                    node("Stack(axis: 0)", &refs),
                ]);
            }
            // through the other float dtype and back
            21 => {
                let (there, back) = if f32 { ("F64", "F32") } else { ("F32", "F64") };
                nodes.extend([
                    part("1", &format!("Cast(to: {there})"), &[&a]),
                    part("2", "Tanh", &[&p1]),
                    node(&format!("Cast(to: {back})"), &[&p2]),
                ]);
            }
            // the mean over the rows of a row repeated, plus a
            _ => nodes.extend([
                part("1", "Sum(axes: [0])", &[&a]),
                part("2", "BroadcastLike", &[&p1, &a]),
                part("3", "Mean(axes: [0])", &[&p2]),
                node("Add", &[&a, &p3]),
            ]),
        }
        full.push(name);
    }
    let last = full.last().expect("x at least");
    nodes.extend(loss_nodes(last, steps.len().is_multiple_of(2)));
    // A metric of the train step: how often the largest entries agree.
    nodes.extend([
        format!(r#"(name: "am", op: ArgMax(axis: 1), inputs: ["{last}"])"#),
        r#"(name: "at", op: ArgMax(axis: 1), inputs: ["t"])"#.to_string(),
        r#"(name: "hit", op: Equal, inputs: ["am", "at"])"#.to_string(),
        r#"(name: "hits", op: Cast(to: F32), inputs: ["hit"])"#.to_string(),
        r#"(name: "agreement", op: Mean(), inputs: ["hits"])"#.to_string(),
    ]);
    let optimizer = if momentum {
        "Momentum(learning_rate: 0.05, momentum: 0.9)"
    } else {
        "GradientDescent(learning_rate: 0.1)"
    };
    format!(
        r#"Graph(name: "random_training", dtype: {dtype}, nodes: [{}], outputs: ["loss"],
            train: (loss: "loss", optimizer: {optimizer}, training_flag: "training", seed: 1,
                    metrics: ["agreement"]))"#,
        nodes.join(",\n")
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2560,
        rng_seed: proptest::test_runner::RngSeed::Fixed(5),
        ..ProptestConfig::default()
    })]

    /// Random training graphs of random shapes and dtypes: the optimized
    /// train step (prefuse and every pass) and the unoptimized one give the
    /// same losses and variable updates over three steps.
    #[test]
    fn random_training_graphs_update_the_same_optimized(
        m in 1usize..5,
        n in 1usize..6,
        f32 in any::<bool>(),
        momentum in any::<bool>(),
        steps in prop::collection::vec((0usize..1000, 0usize..1000, 0usize..1000).prop_map(|(op, a, b)| Step { op, a, b }), 1..9),
    ) {
        let text = random_training_graph(m, n, f32, momentum, &steps);
        let spec = schema::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        compare_training(&spec, &text, &text);
    }
}

/// A random convolutional training graph in one data format: a batch of 2
/// images of a random size, `steps` applied in turn (convolutions with and
/// without a bias and an activation, of random kernels, strides and
/// padding; max and average pooling; batch norm layers, fused or not;
/// elementwise functions), then a dense layer to 3 classes and a
/// softmax cross-entropy loss.
fn random_conv_graph(
    hw: [usize; 2],
    channels: usize,
    nchw: bool,
    f32: bool,
    steps: &[Step],
) -> String {
    let (format, dtype) = (
        if nchw { "NCHW" } else { "NHWC" },
        if f32 { "F32" } else { "F64" },
    );
    let [mut h, mut w] = hw;
    let mut c = channels;
    // [N, H, W, C] in the data format's order.
    let shape = |h: usize, w: usize, c: usize| {
        if nchw {
            format!("[2, {c}, {h}, {w}]")
        } else {
            format!("[2, {h}, {w}, {c}]")
        }
    };
    // Attribute entries on the spatial axes, 1 on the batch and channels.
    let four = |a: usize, b: usize| {
        if nchw {
            format!("[1, 1, {a}, {b}]")
        } else {
            format!("[1, {a}, {b}, 1]")
        }
    };
    let mut nodes = vec![
        format!(r#"(name: "x", op: Placeholder(shape: {}))"#, shape(h, w, c)),
        r#"(name: "t_raw", op: Placeholder(shape: [2, 3]))"#.to_string(),
        r#"(name: "t", op: Softmax, inputs: ["t_raw"])"#.to_string(),
        r#"(name: "training", op: Placeholder(shape: []))"#.to_string(),
    ];
    let mut last = "x".to_string();
    for (k, s) in steps.iter().enumerate() {
        let name = format!("n{k}");
        let node = |name: &str, op: &str, ins: &[&str]| {
            let ins: Vec<String> = ins.iter().map(|i| format!("{i:?}")).collect();
            format!(
                r#"(name: "{name}", op: {op}, inputs: [{}])"#,
                ins.join(", ")
            )
        };
        // A SAME pass keeps sizes at a stride of 1, a VALID one needs the window to fit.
        let same_or_valid = |kernel: usize, h: usize, w: usize, pick: usize| {
            if pick.is_multiple_of(2) || kernel > h.min(w) {
                "SAME"
            } else {
                "VALID"
            }
        };
        let out = |size: usize, kernel: usize, stride: usize, padding: &str| match padding {
            "SAME" => size.div_ceil(stride),
            _ => (size - kernel) / stride + 1,
        };
        match s.op % 5 {
            // Conv2D, with a bias and an activation (3 of 4 times)
            0 | 1 => {
                let (kernel, stride) = (1 + s.a % 3, 1 + (s.a / 3) % 2);
                let padding = same_or_valid(kernel, h, w, s.b);
                let o = 1 + (s.b / 2) % 3;
                let (kn, bn, cn) = (format!("{name}_k"), format!("{name}_b"), format!("{name}_c"));
                nodes.push(format!(
                    r#"(name: "{kn}", op: Variable(shape: [{kernel}, {kernel}, {c}, {o}], initializer: GlorotUniform()))"#
                ));
                let conv = format!(
                    "Conv2D(strides: {}, padding: {padding}, data_format: {format})",
                    four(stride, stride)
                );
                let act = ["Relu", "Tanh", "Sigmoid", "Identity"][(s.b / 6) % 4];
                if s.b % 4 == 3 {
                    nodes.push(node(&name, &conv, &[&last, &kn]));
                } else {
                    nodes.extend([
                        format!(r#"(name: "{bn}", op: Variable(shape: [{o}], initializer: RandomNormal(stddev: 0.5)))"#),
                        node(&cn, &conv, &[&last, &kn]),
                        node(&format!("{name}_z"), &format!("BiasAdd(data_format: {format})"), &[&cn, &bn]),
                        node(&name, act, &[&format!("{name}_z")]),
                    ]);
                }
                (h, w, c) = (out(h, kernel, stride, padding), out(w, kernel, stride, padding), o);
            }
            // max or average pooling, 2x2 at a stride of 1 or 2
            2 => {
                let stride = 1 + s.a % 2;
                let padding = same_or_valid(2, h, w, s.b);
                let pool = ["MaxPool", "AvgPool"][(s.b / 2) % 2];
                nodes.push(node(
                    &name,
                    &format!(
                        "{pool}(ksize: {}, strides: {}, padding: {padding}, data_format: {format})",
                        four(2, 2),
                        four(stride, stride)
                    ),
                    &[&last],
                ));
                (h, w) = (out(h, 2, stride, padding), out(w, 2, stride, padding));
            }
            // batch norm over the channels (moving averages updated), fused or not
            3 => nodes.push(node(
                &name,
                &format!(
                    r#"BatchNorm(decay: 0.9, scale: true, fused: {}, data_format: {format}, is_training: "training")"#,
                    s.a % 2 == 0
                ),
                &[&last],
            )),
            _ => nodes.push(node(&name, UNARY[s.a % UNARY.len()], &[&last])),
        }
        last = name;
    }
    let size = h * w * c;
    nodes.extend([
        format!(r#"(name: "flat", op: Reshape(shape: [2, {size}]), inputs: ["{last}"])"#),
        format!(r#"(name: "W", op: Variable(shape: [{size}, 3], initializer: GlorotUniform()))"#),
        r#"(name: "bias", op: Variable(shape: [3], initializer: Zeros))"#.to_string(),
        r#"(name: "mm", op: MatMul(), inputs: ["flat", "W"])"#.to_string(),
        r#"(name: "logits", op: BiasAdd(), inputs: ["mm", "bias"])"#.to_string(),
    ]);
    nodes.extend(loss_nodes("logits", false));
    format!(
        r#"Graph(name: "random_conv", dtype: {dtype}, nodes: [{}], outputs: ["loss"],
            train: (loss: "loss", optimizer: Momentum(learning_rate: 0.05, momentum: 0.9),
                    training_flag: "training", seed: 1))"#,
        nodes.join(",\n")
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        rng_seed: proptest::test_runner::RngSeed::Fixed(19),
        ..ProptestConfig::default()
    })]

    /// Random convolutional training graphs (rank 4, NHWC or NCHW, f32 or
    /// f64): the optimized train step (convolutions fused with their bias and
    /// activation, batch norm fused and, in the inference program, folded
    /// into the convolution) and the unoptimized one give the same losses and
    /// variable updates over three steps.
    #[test]
    fn random_conv_graphs_update_the_same_optimized(
        h in 2usize..8,
        w in 2usize..8,
        channels in 1usize..4,
        nchw in any::<bool>(),
        f32 in any::<bool>(),
        steps in prop::collection::vec((0usize..1000, 0usize..1000, 0usize..1000).prop_map(|(op, a, b)| Step { op, a, b }), 1..6),
    ) {
        let text = random_conv_graph([h, w], channels, nchw, f32, &steps);
        let spec = schema::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        compare_training(&spec, &text, &text);
    }
}

/// The convolution's fusions fire: Conv2D, BiasAdd and an activation become
/// one FusedConv2D in the train step, and batch norm after a convolution is
/// folded into its filter and bias in the inference program, in either data
/// format.
#[test]
fn convolutions_fuse_with_bias_activation_and_batch_norm() {
    let count = |p: &Program, op: &str| p.instrs.iter().filter(|i| i.op.name() == op).count();
    for nchw in [false, true] {
        // A convolution with a bias and a Relu, then one followed by batch norm and a Relu.
        let conv = Step { op: 0, a: 1, b: 0 };
        let bare = Step { op: 0, a: 1, b: 3 };
        let text = random_conv_graph(
            [5, 5],
            2,
            nchw,
            false,
            &[
                conv,
                bare,
                Step { op: 3, a: 0, b: 0 },
                Step { op: 4, a: 3, b: 0 },
            ],
        );
        let spec = schema::parse(&text).expect("parses");
        let p = Compiler::new(Source::file(&spec, &text, "conv.ron"))
            .compile_train()
            .expect("compiles");
        assert_eq!(count(&p.train, "FusedConv2D"), 1, "{text}");
        assert_eq!(count(&p.train, "BiasAdd"), 0, "{text}");
        assert_eq!(count(&p.eval, "FusedBatchNorm"), 0, "folded: {text}");
        assert_eq!(count(&p.eval, "Conv2D"), 0, "{text}");
        assert_eq!(count(&p.eval, "FusedConv2D"), 2, "{text}");
        compare_training(&spec, &text, &text);
    }
}

/// The dense pattern's backward form fires for Relu, Tanh and Sigmoid in a
/// train step (ReluGrad or the rules' products, with the bias gradient's
/// Sum), and the fused step trains as the unfused one.
#[test]
fn dense_backward_fuses_for_relu_sigmoid_and_tanh() {
    for (b, activation) in [(0, "Relu"), (1, "Tanh"), (2, "Sigmoid")] {
        for f32 in [false, true] {
            let text = random_training_graph(3, 4, f32, false, &[Step { op: 5, a: 0, b }]);
            let spec = schema::parse(&text).expect("parses");
            let p = Compiler::new(Source::file(&spec, &text, "dense.ron"))
                .compile_train()
                .expect("compiles");
            let fused = p
                .train
                .instrs
                .iter()
                .filter(|i| i.op.name() == "ActivationBiasGrad")
                .map(|i| i.op.attrs_text())
                .collect::<Vec<_>>();
            let want = vec![format!("{{activation: {activation}}}")];
            assert_eq!(fused, want, "{activation}: {text}");
            compare_training(&spec, &text, &format!("dense {activation}"));
        }
    }
}

#[test]
fn composites_fuse_before_differentiation() {
    let count = |p: &Program, op: &str| p.instrs.iter().filter(|i| i.op.name() == op).count();
    // BN-MLP's train step: both layers' Moments + BatchNormalization become FusedBatchNorm.
    let path = repo_path("graphs/bn_mlp.ron");
    let text = std::fs::read_to_string(&path).expect("read");
    let spec = schema::parse(&text).expect("parses");
    let p = Compiler::new(Source::file(&spec, &text, "bn_mlp.ron"))
        .compile_train()
        .expect("compiles");
    assert_eq!(
        (
            count(&p.train, "FusedBatchNorm"),
            count(&p.train, "FusedBatchNormGrad")
        ),
        (2, 2)
    );
    assert_eq!(
        count(&p.train, "Moments") + count(&p.train, "BatchNormalization"),
        0
    );
    // Its inference program folds each batch norm into the preceding MatMul.
    assert_eq!(
        count(&p.eval, "BatchNormalization") + count(&p.eval, "FusedBatchNorm"),
        0
    );
    assert_eq!(count(&p.eval, "MatMul"), 0);
    assert_eq!(count(&p.eval, "Dense"), 3);
    // The composite sigmoid is differentiated as Sigmoid: y * (1 - y) * dy, not the chain.
    let path = repo_path("graphs/sigmoid_composite.ron");
    let text = std::fs::read_to_string(&path).expect("read");
    let spec = schema::parse(&text).expect("parses");
    let out = Compiler::new(Source::file(&spec, &text, "s.ron"))
        .compile()
        .expect("compiles");
    assert_eq!(out.prefused.get("sigmoid"), Some(&1));
    // A softmax cross-entropy written out by hand becomes the fused op.
    let hand = r#"Graph(name: "ce", dtype: F64, nodes: [
        (name: "z", op: Placeholder(shape: [2, 3])), (name: "t", op: Placeholder(shape: [2, 3])),
        (name: "p", op: Softmax, inputs: ["z"]), (name: "lp", op: Log, inputs: ["p"]),
        (name: "tl", op: Mul, inputs: ["t", "lp"]), (name: "s", op: Sum(axes: [-1]), inputs: ["tl"]),
        (name: "ce", op: Neg, inputs: ["s"]), (name: "loss", op: Mean(), inputs: ["ce"]),
    ], gradients: [(of: "loss", wrt: ["z"])])"#;
    let spec = schema::parse(hand).expect("parses");
    let compiler::Output {
        program: p,
        prefused,
        ..
    } = Compiler::new(Source::file(&spec, hand, "ce.ron"))
        .compile()
        .expect("compiles");
    assert_eq!(prefused.get("softmax_cross_entropy"), Some(&1));
    assert_eq!(count(&p, "Log"), 0, "no log of a softmax left");
    // And the same numbers as the unfused graph, labels being distributions.
    let plain = Compiler::new(compiler::graph_from_str(hand, "ce.ron").expect("builds"))
        .passes(Pipeline::none())
        .compile()
        .expect("plain")
        .program;
    let f = HashMap::from([
        (
            "z".to_string(),
            Tensor::from_f64(DType::F64, &[2, 3], vec![0.2, -1.0, 3.0, 0.5, 0.5, -2.0])
                .expect("fits"),
        ),
        (
            "t".to_string(),
            Tensor::from_f64(DType::F64, &[2, 3], vec![0.1, 0.2, 0.7, 1.0, 0.0, 0.0])
                .expect("fits"),
        ),
    ]);
    compare_outputs(plain, p, &f, "softmax cross-entropy by hand");
}

/// A random f64 graph of rank 2 ([3, 4]) or rank 4 (NHWC [2, 2, 2, 3]) for
/// the composites the optimizer fuses before differentiation (dense layers
/// and their activations, the sigmoid composite, Moments + BatchNormalization,
/// softmax cross-entropy) mixed with the rest of the elementwise and shape
/// ops (Sqrt, Rsqrt, Pow, Select, Maximum, ExpandDims and Squeeze, a mean
/// kept as an axis), asking for first- and second-order gradients.
fn random_prefused_graph(rank4: bool, steps: &[Step]) -> String {
    let (shape, c, stat_axes) = if rank4 {
        ("[2, 2, 2, 3]", 3, "[0, 1, 2]")
    } else {
        ("[3, 4]", 4, "[0]")
    };
    let mut nodes = vec![
        format!(r#"(name: "x", op: Placeholder(shape: {shape}))"#),
        format!(r#"(name: "t_raw", op: Placeholder(shape: {shape}))"#),
        r#"(name: "t", op: Softmax, inputs: ["t_raw"])"#.to_string(),
        format!(r#"(name: "w", op: Placeholder(shape: [{c}, {c}]))"#),
        format!(r#"(name: "bias", op: Placeholder(shape: [{c}]))"#),
        format!(r#"(name: "scale", op: Placeholder(shape: [{c}]))"#),
        format!(r#"(name: "offset", op: Placeholder(shape: [{c}]))"#),
        r#"(name: "one", op: Const(1.0))"#.to_string(),
    ];
    let mut tensors = vec!["x".to_string()];
    for (k, s) in steps.iter().enumerate() {
        let (a, b) = (
            tensors[s.a % tensors.len()].clone(),
            tensors[s.b % tensors.len()].clone(),
        );
        let name = format!("n{k}");
        let part = |suffix: &str, op: &str, ins: &[&str]| {
            let ins: Vec<String> = ins.iter().map(|i| format!("{i:?}")).collect();
            let at = if suffix.is_empty() {
                name.clone()
            } else {
                format!("{name}_{suffix}")
            };
            format!(r#"(name: "{at}", op: {op}, inputs: [{}])"#, ins.join(", "))
        };
        let p = |suffix: &str| format!("{name}_{suffix}");
        match s.op % 13 {
            0 => nodes.push(part("", "Add", &[&a, &b])),
            1 => nodes.push(part("", "Mul", &[&a, &b])),
            2 => nodes.push(part("", "Maximum", &[&a, &b])),
            // sqrt(1 + a^2) or rsqrt(1 + a^2)
            3 | 4 => nodes.extend([
                part("1", "Square", &[&a]),
                part("2", "Add", &["one", &p("1")]),
                part(
                    "",
                    if s.op % 13 == 3 { "Sqrt" } else { "Rsqrt" },
                    &[&p("2")],
                ),
            ]),
            5 => nodes.push(part("", "Pow(exponent: 3.0)", &[&a])),
            // a where a >= b, else b
            6 => nodes.extend([
                part("1", "GreaterEqual", &[&a, &b]),
                part("", "Select", &[&p("1"), &a, &b]),
            ]),
            // an axis added and taken away, then a mean over the last axis kept
            7 => nodes.extend([
                part("1", "ExpandDims(axes: [0])", &[&a]),
                part("2", "Squeeze(axes: [0])", &[&p("1")]),
                part("3", "Mean(axes: [-1], keep_dims: true)", &[&p("2")]),
                part("", "Sub", &[&b, &p("3")]),
            ]),
            // the sigmoid composite 1 / (1 + exp(-a))
            8 => nodes.extend([
                part("1", "Neg", &[&a]),
                part("2", "Exp", &[&p("1")]),
                part("3", "Add", &["one", &p("2")]),
                part("", "Div", &["one", &p("3")]),
            ]),
            // a dense layer (rank 2) or a bias (rank 4), then an activation
            9 => {
                let act = ["Relu", "Tanh", "Sigmoid", "Identity"][s.b % 4];
                if rank4 {
                    nodes.push(part("2", "BiasAdd()", &[&a, "bias"]));
                } else {
                    nodes.extend([
                        part("1", "MatMul()", &[&a, "w"]),
                        part("2", "BiasAdd()", &[&p("1"), "bias"]),
                    ]);
                }
                nodes.push(part("", act, &[&p("2")]));
            }
            // batch norm by the batch's moments over all axes but the channels
            10 => nodes.extend([
                part("1", &format!("Moments(axes: {stat_axes})"), &[&a]),
                part(
                    "",
                    "BatchNormalization(variance_epsilon: 0.001)",
                    &[&a, &p("1"), &format!("{name}_1:1"), "offset", "scale"],
                ),
            ]),
            11 => nodes.push(part("", UNARY[s.b % UNARY.len()], &[&a])),
            // batch norm in NCHW: channels moved to axis 1, statistics and
            // parameters reshaped to [1, C, 1, 1] (the NCHW form prefuse fuses)
            12 if rank4 => {
                let r = |t: &str, suffix: &str| part(suffix, "Reshape(shape: [1, -1, 1, 1])", &[t]);
                nodes.extend([
                    part("1", "Transpose(perm: [0, 3, 1, 2])", &[&a]),
                    part("2", "Moments(axes: [0, 2, 3])", &[&p("1")]),
                    r(&p("2"), "3"),
                    r(&format!("{name}_2:1"), "4"),
                    r("offset", "5"),
                    r("scale", "6"),
                    part(
                        "7",
                        "BatchNormalization(variance_epsilon: 0.001)",
                        &[&p("1"), &p("3"), &p("4"), &p("5"), &p("6")],
                    ),
                    part("", "Transpose(perm: [0, 2, 3, 1])", &[&p("7")]),
                ]);
            }
            _ => nodes.push(part("", "Sub", &[&b, &a])),
        }
        tensors.push(name);
    }
    let last = tensors.last().expect("x at least");
    nodes.extend(loss_nodes(last, steps.len().is_multiple_of(2)));
    format!(
        r#"Graph(name: "random_prefused", dtype: F64, nodes: [{}], outputs: ["loss"], gradients: [
            (of: "loss", wrt: ["x", "w", "bias", "scale", "offset"]),
            (of: "d(loss)/d(x)", wrt: ["x", "bias", "scale"]),
        ])"#,
        nodes.join(",\n")
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2560,
        rng_seed: proptest::test_runner::RngSeed::Fixed(6),
        ..ProptestConfig::default()
    })]

    /// Random graphs of rank 2 and 4 built with the composites fused before
    /// differentiation (prefuse) and every pass, against no pass at all: the
    /// same loss, first-order gradients and second-order gradients (through
    /// Dense, FusedBatchNorm and its gradient, Sigmoid, the cross-entropy).
    #[test]
    fn random_prefused_graphs_give_the_same_first_and_second_order_gradients(
        rank4 in any::<bool>(),
        steps in prop::collection::vec((0usize..1000, 0usize..1000, 0usize..1000).prop_map(|(op, a, b)| Step { op, a, b }), 1..8),
        wrt in 0usize..1000,
        fed in 0usize..1000,
    ) {
        let text = random_prefused_graph(rank4, &steps);
        let mut spec = schema::parse(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        // A request of one more tensor, fetched, and one fed: what a user may name.
        let names = named_nodes(&spec, &text);
        let (x, _) = &names[wrt % names.len()];
        spec.gradients.push(schema::GradientSpec { of: "loss".into(), wrt: vec![x.clone()], grad_ys: None });
        let feedable: Vec<&str> = names.iter().filter(|(_, f)| *f).map(|(n, _)| n.as_str()).collect();
        let fed = [feedable[fed % feedable.len()]];
        let fetch = [x.as_str()];
        let text = format!("{text}\n(+ d(loss)/d({x}), fetch {x}, feed {})", fed[0]);
        let run = RunNames { fetches: &fetch, feeds: &[] };
        let compile = |pipeline: Pipeline, run| Compiler::new(Source::file(&spec, &text, "r.ron"))
            .passes(pipeline)
            .run_names(run)
            .compile()
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let plain = compile(Pipeline::none(), run).program;
        let compiler::Output { program: optimized, prefused, .. } =
            compile(Pipeline::default_passes().verify_always(), run);
        let labels: Vec<&str> = plain.outputs.iter().map(|o| o.label.as_str()).collect();
        prop_assert!(labels.iter().any(|l| l.starts_with("d(d(loss)/d(x))")), "{labels:?}");
        let f = feeds(&plain, 13);
        let prefused: usize = prefused.values().sum();
        compare_outputs(plain.clone(), optimized, &f, &format!("{text}\n(prefused: {prefused})"));
        // Fed: the unoptimized program through the session, the optimized one cut there.
        let run = RunNames { fetches: &fetch, feeds: &fed };
        let optimized = compile(Pipeline::default_passes().verify_always(), run).program;
        let f = feeds(&optimized, 17);
        compare_outputs(plain, optimized, &f, &format!("{text}\n(fed)"));
    }
}

/// The generator above reaches each composite the optimizer fuses before
/// differentiation, so the property covers them.
#[test]
fn random_prefused_graphs_reach_every_composite() {
    let mut seen = std::collections::BTreeSet::new();
    let mut nchw = false;
    for (rank4, op, b) in [
        (false, 8, 0),
        (false, 10, 0),
        (true, 10, 0),
        (false, 9, 0),
        (true, 12, 0),
    ] {
        for len in [1, 2] {
            let steps = vec![Step { op, a: 0, b }; len];
            let text = random_prefused_graph(rank4, &steps);
            let spec = schema::parse(&text).expect("parses");
            let compiler::Output {
                program: p,
                prefused,
                ..
            } = Compiler::new(Source::file(&spec, &text, "r.ron"))
                .passes(Pipeline::default_passes().verify_always())
                .compile()
                .expect("compiles");
            seen.extend(prefused.keys().map(|k| k.to_string()));
            seen.extend(p.instrs.iter().map(|i| i.op.name().to_string()));
            nchw |= p.instrs.iter().any(|i| {
                matches!(
                    i.op,
                    Op::FusedBatchNorm {
                        data_format: gradc::runtime::op::DataFormat::NCHW,
                        ..
                    }
                )
            });
        }
    }
    assert!(nchw, "no NCHW batch norm fused");
    for want in [
        "sigmoid",
        "fused_batch_norm",
        "softmax_cross_entropy",
        "Dense",
        "FusedBatchNormGrad",
    ] {
        assert!(seen.contains(want), "{want} not reached: {seen:?}");
    }
}

/// The nodes a graph file writes that have an output, by name, as the file
/// builds without any pass (layers and calls by their own name).
fn named_nodes(spec: &schema::GraphSpec, text: &str) -> Vec<(String, bool)> {
    let g = Compiler::new(Source::file(spec, text, "names.ron"))
        .passes(Pipeline::none())
        .graph()
        .expect("builds");
    spec.nodes
        .iter()
        .filter_map(|n| {
            let node = g.node(g.find(&n.name)?);
            let feedable = node.outputs.len() == 1 && !node.op.is_stateful();
            (!node.outputs.is_empty() && !node.op.is_stateful()).then(|| (n.name.clone(), feedable))
        })
        .collect()
}

/// What users ask for, one name at a time, so that the passes still fire
/// around it: for every example and every node it names, the gradient of
/// the example's loss (or first requested or output tensor) with respect to
/// that node, the same with `grad_ys`, fetching the node, and feeding it
/// (the unoptimized program fed through the session, the optimized one
/// compiled with the feed as a cut point): optimized and unoptimized agree.
#[test]
fn every_named_node_keeps_its_value_gradient_and_feed_optimized() {
    for (file, text, spec) in examples() {
        let mut base = spec.clone();
        let of = match base.train.take() {
            Some(t) => t.loss,
            None => base
                .gradients
                .first()
                .map(|r| r.of.clone())
                .or_else(|| base.outputs.as_ref().and_then(|o| o.first().cloned()))
                .expect("an example names a tensor"),
        };
        for (name, feedable) in named_nodes(&base, &text) {
            let what = format!("{file}, {name}");
            let mut s = base.clone();
            s.gradients.push(schema::GradientSpec {
                of: of.clone(),
                wrt: vec![name.clone()],
                grad_ys: None,
            });
            s.gradients.push(schema::GradientSpec {
                of: of.clone(),
                wrt: vec![name.clone()],
                grad_ys: Some(of.clone()),
            });
            // Two requests of one name: the second's result is `d(of)/d(name)` too.
            let fetch = [name.as_str()];
            let names = RunNames {
                fetches: &fetch,
                feeds: &[],
            };
            let compile = |s: &schema::GraphSpec, pipeline: Pipeline, names| {
                Compiler::new(Source::file(s, &text, &file))
                    .passes(pipeline)
                    .run_names(names)
                    .compile()
                    .unwrap_or_else(|e| panic!("{what}: {e}"))
                    .program
            };
            let plain = compile(&s, Pipeline::none(), names);
            let optimized = compile(&s, Pipeline::default_passes().verify_always(), names);
            let f = feeds(&plain, 5);
            compare_outputs(
                plain,
                optimized,
                &f,
                &format!("{what} (requested, fetched)"),
            );
            if !feedable {
                continue;
            }
            let fed = [name.as_str()];
            let names = RunNames {
                fetches: &[],
                feeds: &fed,
            };
            let plain = compile(&base, Pipeline::none(), Default::default());
            let optimized = compile(&base, Pipeline::default_passes().verify_always(), names);
            // The cut point is a placeholder of the optimized program: random values for it too.
            let f = feeds(&optimized, 7);
            compare_outputs(plain, optimized, &f, &format!("{what} (fed)"));
        }
    }
}

/// Every example with a train section, with each node it names as a hook
/// (`d(loss)/d(node)` reported by the train step): the same values optimized.
#[test]
fn every_hook_gives_the_same_gradient_optimized() {
    for (file, text, spec) in examples() {
        let Some(train) = &spec.train else {
            continue;
        };
        let mut forward = spec.clone();
        forward.train = None;
        for (name, _) in named_nodes(&forward, &text) {
            let mut s = spec.clone();
            if let Some(t) = &mut s.train {
                t.hooks = vec![name.clone()];
            }
            let label = schema::gradient_name(&train.loss, &name);
            let programs = [Pipeline::none(), Pipeline::default_passes()].map(|pipeline| {
                Compiler::new(Source::file(&s, &text, &file))
                    .passes(pipeline)
                    .compile_train()
                    .unwrap_or_else(|e| panic!("{file}, hook {name}: {e}"))
            });
            let f = feeds(&programs[0].train, 11);
            let hooks: Vec<Tensor> = programs
                .iter()
                .map(|p| {
                    let mut session = Session::new(p.train.clone()).expect("valid");
                    session.initialize(3).expect("init");
                    let t = session.resolve_target(&p.train_op).expect("train op");
                    let h = session.resolve(&label).expect("hook reported");
                    session
                        .run_with_targets(&f, &[h], &[t])
                        .expect("step")
                        .remove(0)
                })
                .collect();
            assert_same(&hooks[0], &hooks[1], &format!("{file}: {label}"));
        }
    }
}
