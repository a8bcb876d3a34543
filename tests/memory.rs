//! Memory planning: values whose lifetimes do not overlap share buffers and
//! elementwise ops run in place, without changing a single bit of any result.
//! Every example in graphs/ (train steps with random batches included) runs
//! with shared buffers and with one buffer per value (the design before
//! planning), and the results are compared bit for bit.

mod common;

use common::{graph, repo_path};
use gradc::compiler::{self, passes::Pipeline, schema, Compiler, Source};
use gradc::runtime::{plan_memory, DType, PlanMemory, Program, Session, Tensor, ValueRef};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

#[track_caller]
fn assert_bits(a: &[Tensor], b: &[Tensor], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: number of values");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.tensor_type(), y.tensor_type(), "{what}: value {k}'s type");
        let same = x
            .to_f64_vec()
            .iter()
            .zip(y.to_f64_vec())
            .all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(
            same,
            "{what}: value {k} differs\nshared   {:?}\nunshared {:?}",
            x.to_f64_vec(),
            y.to_f64_vec()
        );
    }
}

fn variables(s: &Session) -> Vec<Tensor> {
    s.variables()
        .into_iter()
        .filter_map(|(_, v)| v.cloned())
        .collect()
}

/// Two sessions of `program`, sharing buffers and not, with the same variables.
fn pair(program: &Program) -> [Session; 2] {
    [true, false].map(|sharing| {
        let mut s = Session::new(program.clone()).expect("valid");
        s.set_buffer_sharing(sharing);
        s.initialize(5).expect("initializes");
        s
    })
}

/// Runs `program` `runs` times in both sessions with fresh random feeds (the
/// same for both) and compares fetched values and variables after every run.
fn compare(program: &Program, fetch: &[String], targets: &[String], runs: usize, what: &str) {
    let mut sessions = pair(program);
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let fetches: Vec<_> = fetch
        .iter()
        .map(|l| sessions[0].resolve(l).expect("fetch"))
        .collect();
    let targets: Vec<_> = targets
        .iter()
        .map(|t| sessions[0].resolve_target(t).expect("target"))
        .collect();
    for run in 0..runs {
        // A different batch size on one run: a second plan in the same sessions.
        let batch = if run == 1 { 3 } else { 8 };
        let feeds = common::random_feeds(program, batch, &mut rng);
        let [a, b] = &mut sessions;
        let x = a
            .run_with_targets(&feeds, &fetches, &targets)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let y = b
            .run_with_targets(&feeds, &fetches, &targets)
            .expect("runs unshared");
        assert_bits(&x, &y, &format!("{what}, run {run}"));
        assert_bits(
            &variables(a),
            &variables(b),
            &format!("{what}, variables after run {run}"),
        );
    }
    let [a, b] = &sessions;
    let (shared, unshared) = (
        a.last_plan_memory().expect("a plan"),
        b.last_plan_memory().expect("a plan"),
    );
    assert_eq!(shared.unshared_bytes, unshared.unshared_bytes, "{what}");
    assert_eq!(unshared.slot_bytes, unshared.unshared_bytes, "{what}");
    assert_eq!(unshared.in_place, 0, "{what}");
    assert!(shared.slot_bytes <= shared.unshared_bytes, "{what}");
    // The peak of live values bounds the placement from below; writing in
    // place (only with sharing) counts an output and the input it
    // overwrites once, so it can only lower the peak.
    assert!(shared.peak_bytes <= shared.slot_bytes, "{what}");
    assert!(unshared.peak_bytes <= unshared.slot_bytes, "{what}");
    assert!(shared.peak_bytes <= unshared.peak_bytes, "{what}");
    assert!(shared.peak_bytes > 0, "{what}");
}

#[test]
fn every_example_gives_the_same_bits_with_shared_buffers() {
    let mut examples = 0;
    for entry in std::fs::read_dir(repo_path("graphs")).expect("graphs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        examples += 1;
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("read");
        let spec = schema::parse(&text).expect("parses");
        for optimized in [true, false] {
            let (how, pipeline): (_, fn() -> Pipeline) = if optimized {
                ("optimized", Pipeline::default_passes)
            } else {
                ("unoptimized", Pipeline::none)
            };
            let what = format!("{file} ({how})");
            if spec.train.is_some() {
                let p = Compiler::new(Source::file(&spec, &text, &file))
                    .passes(pipeline())
                    .compile_train()
                    .expect("compiles");
                let mut fetch = vec![p.loss.clone()];
                fetch.extend(p.metrics.iter().cloned());
                compare(
                    &p.train,
                    &fetch,
                    std::slice::from_ref(&p.train_op),
                    4,
                    &format!("{what} train step"),
                );
                let labels: Vec<_> = p.eval.outputs.iter().map(|o| o.label.clone()).collect();
                compare(&p.eval, &labels, &[], 3, &format!("{what} inference"));
            } else {
                let program = Compiler::new(Source::file(&spec, &text, &file))
                    .passes(pipeline())
                    .compile()
                    .expect("compiles")
                    .program;
                let labels: Vec<_> = program.outputs.iter().map(|o| o.label.clone()).collect();
                compare(&program, &labels, &[], 3, &what);
            }
        }
    }
    assert!(examples >= 10, "only {examples} examples found");
}

/// A train step at batch 100 in a session: the loss to fetch, the train op
/// and a batch of random feeds.
struct TrainStep {
    session: Session,
    fetches: Vec<ValueRef>,
    targets: Vec<usize>,
    feeds: HashMap<String, Tensor>,
}

impl TrainStep {
    fn new(name: &str) -> TrainStep {
        let g =
            compiler::graph_from_file(&repo_path(&format!("graphs/{name}.ron"))).expect("builds");
        let p = Compiler::new(g).compile_train().expect("compiles");
        let mut session = Session::new(p.train.clone()).expect("valid");
        session.initialize(1).expect("initializes");
        let fetches = vec![session.resolve(&p.loss).expect("loss")];
        let targets = vec![session.resolve_target(&p.train_op).expect("train op")];
        let feeds = common::random_feeds(&p.train, 100, &mut ChaCha8Rng::seed_from_u64(3));
        TrainStep {
            session,
            fetches,
            targets,
            feeds,
        }
    }

    /// Runs a step; returns the memory plan the session used.
    fn run(&mut self) -> PlanMemory {
        self.session
            .run_with_targets(&self.feeds, &self.fetches, &self.targets)
            .expect("a train step");
        self.session.last_plan_memory().expect("a plan")
    }
}

#[test]
fn sharing_reduces_the_train_steps_planned_memory() {
    for name in ["two_layer_net", "bn_mlp"] {
        let mut step = TrainStep::new(name);
        let bindings = HashMap::from([("batch".to_string(), 100)]);
        let program = step.session.program().clone();
        let planned =
            plan_memory(&program, &step.fetches, &step.targets, &bindings).expect("plans");
        println!("{name} train step, batch 100: {planned:?}");
        assert!(
            planned.slot_bytes < planned.unshared_bytes,
            "{name}: {planned:?}"
        );
        assert!(planned.slots < planned.values, "{name}: {planned:?}");
        assert!(planned.in_place > 0, "{name}: {planned:?}");
        // The session makes the same plan and holds exactly its slots.
        assert_eq!(step.run(), planned, "{name}");
        assert_eq!(step.session.buffer_bytes(), planned.slot_bytes, "{name}");
        // Without sharing: one buffer per value, as before planning.
        step.session.set_buffer_sharing(false);
        let unshared = step.run();
        assert_eq!(unshared.slot_bytes, planned.unshared_bytes, "{name}");
        assert_eq!(unshared.slots, unshared.values, "{name}");
        assert_eq!(unshared.in_place, 0, "{name}");
        assert_eq!(
            step.session.buffer_bytes(),
            planned.unshared_bytes,
            "{name}"
        );
    }
}

const CHAIN: &str = r#"Graph(name: "chain", dtype: F64, nodes: [
    (name: "x", op: Placeholder(shape: [2, 3])),
    (name: "a", op: Exp, inputs: ["x"]),
    (name: "b", op: Reshape(shape: [6]), inputs: ["a"]),
    (name: "c", op: Neg, inputs: ["b"]),
    (name: "d", op: Reshape(shape: [3, 2]), inputs: ["c"]),
    (name: "e", op: Square, inputs: ["d"]),
    (name: "y", op: Placeholder(shape: [3, 2])),
    (name: "f", op: Sub, inputs: ["y", "e"]),
    (name: "g", op: Mul, inputs: ["f", "f"]),
])"#;

fn chain_session(sharing: bool) -> Session {
    // Unoptimized: the planner is under test, and elementwise fusion would make the chain one node.
    let p = Compiler::new(graph(CHAIN))
        .passes(Pipeline::none())
        .compile()
        .expect("compiles")
        .program;
    let mut s = Session::new(p).expect("valid");
    s.set_buffer_sharing(sharing);
    s
}

fn chain_feeds() -> HashMap<String, Tensor> {
    let x = (0..6).map(|i| f64::from(i) / 4.0 - 0.5).collect();
    let y = (0..6).map(|i| f64::from(i) * 1.5).collect();
    HashMap::from([
        (
            "x".to_string(),
            Tensor::from_f64(DType::F64, &[2, 3], x).expect("fits"),
        ),
        (
            "y".to_string(),
            Tensor::from_f64(DType::F64, &[3, 2], y).expect("fits"),
        ),
    ])
}

#[test]
fn elementwise_ops_overwrite_inputs_that_die_and_slots_change_shape() {
    let mut s = chain_session(true);
    let g = [s.resolve("g").expect("g")];
    let out = s.run(&chain_feeds(), &g).expect("runs");
    let m = s.last_plan_memory().expect("a plan");
    // Slot 0: a, then d (reshaped from [2, 3] to [3, 2]; a died at b), e and
    // f in place over d (f over its second operand). Slot 1: b, c in place
    // over b, then g (free since d; f * f reads f twice, so not in place).
    assert_eq!(
        m,
        PlanMemory {
            slot_bytes: 2 * 6 * 8,
            // b (or c over it) and d are alive together when d is written.
            peak_bytes: 2 * 6 * 8,
            unshared_bytes: 7 * 6 * 8,
            slots: 2,
            values: 7,
            in_place: 3,
        }
    );
    let want = s_unshared_run(&g);
    assert_bits(&out, &want, "chain");
    let expected: Vec<f64> = chain_feeds()["x"]
        .to_f64_vec()
        .iter()
        .zip(chain_feeds()["y"].to_f64_vec())
        .map(|(x, y)| {
            let f = y - x.exp() * x.exp();
            f * f
        })
        .collect();
    assert_eq!(out[0].to_f64_vec(), expected);
}

fn s_unshared_run(fetches: &[ValueRef]) -> Vec<Tensor> {
    let mut s = chain_session(false);
    s.run(&chain_feeds(), fetches).expect("runs")
}

#[test]
fn fetched_values_are_never_overwritten() {
    // Fetching every value of the chain keeps each one to the end of the run:
    // no slot is shared and nothing runs in place.
    let mut s = chain_session(true);
    let all: Vec<_> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .map(|n| s.resolve(n).expect("node"))
        .collect();
    for _ in 0..2 {
        let out = s.run(&chain_feeds(), &all).expect("runs");
        assert_bits(&out, &s_unshared_run(&all), "every value fetched");
    }
    let m = s.last_plan_memory().expect("a plan");
    assert_eq!((m.slots, m.values, m.in_place), (7, 7, 0));
    assert_eq!(m.slot_bytes, m.unshared_bytes);
    assert_eq!(m.peak_bytes, m.unshared_bytes, "all alive at the end");
}

#[test]
fn plan_memory_needs_every_symbolic_dimension() {
    let program = Compiler::new(graph(
        r#"Graph(name: "b", dtype: F32, nodes: [
            (name: "x", op: Placeholder(shape: ["batch", 4])),
            (name: "y", op: Exp, inputs: ["x"]),
            (name: "z", op: Sum(axes: [1]), inputs: ["y"]),
        ])"#,
    ))
    .compile()
    .expect("compiles")
    .program;
    let s = Session::new(program.clone()).expect("valid");
    let z = s.resolve("z").expect("z");
    let e = plan_memory(&program, &[z], &[], &HashMap::new()).expect_err("no batch size");
    assert!(e.to_string().contains("'batch'"), "{e}");
    let m =
        plan_memory(&program, &[z], &[], &HashMap::from([("batch".into(), 10)])).expect("plans");
    // y (exp of the feed: not in place) and z.
    assert_eq!(m.unshared_bytes, (10 * 4 + 10) * 4);
    assert_eq!(m.slot_bytes, m.unshared_bytes);
    // y is alive when z is written.
    assert_eq!(m.peak_bytes, m.unshared_bytes);
}
