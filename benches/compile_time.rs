//! Compile time against graph size: a deep MLP of Dense-ReLU layers of width 4
//! (5 forward nodes a layer: W, b, MatMul, BiasAdd, Relu) with a squared-error
//! loss and a `train` section (GradientDescent), at about 1k, 10k and 100k
//! forward nodes. One measured iteration is what `gradc compile` does to a
//! graph file: parse the RON text, build the IR (shapes, the train section's
//! differentiation and update ops) and compile (passes and lowering).
//!
//!   cargo bench --bench compile_time
//!
//! Before criterion samples a size, one compile of it is timed stage by stage
//! and printed (parse; forward build, and how much of it is finding the
//! source line of each node; differentiation alone; the whole train section;
//! compile), to show which stage grows faster than the graph. A size whose
//! single compile is predicted, from the growth between the two sizes before
//! it, to take longer than `GRADC_COMPILE_BENCH_BUDGET_SECS` (default 60) is
//! skipped with the prediction; set the variable higher to measure it anyway.
//! A size whose single compile takes more than 20 s is reported from that one
//! measurement instead of criterion's 10 samples (in `--bench` mode; run
//! without it, as under callgrind, criterion runs the routine once anyway).
//! `GRADC_COMPILE_BENCH_SIZES=1k,10k` measures only the sizes listed; `1m`
//! (a million forward nodes, about 15 s a compile) is measured only when listed.
//!
//! Each size also prints a reference: a linear workload of the kind a
//! compiler does everywhere (fill a hash map with the graph's node names,
//! then look each one up), so the growth of the compile can be read against
//! what the machine's memory does to work that is O(n) by construction; and,
//! per node of the built graph, the cost of a sweep over the nodes in
//! topological order and of a lookup of each name in the graph's table.
//!
//! A second group, `compile_time_add_chain`, compiles one long chain of Adds
//! (`a0 = x + x`, `a{i} = a{i-1} + x`, with the gradient of the last with
//! respect to `x`) at 25k, 50k, 100k and 200k nodes (`chain25k`, ...; listed
//! by those labels in `GRADC_COMPILE_BENCH_SIZES`): elementwise fusion turns
//! it into Fused groups that all read `x`, whose removal and rewriting must
//! not take time quadratic in the chain. One compile of each is printed with the
//! growth of its time from the size before.
//!
//! Criterion's samples are warm: the same process compiles the same graph
//! over and over, so a graph whose memory fits the caches finds it there.
//! Each size is also measured cold, as `gradc compile` meets it: one compile
//! in a new process (the bench runs itself with
//! `GRADC_COMPILE_BENCH_ONE=<layers>`), the median of 11 processes (3 for a
//! size whose compile takes over 5 s); only in `--bench` mode. Neither
//! counts freeing the compiled program (criterion's `iter_with_large_drop`;
//! the cold runs time it apart and print it). The budget
//! above predicts one compile; the cold runs take 3 or 11 more.

/// The allocator of the `gradc` binary (`src/main.rs`), so the bench
/// measures what `gradc compile` meets.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use gradc::compiler::{grad, ir, passes::Pipeline, schema, train, Compiler, Source};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Layers of each size: 5 forward nodes each, plus 5 (x, t, Sub, Square, Mean).
/// Layers of each size, and whether it is measured unless sizes are listed.
const SIZES: [(&str, usize, bool); 4] = [
    ("1k", 200, true),
    ("10k", 2_000, true),
    ("100k", 20_000, true),
    ("1m", 200_000, false),
];
const WIDTH: usize = 4;

/// The graph file of a deep MLP with `layers` Dense-ReLU layers.
fn deep_mlp(layers: usize) -> String {
    let w = WIDTH;
    let mut s = String::with_capacity(200 * layers + 1000);
    s.push_str("Graph(\n    name: \"deep_mlp\",\n    dtype: F32,\n    nodes: [\n");
    s.push_str(&format!(
        "        (name: \"x\", op: Placeholder(shape: [\"batch\", {w}])),\n"
    ));
    s.push_str(&format!(
        "        (name: \"t\", op: Placeholder(shape: [\"batch\", {w}])),\n"
    ));
    let mut prev = "x".to_string();
    for i in 0..layers {
        s.push_str(&format!(
            "        (name: \"W{i}\", op: Variable(shape: [{w}, {w}], initializer: GlorotUniform())),\n\
             \x20       (name: \"b{i}\", op: Variable(shape: [{w}], initializer: Zeros)),\n\
             \x20       (name: \"mm{i}\", op: MatMul(), inputs: [\"{prev}\", \"W{i}\"]),\n\
             \x20       (name: \"a{i}\", op: BiasAdd(), inputs: [\"mm{i}\", \"b{i}\"]),\n\
             \x20       (name: \"h{i}\", op: Relu, inputs: [\"a{i}\"]),\n"
        ));
        prev = format!("h{i}");
    }
    s.push_str(&format!(
        "        (name: \"d\", op: Sub, inputs: [\"{prev}\", \"t\"]),\n\
         \x20       (name: \"sq\", op: Square, inputs: [\"d\"]),\n\
         \x20       (name: \"loss\", op: Mean(), inputs: [\"sq\"]),\n    ],\n    outputs: [\"loss\"],\n\
         \x20   train: (loss: \"loss\", optimizer: GradientDescent(learning_rate: 0.01), batch_size: 8),\n)\n"
    ));
    s
}

/// What is measured: parse, build (differentiation included), compile, by
/// the calls `gradc compile` makes (its prefuse finds nothing to fuse in this
/// MLP, so the stages below, built without it, are the same work).
fn parse_build_compile(text: &str) -> gradc::runtime::Program {
    let spec = schema::parse(text).expect("the deep MLP parses");
    let out = Compiler::new(Source::file(&spec, text, "deep_mlp.ron"))
        .compile()
        .expect("the deep MLP compiles");
    assert!(out.prefused.is_empty(), "prefuse fused {:?}", out.prefused);
    out.program
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One compile, stage by stage; returns the total (parse + build + compile).
fn stages(label: &str, text: &str) -> Duration {
    let t = Instant::now();
    let spec = schema::parse(text).expect("parses");
    let parse = t.elapsed();

    let mut fwd_spec = spec.clone();
    let train_spec = fwd_spec.train.take().expect("has a train section");
    let t = Instant::now();
    let built = |text| {
        Compiler::new(Source::file(&fwd_spec, text, "deep_mlp.ron"))
            .passes(Pipeline::none())
            .graph()
            .expect("builds")
    };
    let fwd = built(text);
    let forward = t.elapsed();
    // The same build without the source text: no node's line is looked up.
    let t = Instant::now();
    let fwd_no_text = built("");
    let forward_no_lines = t.elapsed();
    drop(fwd_no_text);

    let loss = fwd.find("loss").map(ir::TensorRef::of).expect("loss");
    let vars: Vec<ir::TensorRef> = fwd.collections[ir::TRAINABLE_VARIABLES]
        .iter()
        .map(|&v| ir::TensorRef::of(v))
        .collect();
    let mut g = fwd.clone();
    let t = Instant::now();
    grad::gradients(&mut g, loss, &vars, None, "gradients").expect("differentiates");
    let differentiation = t.elapsed();
    drop(g);

    let mut g = fwd;
    let t = Instant::now();
    train::build_train(&mut g, &train_spec, &Default::default(), text).expect("train section");
    let train_section = t.elapsed();

    let nodes = g.g.node_count();
    let names: Vec<String> = g.names().map(str::to_string).collect();
    let (sweep, lookup) = walks(&g);
    let t = Instant::now();
    let program = Compiler::new(g).compile().expect("compiles").program;
    let compile = t.elapsed();

    let build = forward + train_section;
    let total = parse + build + compile;
    eprintln!(
        "compile_time/{label}: {} forward nodes, {nodes} nodes after differentiation and updates, \
         {} instructions; one compile {:.3} s = parse {:.3} s + build {:.3} s + compile {:.3} s",
        fwd_spec.nodes.len(),
        program.instrs.len(),
        secs(total),
        secs(parse),
        secs(build),
        secs(compile),
    );
    eprintln!(
        "    build = forward {:.3} s (of which finding each node's source line {:.3} s) \
         + train section {:.3} s (differentiation {:.3} s, update ops and the train NoOp {:.3} s)",
        secs(forward),
        secs(forward.saturating_sub(forward_no_lines)),
        secs(train_section),
        secs(differentiation),
        secs(train_section.saturating_sub(differentiation)),
    );
    eprintln!(
        "    reference: a hash map of the {} node names, filled and probed: {:.4} s",
        names.len(),
        secs(reference(&names))
    );
    eprintln!(
        "    per node of the built graph, in topological order: a sweep reading each op {:.1} ns, \
         a lookup of each name in the graph's table {:.1} ns",
        sweep * 1e9 / nodes as f64,
        lookup * 1e9 / nodes as f64,
    );
    total
}

/// Two walks over every node of `g` in topological order (fastest of seven
/// runs each, in seconds): one reads each node's op, the kind of sweep the
/// passes make; one looks each node's name up in the graph's name table,
/// the random access that adding a node needs.
fn walks(g: &ir::Graph) -> (f64, f64) {
    let order = g.topo_order().expect("acyclic");
    let fastest = |f: &dyn Fn() -> usize| {
        (0..7)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                secs(t.elapsed())
            })
            .fold(f64::MAX, f64::min)
    };
    let sweep = fastest(&|| {
        order
            .iter()
            .filter(|&&n| matches!(g.node(n).op, gradc::runtime::Op::MatMul { .. }))
            .count()
    });
    let lookup = fastest(&|| {
        order
            .iter()
            .filter(|&&n| g.find(&g.node(n).name) == Some(n))
            .count()
    });
    (sweep, lookup)
}

/// The reference workload over `names`: fill a hash map (name -> index), then
/// look every name up; the fastest of three runs after one warm-up.
fn reference(names: &[String]) -> Duration {
    (0..4)
        .map(|_| {
            let t = Instant::now();
            let mut map = HashMap::new();
            for (i, n) in names.iter().enumerate() {
                map.insert(n.as_str(), i);
            }
            let hits = names
                .iter()
                .filter(|n| map.contains_key(n.as_str()))
                .count();
            black_box(hits);
            t.elapsed()
        })
        .skip(1)
        .min()
        .unwrap_or_default()
}

fn budget() -> f64 {
    std::env::var("GRADC_COMPILE_BENCH_BUDGET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile_time");
    // (forward nodes, seconds) of the sizes measured so far.
    let mut measured: Vec<(f64, f64)> = Vec::new();
    let only = std::env::var("GRADC_COMPILE_BENCH_SIZES").ok();
    for (label, layers, default) in SIZES {
        let listed = match only.as_deref() {
            Some(o) => o.split(',').any(|s| s.trim() == label),
            None => default,
        };
        if !listed {
            continue;
        }
        let text = deep_mlp(layers);
        let n = (5 * layers + 5) as f64;
        if let [.., (n0, t0), (n1, t1)] = measured[..] {
            let exponent = ((t1 / t0).ln() / (n1 / n0).ln()).max(1.0);
            let predicted = t1 * (n / n1).powf(exponent);
            if predicted > budget() {
                eprintln!(
                    "compile_time/{label}: skipped: one compile is predicted to take {predicted:.0} s \
                     (time grows as n^{exponent:.2} from the two sizes before), over the budget of \
                     {:.0} s; set GRADC_COMPILE_BENCH_BUDGET_SECS to measure it anyway",
                    budget()
                );
                continue;
            }
        }
        let once = secs(stages(label, &text));
        measured.push((n, once));
        // Without `--bench` (test mode, e.g. under callgrind) criterion runs
        // one iteration, so the measured routine always runs once.
        let bench_mode = std::env::args().any(|a| a == "--bench");
        if bench_mode {
            let runs = if once > 5.0 { 3 } else { 11 };
            match cold(layers, runs) {
                Ok((t, d)) => eprintln!(
                    "compile_time/{label}: cold, one compile in a new process (median of {runs}): {t:.4} s \
                     (then freeing the program, not counted: {d:.4} s)"
                ),
                Err(e) => eprintln!("compile_time/{label}: the cold measurement failed: {e}"),
            }
        }
        if once > 20.0 && bench_mode {
            eprintln!(
                "compile_time/{label}: one compile took {once:.1} s; reported from that single \
                 measurement (criterion's 10 samples would take {:.0} min)",
                once * 11.0 / 60.0
            );
            continue;
        }
        group.throughput(Throughput::Elements(5 * layers as u64 + 5));
        if once > 0.2 {
            group.sample_size(10);
            group.sampling_mode(SamplingMode::Flat);
            group.warm_up_time(Duration::from_secs(1));
            group.measurement_time(Duration::from_secs_f64((once * 9.0).max(5.0)));
        } else {
            group.sample_size(30);
            group.sampling_mode(SamplingMode::Auto);
            group.warm_up_time(Duration::from_secs(2));
            group.measurement_time(Duration::from_secs(5));
        }
        group.bench_with_input(
            BenchmarkId::new("parse_build_compile", label),
            &text,
            // The program is freed outside the timed loop (see `main`).
            |b, text| b.iter_with_large_drop(|| parse_build_compile(text)),
        );
    }
    group.finish();
}

/// Set in a child process: compile the deep MLP of this many layers once and
/// print the seconds it took.
const ONE: &str = "GRADC_COMPILE_BENCH_ONE";

/// One compile in a new process, timed inside it (process start, the
/// generation of the text and freeing the program are not counted): the
/// medians over `runs` processes of the compile and of freeing its program.
fn cold(layers: usize, runs: usize) -> Result<(f64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (mut times, mut drops) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let out = std::process::Command::new(&exe)
            .env(ONE, layers.to_string())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(t)), Some(Ok(d))) => {
                times.push(t);
                drops.push(d);
            }
            _ => return Err(format!("unexpected output: {text}")),
        }
    }
    times.sort_by(f64::total_cmp);
    drops.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], drops[drops.len() / 2]))
}

/// Sizes of the chain of Adds (nodes), with their labels.
const CHAIN_SIZES: [(&str, usize); 4] = [
    ("chain25k", 25_000),
    ("chain50k", 50_000),
    ("chain100k", 100_000),
    ("chain200k", 200_000),
];

/// The graph file of a chain of `n` Adds that all read `x`, with the
/// gradient of the last with respect to `x`.
fn add_chain(n: usize) -> String {
    let mut s = String::with_capacity(60 * n + 1000);
    s.push_str("Graph(\n    name: \"chain\",\n    dtype: F64,\n    nodes: [\n");
    s.push_str("        (name: \"x\", op: Placeholder(shape: [])),\n");
    s.push_str("        (name: \"a0\", op: Add, inputs: [\"x\", \"x\"]),\n");
    for i in 1..n {
        s.push_str(&format!(
            "        (name: \"a{i}\", op: Add, inputs: [\"a{}\", \"x\"]),\n",
            i - 1
        ));
    }
    let last = n - 1;
    s.push_str(&format!(
        "    ],\n    outputs: [\"a{last}\"],\n    gradients: [(of: \"a{last}\", wrt: [\"x\"])],\n)\n"
    ));
    s
}

/// Parse, build and compile `text` as `gradc compile` does.
fn compile_text(text: &str) -> gradc::runtime::Program {
    let spec = schema::parse(text).expect("the chain parses");
    Compiler::new(Source::file(&spec, text, "chain.ron"))
        .compile()
        .expect("the chain compiles")
        .program
}

fn bench_add_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile_time_add_chain");
    let only = std::env::var("GRADC_COMPILE_BENCH_SIZES").ok();
    let mut before: Option<(usize, f64)> = None;
    for (label, n) in CHAIN_SIZES {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|s| s.trim() == label))
        {
            continue;
        }
        let text = add_chain(n);
        let t = Instant::now();
        let program = black_box(compile_text(&text));
        let once = secs(t.elapsed());
        let growth = before
            .map(|(n0, t0)| {
                format!(
                    " ({:.2}x the time of {n0} nodes for {:.0}x the nodes)",
                    once / t0,
                    n as f64 / n0 as f64
                )
            })
            .unwrap_or_default();
        eprintln!(
            "compile_time_add_chain/{label}: {n} Adds, {} instructions; one compile {once:.3} s{growth}",
            program.instrs.len()
        );
        drop(program);
        before = Some((n, once));
        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(10);
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs_f64((once * 12.0).max(3.0)));
        group.bench_with_input(
            BenchmarkId::new("parse_build_compile", label),
            &text,
            |b, text| b.iter_with_large_drop(|| compile_text(text)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench, bench_add_chain);

fn main() {
    if let Some(layers) = std::env::var(ONE).ok().and_then(|l| l.parse().ok()) {
        let text = deep_mlp(layers);
        let t = Instant::now();
        let program = black_box(parse_build_compile(&text));
        // Freeing the program is not compiling it: timed apart.
        let compile = t.elapsed();
        let t = Instant::now();
        drop(program);
        println!("{} {}", secs(compile), secs(t.elapsed()));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
