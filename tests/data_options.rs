//! The data section's options: `.npz` arrays keep their dtype up to the
//! placeholder, in-order batches with and without the remainder, a
//! validation split reported each epoch, and data placeholders that the
//! train step does not read.

mod common;

use common::{gradc, stderr};
use gradc::train::{train, TrainOptions};
use ndarray::{Array1, Array2};
use ndarray_npy::{NpzWriter, WritableElement};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Writes `x` and `y` to `dir/name`.
fn npz<A: WritableElement, B: WritableElement>(
    dir: &Path,
    name: &str,
    x: &ndarray::ArrayD<A>,
    y: &ndarray::ArrayD<B>,
) {
    let mut w = NpzWriter::new(File::create(dir.join(name)).expect("create"));
    w.add_array("x", x).expect("x");
    w.add_array("y", y).expect("y");
    w.finish().expect("finish");
}

/// Features x_i = 1 + i·1e-10 (apart only in f64), targets y_i = 2 x_i + i.
fn xs(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 * 1e-10).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, x)| 2.0 * x + i as f64)
        .collect();
    (x, y)
}

/// A one-weight linear regression, loss = mean((x w - y)^2), with `data` as
/// the data section's options and `extra` more train fields.
fn regression(dir: &Path, n: usize, data: &str, extra: &str) -> PathBuf {
    let (x, y) = xs(n);
    let col = |v: Vec<f64>| {
        Array2::from_shape_vec((n, 1), v)
            .expect("n rows")
            .into_dyn()
    };
    npz(dir, "train.npz", &col(x), &col(y));
    let text = format!(
        r#"Graph(name: "reg", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: ["batch", 1])),
            (name: "y", op: Placeholder(shape: ["batch", 1])),
            (name: "w", op: Variable(shape: [1, 1], initializer: Zeros)),
            (name: "xw", op: MatMul(), inputs: ["x", "w"]),
            (name: "err", op: Sub, inputs: ["xw", "y"]),
            (name: "sq", op: Square, inputs: ["err"]),
            (name: "loss", op: Mean(), inputs: ["sq"]),
        ], train: (
            loss: "loss",
            optimizer: GradientDescent(learning_rate: 0.1),
            data: (source: Npz(train: "train.npz"), features: "x", labels: "y"{data}),
            {extra}
        ))"#
    );
    let path = dir.join("reg.ron");
    std::fs::write(&path, text).expect("write");
    path
}

fn opts(dir: &Path) -> TrainOptions {
    TrainOptions {
        out_dir: Some(dir.join("out")),
        ..TrainOptions::default()
    }
}

/// Plain SGD on the regression over `batches` of row indices, in f64.
fn sgd(n: usize, batches: &[&[usize]]) -> f64 {
    let (x, y) = xs(n);
    let mut w = 0.0;
    for batch in batches {
        let g: f64 = batch
            .iter()
            .map(|&i| 2.0 * (x[i] * w - y[i]) * x[i])
            .sum::<f64>()
            / batch.len() as f64;
        w -= 0.1 * g;
    }
    w
}

fn trained_w(report: &gradc::train::TrainReport) -> f64 {
    report.variables["w"].to_f64_vec()[0]
}

#[test]
fn in_order_batches_keep_or_drop_the_remainder() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 5 rows in batches of 2: [0, 1], [2, 3], [4] when the remainder is kept.
    let path = regression(
        dir.path(),
        5,
        ", shuffle: false, drop_remainder: false",
        "batch_size: 2, epochs: 2",
    );
    let report = train(&path, &opts(dir.path())).expect("trains");
    assert_eq!(report.steps, 6, "three batches an epoch");
    let epoch: [&[usize]; 3] = [&[0, 1], &[2, 3], &[4]];
    let want = sgd(5, &[epoch, epoch].concat());
    assert!(
        (trained_w(&report) - want).abs() <= 1e-14 * want.abs(),
        "{} vs {want}",
        trained_w(&report)
    );
    assert_eq!(report.epochs.len(), 2);
    assert_eq!(report.epochs[1].step, 6);

    let path = regression(
        dir.path(),
        5,
        ", shuffle: false",
        "batch_size: 2, epochs: 2",
    );
    let report = train(&path, &opts(dir.path())).expect("trains");
    assert_eq!(report.steps, 4, "the last row is dropped by default");
    let epoch: [&[usize]; 2] = [&[0, 1], &[2, 3]];
    let want = sgd(5, &[epoch, epoch].concat());
    assert!((trained_w(&report) - want).abs() <= 1e-14 * want.abs());
}

#[test]
fn npz_data_keeps_its_f64_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = regression(dir.path(), 4, ", shuffle: false", "batch_size: 4, steps: 3");
    let report = train(&path, &opts(dir.path())).expect("trains");
    let all: &[usize] = &[0, 1, 2, 3];
    let want = sgd(4, &[all, all, all]);
    // Narrowed to f32, x would be 1.0 in every row and w off by about 1e-10.
    let narrowed = {
        let y: Vec<f64> = xs(4).1.iter().map(|&v| f64::from(v as f32)).collect();
        let mut w = 0.0;
        for _ in 0..3 {
            let g: f64 = y.iter().map(|y| 2.0 * (w - y)).sum::<f64>() / 4.0;
            w -= 0.1 * g;
        }
        w
    };
    assert!(
        (want - narrowed).abs() > 1e-11,
        "the test can tell them apart"
    );
    assert!(
        (trained_w(&report) - want).abs() <= 1e-15 * want.abs(),
        "{} vs {want}",
        trained_w(&report)
    );
}

#[test]
fn integer_labels_above_2_to_the_24_arrive_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = (1i64 << 40) + 1;
    let x = Array2::<f64>::ones((2, 1)).into_dyn();
    let y = Array1::from_vec(vec![big, big]).into_dyn();
    npz(dir.path(), "train.npz", &x, &y);
    let text = r#"Graph(name: "ints", dtype: F64, nodes: [
        (name: "x", op: Placeholder(shape: ["batch", 1])),
        (name: "y", op: Placeholder(shape: ["batch"]), dtype: I64),
        (name: "w", op: Variable(shape: [1, 1], initializer: Zeros)),
        (name: "xw", op: MatMul(), inputs: ["x", "w"]),
        (name: "loss", op: Sum(), inputs: ["xw"]),
        (name: "yf", op: Cast(to: F64), inputs: ["y"]),
        (name: "label", op: Mean(), inputs: ["yf"]),
    ], train: (
        loss: "loss",
        optimizer: GradientDescent(learning_rate: 0.1),
        metrics: ["label"],
        data: (source: Npz(train: "train.npz"), features: "x", labels: "y"),
        batch_size: 2,
        steps: 1,
    ))"#;
    let path = dir.path().join("ints.ron");
    std::fs::write(&path, text).expect("write");
    let report = train(&path, &opts(dir.path())).expect("trains");
    assert_eq!(report.epochs[0].train.metrics, vec![big as f64]);
}

#[test]
fn a_validation_split_is_held_out_and_reported_each_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 5 rows, 0.4 held out: rows 0..3 train (Keras: the first int(5 · 0.6)), rows 3 and 4 validate.
    let path = regression(
        dir.path(),
        5,
        ", shuffle: false, validation_split: 0.4",
        "batch_size: 3, epochs: 2",
    );
    let report = train(&path, &opts(dir.path())).expect("trains");
    assert_eq!(
        report.steps, 2,
        "one batch of the three training rows an epoch"
    );
    let all: &[usize] = &[0, 1, 2];
    let w = sgd(5, &[all, all]);
    let (x, y) = xs(5);
    let val = (3..5).map(|i| (x[i] * w - y[i]).powi(2)).sum::<f64>() / 2.0;
    let got = report.epochs[1]
        .validation
        .as_ref()
        .expect("validation")
        .loss;
    assert!((got - val).abs() <= 1e-12 * val, "{got} vs {val}");
    let csv = std::fs::read_to_string(dir.path().join("out/metrics.csv")).expect("metrics");
    assert!(
        csv.lines().next().expect("header").contains("val_loss"),
        "{csv}"
    );

    for (bad, message) in [
        (
            "1.5",
            "reg.ron:12: error: validation_split must be in (0, 1), got 1.5",
        ),
        ("0.99", "cannot split 5 of 5 examples off"),
    ] {
        let path = regression(
            dir.path(),
            5,
            &format!(", validation_split: {bad}"),
            "batch_size: 1, steps: 1",
        );
        let e = train(&path, &opts(dir.path())).expect_err("refused");
        assert!(e.to_string().contains(message), "{e}");
    }
}

#[test]
fn a_validation_file_is_reported_beside_train_and_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = regression(dir.path(), 4, "", "batch_size: 2, steps: 2");
    let text = std::fs::read_to_string(&path).expect("read").replace(
        r#"Npz(train: "train.npz")"#,
        r#"Npz(train: "train.npz", validation: "train.npz", test: "train.npz")"#,
    );
    std::fs::write(&path, text).expect("write");
    let report = train(&path, &opts(dir.path())).expect("trains");
    let last = report.epochs.last().expect("an epoch");
    let (val, test) = (last.validation.as_ref(), last.test.as_ref());
    assert_eq!(val.map(|s| s.loss), test.map(|s| s.loss), "the same file");
    assert!(val.is_some());
}

#[test]
fn fed_names_are_checked_and_an_unread_placeholder_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The loss does not read x: a variable trained toward a constant.
    let (x, y) = xs(4);
    let col = |v: Vec<f64>| Array2::from_shape_vec((4, 1), v).expect("rows").into_dyn();
    npz(dir.path(), "train.npz", &col(x), &col(y));
    let graph = |features: &str| {
        let text = format!(
            r#"Graph(name: "free", dtype: F64, nodes: [
                (name: "x", op: Placeholder(shape: ["batch", 1])),
                (name: "y", op: Placeholder(shape: ["batch", 1])),
                (name: "w", op: Variable(shape: [], initializer: Zeros)),
                (name: "c", op: Const(3.0)),
                (name: "d", op: Sub, inputs: ["w", "c"]),
                (name: "loss", op: Square, inputs: ["d"]),
            ], train: (
                loss: "loss",
                optimizer: GradientDescent(learning_rate: 0.25),
                data: (source: Npz(train: "train.npz"), features: "{features}", labels: "y"),
                batch_size: 2,
                steps: 1,
            ))"#
        );
        let path = dir.path().join("free.ron");
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let out = dir.path().join("out");
    let out = out.to_str().expect("utf-8");
    let o = gradc(&["train", &graph("x"), "--quiet", "--out", out]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("warning: the data section feeds 'x', which the train step does not read"),
        "{}",
        stderr(&o)
    );
    let o = gradc(&["train", &graph("xx"), "--quiet", "--out", out]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("feeds 'xx', which is not a node of the graph (did you mean 'x'?)"),
        "{}",
        stderr(&o)
    );
    let o = gradc(&["train", &graph("w"), "--quiet", "--out", out]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("feeds 'w', which is not a Placeholder"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn log_every_writes_steps_csv_prints_lines_and_fetched_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = regression(
        dir.path(),
        4,
        ", shuffle: false",
        "batch_size: 2, steps: 6, hooks: [\"err\"], learning_rate_schedule: PiecewiseConstant(boundaries: [2], values: [0.1, 0.01])",
    );
    let out = dir.path().join("out");
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "train".to_string(),
            path.display().to_string(),
            "--quiet".into(),
            "--out".into(),
            out.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| gradc(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args(&[
        "--log-every",
        "2",
        "--fetch",
        "d(loss)/d(err)",
        "--fetch",
        "w",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("step")).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains("loss") && lines[0].contains("lr 1.0000e-1"),
        "{}",
        lines[0]
    );
    // global_step 3 (the fourth step) is past the boundary 2.
    assert!(lines[1].contains("lr 1.0000e-2"), "{}", lines[1]);
    let csv = std::fs::read_to_string(out.join("steps.csv")).expect("steps.csv");
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("step,loss,learning_rate,examples_per_sec")
    );
    let steps: Vec<&str> = rows.map(|r| r.split(',').next().unwrap_or("")).collect();
    assert_eq!(steps, vec!["2", "4", "6"]);
    // The hook's gradient, d(mean(err^2))/d(err) = err, a [2, 1] batch.
    let hook: ndarray::ArrayD<f64> =
        ndarray_npy::read_npy(out.join("fetched/d_loss__d_err_.step2.npy")).expect("hook");
    assert_eq!(hook.shape(), &[2, 1]);
    let w: ndarray::ArrayD<f64> =
        ndarray_npy::read_npy(out.join("fetched/w.step6.npy")).expect("w");
    assert_eq!(w.shape(), &[1, 1]);

    for (bad, message) in [
        (vec!["--log-every", "0"], "--log-every must be at least 1"),
        (
            vec!["--log-every", "-2"],
            "--log-every must be at least 1, got -2",
        ),
        (vec!["--log-every", "1", "--fetch", "nope"], "--fetch nope"),
        (vec!["--fetch", "w"], "--log-every"),
    ] {
        let mut a = args(&[]);
        a.extend(bad.iter().map(|s| s.to_string()));
        let o = run(a);
        assert!(!o.status.success(), "{bad:?}");
        assert!(stderr(&o).contains(message), "{bad:?}: {}", stderr(&o));
    }
}
