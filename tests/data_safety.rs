//! Inputs that could crash or mislead the command-line tool: absurd sizes,
//! thread counts past the machine's cores, special files as outputs, bad
//! checkpoints to resume from, stale temporary files. Each must end in a
//! clean error naming what is wrong (or the right behaviour), never an abort.

mod common;

use common::{gradc, repo_path, stderr, stdout};
use std::path::Path;
use std::process::{Command, Output};

/// Exit 1 (an error, not a signal) with every one of `needles` in stderr.
fn assert_refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in\n{err}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8 path").to_string()
}

/// 10^8 × 10^8 f64 values: 8·10^16 bytes, more than any machine has.
const HUGE: &str = "[100000000, 100000000]";
const HUGE_BYTES: &str = "80000000000000000 bytes";

#[test]
fn a_huge_fill_is_refused_by_run_and_compiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = write(
        dir.path(),
        "fill.ron",
        &format!(
            r#"Graph(name: "g", dtype: F64, nodes: [
                (name: "v", op: Const(1.0)),
                (name: "f", op: Fill(shape: {HUGE}), inputs: ["v"]),
                (name: "y", op: Sum(), inputs: ["f"]),
            ])"#
        ),
    );
    let o = gradc(&["run", &graph]);
    assert_refused(
        &o,
        &["node 'f' (Fill)", "f64[100000000, 100000000]", HUGE_BYTES],
    );
    // At compile time nothing that large is folded or allocated.
    let program = dir.path().join("fill.program");
    let o = gradc(&["compile", &graph, "-o", program.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&["run", program.to_str().unwrap()]);
    assert_refused(&o, &["node 'f' (Fill)", HUGE_BYTES]);
}

#[test]
fn a_shape_only_op_over_a_huge_fill_compiles() {
    // ReducedSize reads only its input's shape; folding it must not allocate the input.
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = write(
        dir.path(),
        "size.ron",
        &format!(
            r#"Graph(name: "g", dtype: F64, nodes: [
                (name: "x", op: Placeholder(shape: [])),
                (name: "f", op: Fill(shape: {HUGE}), inputs: ["x"]),
                (name: "n", op: ReducedSize(), inputs: ["f"]),
            ])"#
        ),
    );
    let program = dir.path().join("size.program");
    let o = gradc(&["compile", &graph, "-o", program.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Folded to the count, the run never makes the Fill; unoptimized, it refuses it.
    let o = gradc(&["run", &graph, "--feed", "x=1.0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("n = 10000000000000000"),
        "{}",
        stdout(&o)
    );
    let o = gradc(&[
        "compile",
        &graph,
        "-o",
        program.to_str().unwrap(),
        "--no-opt",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&["run", program.to_str().unwrap(), "--feed", "x=1.0"]);
    assert_refused(&o, &["node 'f' (Fill)", HUGE_BYTES]);
}

#[test]
fn a_huge_variable_is_refused_by_train() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = |f: &str| repo_path("data").join(f).to_str().unwrap().to_string();
    let graph = write(
        dir.path(),
        "big.ron",
        &format!(
            r#"Graph(name: "big_var", dtype: F64, nodes: [
                (name: "x", op: Placeholder(shape: ["batch", 1])),
                (name: "y", op: Placeholder(shape: ["batch", 1])),
                (name: "w", op: Variable(shape: [1, 1], initializer: Zeros)),
                (name: "big", op: Variable(shape: {HUGE}, initializer: Zeros)),
                (name: "bs", op: Sum(), inputs: ["big"]),
                (name: "xw", op: MatMul(), inputs: ["x", "w"]),
                (name: "err", op: Sub, inputs: ["xw", "y"]),
                (name: "sq", op: Square, inputs: ["err"]),
                (name: "m", op: Mean(), inputs: ["sq"]),
                (name: "loss", op: Add, inputs: ["m", "bs"]),
            ], outputs: ["loss"], train: (
                loss: "loss",
                optimizer: GradientDescent(learning_rate: 0.1),
                data: (source: Npz(train: "{}", test: "{}"), features: "x", labels: "y"),
                batch_size: 20,
                steps: 2,
            ))"#,
            data("linear_regression_train.npz"),
            data("linear_regression_test.npz"),
        ),
    );
    let out = dir.path().join("out");
    let o = gradc(&["train", &graph, "--quiet", "--out", out.to_str().unwrap()]);
    assert_refused(
        &o,
        &[
            "node 'big' (Variable)",
            "f64[100000000, 100000000]",
            HUGE_BYTES,
        ],
    );
}

/// A `.npy` file whose header claims `shape` (a Python tuple), followed by `data`.
fn npy_claiming(shape: &str, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    let header = format!("{dict}{}\n", " ".repeat(pad));
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn a_npy_feed_whose_header_claims_a_huge_shape_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = write(
        dir.path(),
        "sum.ron",
        r#"Graph(name: "g", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: ["n", "m"])),
            (name: "y", op: Sum(), inputs: ["x"]),
        ])"#,
    );
    let npy = dir.path().join("huge.npy");
    let bytes = npy_claiming("(100000000, 100000000)", &[0; 24]);
    assert_eq!(bytes.len(), 152);
    std::fs::write(&npy, bytes).expect("write");
    let feed = format!("x={}", npy.display());
    let o = gradc(&["run", &graph, "--feed", &feed]);
    assert_refused(&o, &["huge.npy", HUGE.trim_matches(['[', ']']), HUGE_BYTES]);
    // A feed that the node's dtype holds exactly is converted (f32 into f64),
    // one it does not (i64 into f64) names the file and both dtypes.
    let f32_npy = dir.path().join("small.npy");
    ndarray_npy::write_npy(&f32_npy, &ndarray::arr2(&[[1.5f32, 2.0]])).expect("write");
    let feed = format!("x={}", f32_npy.display());
    let o = gradc(&["run", &graph, "--feed", &feed]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "y = 3.5");
    let i64_npy = dir.path().join("ints.npy");
    ndarray_npy::write_npy(&i64_npy, &ndarray::arr2(&[[1i64, 2]])).expect("write");
    let feed = format!("x={}", i64_npy.display());
    let o = gradc(&["run", &graph, "--feed", &feed]);
    assert_refused(&o, &["ints.npy", "i64", "f64"]);
}

/// Runs gradc, killing it and failing after `limit` (a guard against hangs,
/// not a timing).
fn gradc_within(args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradc"))
        .args(args)
        .current_dir(repo_path(""))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gradc runs");
    let start = std::time::Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!("gradc {args:?} still ran after {limit:?}\n{}", stderr(&o));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn more_threads_than_cores_are_capped_with_a_warning() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = gradc_within(
        &[
            "train",
            "graphs/two_layer_net.ron",
            "--steps",
            "20",
            "--threads",
            "64",
            "--quiet",
            "--out",
            out.path().to_str().unwrap(),
        ],
        std::time::Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 20 steps"), "{}", stdout(&o));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 64 {
        let expected = format!(
            "warning: --threads 64 is more than the {cores} cores available; using {cores}"
        );
        assert!(stderr(&o).contains(&expected), "{}", stderr(&o));
    }
}

#[cfg(unix)]
#[test]
fn compile_writes_into_dev_null_without_replacing_it() {
    use std::os::unix::fs::FileTypeExt;
    let before = std::fs::metadata("/dev/null").expect("/dev/null");
    assert!(
        before.file_type().is_char_device(),
        "this machine's /dev/null is not a character device before the test \
         (something else replaced it): {before:?}"
    );
    let o = gradc(&["compile", "graphs/apple.ron", "-o", "/dev/null"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let meta = std::fs::metadata("/dev/null").expect("/dev/null");
    assert!(meta.file_type().is_char_device(), "{meta:?}");
    // No temporary was left beside it either.
    let leftovers: Vec<_> = std::fs::read_dir("/dev")
        .expect("/dev")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".null.tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[cfg(unix)]
#[test]
fn compile_writes_into_a_fifo_without_replacing_it() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("program.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    match made {
        Ok(s) => assert!(s.success(), "mkfifo failed"),
        // No mkfifo on this machine: the /dev/null test covers the direct write.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("mkfifo: {e}"),
    }
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).expect("reads the FIFO"))
    };
    let o = gradc_within(
        &["compile", "graphs/apple.ron", "-o", fifo.to_str().unwrap()],
        std::time::Duration::from_secs(60),
    );
    if !reader.is_finished() {
        // gradc never opened the FIFO: open it once so the reader returns
        // (non-blocking, so this fails instead of waiting if nobody reads).
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000) // O_NONBLOCK
            .open(&fifo);
    }
    let read = reader.join().expect("reader");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&read);
    assert!(text.contains("gradc-program-v1"), "{text}");
    let meta = std::fs::metadata(&fifo).expect("fifo");
    assert!(meta.file_type().is_fifo(), "{meta:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

#[test]
fn compile_refuses_to_replace_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("out");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::write(target.join("inside"), b"kept").expect("write");
    let o = gradc(&[
        "compile",
        "graphs/apple.ron",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert_refused(
        &o,
        &[target.to_str().unwrap(), "refusing to replace a directory"],
    );
    assert!(target.is_dir() && target.join("inside").exists());
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}

/// Trains linear regression for `steps` steps with checkpoints in `ckpt`
/// (and its outputs in `out`), resuming if asked.
fn train_linear(steps: &str, out: &Path, ckpt: &Path, resume: bool) -> Output {
    let mut args = vec![
        "train",
        "graphs/linear_regression.ron",
        "--quiet",
        "--steps",
        steps,
        "--out",
        out.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ];
    if resume {
        args.push("--resume");
    }
    gradc(&args)
}

#[test]
fn a_checkpoint_with_a_bad_step_is_refused_and_left_untouched() {
    use gradc::io::checkpoint;
    let out = tempfile::tempdir().expect("tempdir");
    let ckpt = tempfile::tempdir().expect("tempdir");
    let o = train_linear("5", out.path(), ckpt.path(), false);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = ckpt.path().join("checkpoint.safetensors");
    let saved = checkpoint::load(&path).expect("loads");
    assert_eq!(saved.metadata.get("step").map(String::as_str), Some("5"));
    // Resuming a good one works (and trains to the end of the longer run).
    let o = train_linear("8", out.path(), ckpt.path(), true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained 8 steps"), "{}", stdout(&o));

    let cases: [(Option<&str>, &str); 5] = [
        (None, "no \"step\""),
        (Some("five"), "\"five\""),
        (Some("-3"), "\"-3\""),
        (Some(""), "\"\""),
        (
            Some("1000000000000000"),
            "1000000000000000 is past the end of this run (20 steps)",
        ),
    ];
    for (step, needle) in cases {
        let mut metadata = saved.metadata.clone();
        match step {
            Some(s) => metadata.insert("step".into(), s.into()),
            None => metadata.remove("step"),
        };
        let tensors: Vec<(&str, &gradc::runtime::Tensor)> =
            saved.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        checkpoint::save(&path, &tensors, &metadata).expect("saves");
        let before = std::fs::read(&path).expect("read");
        let o = train_linear("20", out.path(), ckpt.path(), true);
        assert_refused(
            &o,
            &["cannot resume from", "checkpoint.safetensors", needle],
        );
        assert!(!stdout(&o).contains("trained"), "{}", stdout(&o));
        assert_eq!(std::fs::read(&path).expect("read"), before, "step {step:?}");
    }
}

#[test]
fn stale_temporaries_of_a_killed_write_are_removed() {
    let out = tempfile::tempdir().expect("tempdir");
    let ckpt = tempfile::tempdir().expect("tempdir");
    // A write killed midway leaves its temporary; PIDs above 2^22 never run.
    let stale = ckpt.path().join(".checkpoint.safetensors.tmp-99999999");
    let stale_metrics = out.path().join(".metrics.csv.tmp-99999998");
    // PID 1 is always alive: another writer's temporary is not touched.
    let live = ckpt.path().join(".checkpoint.safetensors.tmp-1");
    // Files of other names are not gradc's to remove.
    let other = ckpt.path().join(".notes.txt.tmp-99999999");
    for f in [&stale, &stale_metrics, &live, &other] {
        std::fs::write(f, b"partial").expect("write");
    }
    let o = train_linear("5", out.path(), ckpt.path(), false);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ckpt.path().join("checkpoint.safetensors").exists());
    assert!(!stale.exists(), "the stale checkpoint temporary is removed");
    assert!(
        !stale_metrics.exists(),
        "the stale metrics temporary is removed"
    );
    assert!(live.exists() && other.exists());
}
