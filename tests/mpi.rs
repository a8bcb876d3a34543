//! Data-parallel training under `mpirun -np 2` (the `mpi` feature): the same
//! variables as one process training the same global batches, the loss
//! curve too; `-np 1` is a plain run; a failing rank and ranks that compiled
//! different programs end the run with an error instead of a hang.
//!
//! Built only with `--features mpi`; `.ci/run` runs it with Open MPI.
#![cfg(feature = "mpi")]

mod common;

use common::repo_path;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gradc() -> &'static str {
    env!("CARGO_BIN_EXE_gradc")
}

/// Runs `cmd`, failing the test if it is still running after `limit` (a
/// guard against a hang, not a timing).
fn within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .current_dir(repo_path(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let start = Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn mpirun(np: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", np, gradc()])
        .args(args);
    within(cmd, Duration::from_secs(120))
}

fn alone(args: &[&str]) -> Output {
    let mut cmd = Command::new(gradc());
    cmd.args(args);
    within(cmd, Duration::from_secs(120))
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every tensor of a checkpoint as f64s, by name.
fn variables(path: &Path) -> Vec<(String, Vec<f64>)> {
    let ckpt = gradc::io::checkpoint::load(path).expect("checkpoint");
    let mut v: Vec<_> = ckpt
        .tensors
        .into_iter()
        .map(|(n, t)| (n, t.to_f64_vec()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The largest difference over the largest value, per variable, at most `tol`.
fn assert_agree(a: &[(String, Vec<f64>)], b: &[(String, Vec<f64>)], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
        let diff = x
            .iter()
            .zip(y)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            diff <= tol * scale,
            "{what}: {name} differs by {diff:e} of {scale:e}"
        );
    }
}

fn train_args<'a>(graph: &'a str, dir: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        graph,
        "--steps",
        "100",
        "--threads",
        "1",
        "--quiet",
        "--log-every",
        "10",
        "--checkpoint",
        dir,
        "--out",
        dir,
    ]
}

#[test]
fn two_ranks_train_as_one_process_on_the_same_global_batches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // TwoLayerNet in f32, and the same net in f64.
    let f64_graph = tmp.path().join("two_layer_net_f64.ron");
    let text = std::fs::read_to_string(repo_path("graphs/two_layer_net.ron")).expect("graph");
    std::fs::write(
        &f64_graph,
        text.replace("dtype: F32", "dtype: F64").replace(
            "../data/mnist",
            &repo_path("data/mnist").display().to_string(),
        ),
    )
    .expect("write");
    let f32_graph = repo_path("graphs/two_layer_net.ron");
    for (graph, tol) in [(f32_graph.as_path(), 1e-5), (f64_graph.as_path(), 1e-12)] {
        let graph = graph.to_str().expect("utf-8");
        let one = tmp.path().join("one");
        let two = tmp.path().join("two");
        let (one_s, two_s) = (one.to_str().expect("utf-8"), two.to_str().expect("utf-8"));
        ok(&alone(&train_args(graph, one_s)));
        let out = ok(&mpirun("2", &train_args(graph, two_s)));
        assert_eq!(
            out.matches("trained 100 steps").count(),
            1,
            "rank 0 reports: {out}"
        );
        let ckpt = |d: &Path| d.join("checkpoint.safetensors");
        assert_agree(&variables(&ckpt(&one)), &variables(&ckpt(&two)), tol, graph);
        // The loss curve: the global batch's loss every 10 steps, and the epoch's.
        let curve = |d: &Path, file: &str| {
            let log = gradc::io::metrics::MetricsLog::read(&d.join(file)).expect("log");
            log.column("loss")
                .or_else(|| log.column("train_loss"))
                .expect("a loss column")
        };
        for file in ["steps.csv", "metrics.csv"] {
            let (a, b) = (curve(&one, file), curve(&two, file));
            assert_eq!(a.len(), b.len(), "{file}");
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 10.0 * tol * x.abs(), "{file}: {x} vs {y}");
            }
        }
    }
}

/// `sync: true` batch norm: the global batch's statistics on every rank, so
/// two ranks train bn_mlp as one process does, moving averages included;
/// the epoch's evaluation, split between the ranks and each using its own
/// moving averages, gives one process's numbers. Without `sync`, each rank
/// normalizes with its own half batch, and the variables differ.
#[test]
fn synchronized_batch_norm_trains_as_one_process() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(repo_path("graphs/bn_mlp.ron")).expect("graph");
    let text = text.replace(
        "../data/mnist",
        &repo_path("data/mnist").display().to_string(),
    );
    let graph = |name: &str, text: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let synced = graph(
        "synced.ron",
        text.replace(
            "BatchNorm(decay: 0.99,",
            "BatchNorm(decay: 0.99, sync: true,",
        ),
    );
    let plain = graph("plain.ron", text.clone());
    let run = |graph: &str, ranks: &str, dir: &str| {
        let d = tmp.path().join(dir);
        let d = d.to_str().expect("utf-8");
        let mut args = train_args(graph, d);
        args[3] = "60";
        match ranks {
            "1" => ok(&alone(&args)),
            n => ok(&mpirun(n, &args)),
        };
        tmp.path().join(dir)
    };
    let one = run(&synced, "1", "one");
    let two = run(&synced, "2", "two");
    let ckpt = |d: &Path| variables(&d.join("checkpoint.safetensors"));
    assert!(ckpt(&one).iter().any(|(n, _)| n == "bn1/moving_variance"));
    assert_agree(&ckpt(&one), &ckpt(&two), 1e-5, "sync: true");
    let loss = |d: &Path| {
        gradc::io::metrics::MetricsLog::read(&d.join("metrics.csv"))
            .expect("metrics")
            .column("test_loss")
            .expect("test loss")
    };
    let (a, b) = (loss(&one), loss(&two));
    assert!(
        (a[0] - b[0]).abs() <= 1e-5 * a[0],
        "test loss {a:?} vs {b:?}"
    );
    // Per-rank statistics: not one process's run.
    let apart = run(&plain, "2", "apart");
    let moving = |d: &Path| {
        ckpt(d)
            .into_iter()
            .find(|(n, _)| n == "bn1/moving_mean")
            .expect("moving mean")
            .1
    };
    let (m1, m2) = (moving(&one), moving(&apart));
    let diff = m1
        .iter()
        .zip(&m2)
        .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
    assert!(
        diff > 1e-3,
        "per-rank statistics change the moving mean ({diff:e})"
    );
}

/// `--resume` under mpirun: every rank loads the checkpoint rank 0 wrote,
/// and the run goes on as one that never stopped.
#[test]
fn two_ranks_resume_from_rank_0s_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = repo_path("graphs/two_layer_net_adam.ron");
    let graph = graph.to_str().expect("utf-8");
    let (whole, halves) = (tmp.path().join("whole"), tmp.path().join("halves"));
    let args = |dir: &Path, steps: &'static str| {
        let d = dir.to_str().expect("utf-8").to_string();
        let mut a: Vec<String> = [
            "train",
            graph,
            "--steps",
            steps,
            "--threads",
            "1",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(["--checkpoint".into(), d.clone(), "--out".into(), d]);
        a
    };
    let run = |a: Vec<String>| {
        ok(&mpirun(
            "2",
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    };
    run(args(&whole, "60"));
    run(args(&halves, "30"));
    let mut resumed = args(&halves, "60");
    resumed.push("--resume".into());
    run(resumed);
    let ckpt = |d: &Path| variables(&d.join("checkpoint.safetensors"));
    assert_eq!(
        ckpt(&whole),
        ckpt(&halves),
        "resumed at step 30: the same bits"
    );
}

/// A rank killed outright: mpirun stops the other one and names the rank,
/// instead of leaving it waiting in an exchange.
#[test]
fn a_killed_rank_ends_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("killed-run");
    let out_s = out.to_str().expect("utf-8");
    let graph = repo_path("graphs/two_layer_net.ron");
    let mut child = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "2",
            gradc(),
        ])
        .args([
            "train",
            graph.to_str().expect("utf-8"),
            "--steps",
            "1000000",
        ])
        .args(["--threads", "1", "--quiet", "--out", out_s])
        .current_dir(repo_path(""))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    // Once the first epoch is written, both ranks are training: kill one.
    let start = Instant::now();
    while !out.join("metrics.csv").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no epoch written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pgrep = Command::new("pgrep")
        .args(["-f", &format!("gradc train .* --out {out_s}$")])
        .output()
        .expect("pgrep runs");
    // The ranks: mpirun's own command line matches too.
    let launcher = child.id().to_string();
    let pids: Vec<String> = String::from_utf8_lossy(&pgrep.stdout)
        .split_whitespace()
        .filter(|p| *p != launcher)
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 2, "two ranks: {pids:?}");
    let killed = Command::new("kill")
        .args(["-9", &pids[1]])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    while child.try_wait().expect("waits").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the other rank still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("exited on signal 9"), "{err}");
}

/// A synchronized batch norm that also normalizes with batch statistics at
/// inference (no training flag): the evaluation, split unevenly between
/// three ranks (ten chunks of the test set), exchanges nothing, so it ends.
#[test]
fn inference_of_a_synchronized_batch_norm_exchanges_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(repo_path("graphs/two_layer_net.ron")).expect("graph");
    let text = text
        .replace(
            r#"(name: "relu1",    op: Relu, inputs: ["affine1"]),"#,
            r#"(name: "bn",       op: BatchNorm(sync: true), inputs: ["affine1"]),
        (name: "relu1",    op: Relu, inputs: ["bn"]),"#,
        )
        .replace("batch_size: 100", "batch_size: 99")
        .replace(
            "../data/mnist",
            &repo_path("data/mnist").display().to_string(),
        );
    assert!(text.contains("sync: true") && text.contains("batch_size: 99"));
    let graph = tmp.path().join("bn.ron");
    std::fs::write(&graph, text).expect("write");
    let dir = tmp.path().to_str().expect("utf-8");
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        "3",
        gradc(),
    ])
    .args([
        "train",
        graph.to_str().expect("utf-8"),
        "--steps",
        "20",
        "--threads",
        "1",
    ])
    .args(["--quiet", "--out", dir]);
    let out = ok(&within(cmd, Duration::from_secs(60)));
    assert!(out.contains("test loss"), "{out}");
}

#[test]
fn one_rank_is_a_plain_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let graph = repo_path("graphs/two_layer_net.ron");
    let graph = graph.to_str().expect("utf-8");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(&alone(&train_args(graph, a.to_str().expect("utf-8"))));
    ok(&mpirun("1", &train_args(graph, b.to_str().expect("utf-8"))));
    let bytes = |d: &Path| std::fs::read(d.join("checkpoint.safetensors")).expect("checkpoint");
    assert_eq!(bytes(&a), bytes(&b), "the same bits");
}

#[test]
fn a_failing_rank_or_different_programs_end_the_run_with_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = repo_path("graphs/two_layer_net.ron");
    let good = good.to_str().expect("utf-8");
    let dir = tmp.path().to_str().expect("utf-8");
    // Rank 1's graph reads a data directory that does not exist.
    let bad = tmp.path().join("bad.ron");
    let text = std::fs::read_to_string(good).expect("graph");
    std::fs::write(&bad, text.replace("../data/mnist", "no/such/mnist")).expect("write");
    let bad = bad.to_str().expect("utf-8");
    let mpmd = |second: &str| {
        let mut cmd = Command::new("mpirun");
        cmd.args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            "1",
            gradc(),
        ])
        .args(train_args(good, dir))
        .args([":", "-np", "1", gradc()])
        .args(train_args(second, dir));
        within(cmd, Duration::from_secs(120))
    };
    let o = mpmd(bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("rank 1: error:") && err.contains("no/such/mnist"),
        "{err}"
    );
    // A different net on rank 1: caught before the first step.
    let other = tmp.path().join("other.ron");
    std::fs::write(
        &other,
        text.replace("[784, 50]", "[784, 60]")
            .replace("[50]", "[60]")
            .replace("[50, 10]", "[60, 10]")
            .replace(
                "../data/mnist",
                &repo_path("data/mnist").display().to_string(),
            ),
    )
    .expect("write");
    let o = mpmd(other.to_str().expect("utf-8"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("ranks compiled different train steps"),
        "{err}"
    );
    // The same program started from another seed: caught before the first step.
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        "1",
        gradc(),
    ])
    .args(train_args(good, dir))
    .args([":", "-np", "1", gradc()])
    .args(train_args(good, dir))
    .args(["--seed", "7"]);
    let o = within(cmd, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("run them differently"), "{err}");
    // A last, smaller batch would not split evenly.
    let remainder = tmp.path().join("remainder.ron");
    std::fs::write(
        &remainder,
        text.replace(r#"labels: "t")"#, r#"labels: "t", drop_remainder: false)"#)
            .replace(
                "../data/mnist",
                &repo_path("data/mnist").display().to_string(),
            ),
    )
    .expect("write");
    let o = mpirun(
        "2",
        &[
            "train",
            remainder.to_str().expect("utf-8"),
            "--steps",
            "1",
            "--quiet",
            "--out",
            dir,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("drop_remainder: false with 2 ranks"), "{err}");
    // An odd global batch.
    let o = mpirun(
        "2",
        &[
            "train",
            good,
            "--batch-size",
            "99",
            "--steps",
            "1",
            "--quiet",
            "--out",
            dir,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("batch_size 99 is the global batch and must split evenly over the 2 ranks"),
        "{err}"
    );
}

#[test]
fn bench_under_two_ranks_reports_the_exchange() {
    let o = mpirun(
        "2",
        &[
            "bench",
            "--workload",
            "w1",
            "--steps",
            "5",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--no-peak",
        ],
    );
    let out = ok(&o);
    assert_eq!(
        out.matches("result w1:").count(),
        1,
        "rank 0 reports: {out}"
    );
    // W1's gradients: 784·50 + 50 + 50·10 + 10 f32 values.
    let bytes = 4 * (784 * 50 + 50 + 50 * 10 + 10);
    assert!(
        out.contains(
            "ranks 2: each a batch of 50 (FLOPs and GFLOP/s are one rank's); the all-reduces: "
        ) && out.contains(&format!(" {bytes} bytes/step from each rank")),
        "{out}"
    );
}
