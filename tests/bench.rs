//! `gradc bench` end to end: it runs and prints every field of the report.
//! No assertion is on a time: only that the numbers are there.

mod common;

use common::{gradc, stderr, stdout};

#[test]
fn bench_w1_prints_the_expected_fields() {
    let o = gradc(&[
        "bench",
        "--workload",
        "w1",
        "--steps",
        "5",
        "--warmup",
        "1",
        "--threads",
        "2",
        "--profile",
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}\n{out}", stderr(&o));
    for field in [
        "gradc bench: threads 2 (matrix products, convolutions, pooling",
        "matmul ceiling",
        "256x784 · 784x512: median",
        "1024x1024 · 1024x1024: median",
        "W1 two_layer_net (graphs/two_layer_net.ron)",
        // 2·m·k·n over x·W1, h·W2 and the three backward products.
        "FLOPs per step: 15.980 MFLOP = 5 matrix products (2 forward, 3 backward)",
        "5 timed steps after 1 warm-up (batch sampling included, median ",
        "result w1: threads 2, ",
        " ms/step, ",
        " steps/s, ",
        " examples/s, ",
        " GFLOP/s of ",
        "measured peak",
        "profile (timed steps, profiling on): ",
        "ms/step inside kernels; by op:",
        "  Dense ",
        // The helper's share, unless other processes kept it off its core.
        "  threads: the helper threads ",
        "slowest nodes:",
        "gradients/xW1/MatMul_grad/MatMul_1",
    ] {
        assert!(out.contains(field), "missing {field:?} in\n{out}");
    }
    assert!(!out.contains("W2 "), "only W1 was asked for:\n{out}");
}

/// Without --threads, GRADC_THREADS, else every core the process may use.
#[test]
fn the_thread_count_comes_from_the_flag_the_environment_or_the_cores() {
    let quick = [
        "bench",
        "--workload",
        "w1",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--no-peak",
    ];
    let o = common::gradc_with_env(&quick, &[("GRADC_THREADS", "1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("gradc bench: threads 1 "),
        "{}",
        stdout(&o)
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gradc"))
        .args(quick)
        .env_remove("GRADC_THREADS")
        .current_dir(common::repo_path(""))
        .output()
        .expect("gradc runs");
    assert!(
        stdout(&o).contains(&format!("gradc bench: threads {cores} ")),
        "{}",
        stdout(&o)
    );
    for (value, message) in [
        ("0", "GRADC_THREADS must be at least 1"),
        ("two", "GRADC_THREADS=\"two\" is not a whole number"),
    ] {
        let o = common::gradc_with_env(&quick, &[("GRADC_THREADS", value)]);
        assert!(!o.status.success(), "GRADC_THREADS={value}");
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
    }
    // The flag wins over the environment.
    let mut flagged = quick.to_vec();
    flagged.extend(["--threads", "1"]);
    let o = common::gradc_with_env(&flagged, &[("GRADC_THREADS", "two")]);
    assert!(
        stdout(&o).contains("gradc bench: threads 1 "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_refuses_bad_options() {
    for (args, message) in [
        (vec!["bench", "--steps", "0"], "--steps must be at least 1"),
        (
            vec!["bench", "--threads", "0"],
            "--threads must be at least 1",
        ),
        (vec!["bench", "--workload", "w4"], "invalid value 'w4'"),
    ] {
        let o = gradc(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            err.contains(message),
            "{args:?}: missing {message:?} in\n{err}"
        );
    }
}
