//! The command-line tool end to end: outputs, exit codes, files written.

mod common;

use common::{gradc, repo_path, stderr, stdout};
use std::process::Output;

#[test]
fn run_prints_outputs_and_gradients() {
    let o = gradc(&["run", "graphs/apple.ron"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in [
        "price = 220.0000",
        "d(price)/d(apple) = 2.2",
        "d(price)/d(apple_num) = 110.0000",
        "d(price)/d(tax) = 200",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn check_summarizes_and_grad_prints_the_canonical_text() {
    let o = gradc(&["check", "graphs/affine_softmax.ron"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("gradient d(loss)/d(w1) : f64[5,6]"),
        "{}",
        stdout(&o)
    );
    let o = gradc(&["grad", "graphs/apple.ron"]);
    let text = gradc::compiler::print::graph_text(
        &gradc::compiler::graph_from_file(&repo_path("graphs/apple.ron")).expect("builds"),
    )
    .expect("prints");
    assert_eq!(stdout(&o), text);
}

#[test]
fn dot_sets_the_backward_graph_apart() {
    let o = gradc(&["dot", "graphs/apple.ron"]);
    let out = stdout(&o);
    assert!(o.status.success() && out.starts_with("digraph"), "{out}");
    assert!(
        out.contains("cluster_forward") && out.contains("cluster_backward"),
        "{out}"
    );
}

#[test]
fn compiled_program_runs_and_feeds_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("g.ron");
    std::fs::write(
        &graph,
        r#"Graph(name: "g", dtype: F64, nodes: [
            (name: "x", op: Placeholder(shape: ["n"])),
            (name: "y", op: Square, inputs: ["x"]),
        ], gradients: [(of: "y", wrt: ["x"])])"#,
    )
    .expect("write");
    let program = dir.path().join("g.program");
    let o = gradc(&[
        "compile",
        graph.to_str().unwrap(),
        "-o",
        program.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let npy = dir.path().join("out");
    let o = gradc(&[
        "run",
        program.to_str().unwrap(),
        "--feed",
        "x=[1, 2, 3]",
        "--npy-dir",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("d(y)/d(x) = [2, 4, 6]"),
        "{}",
        stdout(&o)
    );
    // The written gradient reads back, and feeds from .npy work too.
    let grad = npy.join("d_y__d_x_.npy");
    let a: ndarray::ArrayD<f64> = ndarray_npy::read_npy(&grad).expect("npy written");
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), vec![2.0, 4.0, 6.0]);
    let o = gradc(&[
        "run",
        program.to_str().unwrap(),
        "--feed",
        &format!("x={}", grad.display()),
        "--fetch",
        "y",
    ]);
    assert!(
        stdout(&o).contains("y = [4, 16, 36]"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn gradcheck_passes_and_fails_by_tolerance() {
    let o = gradc(&["gradcheck", "graphs/affine_softmax.ron"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert_eq!(stdout(&o).matches(" ok").count(), 4, "{}", stdout(&o));
    // Finite differences are never exact, so a zero tolerance must fail.
    let o = gradc(&["gradcheck", "graphs/affine_softmax.ron", "--tolerance", "0"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("FAILED"));
}

#[test]
fn errors_exit_non_zero_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.ron");
    std::fs::write(&bad, "Graph(name: \"b\", nodes: [\n (name: \"a\", op: Const(1.0)),\n (name: \"b\", op: Exp, inputs: [\"c\"]),\n])").expect("write");
    for cmd in ["check", "grad", "dot", "run", "gradcheck"] {
        let o = gradc(&[cmd, bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        let err = stderr(&o);
        assert!(
            err.contains("bad.ron:3: error in node 'b' (Exp): input 'c' does not exist"),
            "{cmd}: {err}"
        );
    }
    let o = gradc(&["run", "graphs/apple.ron", "--feed", "apple=[1, 2]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("feed 'apple' has shape [2]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn compile_never_leaves_a_partial_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("p.program");
    std::fs::write(&out, "old").expect("write");
    let o = gradc(&[
        "compile",
        "graphs/does_not_exist.ron",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&out).expect("still there"), "old");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "no temporary files left"
    );
}

#[test]
fn compile_explain_reports_the_planned_memory_of_the_train_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("p.program");
    let o = gradc(&[
        "compile",
        "graphs/two_layer_net.ron",
        "-o",
        out.to_str().unwrap(),
        "--explain",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for batch in [1, 100] {
        let prefix = format!("memory of a run, every symbolic dimension {batch}: ");
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{text}"));
        // "peak K bytes of live values, P bytes planned (...), U bytes with
        // one buffer per value (...)"
        let numbers: Vec<usize> = line
            .split(' ')
            .filter_map(|w| w.trim_start_matches('(').parse().ok())
            .collect();
        let (peak, planned, unshared) = (numbers[0], numbers[1], numbers[4]);
        assert!(
            line.starts_with("peak ")
                && line.contains("bytes with one buffer per value")
                && 0 < peak
                && peak <= planned
                && planned < unshared,
            "{line}"
        );
    }
}

#[test]
fn train_and_eval_from_the_command_line() {
    let out = tempfile::tempdir().expect("tempdir");
    let ckpt = tempfile::tempdir().expect("tempdir");
    let (o_dir, c_dir) = (out.path().to_str().unwrap(), ckpt.path().to_str().unwrap());
    let o = gradc(&[
        "train",
        "graphs/linear_regression.ron",
        "--quiet",
        "--epochs",
        "3",
        "--out",
        o_dir,
        "--checkpoint",
        c_dir,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).matches("epoch ").count(), 3, "{}", stdout(&o));
    assert!(stdout(&o).contains("trained 150 steps"));
    for f in ["metrics.csv", "curves.png"] {
        assert!(out.path().join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).expect("metrics");
    assert!(
        csv.starts_with("epoch,step,train_loss,test_loss,examples_per_sec"),
        "{csv}"
    );
    let ckpt_file = ckpt.path().join("checkpoint.safetensors");
    let o = gradc(&[
        "eval",
        "graphs/linear_regression.ron",
        "--checkpoint",
        ckpt_file.to_str().unwrap(),
    ]);
    assert!(
        o.status.success() && stdout(&o).starts_with("loss 0.0"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // A checkpoint of another graph: exit 1, the mismatch named.
    let o = gradc(&[
        "eval",
        "graphs/two_layer_net.ron",
        "--checkpoint",
        ckpt_file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("W1"), "{}", stderr(&o));
    let o = gradc(&["train", "graphs/apple.ron"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no train section"), "{}", stderr(&o));
}

/// `--explain` lines of `gradc compile`: (pass, nodes before, nodes after,
/// what fired), and the instruction count of its first line.
fn explain(args: &[&str]) -> (Vec<(String, usize, usize, String)>, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("p.program");
    let mut all = vec![
        "compile",
        "graphs/bn_mlp.ron",
        "-o",
        out.to_str().unwrap(),
        "--explain",
    ];
    all.extend_from_slice(args);
    let o = gradc(&all);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let text = stdout(&o);
    let first = text.lines().next().unwrap_or_default();
    let instructions = first
        .strip_suffix(" instructions after")
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{args:?}: first line {first:?}"));
    let passes = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pass "))
        .map(|l| {
            // "cse            144 -> 131    nodes  merge_equal_nodes x13"
            let words: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((words[2], words[4]), ("->", "nodes"), "{l}");
            let count = |w: &str| w.parse().unwrap_or_else(|_| panic!("{l}"));
            (
                words[0].to_string(),
                count(words[1]),
                count(words[3]),
                words[5..].join(" "),
            )
        })
        .collect();
    (passes, instructions)
}

#[test]
fn explain_passes_and_no_opt_from_the_command_line() {
    // Every default pass, in order, with the rules it fired and how often.
    let (passes, optimized) = explain(&[]);
    let names: Vec<&str> = passes.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        names,
        ["simplify", "fold", "cse", "fuse", "elementwise", "dce"]
    );
    let fired = |name: &str| &passes.iter().find(|p| p.0 == name).expect("listed").3;
    assert!(
        fired("cse").starts_with("merge_equal_nodes x"),
        "{passes:?}"
    );
    assert!(fired("dce").starts_with("dead_node x"), "{passes:?}");
    let (_, before, after, _) = passes.iter().find(|p| p.0 == "dce").expect("dce");
    assert!(after < before, "{passes:?}");
    assert_eq!(
        *after, optimized,
        "dce runs last: its count is the program's"
    );
    // --passes runs only those listed; --no-opt none.
    let (only, _) = explain(&["--passes", "cse,dce"]);
    let names: Vec<&str> = only.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["cse", "dce"]);
    let (none, unoptimized) = explain(&["--no-opt"]);
    assert!(none.is_empty(), "{none:?}");
    assert!(unoptimized > optimized, "{unoptimized} against {optimized}");
    // An unknown pass is an error that names the passes there are.
    let o = gradc(&[
        "compile",
        "graphs/bn_mlp.ron",
        "-o",
        "/nonexistent/p",
        "--passes",
        "cse,bogus",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown pass 'bogus'") && stderr(&o).contains("elementwise"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn grad_optimized_prints_the_graph_after_the_passes() {
    let plain = gradc(&["grad", "graphs/two_layer_net.ron"]);
    let optimized = gradc(&["grad", "graphs/two_layer_net.ron", "--optimized"]);
    let none = gradc(&[
        "grad",
        "graphs/two_layer_net.ron",
        "--optimized",
        "--no-opt",
    ]);
    for o in [&plain, &optimized, &none] {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let ops = |o: &Output, op: &str| stdout(o).matches(&format!(" = {op}{{")).count();
    // The optimized graph has the dense op and a fused elementwise kernel,
    // and fewer lines; with no pass it prints the plain graph.
    assert_eq!((ops(&plain, "Dense"), ops(&plain, "Fused")), (0, 0));
    assert!(
        ops(&optimized, "Dense") > 0 && ops(&optimized, "Fused") > 0,
        "{}",
        stdout(&optimized)
    );
    assert!(stdout(&optimized).lines().count() < stdout(&plain).lines().count());
    assert_eq!(stdout(&none), stdout(&plain));
    // --passes asks for the optimized graph by itself, and an unknown pass is
    // an error whether or not --optimized is given.
    let fused = gradc(&["grad", "graphs/two_layer_net.ron", "--passes", "fuse,dce"]);
    assert!(fused.status.success(), "{}", stderr(&fused));
    assert!(ops(&fused, "Dense") > 0, "{}", stdout(&fused));
    for args in [
        &["grad", "graphs/two_layer_net.ron", "--passes", "bogus"][..],
        &[
            "grad",
            "graphs/two_layer_net.ron",
            "--optimized",
            "--passes",
            "bogus",
        ],
    ] {
        let o = gradc(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            stderr(&o).contains("unknown pass 'bogus'"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn a_fed_intermediate_reaches_every_consumer() {
    // Folding `price` at compile time would print 220 next to a gradient that used the feed.
    let o = gradc(&["run", "graphs/apple.ron", "--feed", "apple_price=1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for line in ["price = 1100", "d(price)/d(tax) = 1000"] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    // A node that prefuse would fuse into Sigmoid can be fed and fetched.
    let o = gradc(&[
        "run",
        "graphs/sigmoid_composite.ron",
        "--feed",
        "exp=[1, 1, 1, 1, 1]",
        "--fetch",
        "denom",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("denom = [2, 2, 2, 2, 2]"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn gradcheck_feeds_what_run_feeds() {
    let o = gradc(&["gradcheck", "graphs/apple.ron", "--feed", "tax=2.0"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("d(price)/d(tax)"), "{}", stdout(&o));
}

#[test]
fn a_saved_optimized_program_refuses_a_feed_it_may_have_folded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("apple.program.ron");
    let p = p.to_str().expect("utf-8 path");
    let o = gradc(&["compile", "graphs/apple.ron", "-o", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&["run", p, "--feed", "apple_price=1000"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("apple_price"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--no-opt"), "{}", stderr(&o));
    // Unoptimized, the same feed reaches every consumer.
    let o = gradc(&["compile", "graphs/apple.ron", "-o", p, "--no-opt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gradc(&["run", p, "--feed", "apple_price=1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("price = 1100"), "{}", stdout(&o));
}

#[test]
fn train_gives_the_same_bits_on_one_and_two_threads() {
    // The checkpoint holds every variable, optimizer slots and moving averages included.
    // "default": no --threads, so GRADC_THREADS, here 2.
    let checkpoint = |graph: &str, threads: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf-8 path");
        let mut args = vec!["train", graph, "--steps", "30"];
        if threads != "default" {
            args.extend(["--threads", threads]);
        }
        args.extend(["--checkpoint", d, "--out", d, "--quiet"]);
        let o = common::gradc_with_env(&args, &[("GRADC_THREADS", "2")]);
        assert!(o.status.success(), "{graph}: {}", stderr(&o));
        std::fs::read(dir.path().join("checkpoint.safetensors")).expect("checkpoint")
    };
    for graph in ["graphs/two_layer_net_adam.ron", "graphs/bn_mlp_512.ron"] {
        let one = checkpoint(graph, "1");
        assert_eq!(one, checkpoint(graph, "2"), "{graph}: one and two threads");
        assert_eq!(one, checkpoint(graph, "default"), "{graph}: GRADC_THREADS");
    }
}

/// Integer and bool tensors through the command line: a feed of integer
/// indices (a literal, then the `.npy` it was written to), integer and bool
/// fetches printed and written as `.npy` of their dtypes.
#[test]
fn integer_and_bool_feeds_and_fetches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("g.ron");
    std::fs::write(
        &graph,
        r#"Graph(name: "g", dtype: F64, nodes: [
            (name: "ids", op: Placeholder(shape: ["n"]), dtype: I64),
            (name: "table", op: Const([10.0, 20.0, 30.0])),
            (name: "rows", op: Gather(), inputs: ["table", "ids"]),
            (name: "next", op: Add, inputs: ["ids", "one"]),
            (name: "one", op: Const(1.0), dtype: I64),
            (name: "big", op: Greater, inputs: ["rows", "fifteen"]),
            (name: "fifteen", op: Const(15.0)),
        ], outputs: ["rows", "next", "big"])"#,
    )
    .expect("write");
    let npy = dir.path().join("out");
    let o = gradc(&[
        "run",
        graph.to_str().unwrap(),
        "--feed",
        "ids=[2, 0]",
        "--npy-dir",
        npy.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("rows = [30, 10]"), "{out}");
    assert!(out.contains("next = [3, 1]"), "{out}");
    assert!(out.contains("big = [true, false]"), "{out}");
    let next: ndarray::ArrayD<i64> = ndarray_npy::read_npy(npy.join("next.npy")).expect("i64 npy");
    assert_eq!(next.iter().copied().collect::<Vec<_>>(), vec![3, 1]);
    let big: ndarray::ArrayD<bool> = ndarray_npy::read_npy(npy.join("big.npy")).expect("bool npy");
    assert_eq!(big.iter().copied().collect::<Vec<_>>(), vec![true, false]);
    // The written indices feed the placeholder again; an index past the table is an error.
    let o = gradc(&[
        "run",
        graph.to_str().unwrap(),
        "--feed",
        &format!("ids={}", npy.join("next.npy").display()),
        "--fetch",
        "next",
    ]);
    assert!(
        stdout(&o).contains("next = [4, 2]"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = gradc(&["run", graph.to_str().unwrap(), "--feed", "ids=[3]"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("indices[0] = 3 is not in [0, 3)"),
        "{}",
        stderr(&o)
    );
}

/// `gradc run` on a stateful graph: variables start from their initializers
/// (seeded), `--steps` runs the fetches that many times, `--save-checkpoint`
/// writes the variables and `--checkpoint` starts the next run from them, as
/// a TensorFlow 1 `Session.run` in a loop.
#[test]
fn run_steps_a_stateful_graph_through_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("counter.ron");
    std::fs::write(
        &graph,
        r#"Graph(name: "counter", dtype: F64, nodes: [
            (name: "count", op: Variable(shape: [], initializer: Zeros, trainable: false)),
            (name: "w", op: Variable(shape: [2], initializer: RandomNormal(stddev: 1.0))),
            (name: "one", op: Const(1.0)),
            (name: "tick", op: AssignAdd, inputs: ["count", "one"]),
        ], outputs: ["tick"])"#,
    )
    .expect("write");
    let ckpt = dir.path().join("state.safetensors");
    let g = graph.to_str().unwrap();
    let o = gradc(&[
        "run",
        g,
        "--steps",
        "3",
        "--save-checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("tick = 3"), "{}", stdout(&o));
    let o = gradc(&[
        "run",
        g,
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--fetch",
        "tick",
    ]);
    assert!(
        stdout(&o).contains("tick = 4"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // The same seed, the same initial values; another seed, others.
    let w = |seed: &str| stdout(&gradc(&["run", g, "--seed", seed, "--fetch", "w"]));
    assert_eq!(w("7"), w("7"));
    assert_ne!(w("7"), w("8"));
    // A checkpoint without the program's variables is refused, naming them.
    let other = dir.path().join("other.ron");
    std::fs::write(
        &other,
        r#"Graph(name: "other", dtype: F64, nodes: [(name: "v", op: Variable(shape: [3], initializer: Zeros)), (name: "y", op: Identity, inputs: ["v"])])"#,
    )
    .expect("write");
    let o = gradc(&[
        "run",
        other.to_str().unwrap(),
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("state.safetensors does not match") && e.contains("missing tensor 'v'"),
        "{e}"
    );
    let o = gradc(&["run", g, "--steps", "0"]);
    assert!(
        !o.status.success() && stderr(&o).contains("--steps must be at least 1"),
        "{}",
        stderr(&o)
    );
}

/// TensorFlow's `Session.run(op)`: fetching a NoOp runs it (and what it
/// groups) and prints no value; `--npy-dir` refuses two labels that would
/// land in one file before writing anything.
#[test]
fn fetching_a_noop_runs_it_and_npy_names_do_not_collide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("assign.ron");
    std::fs::write(
        &graph,
        r#"Graph(name: "a", dtype: F64, nodes: [
            (name: "v", op: Variable(shape: [], initializer: Zeros)),
            (name: "one", op: Const(1.0)),
            (name: "inc", op: AssignAdd, inputs: ["v", "one"]),
            (name: "g", op: NoOp, control_inputs: ["inc"]),
            (name: "p.1", op: Identity, inputs: ["v"]),
            (name: "p_1", op: Identity, inputs: ["v"]),
        ])"#,
    )
    .expect("write");
    let graph = graph.to_str().expect("utf-8");
    let ckpt = dir.path().join("v.safetensors");
    let ckpt = ckpt.to_str().expect("utf-8");
    let o = gradc(&[
        "run",
        graph,
        "--fetch",
        "g",
        "--steps",
        "3",
        "--save-checkpoint",
        ckpt,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "g ran (a NoOp, no value)");
    let o = gradc(&["run", graph, "--fetch", "v", "--checkpoint", ckpt]);
    assert_eq!(
        stdout(&o).trim(),
        "v = 3",
        "three runs of g, three increments"
    );

    let npy = dir.path().join("npy");
    let o = gradc(&[
        "run",
        graph,
        "--fetch",
        "p_1",
        "--fetch",
        "p.1",
        "--npy-dir",
        npy.to_str().expect("utf-8"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--npy-dir: 'p.1' and 'p_1' would both be written to"),
        "{}",
        stderr(&o)
    );
    assert!(!npy.exists(), "nothing written");
}
