//! One input through everything gradc does with a graph file, in process:
//! parse; build (`gradc check`), print (`gradc grad`, `gradc dot`); compile
//! without and with the optimizer (`gradc compile --no-opt` and `gradc
//! compile`), save and load the program, plan its memory and run it twice
//! with random feeds (`gradc run`); the finite-difference check of small
//! graphs (`gradc gradcheck`); and for a graph with a train section, its
//! inference graph, both programs and a train step (`gradc train`).
//!
//! A stage that fails with an error is a clean error; the stages that do not
//! depend on it still run. Panics are not caught here (see `campaign`).

use gradc::compiler::{
    self, passes::Pipeline, schema, CompileError, Compiler, ErrorKind, Graph, Source,
};
use gradc::runtime::{Dim, Op, Program, RunError, Session, Tensor, ValueRef};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const FILE: &str = "fuzz.ron";

/// Feeds larger than this (elements, all placeholders together) are not
/// made: the run is skipped. Placeholder shapes are the user's to feed.
pub const MAX_FEED_ELEMENTS: usize = 1 << 22;

/// Gradient checks run only on graphs this small: nodes, and elements of
/// the tensors differentiated against (the check runs the graph four times
/// per element).
const GRADCHECK_MAX_NODES: usize = 300;
const GRADCHECK_MAX_ELEMENTS: usize = 48;

/// What happened to one input (short of a crash).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The first stage that failed with an error, and its message.
    pub error: Option<(String, String)>,
    /// An error that says gradc itself is wrong: an `Internal` compile error,
    /// a program the compiler made that does not load or validate.
    pub internal: Option<(String, String)>,
    /// Optimized and unoptimized programs disagree (outputs, losses).
    pub mismatch: Option<String>,
    /// A run was skipped because its feeds would be too large.
    pub run_skipped: bool,
}

impl Outcome {
    fn error(&mut self, stage: &str, message: impl ToString) {
        if self.error.is_none() {
            self.error = Some((stage.to_string(), message.to_string()));
        }
    }

    fn internal(&mut self, stage: &str, message: impl ToString) {
        if self.internal.is_none() {
            self.internal = Some((stage.to_string(), message.to_string()));
        }
    }

    fn compile_error(&mut self, stage: &str, e: &CompileError) {
        if e.kind == ErrorKind::Internal {
            self.internal(stage, e);
        } else {
            self.error(stage, e);
        }
    }

    fn run_error(&mut self, stage: &str, e: &RunError) {
        match e {
            RunError::InvalidProgram { .. } => self.internal(stage, e),
            _ => self.error(stage, e),
        }
    }

    fn lib_error(&mut self, stage: &str, e: &gradc::Error) {
        match e {
            gradc::Error::Compile(c) => self.compile_error(stage, c),
            gradc::Error::Run { source, .. } => self.run_error(stage, source),
            other => self.error(stage, other),
        }
    }
}

/// A 64-bit FNV-1a hash (input seeds, crash signatures).
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The values fed to placeholders: the same for every program of one input
/// (a placeholder's value depends on the input, its name and its shape), so
/// optimized and unoptimized runs can be compared.
struct Feeder {
    seed: u64,
    /// Size of each symbolic dimension, drawn on first sight.
    sizes: HashMap<String, usize>,
    /// Feed one placeholder a wrong shape (to reach the feed checks).
    wrong_shape: bool,
    /// Values include NaN and infinities.
    specials: bool,
}

impl Feeder {
    fn new(text: &str) -> Feeder {
        let seed = fnv(text.as_bytes());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Feeder {
            seed,
            sizes: HashMap::new(),
            wrong_shape: rng.random_bool(0.05),
            specials: rng.random_bool(0.1),
        }
    }

    fn size(&mut self, sym: &str) -> usize {
        let seed = self.seed ^ fnv(sym.as_bytes());
        *self
            .sizes
            .entry(sym.to_string())
            .or_insert_with(|| ChaCha8Rng::seed_from_u64(seed).random_range(1..=3))
    }

    /// Every symbolic dimension of the program, bound.
    fn bindings(&mut self, p: &Program) -> HashMap<String, usize> {
        let syms: Vec<String> = p
            .instrs
            .iter()
            .flat_map(|i| &i.outputs)
            .flat_map(|t| &t.shape.0)
            .filter_map(|d| match d {
                Dim::Sym(s) => Some(s.to_string()),
                Dim::Known(_) => None,
            })
            .collect();
        syms.into_iter()
            .map(|s| (s.clone(), self.size(&s)))
            .collect()
    }

    /// Feeds for every placeholder of `p`; `None` when they would be too large.
    fn feeds(&mut self, p: &Program) -> Option<HashMap<String, Tensor>> {
        let mut feeds = HashMap::new();
        let mut total: usize = 0;
        let mut first = true;
        for ins in &p.instrs {
            if !matches!(ins.op, Op::Placeholder { .. }) {
                continue;
            }
            let t = ins.outputs.first()?;
            let mut shape: Vec<usize> = t
                .shape
                .0
                .iter()
                .map(|d| match d {
                    Dim::Known(n) => *n,
                    Dim::Sym(s) => self.size(s),
                })
                .collect();
            if self.wrong_shape && first {
                shape.push(2);
            }
            first = false;
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            total = total.checked_add(n)?;
            if total > MAX_FEED_ELEMENTS {
                return None;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv(ins.name.as_bytes()));
            let specials = self.specials;
            let data: Vec<f64> = (0..n)
                .map(|_| {
                    if specials && rng.random_bool(0.1) {
                        [f64::NAN, f64::INFINITY, -f64::INFINITY, 0.0, 1e300]
                            [rng.random_range(0..5)]
                    } else {
                        rng.random_range(-1.0..1.0)
                    }
                })
                .collect();
            let tensor = Tensor::from_f64(t.dtype, &shape, data).ok()?;
            feeds.insert(ins.name.clone(), tensor);
        }
        Some(feeds)
    }
}

/// Runs the program's outputs twice (a new plan, then the cached one);
/// returns the second run's values by label.
fn run_program(
    p: &Program,
    feeder: &mut Feeder,
    out: &mut Outcome,
    stage: &str,
) -> Option<Vec<(String, Tensor)>> {
    // `gradc compile --explain`: the memory plan with symbolic dimensions bound.
    let bindings = feeder.bindings(p);
    let fetches: Vec<ValueRef> = p.outputs.iter().map(|o| o.value).collect();
    let targets: Vec<usize> = (0..p.instrs.len())
        .filter(|&i| matches!(p.instrs[i].op, Op::NoOp))
        .collect();
    if let Err(e) = gradc::runtime::plan_memory(p, &fetches, &targets, &bindings) {
        out.run_error(&format!("{stage}: plan memory"), &e);
    }
    let Some(feeds) = feeder.feeds(p) else {
        out.run_skipped = true;
        return None;
    };
    let mut s = match Session::new(p.clone()) {
        Ok(s) => s,
        Err(e) => {
            out.run_error(&format!("{stage}: load"), &e);
            return None;
        }
    };
    if let Err(e) = s.initialize(1) {
        out.run_error(&format!("{stage}: initialize"), &e);
        return None;
    }
    let labels: Vec<String> = p.outputs.iter().map(|o| o.label.clone()).collect();
    let mut refs = Vec::new();
    for l in &labels {
        match s.resolve(l) {
            Ok(r) => refs.push(r),
            Err(e) => {
                out.run_error(&format!("{stage}: resolve"), &e);
                return None;
            }
        }
    }
    let mut values = Vec::new();
    for _ in 0..2 {
        match s.run(&feeds, &refs) {
            Ok(v) => values = v,
            Err(e) => {
                out.run_error(&format!("{stage}: run"), &e);
                return None;
            }
        }
    }
    Some(labels.into_iter().zip(values).collect())
}

/// Whether two values agree as tests/optimizer.rs asks: within 1e-12 (f64)
/// or 1e-5 (f32) of the larger max-norm, NaN and infinities in the same places.
fn same(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return Err(format!(
            "types differ: {} vs {}",
            a.tensor_type(),
            b.tensor_type()
        ));
    }
    let tol = match a.dtype() {
        gradc::runtime::DType::F64 => 1e-12,
        gradc::runtime::DType::F32 => 1e-5,
        // Integers and bools match exactly.
        _ => 0.0,
    };
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        if !p.is_finite() || !q.is_finite() {
            if !(p == q || (p.is_nan() && q.is_nan())) {
                return Err(format!("element {i}: {p} unoptimized, {q} optimized"));
            }
            continue;
        }
        diff = diff.max((p - q).abs());
        scale = scale.max(p.abs()).max(q.abs());
    }
    if diff > tol * scale {
        return Err(format!("max difference {diff:e} over max-norm {scale:e}"));
    }
    Ok(())
}

fn compare(plain: &[(String, Tensor)], opt: &[(String, Tensor)], out: &mut Outcome, what: &str) {
    for (label, a) in plain {
        if let Some((_, b)) = opt.iter().find(|(l, _)| l == label) {
            if let Err(e) = same(a, b) {
                if out.mismatch.is_none() {
                    out.mismatch = Some(format!("{what} {label}: {e}"));
                }
                return;
            }
        }
    }
}

fn verified() -> Pipeline {
    Pipeline::default_passes().verify_always()
}

/// Saves and loads the program as `gradc compile` and `gradc run` do.
fn round_trip(p: &Program, out: &mut Outcome, stage: &str) {
    match p.to_ron() {
        Ok(text) => {
            if let Err(e) = Program::from_ron(&text) {
                out.internal(&format!("{stage}: load the saved program"), e);
            }
        }
        Err(e) => out.internal(&format!("{stage}: save the program"), e),
    }
    let _ = compiler::print::program_text(p);
}

/// The number of elements of a tensor of `g`, symbolic dimensions bound.
fn elements(g: &Graph, t: compiler::ir::TensorRef, feeder: &mut Feeder) -> Option<usize> {
    g.ty(t).shape.0.iter().try_fold(1usize, |a, d| match d {
        Dim::Known(n) => a.checked_mul(*n),
        Dim::Sym(s) => a.checked_mul(feeder.size(s)),
    })
}

/// `gradc gradcheck` on a small graph.
fn gradcheck(g: &Graph, feeder: &mut Feeder, out: &mut Outcome) {
    if g.g.node_count() > GRADCHECK_MAX_NODES || g.gradients.is_empty() {
        return;
    }
    let mut total = 0usize;
    for r in &g.gradients {
        match elements(g, r.value, feeder).and_then(|n| total.checked_add(n)) {
            Some(t) if t <= GRADCHECK_MAX_ELEMENTS => total = t,
            _ => return,
        }
    }
    let program = match compiler::lower::lower(g) {
        Ok(p) => p,
        Err(e) => {
            out.compile_error("gradcheck: lower", &e);
            return;
        }
    };
    let Some(feeds) = feeder.feeds(&program) else {
        out.run_skipped = true;
        return;
    };
    if let Err(e) = gradc::gradcheck::gradcheck(g, &feeds, None) {
        out.lib_error("gradcheck", &e);
    }
    if let Err(e) = gradc::gradcheck::check_functions(g, &feeds, None) {
        out.lib_error("gradcheck: functions", &e);
    }
}

/// A train step and the inference loss, as `gradc train` runs them; the
/// loss of the step and of the inference program.
fn train(
    spec: &schema::GraphSpec,
    text: &str,
    pipeline: fn() -> Pipeline,
    feeder: &mut Feeder,
    out: &mut Outcome,
    stage: &str,
) -> Option<Vec<(String, Tensor)>> {
    let compiled = Compiler::new(Source::file(spec, text, FILE))
        .passes(pipeline())
        .compile_train();
    let programs = match compiled {
        Ok(p) => p,
        Err(e) => {
            out.compile_error(&format!("{stage}: compile"), &e);
            return None;
        }
    };
    round_trip(&programs.train, out, stage);
    round_trip(&programs.eval, out, stage);
    let feeds = feeder.feeds(&programs.train);
    let Some(feeds) = feeds else {
        out.run_skipped = true;
        return None;
    };
    let mut s = match Session::new(programs.train.clone()) {
        Ok(s) => s,
        Err(e) => {
            out.run_error(&format!("{stage}: load"), &e);
            return None;
        }
    };
    let step = (|| {
        s.initialize(1)?;
        let target = s.resolve_target(&programs.train_op)?;
        let loss = s.resolve(&programs.loss)?;
        let mut losses = Vec::new();
        for _ in 0..2 {
            losses.push(s.run_with_targets(&feeds, &[loss], &[target])?.remove(0));
        }
        Ok::<_, RunError>(losses)
    })();
    let losses = match step {
        Ok(l) => l,
        Err(e) => {
            out.run_error(&format!("{stage}: step"), &e);
            return None;
        }
    };
    // The inference program with the variables the steps reached.
    let eval = (|| {
        let mut e = Session::new(programs.eval.clone())?;
        for (name, value) in s.variables() {
            if let Some(v) = value {
                if e.variable_types().iter().any(|(n, _)| n == name) {
                    e.set_variable(name, v.clone())?;
                }
            }
        }
        let loss = e.resolve(&programs.loss)?;
        Ok::<_, RunError>(e.run(&feeds, &[loss])?.remove(0))
    })();
    let mut values: Vec<(String, Tensor)> = losses
        .into_iter()
        .enumerate()
        .map(|(k, l)| (format!("loss of step {k}"), l))
        .collect();
    match eval {
        Ok(l) => values.push(("inference loss".into(), l)),
        Err(e) => out.run_error(&format!("{stage}: inference"), &e),
    }
    Some(values)
}

/// Everything gradc does with one graph file.
pub fn run_input(text: &str) -> Outcome {
    let mut out = Outcome::default();
    let spec = match schema::parse(text) {
        Ok(s) => s,
        Err(e) => {
            out.compile_error("parse", &e);
            return out;
        }
    };
    let mut feeder = Feeder::new(text);
    // gradc check, grad, dot, gradcheck
    let built = Compiler::new(Source::file(&spec, text, FILE))
        .passes(Pipeline::none())
        .graph();
    match built {
        Ok(g) => {
            if let Err(e) = compiler::print::graph_text(&g) {
                out.compile_error("grad (print)", &e);
            }
            if let Err(e) = compiler::print::dot(&g) {
                out.compile_error("dot", &e);
            }
            gradcheck(&g, &mut feeder, &mut out);
        }
        Err(e) => out.compile_error("build", &e),
    }
    // gradc compile / run, without and with the optimizer
    let mut results = Vec::new();
    for (stage, pipeline) in [("no-opt", Pipeline::none()), ("opt", verified())] {
        let compiled = Compiler::new(Source::file(&spec, text, FILE))
            .passes(pipeline)
            .compile();
        match compiled {
            Ok(compiler::Output { program, .. }) => {
                round_trip(&program, &mut out, stage);
                results.push(run_program(&program, &mut feeder, &mut out, stage));
            }
            Err(e) => {
                out.compile_error(&format!("compile ({stage})"), &e);
                results.push(None);
            }
        }
    }
    if let [Some(a), Some(b)] = &results[..] {
        compare(a, b, &mut out, "output");
    }
    // gradc train
    if spec.train.is_some() {
        let inference = Compiler::new(Source::file(&spec, text, FILE))
            .inference()
            .passes(Pipeline::none())
            .graph();
        if let Err(e) = inference {
            out.compile_error("inference graph", &e);
        }
        let plain = train(
            &spec,
            text,
            Pipeline::none,
            &mut feeder,
            &mut out,
            "train (no-opt)",
        );
        let opt = train(&spec, text, verified, &mut feeder, &mut out, "train (opt)");
        if let (Some(a), Some(b)) = (plain, opt) {
            compare(&a, &b, &mut out, "train");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_example_runs_clean() {
        let text = include_str!("../../graphs/apple.ron");
        let out = run_input(text);
        assert_eq!(out, Outcome::default());
    }

    #[test]
    fn the_ops_seed_runs_clean() {
        assert_eq!(run_input(crate::mutate::OPS_SEED), Outcome::default());
    }

    #[test]
    fn a_bad_file_is_a_clean_error() {
        let out = run_input("Graph(name: \"x\", nodes: [(name: \"a\", op: Nope)])");
        let (stage, message) = out.error.expect("an error");
        assert_eq!(stage, "parse");
        assert!(message.contains("unknown op"), "{message}");
    }
}
