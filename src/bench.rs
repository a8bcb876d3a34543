//! `gradc bench`: times the train step of gradc's three standard workloads and
//! the machine's matrix-product ceiling, in one run.
//!
//! - **W1**: the source text's TwoLayerNet (`graphs/two_layer_net.ron`:
//!   784-50-10, batch 100, SGD, float32).
//! - **W2**: a batch-norm MLP (`graphs/bn_mlp_512.ron`: 784-512-BN-ReLU-512-BN-ReLU-10,
//!   batch 128, momentum 0.9, batch norm in training mode with its moving
//!   averages updated every step, float32).
//! - **W3**: a convolutional net (`graphs/cnn.ron`: conv 3x3x1x32 SAME + ReLU,
//!   max-pool 2x2/2, conv 3x3x32x64 SAME + ReLU, max-pool 2x2/2, dense
//!   3136-128 + ReLU, dense 128-10, batch 128, float32), trained with
//!   momentum 0.9 and learning rate 0.01 (the file's own optimizer is Adam).
//!
//! Both train on the MNIST training set. A timed step is what a training loop
//! does per step: sample a batch (the next indices of a seeded permutation,
//! gathered into the fed buffers) and run the compiled train step with the
//! allocation-free session API (`resolve_feed`, `run_with_targets_into`),
//! fetching the loss. Each step is timed on its own; the report gives the
//! median over the timed steps after the warm-up steps.
//!
//! FLOPs are counted analytically: 2·m·k·n per matrix product of the
//! compiled train step (forward and backward products, with the batch
//! dimension bound to the batch size), a convolution counted as the product
//! its kernel computes (Conv2D, FusedConv2D: [N·OH·OW, kh·kw·C] by [kh·kw·C, O]);
//! elementwise ops, pooling, reductions and the optimizer's updates are not
//! counted.

use crate::compiler::{schema, Compiler, Source};
use crate::runtime::{
    kernels, DType, Dim, FeedId, InstrProfile, Op, Program, Session, Tensor, ValueRef,
};
use crate::Error;
use gradc_io::dataset::{Batches, Dataset, Mnist};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One of the standard workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    W1,
    W2,
    W3,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::W1, Workload::W2, Workload::W3];

    /// `w1`, `w2` or `w3`, as on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W2 => "w2",
            Workload::W3 => "w3",
        }
    }

    /// The workloads named by `--workload`: `w1`, `w2`, `w3` or `all`.
    pub fn parse(s: &str) -> Result<Vec<Workload>, Error> {
        match s.to_ascii_lowercase().as_str() {
            "w1" => Ok(vec![Workload::W1]),
            "w2" => Ok(vec![Workload::W2]),
            "w3" => Ok(vec![Workload::W3]),
            "all" => Ok(Workload::ALL.to_vec()),
            other => Err(Error::Usage(format!(
                "--workload '{other}': expected w1, w2, w3 or all"
            ))),
        }
    }

    /// The graph file, relative to the repository (the text is compiled in).
    pub fn file(self) -> &'static str {
        match self {
            Workload::W1 => "graphs/two_layer_net.ron",
            Workload::W2 => "graphs/bn_mlp_512.ron",
            Workload::W3 => "graphs/cnn.ron",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Workload::W1 => include_str!("../graphs/two_layer_net.ron"),
            Workload::W2 => include_str!("../graphs/bn_mlp_512.ron"),
            Workload::W3 => include_str!("../graphs/cnn.ron"),
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Workload::W1 => "TwoLayerNet 784-50-10, batch 100, SGD, f32",
            Workload::W2 => {
                "BN-MLP 784-512-BN-ReLU-512-BN-ReLU-10, batch 128, momentum 0.9, \
                 batch norm in training mode (decay 0.99, epsilon 1e-3), f32"
            }
            Workload::W3 => {
                "CNN conv3x3x32-ReLU-maxpool-conv3x3x64-ReLU-maxpool-3136-128-ReLU-10, \
                 SAME padding, batch 128, momentum 0.9, f32"
            }
        }
    }

    /// The optimizer the workload trains with, where it is not the graph
    /// file's: W3 times cnn.ron's net with momentum 0.9 and learning rate
    /// 0.01 (the file itself trains with Adam).
    fn optimizer(self) -> Option<schema::OptimizerSpec> {
        match self {
            Workload::W1 | Workload::W2 => None,
            Workload::W3 => Some(schema::OptimizerSpec::Momentum {
                learning_rate: 0.01,
                momentum: 0.9,
                use_nesterov: false,
            }),
        }
    }

    pub fn default_steps(self) -> usize {
        match self {
            Workload::W1 => 2000,
            Workload::W2 => 300,
            Workload::W3 => 40,
        }
    }

    pub fn default_warmup(self) -> usize {
        match self {
            Workload::W1 => 200,
            Workload::W2 => 30,
            Workload::W3 => 5,
        }
    }
}

/// Options of `gradc bench`; `None` takes each workload's default.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub workloads: Vec<Workload>,
    pub steps: Option<usize>,
    pub warmup: Option<usize>,
    /// The thread count of matrix products, already set with
    /// `gradc_runtime::set_threads` (reported, not set, here).
    pub threads: usize,
    /// The MNIST directory; default: `data/mnist` in the current directory.
    pub data_dir: Option<PathBuf>,
    /// Also time the matrix-product ceiling.
    pub peak: bool,
    /// Time every instruction of the timed steps and print where the time goes.
    pub profile: bool,
}

/// One matrix product of a train step (or the product a convolution
/// computes), with the batch dimension bound.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMulCount {
    /// The instruction's name.
    pub name: String,
    /// Its op's name (`MatMul`, `Dense`, `Conv2D`, ...).
    pub op: &'static str,
    /// Made by differentiation (its name is under `gradients`).
    pub backward: bool,
    /// Product of the leading (batch) dimensions; 1 for rank 2.
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl MatMulCount {
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.m * self.k * self.n) as u64
    }
}

/// Step times after the warm-up.
#[derive(Clone, Debug)]
pub struct Timing {
    pub warmup: usize,
    /// Every timed step, sorted.
    pub sorted: Vec<Duration>,
}

impl Timing {
    fn new(warmup: usize, mut times: Vec<Duration>) -> Timing {
        times.sort_unstable();
        Timing {
            warmup,
            sorted: times,
        }
    }

    /// The `q` quantile (0 to 1) of the step times, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let n = self.sorted.len();
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let w = pos - lo as f64;
        let ms = |i: usize| self.sorted[i].as_secs_f64() * 1e3;
        ms(lo) * (1.0 - w) + ms(hi) * w
    }

    pub fn median_ms(&self) -> f64 {
        self.quantile_ms(0.5)
    }

    pub fn steps(&self) -> usize {
        self.sorted.len()
    }
}

/// What one workload measured.
#[derive(Clone, Debug)]
pub struct WorkloadResult {
    pub workload: Workload,
    pub batch_size: usize,
    pub matmuls: Vec<MatMulCount>,
    pub timing: Timing,
    /// The batch sampling part of each timed step.
    pub sampling: Timing,
    /// The loss of the last step (to show the steps trained).
    pub final_loss: f64,
    /// Per instruction over the timed steps, slowest first (with `profile`).
    pub profile: Vec<InstrProfile>,
    /// The helper threads' time running kernels' parts and their time in
    /// all over the timed steps (with `profile`).
    pub helpers: Option<(Duration, Duration)>,
    /// The processes of the run (under `mpirun`), each timing its share of
    /// the global batch.
    pub ranks: usize,
    /// The gradient exchanges of the timed steps: count, time, bytes.
    pub exchanges: (u64, Duration, u64),
}

impl WorkloadResult {
    pub fn flops_per_step(&self) -> u64 {
        self.matmuls.iter().map(MatMulCount::flops).sum()
    }

    pub fn steps_per_sec(&self) -> f64 {
        1e3 / self.timing.median_ms()
    }

    /// Examples of the global batch a second (every rank's share).
    pub fn examples_per_sec(&self) -> f64 {
        self.steps_per_sec() * (self.batch_size * self.ranks.max(1)) as f64
    }

    pub fn gflops(&self) -> f64 {
        self.flops_per_step() as f64 / (self.timing.median_ms() * 1e-3) / 1e9
    }
}

/// One f32 matrix product timed on its own: the ceiling of the kernels gradc uses.
#[derive(Clone, Debug)]
pub struct PeakResult {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub timing: Timing,
}

impl PeakResult {
    pub fn gflops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64 / (self.timing.median_ms() * 1e-3) / 1e9
    }
}

/// Everything one `gradc bench` run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub threads: usize,
    pub peaks: Vec<PeakResult>,
    pub workloads: Vec<WorkloadResult>,
}

impl BenchReport {
    /// The best measured matrix-product rate, GFLOP/s.
    pub fn peak_gflops(&self) -> Option<f64> {
        self.peaks.iter().map(PeakResult::gflops).reduce(f64::max)
    }
}

/// The shapes of the ceiling measurement: W2's first layer at twice its batch, and 1024³.
const PEAK_SHAPES: [(usize, usize, usize); 2] = [(256, 784, 512), (1024, 1024, 1024)];

/// Runs the benchmark, writing progress and results to `out` as it goes.
pub fn bench(opts: &BenchOptions, out: &mut dyn Write) -> Result<BenchReport, Error> {
    if opts.steps == Some(0) {
        return Err(Error::Usage("--steps must be at least 1".into()));
    }
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .map(|l| format!("; load average {l} at start"))
        .unwrap_or_default();
    w(
        out,
        format!(
            "gradc bench: threads {} (matrix products, convolutions, pooling, and \
             large elementwise and batch-norm kernels split over them); {} logical CPUs{load}",
            opts.threads,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        ),
    )?;

    let mut report = BenchReport {
        threads: opts.threads,
        peaks: Vec::new(),
        workloads: Vec::new(),
    };
    if opts.peak {
        w(
            out,
            "matmul ceiling: one f32 MatMul kernel (gradc's GEMM) on larger products:".into(),
        )?;
        for (m, k, n) in PEAK_SHAPES {
            let p = peak(m, k, n);
            w(
                out,
                format!(
                    "  {m}x{k} · {k}x{n}: median {:.3} ms of {} products after {} warm-up, {:.1} GFLOP/s",
                    p.timing.median_ms(),
                    p.timing.steps(),
                    p.timing.warmup,
                    p.gflops()
                ),
            )?;
            report.peaks.push(p);
        }
    }

    let data_dir = data_dir(opts.data_dir.as_deref())?;
    let train_set = Mnist::load(&data_dir)?.train()?;
    for &workload in &opts.workloads {
        let r = crate::runtime::with_threads(|| run_workload(workload, opts, &train_set))?;
        w(
            out,
            format!(
                "{} {} ({}): {}",
                workload.id().to_uppercase(),
                compiled_name(workload),
                workload.file(),
                workload.description()
            ),
        )?;
        let fwd = r.matmuls.iter().filter(|m| !m.backward).count();
        w(
            out,
            format!(
                "  FLOPs per step: {:.3} MFLOP = {} matrix products ({fwd} forward, {} backward), \
                 2·m·k·n each; elementwise ops and updates not counted",
                r.flops_per_step() as f64 / 1e6,
                r.matmuls.len(),
                r.matmuls.len() - fwd
            ),
        )?;
        for m in &r.matmuls {
            let batch = if m.batch > 1 {
                format!("{}x ", m.batch)
            } else {
                String::new()
            };
            let shapes = format!("{batch}{}x{} · {}x{}", m.m, m.k, m.k, m.n);
            w(
                out,
                format!(
                    "    {:<8} {:<20} {shapes:<22} {:>9.3} MFLOP  {}",
                    if m.backward { "backward" } else { "forward" },
                    m.op,
                    m.flops() as f64 / 1e6,
                    m.name
                ),
            )?;
        }
        let t = &r.timing;
        w(
            out,
            format!(
                "  {} timed steps after {} warm-up (batch sampling included, median {:.4} ms of it): \
                 median {:.4} ms/step (p10 {:.4}, p90 {:.4}); final loss {:.4}",
                t.steps(),
                t.warmup,
                r.sampling.median_ms(),
                t.median_ms(),
                t.quantile_ms(0.1),
                t.quantile_ms(0.9),
                r.final_loss
            ),
        )?;
        let of_peak = match report.peak_gflops() {
            Some(p) => format!(
                " of {p:.1} GFLOP/s measured peak ({:.1}%)",
                100.0 * r.gflops() / p
            ),
            None => String::new(),
        };
        w(
            out,
            format!(
                "  result {}: threads {}, {:.4} ms/step, {:.1} steps/s, {:.0} examples/s, {:.2} GFLOP/s{of_peak}",
                workload.id(),
                opts.threads,
                t.median_ms(),
                r.steps_per_sec(),
                r.examples_per_sec(),
                r.gflops()
            ),
        )?;
        if r.ranks > 1 {
            let (_, time, bytes) = r.exchanges;
            let n = r.timing.steps().max(1);
            w(
                out,
                format!(
                    "  ranks {}: each a batch of {} (FLOPs and GFLOP/s are one rank's); the all-reduces: {:.4} ms/step (mean), {} bytes/step from each rank",
                    r.ranks,
                    r.batch_size,
                    time.as_secs_f64() * 1e3 / n as f64,
                    bytes / n as u64
                ),
            )?;
        }
        if opts.profile {
            write_profile(out, &r)?;
        }
        report.workloads.push(r);
    }
    Ok(report)
}

/// One line of the report.
fn w(out: &mut dyn Write, line: String) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(|e| Error::Io(format!("writing the report: {e}")))
}

/// Mean time per step by op, then the slowest instructions.
fn write_profile(out: &mut dyn Write, r: &WorkloadResult) -> Result<(), Error> {
    let steps = r.timing.steps().max(1) as f64;
    let per_step = |d: Duration| d.as_secs_f64() * 1e3 / steps;
    let total: Duration = r.profile.iter().map(|p| p.total).sum();
    let mut by_op: Vec<(&str, Duration, usize)> = Vec::new();
    for p in &r.profile {
        match by_op.iter_mut().find(|(op, ..)| *op == p.op) {
            Some((_, t, n)) => {
                *t += p.total;
                *n += 1;
            }
            None => by_op.push((p.op, p.total, 1)),
        }
    }
    by_op.sort_by_key(|o| std::cmp::Reverse(o.1));
    w(
        out,
        format!(
            "  profile (timed steps, profiling on): {:.4} ms/step inside kernels; by op:",
            per_step(total)
        ),
    )?;
    for (op, t, n) in &by_op {
        w(
            out,
            format!("    {op:<24} {:>8.4} ms/step  {n} node(s)", per_step(*t)),
        )?;
    }
    // The rate of the convolutions: their counted FLOPs over their kernels' time.
    let is_conv = |op: &str| op.starts_with("Conv2D") || op == "FusedConv2D";
    let conv_flops: u64 = r
        .matmuls
        .iter()
        .filter(|m| is_conv(m.op))
        .map(MatMulCount::flops)
        .sum();
    let conv_time: Duration = r
        .profile
        .iter()
        .filter(|p| is_conv(p.op))
        .map(|p| p.total)
        .sum();
    if conv_flops > 0 && !conv_time.is_zero() {
        w(
            out,
            format!(
                "  convolutions: {:.3} ms/step, {:.1} MFLOP/step, {:.2} GFLOP/s",
                per_step(conv_time),
                conv_flops as f64 / 1e6,
                conv_flops as f64 / (conv_time.as_secs_f64() / steps) / 1e9
            ),
        )?;
    }
    if let Some((busy, held)) = r.helpers {
        let line = match (held.is_zero(), crate::runtime::threads()) {
            (true, 1) => "  threads: no helper threads (one thread)".to_string(),
            (true, _) => {
                "  threads: the helper threads did not run while profiling (their cores were busy elsewhere)"
                    .to_string()
            }
            (false, _) => {
                let share = busy.as_secs_f64() / held.as_secs_f64();
                format!(
                    "  threads: the helper threads ran kernels' parts {:.1}% of their time, idle {:.1}%",
                    100.0 * share,
                    100.0 * (1.0 - share)
                )
            }
        };
        w(out, line)?;
    }
    w(out, "  slowest nodes:".to_string())?;
    for p in r.profile.iter().take(12) {
        w(
            out,
            format!(
                "    {:>8.4} ms/step  {:<20} {}",
                per_step(p.total),
                p.op,
                p.node
            ),
        )?;
    }
    Ok(())
}

fn compiled_name(w: Workload) -> &'static str {
    match w {
        Workload::W1 => "two_layer_net",
        Workload::W2 => "bn_mlp_512",
        Workload::W3 => "cnn",
    }
}

/// The MNIST directory: the one given, else `data/mnist` in the current directory.
fn data_dir(given: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(d) = given {
        return Ok(d.to_path_buf());
    }
    let here = PathBuf::from("data/mnist");
    if here.join("train-images-idx3-ubyte.gz").exists()
        || here.join("train-images-idx3-ubyte").exists()
    {
        return Ok(here);
    }
    Err(Error::Usage(format!(
        "no MNIST files in {}: pass --data DIR (the directory of train-images-idx3-ubyte.gz and the other IDX files)",
        here.display()
    )))
}

/// Times one f32 product of `m`×`k` by `k`×`n`: 3 warm-up products, then
/// up to 50 timed ones or about a second, whichever comes first (at least 5).
fn peak(m: usize, k: usize, n: usize) -> PeakResult {
    let a = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[m, k]), |i| {
        ((i[0] * 7 + i[1] * 3) % 17) as f32 / 17.0 - 0.5
    }));
    let b = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[k, n]), |i| {
        ((i[0] * 5 + i[1] * 11) % 13) as f32 / 13.0 - 0.5
    }));
    let mut c = [Tensor::F32(ArrayD::zeros(IxDyn(&[m, n])))];
    let op = Op::MatMul {
        transpose_a: false,
        transpose_b: false,
    };
    let mut product = || {
        // Shapes are right by construction; an error would show as a zero time.
        let _ = kernels::eval_into(&op, &[&a, &b], &mut c);
    };
    let warmup = 3;
    for _ in 0..warmup {
        product();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (times.len() < 50 && start.elapsed() < Duration::from_secs(1)) {
        let t0 = Instant::now();
        product();
        times.push(t0.elapsed());
    }
    std::hint::black_box(&c);
    PeakResult {
        m,
        k,
        n,
        timing: Timing::new(warmup, times),
    }
}

/// Compiles the workload's train step, trains it for the warm-up and timed
/// steps on `train_set`, and times every step.
fn run_workload(
    workload: Workload,
    opts: &BenchOptions,
    train_set: &Dataset,
) -> Result<WorkloadResult, Error> {
    let file = workload.file();
    let text = workload.text();
    let mut spec = schema::parse(text).map_err(|e| e.in_file(file))?;
    if let (Some(optimizer), Some(train)) = (workload.optimizer(), spec.train.as_mut()) {
        train.optimizer = optimizer;
    }
    let train = spec
        .train
        .clone()
        .ok_or_else(|| Error::Usage(format!("{file}: the graph has no train section")))?;
    let data = train
        .data
        .clone()
        .ok_or_else(|| Error::Usage(format!("{file}: the train section has no data")))?;
    if !matches!(data.source, schema::DataSource::Mnist(_)) {
        return Err(Error::Usage(format!(
            "{file}: the benchmark workloads train on MNIST"
        )));
    }
    // Under mpirun: this rank's share of each global batch, the gradients
    // averaged across the ranks.
    let (rank, ranks) = crate::runtime::collective::rank_and_ranks();
    if let Some(t) = spec.train.as_mut() {
        t.ranks = (ranks > 1).then_some(ranks);
    }
    if !train.batch_size.is_multiple_of(ranks) {
        return Err(Error::Usage(format!(
            "{file}: batch {} does not split evenly over {ranks} ranks",
            train.batch_size
        )));
    }
    let programs = Compiler::new(Source::file(&spec, text, file)).compile_train()?;
    let batch_size = train.batch_size / ranks;
    let steps = opts.steps.unwrap_or(workload.default_steps());
    let warmup = opts.warmup.unwrap_or(workload.default_warmup());

    let mut session = Session::new(programs.train).map_err(Error::run("the train program"))?;
    session
        .initialize(train.seed)
        .map_err(Error::run("initialization"))?;
    let target = session
        .resolve_target(&programs.train_op)
        .map_err(Error::run("train op"))?;
    let fetch = [session
        .resolve(&programs.loss)
        .map_err(Error::run("loss"))?];
    let x_id = f32_feed(&session, &data.features)?;
    let t_id = f32_feed(&session, &data.labels)?;
    let (xb, tb) = train_set.batch_buffers(batch_size);
    let symbols = bind_symbols(session.program(), &[(x_id, xb.shape()), (t_id, tb.shape())]);
    let matmuls = matmul_counts(session.program(), &fetch, target, &symbols)?;
    let (mut x, mut t) = (xb, tb);
    let mut batches = Batches::shuffled_full(train_set.len(), train.batch_size, train.seed)?;
    let mut out: Vec<Tensor> = Vec::with_capacity(1);
    let mut times = Vec::with_capacity(steps);
    let mut sampling = Vec::with_capacity(steps);

    for i in 0..warmup + steps {
        if i == warmup {
            crate::runtime::collective::reset_exchanges();
        }
        let t0 = Instant::now();
        let global = batches.next_batch();
        let share = &global[rank * batch_size..(rank + 1) * batch_size];
        crate::train::gather_rows(train_set, share, &mut x, &mut t)?;
        let sampled = t0.elapsed();
        session
            .run_with_targets_into(&[(x_id, &x), (t_id, &t)], &fetch, &[target], &mut out)
            .map_err(|e| Error::run(&format!("{file}: step {}", i + 1))(e))?;
        let dt = t0.elapsed();
        if i >= warmup {
            times.push(dt);
            sampling.push(sampled);
        }
        if opts.profile && i + 1 == warmup {
            crate::runtime::parallel::set_thread_profiling(true);
            session.set_profiling(true);
        }
    }
    let final_loss = out.first().and_then(Tensor::first_f64).unwrap_or(f64::NAN);
    if !final_loss.is_finite() {
        return Err(Error::NonFinite {
            step: warmup + steps,
            detail: format!("{file}: the loss is {final_loss}"),
        });
    }
    Ok(WorkloadResult {
        workload,
        batch_size,
        matmuls,
        timing: Timing::new(warmup, times),
        sampling: Timing::new(warmup, sampling),
        final_loss,
        profile: session.profile(),
        helpers: opts.profile.then(|| {
            crate::runtime::parallel::set_thread_profiling(false);
            crate::runtime::parallel::thread_profile()
        }),
        ranks,
        exchanges: crate::runtime::collective::exchanges(),
    })
}

/// The placeholder `name` as a feed, refused unless it is f32 (the batch buffers are).
fn f32_feed(session: &Session, name: &str) -> Result<FeedId, Error> {
    let id = session
        .resolve_feed(name)
        .map_err(Error::run("the data section"))?;
    let ins = &session.program().instrs[id.node()];
    if ins.dtype != DType::F32 {
        return Err(Error::Usage(format!(
            "the data section feeds '{name}', which is {}; the benchmark feeds f32",
            ins.outputs[0]
        )));
    }
    Ok(id)
}

/// The sizes of the symbolic dimensions (e.g. `batch`) of the fed placeholders.
fn bind_symbols(program: &Program, feeds: &[(FeedId, &[usize])]) -> HashMap<String, usize> {
    let mut symbols = HashMap::new();
    for (id, shape) in feeds {
        let ty = &program.instrs[id.node()].outputs[0];
        for (d, &size) in ty.shape.0.iter().zip(shape.iter()) {
            if let Dim::Sym(s) = d {
                symbols.insert(s.to_string(), size);
            }
        }
    }
    symbols
}

/// The matrix products that a run fetching `fetch` with target `target`
/// executes, in program order, with their sizes.
pub fn matmul_counts(
    program: &Program,
    fetch: &[ValueRef],
    target: usize,
    symbols: &HashMap<String, usize>,
) -> Result<Vec<MatMulCount>, Error> {
    // What the run needs: the fetches, the target, and everything they read
    // or are ordered after.
    let instrs = &program.instrs;
    let mut needed = vec![false; instrs.len()];
    let mut stack: Vec<usize> = fetch.iter().map(|v| v.node).collect();
    stack.push(target);
    while let Some(i) = stack.pop() {
        if i >= instrs.len() || needed[i] {
            continue;
        }
        needed[i] = true;
        stack.extend(instrs[i].inputs.iter().map(|v| v.node));
        stack.extend(instrs[i].control.iter().copied());
    }
    let dims = |v: &ValueRef| -> Result<Vec<usize>, Error> {
        let ty = instrs
            .get(v.node)
            .and_then(|ins| ins.outputs.get(v.output))
            .ok_or_else(|| Error::Usage("internal error: a MatMul input is missing".into()))?;
        ty.shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Known(n) => Ok(*n),
                Dim::Sym(s) => symbols.get(&**s).copied().ok_or_else(|| {
                    Error::Usage(format!(
                        "cannot count FLOPs: dimension '{s}' of '{}' is not bound by a feed",
                        instrs[v.node].name
                    ))
                }),
            })
            .collect()
    };
    let mut counts = Vec::new();
    for (i, ins) in instrs.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        if let Some(count) = conv_count(i, ins, &dims)? {
            counts.push(count);
            continue;
        }
        // MatMul, and Dense: the optimizer's MatMul fused with its bias and activation.
        let (transpose_a, transpose_b) = match ins.op {
            Op::MatMul {
                transpose_a,
                transpose_b,
            }
            | Op::Dense {
                transpose_a,
                transpose_b,
                ..
            } => (transpose_a, transpose_b),
            _ => continue,
        };
        let (Some(a), Some(b)) = (ins.inputs.first(), ins.inputs.get(1)) else {
            continue;
        };
        let (a, b) = (dims(a)?, dims(b)?);
        let r = a.len();
        if r < 2 || b.len() != r {
            continue;
        }
        let (m, k) = if transpose_a {
            (a[r - 1], a[r - 2])
        } else {
            (a[r - 2], a[r - 1])
        };
        let n = if transpose_b { b[r - 2] } else { b[r - 1] };
        counts.push(MatMulCount {
            name: ins.name.clone(),
            op: ins.op.name(),
            backward: ins.name.starts_with("gradients"),
            batch: a[..r - 2].iter().product(),
            m,
            k,
            n,
        });
    }
    Ok(counts)
}

/// The product a convolution's kernel computes (see `conv_gemm.rs` in the
/// runtime): Conv2D [N·OH·OW, kh·kw·C]·[kh·kw·C, O], Conv2DBackpropFilter
/// [kh·kw·C, N·OH·OW]·[N·OH·OW, O], Conv2DBackpropInput
/// [N·OH·OW, O]·[O, kh·kw·C]. None if instruction `i` is no convolution.
fn conv_count(
    i: usize,
    ins: &crate::runtime::Instr,
    dims: &dyn Fn(&ValueRef) -> Result<Vec<usize>, Error>,
) -> Result<Option<MatMulCount>, Error> {
    let (filter, out) = match ins.op {
        Op::Conv2D { .. } | Op::FusedConv2D { .. } => {
            (ins.inputs.get(1), ValueRef { node: i, output: 0 })
        }
        Op::Conv2DBackpropInput { .. } | Op::Conv2DBackpropFilter { .. } => {
            match ins.inputs.get(2) {
                Some(dy) => (ins.inputs.get(1), *dy),
                None => return Ok(None),
            }
        }
        _ => return Ok(None),
    };
    let Some(filter) = filter else {
        return Ok(None);
    };
    let &[kh, kw, c, o] = dims(filter)?.as_slice() else {
        return Ok(None);
    };
    let pixels = dims(&out)?.iter().product::<usize>() / o.max(1);
    let depth = kh * kw * c;
    let (m, k, n) = match ins.op {
        Op::Conv2D { .. } | Op::FusedConv2D { .. } => (pixels, depth, o),
        Op::Conv2DBackpropFilter { .. } => (depth, pixels, o),
        _ => (pixels, o, depth),
    };
    Ok(Some(MatMulCount {
        name: ins.name.clone(),
        op: ins.op.name(),
        backward: ins.name.starts_with("gradients"),
        batch: 1,
        m,
        k,
        n,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let t = Timing::new(
            0,
            [4, 1, 3, 2]
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
        );
        assert!((t.median_ms() - 2.5).abs() < 1e-9);
        assert!((t.quantile_ms(0.0) - 1.0).abs() < 1e-9);
        assert!((t.quantile_ms(1.0) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn w1_counts_the_books_five_products() {
        let text = Workload::W1.text();
        let spec = schema::parse(text).expect("parses");
        let p = Compiler::new(Source::file(&spec, text, "w1"))
            .compile_train()
            .expect("compiles");
        let s = Session::new(p.train).expect("valid");
        let fetch = [s.resolve(&p.loss).expect("loss")];
        let target = s.resolve_target(&p.train_op).expect("train op");
        let symbols = HashMap::from([("batch".to_string(), 100)]);
        let c = matmul_counts(s.program(), &fetch, target, &symbols).expect("counts");
        // Forward x·W1 and h·W2; backward dW2 = hᵀ·dy, dh = dy·W2ᵀ, dW1 = xᵀ·dh (no dx).
        let total: u64 = c.iter().map(MatMulCount::flops).sum();
        assert_eq!(c.len(), 5, "{c:#?}");
        assert_eq!(total, 2 * (2 * 100 * 784 * 50 + 3 * 100 * 50 * 10));
    }
}
