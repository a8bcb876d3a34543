//! Training and evaluation: compile the train step and the inference program
//! of a graph file, feed mini-batches, report per epoch, write metrics, plots
//! and checkpoints.

use crate::compiler::{schema, Compiler, Source, TrainPrograms};
use crate::runtime::dtype::Value;
use crate::runtime::{by_dtype, FeedId, Program, Session, Tensor, TensorType, ValueRef};
use crate::Error;
use gradc_io::checkpoint;
use gradc_io::dataset::{load_npz, Batches, Dataset, Mnist};
use gradc_io::metrics::MetricsLog;
use gradc_io::plot::{plot_curves, Panel, Series};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `gradc train`; `None` takes the graph file's value.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub steps: Option<usize>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    pub seed: Option<u64>,
    /// Where checkpoints go: a directory (its `checkpoint.safetensors`) or a
    /// `.safetensors` file (see [`checkpoint_file`]); none: no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the checkpoint `checkpoint_dir` names.
    pub resume: bool,
    /// Check every node's output for NaN/Inf and name the first that makes one.
    pub check_numerics: bool,
    /// Where `metrics.csv` and `curves.png` go.
    pub out_dir: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Every this many steps: a row of `steps.csv` (the batch's loss and
    /// metrics, the learning rate, examples per second), a printed line when
    /// there is no progress bar, and the `fetch` values as `.npy` files.
    pub log_every: Option<usize>,
    /// Names in the train step (a hook's `d(loss)/d(h)`, a layer's
    /// `bn/moving_mean`) written every `log_every` steps to
    /// `<out>/fetched/<name>.step<k>.npy`.
    pub fetch: Vec<String>,
}

/// One row of the metrics: the state after an epoch (or at the end).
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub step: usize,
    pub train: Scores,
    /// On the validation set (`validation_split` or a validation file).
    pub validation: Option<Scores>,
    pub test: Option<Scores>,
    /// Training throughput over the epoch, examples per second.
    pub examples_per_sec: f64,
}

/// Loss and metrics averaged over a data set, in the order of `TrainPrograms::metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub loss: f64,
    pub metrics: Vec<f64>,
}

/// What a run of `train` did.
#[derive(Clone, Debug)]
pub struct TrainReport {
    pub epochs: Vec<EpochReport>,
    pub metric_names: Vec<String>,
    /// The trained variables, by name.
    pub variables: BTreeMap<String, Tensor>,
    pub steps: usize,
}

/// The graph file, parsed, with command-line overrides applied to its `train` section.
struct Loaded {
    spec: schema::GraphSpec,
    train: schema::TrainSpec,
    programs: TrainPrograms,
    dir: PathBuf,
}

fn load(path: &Path, opts: &TrainOptions) -> Result<Loaded, Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{file}: {e}")))?;
    let mut spec = schema::parse_file(&text, &file)?;
    let Some(train) = spec.train.as_mut() else {
        return Err(Error::Usage(format!(
            "{file}: the graph has no train section"
        )));
    };
    if let Some(lr) = opts.learning_rate {
        train.optimizer.set_learning_rate(lr);
    }
    // Under mpirun, the train step averages its gradients over the ranks.
    let (_, ranks) = crate::runtime::collective::rank_and_ranks();
    train.ranks = (ranks > 1).then_some(ranks);
    let train = train.clone();
    let programs = Compiler::new(Source::file(&spec, &text, &file)).compile_train()?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Loaded {
        spec,
        train,
        programs,
        dir,
    })
}

/// The data sets of a run: training, and those reported each epoch.
struct Sets {
    spec: schema::DataSpec,
    train: Dataset,
    validation: Option<Dataset>,
    test: Option<Dataset>,
}

/// The data sets named by the `data` section, each converted once to the
/// dtypes of the placeholders it feeds.
fn load_data(loaded: &Loaded) -> Result<Sets, Error> {
    let Some(data) = loaded.train.data.clone() else {
        return Err(Error::Usage(format!(
            "graph '{}': the train section has no data",
            loaded.spec.name
        )));
    };
    let resolve = |p: &str| loaded.dir.join(p);
    let (mut train, mut validation, test) = match &data.source {
        schema::DataSource::Mnist(dir) => {
            let (train, test) = Mnist::load(resolve(dir))?.into_datasets()?;
            (train, None, Some(test))
        }
        schema::DataSource::Npz {
            train,
            test,
            validation,
            x,
            y,
        } => {
            let load_set = |path: &str| -> Result<Dataset, Error> {
                let path = resolve(path);
                let mut arrays: HashMap<String, Tensor> = load_npz(&path)?.into_iter().collect();
                let mut take = |key: &str| {
                    arrays.remove(key).ok_or_else(|| {
                        Error::Data(gradc_io::dataset::DataError::Shape(format!(
                            "{}: no array named '{key}'",
                            path.display()
                        )))
                    })
                };
                let features = take(x)?;
                let labels = take(y)?;
                Ok(Dataset::new(features, labels)?)
            };
            (
                load_set(train)?,
                validation.as_deref().map(load_set).transpose()?,
                test.as_deref().map(load_set).transpose()?,
            )
        }
    };
    if let Some(fraction) = data.validation_split {
        if validation.is_some() {
            return Err(Error::Usage(
                "the data section has both a validation file and a validation_split: give one"
                    .into(),
            ));
        }
        // The compiler checked that the fraction is in (0, 1).
        // Keras: the first int(n · (1 − fraction)) examples train, the rest validate.
        let n = train.len();
        let kept = (n as f64 * (1.0 - fraction)) as usize;
        let (kept_set, held) = train
            .split_last(n - kept)
            .map_err(|e| Error::Usage(format!("validation_split {fraction}: {e}")))?;
        train = kept_set;
        validation = Some(held);
    }
    // The placeholders' types, from whichever program reads them.
    let p = &loaded.programs;
    let ty = |name: &str| placeholder_in(&p.train, name).or_else(|| placeholder_in(&p.eval, name));
    let (x_ty, y_ty) = (ty(&data.features), ty(&data.labels));
    // An integer labels placeholder of one axis less than the labels takes
    // class indices (sparse labels) rather than one-hot rows.
    let sparse = y_ty
        .is_some_and(|t| t.dtype.is_int() && t.shape.rank() + 1 == train.labels().shape().len());
    let convert = |set: Dataset| -> Result<Dataset, Error> {
        let set = if sparse {
            set.with_class_indices()?
        } else {
            set
        };
        let x = x_ty.map_or(set.features().dtype(), |t| t.dtype);
        let y = y_ty.map_or(set.labels().dtype(), |t| t.dtype);
        Ok(set.cast(x, y))
    };
    Ok(Sets {
        spec: data,
        train: convert(train)?,
        validation: validation.map(convert).transpose()?,
        test: test.map(convert).transpose()?,
    })
}

/// The batch buffer of one placeholder, reused every step: a tensor of the
/// placeholder's dtype (the data set was converted to it once), and the
/// placeholder's feed, or none when the program does not read it.
struct BatchFeed {
    id: Option<FeedId>,
    tensor: Tensor,
}

impl BatchFeed {
    /// A feed for placeholder `name` of `session` with `tensor` as its buffer.
    fn new(session: &Session, name: &str, tensor: Tensor) -> Result<BatchFeed, Error> {
        let id = match placeholder_in(session.program(), name) {
            Some(_) => Some(
                session
                    .resolve_feed(name)
                    .map_err(Error::run("the data section"))?,
            ),
            None => None,
        };
        Ok(BatchFeed { id, tensor })
    }
}

/// Runs `f` with the feeds of `x` and `y` that the program reads.
fn with_feeds<R>(x: &BatchFeed, y: &BatchFeed, f: impl FnOnce(&[(FeedId, &Tensor)]) -> R) -> R {
    match (x.id, y.id) {
        (Some(a), Some(b)) => f(&[(a, &x.tensor), (b, &y.tensor)]),
        (Some(a), None) => f(&[(a, &x.tensor)]),
        (None, Some(b)) => f(&[(b, &y.tensor)]),
        (None, None) => f(&[]),
    }
}

/// `Dataset::gather_into`, split between two threads when matrix products
/// use more than one (`gradc_runtime::threads`): sampling a batch from a data
/// set larger than the caches waits on memory, and two threads wait on twice
/// as many rows at once. The same rows land in the same places either way.
pub(crate) fn gather_rows(
    set: &Dataset,
    indices: &[usize],
    x: &mut Tensor,
    y: &mut Tensor,
) -> Result<(), Error> {
    let fits = |buffer: &Tensor, data: &Tensor| {
        buffer.dtype() == data.dtype()
            && buffer.shape().first() == Some(&indices.len())
            && buffer.shape()[1..] == data.shape()[1..]
    };
    let in_range = indices.iter().all(|&i| i < set.len());
    if crate::runtime::threads() < 2
        || indices.len() < 2
        || !fits(x, set.features())
        || !fits(y, set.labels())
        || !in_range
    {
        // One thread; or a bad buffer or index, which this reports.
        set.gather_into(indices, x, y)?;
        return Ok(());
    }
    gather_halves(set.features(), indices, x)?;
    gather_halves(set.labels(), indices, y)
}

/// Rows `indices` of `data` into `out` (checked to fit), each half on its own thread.
fn gather_halves(data: &Tensor, indices: &[usize], out: &mut Tensor) -> Result<(), Error> {
    let half = indices.len() / 2;
    let (i0, i1) = indices.split_at(half);
    by_dtype!(data.dtype(), T => {
        let (Some(src), Some(dst)) = (T::view(data), T::array_mut(out)) else {
            return Err(Error::Usage("internal error: a batch buffer has the wrong dtype".into()));
        };
        let (mut d0, mut d1) = dst.view_mut().split_at(ndarray::Axis(0), half);
        let (a, b) = rayon::join(
            || gradc_io::dataset::gather_into(&src, i0, &mut d0),
            || gradc_io::dataset::gather_into(&src, i1, &mut d1),
        );
        a?;
        b?;
    });
    Ok(())
}

/// The type of the program's node `name`, if it has one.
fn placeholder_in<'p>(program: &'p Program, name: &str) -> Option<&'p TensorType> {
    program
        .instrs
        .iter()
        .find(|i| i.name == name)
        .and_then(|i| i.outputs.first())
}

/// What the global batch of a data-parallel run needs: to split evenly.
fn check_ranks(batch_size: usize, ranks: usize, drop_remainder: bool) -> Result<(), Error> {
    if !batch_size.is_multiple_of(ranks) {
        return Err(Error::Usage(format!(
            "batch_size {batch_size} is the global batch and must split evenly over the {ranks} ranks"
        )));
    }
    if !drop_remainder {
        return Err(Error::Usage(format!(
            "drop_remainder: false with {ranks} ranks: the last, smaller batch would not split evenly; keep drop_remainder: true"
        )));
    }
    Ok(())
}

/// Before the first step of a data-parallel run: every rank must run the
/// same train step from the same state on data of the same sizes, or the
/// ranks would exchange at different steps (and wait for each other
/// forever) or average gradients of different models. `run` hashes what a
/// rank will do (program, gradc's version, seed, batch, steps, epoch length,
/// data set sizes, logging, the step it starts at) and `state` its
/// variables; both are compared across the ranks.
fn agree_across_ranks(run: u64, state: u64) -> Result<(), Error> {
    let Some(c) = crate::runtime::collective::collective() else {
        return Ok(());
    };
    let compare = |value: u64| {
        c.agree(value)
            .map_err(|e| Error::Usage(format!("comparing the ranks: {e}")))
    };
    if !compare(run)? {
        return Err(Error::Usage(format!(
            "rank {}: the ranks compiled different train steps or run them differently (graph files, options, data sets, gradc versions or the checkpoint's step differ)",
            c.rank()
        )));
    }
    if !compare(state)? {
        return Err(Error::Usage(format!(
            "rank {}: the ranks start from different variables (a different checkpoint on each machine?)",
            c.rank()
        )));
    }
    Ok(())
}

/// A hash of the values of every variable of `session`.
fn variables_hash(session: &Session) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for (name, value) in session.variables() {
        name.hash(&mut h);
        if let Some(v) = value {
            v.shape().hash(&mut h);
            v.to_f64_vec().iter().for_each(|x| x.to_bits().hash(&mut h));
        }
    }
    h.finish()
}

/// Whether the data section's placeholder `name` is one: an error if it is
/// not a node of the graph or not a placeholder; a warning when the train
/// step does not read it (the loss does not depend on it), as TensorFlow
/// feeds a tensor that nothing fetched depends on without complaint.
fn check_fed(loaded: &Loaded, name: &str) -> Result<Option<String>, Error> {
    let Some(node) = loaded.spec.nodes.iter().find(|n| n.name == name) else {
        let names = loaded.spec.nodes.iter().map(|n| n.name.as_str());
        return Err(Error::Usage(format!(
            "the data section feeds '{name}', which is not a node of the graph{}",
            crate::compiler::did_you_mean(name, names)
        )));
    };
    if !matches!(
        node.op,
        schema::NodeOp::Op(crate::runtime::Op::Placeholder { .. })
    ) {
        return Err(Error::Usage(format!(
            "the data section feeds '{name}', which is not a Placeholder; data goes to placeholders"
        )));
    }
    let train = &loaded.programs.train;
    let read = train
        .instrs
        .iter()
        .position(|i| i.name == name)
        .is_some_and(|at| {
            train
                .instrs
                .iter()
                .any(|i| i.inputs.iter().any(|v| v.node == at))
        });
    Ok((!read).then(|| {
        format!(
            "the data section feeds '{name}', which the train step does not read: its data is not used"
        )
    }))
}

/// Averages the loss and metrics over `data` in batches of `batch` rows, with the inference program.
pub fn evaluate(
    session: &mut Session,
    data: &Dataset,
    features: &str,
    labels: &str,
    fetch: &[ValueRef],
    batch: usize,
) -> Result<Vec<f64>, Error> {
    let (xb, yb) = data.batch_buffers(0);
    let mut x = BatchFeed::new(session, features, xb)?;
    let mut y = BatchFeed::new(session, labels, yb)?;
    let mut out = Vec::with_capacity(fetch.len());
    let mut sums = vec![0.0; fetch.len()];
    let mut rows = 0usize;
    // Under mpirun each rank takes every ranks-th chunk; the sums are added up after.
    let (rank, ranks) = crate::runtime::collective::rank_and_ranks();
    for (k, range) in data.chunks(batch)?.enumerate() {
        if k % ranks != rank {
            continue;
        }
        let n = range.len();
        data.rows_into(range, &mut x.tensor, &mut y.tensor)?;
        with_feeds(&x, &y, |feeds| {
            session.run_with_targets_into(feeds, fetch, &[], &mut out)
        })
        .map_err(Error::run("evaluation"))?;
        for (s, v) in sums.iter_mut().zip(&out) {
            *s += v.first_f64().unwrap_or(f64::NAN) * n as f64;
        }
        rows += n;
    }
    if let Some(c) = crate::runtime::collective::collective().filter(|_| ranks > 1) {
        sums.push(rows as f64);
        c.all_reduce_sum_f64(&mut sums)
            .map_err(|e| Error::Usage(format!("evaluation across ranks: {e}")))?;
        rows = sums.pop().unwrap_or(0.0) as usize;
    }
    Ok(sums.into_iter().map(|s| s / rows.max(1) as f64).collect())
}

fn scores(values: Vec<f64>) -> Scores {
    Scores {
        loss: values.first().copied().unwrap_or(f64::NAN),
        metrics: values.into_iter().skip(1).collect(),
    }
}

/// Trains the graph at `path` as its `train` section and `opts` say.
pub fn train(path: &Path, opts: &TrainOptions) -> Result<TrainReport, Error> {
    let loaded = load(path, opts)?;
    let sets = load_data(&loaded)?;
    let (data, train_set) = (&sets.spec, &sets.train);
    let p = &loaded.programs;
    let (rank, ranks) = crate::runtime::collective::rank_and_ranks();
    for name in [&data.features, &data.labels] {
        if let Some(warning) = check_fed(&loaded, name)? {
            if rank == 0 {
                eprintln!("warning: {warning}");
            }
        }
    }
    let seed = opts.seed.unwrap_or(loaded.train.seed);
    let batch_size = opts.batch_size.unwrap_or(loaded.train.batch_size);
    // Rank 0 reports and writes; every rank trains.
    let lead = rank == 0;
    if ranks > 1 {
        check_ranks(batch_size, ranks, data.drop_remainder)?;
    }

    let mut session = Session::new(p.train.clone()).map_err(Error::run("the train program"))?;
    session.check_numerics = opts.check_numerics;
    session
        .initialize(seed)
        .map_err(Error::run("initialization"))?;
    let mut eval = Session::new(p.eval.clone()).map_err(Error::run("the inference program"))?;

    let mut batches = Batches::new(
        train_set.len(),
        batch_size,
        seed,
        data.shuffle,
        data.drop_remainder,
    )?;
    let per_epoch = batches.batches_per_epoch();
    let total_steps = match (
        opts.steps,
        opts.epochs,
        loaded.train.steps,
        loaded.train.epochs,
    ) {
        (Some(s), _, _, _) => s,
        (None, Some(e), _, _) => e * per_epoch,
        (None, None, Some(s), _) => s,
        (None, None, None, Some(e)) => e * per_epoch,
        (None, None, None, None) => per_epoch,
    };

    let ckpt_path = opts.checkpoint_dir.as_deref().map(checkpoint_file);
    let mut step = 0usize;
    let mut history: Vec<EpochReport> = Vec::new();
    let metric_names = p.metrics.clone();
    let mut columns = vec!["epoch".to_string(), "step".into(), "train_loss".into()];
    columns.extend(metric_names.iter().map(|m| format!("train_{m}")));
    if sets.validation.is_some() {
        columns.push("val_loss".into());
        columns.extend(metric_names.iter().map(|m| format!("val_{m}")));
    }
    columns.push("test_loss".into());
    columns.extend(metric_names.iter().map(|m| format!("test_{m}")));
    columns.push("examples_per_sec".into());
    let mut log = MetricsLog::new(&columns)?;
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&loaded.spec.name));
    if lead {
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| Error::Io(format!("{}: {e}", out_dir.display())))?;
        if let Some(dir) = ckpt_path.as_deref().and_then(Path::parent) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        }
    }

    if opts.resume {
        let path = ckpt_path
            .as_ref()
            .ok_or_else(|| Error::Usage("--resume needs --checkpoint DIR".into()))?;
        let ckpt = checkpoint::load_checked(path, &session.variable_types())?;
        for (name, value) in ckpt.tensors {
            session
                .set_variable(&name, value)
                .map_err(Error::run("restoring the checkpoint"))?;
        }
        step = resume_step(path, ckpt.metadata.get("step"), total_steps)?;
        batches.set_next_epoch((step / per_epoch) as u64);
        for _ in 0..step % per_epoch {
            batches.next_batch();
        }
        let metrics_path = out_dir.join("metrics.csv");
        if metrics_path.exists() {
            log = MetricsLog::read(&metrics_path)?;
            log.retain(|row| row.get(1).is_some_and(|&s| s <= step as f64));
        }
    }

    let target = session
        .resolve_target(&p.train_op)
        .map_err(Error::run("train op"))?;
    let mut fetch = vec![session.resolve(&p.loss).map_err(Error::run("loss"))?];
    let eval_fetch: Vec<ValueRef> = std::iter::once(&p.loss)
        .chain(&p.metrics)
        .map(|l| eval.resolve(l))
        .collect::<Result<_, _>>()
        .map_err(Error::run("inference fetches"))?;
    fetch.truncate(1);
    let mut step_log = match opts.log_every {
        Some(0) => return Err(Error::Usage("--log-every must be at least 1".into())),
        Some(every) => Some(StepLog::new(
            &session,
            p,
            &opts.fetch,
            every,
            &out_dir,
            opts.resume.then_some(step),
        )?),
        None if !opts.fetch.is_empty() => {
            return Err(Error::Usage("--fetch needs --log-every N".into()))
        }
        None => None,
    };
    let mut log_start = (Instant::now(), 0usize);
    if ranks > 1 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        let program = p.train.to_ron().map_err(|e| Error::Usage(e.to_string()))?;
        let sizes = |s: Option<&Dataset>| s.map(Dataset::len);
        (env!("CARGO_PKG_VERSION"), program, seed, batch_size).hash(&mut h);
        (total_steps, per_epoch, step, opts.log_every).hash(&mut h);
        (
            train_set.len(),
            sizes(sets.validation.as_ref()),
            sizes(sets.test.as_ref()),
        )
            .hash(&mut h);
        agree_across_ranks(h.finish(), variables_hash(&session))?;
    }
    // Resolved once; every step refills the same buffers and fetches the loss
    // into the same tensor, so the loop allocates nothing per step.
    let (xb, yb) = train_set.batch_buffers(batch_size / ranks);
    let mut x = BatchFeed::new(&session, &data.features, xb)?;
    let mut y = BatchFeed::new(&session, &data.labels, yb)?;
    let mut out: Vec<Tensor> = Vec::with_capacity(fetch.len());

    let bar = progress_bar(opts.progress && lead, total_steps, step);
    let mut epoch_start = Instant::now();
    let mut epoch_examples = 0usize;
    while step < total_steps {
        let indices = batches.next_batch();
        // This rank's contiguous share of the global batch.
        let share = indices.len() / ranks;
        let indices = &indices[rank * share..(rank + 1) * share];
        if x.tensor.shape().first() != Some(&indices.len()) {
            // The smaller last batch of an epoch that keeps its remainder, or the full one after it.
            (x.tensor, y.tensor) = train_set.batch_buffers(indices.len());
        }
        let rows = indices.len();
        gather_rows(train_set, indices, &mut x.tensor, &mut y.tensor)?;
        let logged = step_log
            .as_ref()
            .filter(|l| (step + 1).is_multiple_of(l.every));
        let fetches = logged.map_or(&fetch[..], |l| &l.fetch[..]);
        with_feeds(&x, &y, |feeds| {
            session.run_with_targets_into(feeds, fetches, &[target], &mut out)
        })
        .map_err(|e| match e {
            crate::runtime::RunError::NonFinite { node, op } => Error::NonFinite {
                step: step + 1,
                detail: format!("node '{node}' ({op}) produced NaN or Inf"),
            },
            other => Error::run(&format!("step {}", step + 1))(other),
        })?;
        step += 1;
        let rows = rows * ranks;
        epoch_examples += rows;
        let loss = out.first().and_then(Tensor::first_f64).unwrap_or(f64::NAN);
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                step,
                detail: format!("the loss is {loss}; run again with --check-numerics to name the first node that produces it"),
            });
        }
        if let Some(l) = step_log.as_mut().filter(|l| step.is_multiple_of(l.every)) {
            let examples = log_start.1 + rows;
            let rate = examples as f64 / log_start.0.elapsed().as_secs_f64().max(1e-9);
            let line = l.record(step, &out, rate, lead)?;
            if bar.is_none() && lead {
                println!("{line}");
            }
            log_start = (Instant::now(), 0);
        } else {
            log_start.1 += rows;
        }
        if let Some(bar) = &bar {
            bar.set_position(step as u64);
            if step.is_multiple_of(10) || step == total_steps {
                let rate = epoch_examples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {loss:.4}  {rate:.0} ex/s"));
            }
        }
        if step.is_multiple_of(per_epoch) || step == total_steps {
            let rate = epoch_examples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            for (name, value) in session.variables() {
                if let (Some(v), true) =
                    (value, eval.variable_types().iter().any(|(n, _)| n == name))
                {
                    eval.set_variable(name, v.clone())
                        .map_err(Error::run("inference variables"))?;
                }
            }
            let eval_batch = 1000.max(batch_size);
            let mut score = |set: &Dataset| {
                evaluate(
                    &mut eval,
                    set,
                    &data.features,
                    &data.labels,
                    &eval_fetch,
                    eval_batch,
                )
                .map(scores)
            };
            let report = EpochReport {
                epoch: step.div_ceil(per_epoch),
                step,
                train: score(train_set)?,
                validation: sets.validation.as_ref().map(&mut score).transpose()?,
                test: sets.test.as_ref().map(&mut score).transpose()?,
                examples_per_sec: rate,
            };
            let line = epoch_line(&report, &metric_names);
            match &bar {
                Some(bar) => bar.println(line),
                None if lead => println!("{line}"),
                None => {}
            }
            log.push(&metrics_row(
                &report,
                metric_names.len(),
                sets.validation.is_some(),
            ))?;
            if lead {
                log.write(&out_dir.join("metrics.csv"))?;
                if let Some(l) = &step_log {
                    l.rows.write(&out_dir.join("steps.csv"))?;
                }
                plot(
                    &out_dir.join("curves.png"),
                    &loaded.spec.name,
                    &log,
                    step_log.as_ref().map(|l| &l.rows),
                    &metric_names,
                )?;
                if let Some(path) = &ckpt_path {
                    save_checkpoint(&session, path, step, &loaded.spec.name)?;
                }
            }
            history.push(report);
            epoch_start = Instant::now();
            epoch_examples = 0;
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let variables = session
        .variables()
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n.to_string(), v.clone())))
        .collect();
    Ok(TrainReport {
        epochs: history,
        metric_names,
        variables,
        steps: step,
    })
}

fn progress_bar(show: bool, total: usize, at: usize) -> Option<indicatif::ProgressBar> {
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(at as u64);
    Some(bar)
}

fn epoch_line(r: &EpochReport, names: &[String]) -> String {
    let fmt = |s: &Scores| {
        let mut parts = vec![format!("loss {:.4}", s.loss)];
        parts.extend(
            names
                .iter()
                .zip(&s.metrics)
                .map(|(n, v)| format!("{n} {v:.4}")),
        );
        parts.join(", ")
    };
    let validation = r
        .validation
        .as_ref()
        .map(|t| format!(" | val {}", fmt(t)))
        .unwrap_or_default();
    let test = r
        .test
        .as_ref()
        .map(|t| format!(" | test {}", fmt(t)))
        .unwrap_or_default();
    format!(
        "epoch {:>3} step {:>6} | train {}{validation}{test} | {:.0} ex/s",
        r.epoch,
        r.step,
        fmt(&r.train),
        r.examples_per_sec
    )
}

fn metrics_row(r: &EpochReport, n_metrics: usize, validation: bool) -> Vec<f64> {
    let mut row = vec![r.epoch as f64, r.step as f64, r.train.loss];
    row.extend(r.train.metrics.iter().copied());
    let mut push = |scores: &Option<Scores>| match scores {
        Some(t) => {
            row.push(t.loss);
            row.extend(t.metrics.iter().copied());
        }
        None => row.extend(std::iter::repeat_n(f64::NAN, n_metrics + 1)),
    };
    if validation {
        push(&r.validation);
    }
    push(&r.test);
    row.push(r.examples_per_sec);
    row
}

fn plot(
    path: &Path,
    title: &str,
    log: &MetricsLog,
    steps: Option<&MetricsLog>,
    metrics: &[String],
) -> Result<(), Error> {
    let series = |col: &str, name: &str| log.points("epoch", col).map(|p| Series::new(name, p));
    let mut panels = vec![Panel {
        title: "loss".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: [
            series("train_loss", "train"),
            series("val_loss", "validation"),
            series("test_loss", "test"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }];
    if let Some(points) = steps.and_then(|s| s.points("step", "loss")) {
        panels.push(Panel {
            title: "loss per step (the batch's)".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![Series::new("train", points)],
        });
    }
    for m in metrics {
        panels.push(Panel {
            title: m.clone(),
            x_label: "epoch".into(),
            y_label: m.clone(),
            series: [
                series(&format!("train_{m}"), "train"),
                series(&format!("val_{m}"), "validation"),
                series(&format!("test_{m}"), "test"),
            ]
            .into_iter()
            .flatten()
            .collect(),
        });
    }
    plot_curves(path, title, &panels)?;
    Ok(())
}

/// The per-step log of `--log-every`: what a logged step fetches, and the
/// rows of `steps.csv`.
struct StepLog {
    every: usize,
    /// The loss, the metrics, the learning rate (when the program offers
    /// it), then the `--fetch` names.
    fetch: Vec<ValueRef>,
    metrics: usize,
    learning_rate: bool,
    /// The `--fetch` names, and where their files go.
    fetched: Vec<String>,
    dir: PathBuf,
    rows: MetricsLog,
}

impl StepLog {
    fn new(
        session: &Session,
        p: &TrainPrograms,
        names: &[String],
        every: usize,
        out_dir: &Path,
        resumed_at: Option<usize>,
    ) -> Result<StepLog, Error> {
        let mut columns = vec!["step".to_string(), "loss".into()];
        columns.extend(p.metrics.iter().cloned());
        let reported: Vec<&String> = std::iter::once(&p.loss)
            .chain(&p.metrics)
            .chain(&p.learning_rate)
            .collect();
        if p.learning_rate.is_some() {
            columns.push("learning_rate".into());
        }
        columns.push("examples_per_sec".into());
        let mut fetch = Vec::with_capacity(reported.len() + names.len());
        for name in reported.iter().copied().chain(names) {
            fetch.push(
                session
                    .resolve(name)
                    .map_err(Error::run(&format!("--fetch {name}")))?,
            );
        }
        let path = out_dir.join("steps.csv");
        let rows = match resumed_at {
            Some(step) if path.exists() => {
                let mut rows = MetricsLog::read(&path)?;
                rows.retain(|row| row.first().is_some_and(|&s| s <= step as f64));
                rows
            }
            _ => MetricsLog::new(&columns)?,
        };
        let dir = out_dir.join("fetched");
        let (rank, _) = crate::runtime::collective::rank_and_ranks();
        if !names.is_empty() && rank == 0 {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        }
        Ok(StepLog {
            every,
            fetch,
            metrics: p.metrics.len(),
            learning_rate: p.learning_rate.is_some(),
            fetched: names.to_vec(),
            dir,
            rows,
        })
    }

    /// Records step `step` from the fetched `values`; returns its line.
    fn record(
        &mut self,
        step: usize,
        values: &[Tensor],
        rate: f64,
        lead: bool,
    ) -> Result<String, Error> {
        let scalar = |i: usize| {
            values
                .get(i)
                .and_then(Tensor::first_f64)
                .unwrap_or(f64::NAN)
        };
        let reported = 1 + self.metrics + usize::from(self.learning_rate);
        let mut row = vec![step as f64];
        row.extend((0..reported).map(scalar));
        // Under mpirun: the global batch's loss and metrics, the mean of the
        // ranks' equal shares (the learning rate is the same on every rank).
        let (_, ranks) = crate::runtime::collective::rank_and_ranks();
        if let Some(c) = crate::runtime::collective::collective().filter(|_| ranks > 1) {
            let batch = &mut row[1..2 + self.metrics];
            c.all_reduce_sum_f64(batch)
                .map_err(|e| Error::Usage(format!("step {step} across ranks: {e}")))?;
            batch.iter_mut().for_each(|v| *v /= ranks as f64);
        }
        row.push(rate);
        self.rows.push(&row)?;
        let columns = &self.rows.columns()[1..];
        let mut line = format!("step {step:>6} |");
        for (name, v) in columns.iter().zip(&row[1..]) {
            match name.as_str() {
                "examples_per_sec" => line.push_str(&format!(" {v:.0} ex/s")),
                "learning_rate" => line.push_str(&format!(" lr {v:.4e}")),
                _ => line.push_str(&format!(" {name} {v:.4}")),
            }
        }
        if !lead {
            return Ok(line);
        }
        for (name, value) in self
            .fetched
            .iter()
            .zip(&values[reported.min(values.len())..])
        {
            let file = format!("{}.step{step}.npy", crate::feeds::file_stem(name));
            crate::feeds::write_npy(&self.dir.join(file), value)?;
        }
        Ok(line)
    }
}

/// Sets the session's variables from a checkpoint: every variable of the
/// program must be there with its type; tensors of no variable (a train
/// step's optimizer slots, for an inference program) are ignored.
pub fn restore(session: &mut Session, path: &Path) -> Result<(), Error> {
    let mut ckpt = checkpoint::load(path)?;
    let expected = session.variable_types();
    ckpt.tensors
        .retain(|(name, _)| expected.iter().any(|(n, _)| n == name));
    ckpt.check_against(&expected).map_err(|e| e.at(path))?;
    for (name, value) in ckpt.tensors {
        session
            .set_variable(&name, value)
            .map_err(Error::run("restoring the checkpoint"))?;
    }
    Ok(())
}

/// The checkpoint file that `--checkpoint PATH` names, for every command
/// that takes one: PATH itself when it is a file or ends in `.safetensors`,
/// else `PATH/checkpoint.safetensors` (the directory `gradc train` writes to).
pub fn checkpoint_file(path: &Path) -> PathBuf {
    if path.is_file() || path.extension().is_some_and(|e| e == "safetensors") {
        path.to_path_buf()
    } else {
        path.join("checkpoint.safetensors")
    }
}

/// The step a checkpoint was saved at, from its `step` metadata: a whole
/// number no larger than the run's `total` steps. Anything else is refused
/// (resuming at step 0 with trained weights, or past the end, would silently
/// train the wrong run and then overwrite the checkpoint).
fn resume_step(path: &Path, value: Option<&String>, total: usize) -> Result<usize, Error> {
    let bad = |problem| Error::ResumeStep {
        path: path.to_path_buf(),
        problem,
    };
    let text = value.ok_or_else(|| bad(crate::BadStep::Missing))?;
    let step: usize = text
        .parse()
        .map_err(|_| bad(crate::BadStep::NotANumber(text.clone())))?;
    if step > total {
        return Err(bad(crate::BadStep::PastTheRun { step, total }));
    }
    Ok(step)
}

fn save_checkpoint(session: &Session, path: &Path, step: usize, graph: &str) -> Result<(), Error> {
    let vars = session.variables();
    let tensors: Vec<(&str, &Tensor)> = vars
        .iter()
        .filter_map(|(n, v)| v.map(|v| (*n, v)))
        .collect();
    let metadata = BTreeMap::from([
        ("step".to_string(), step.to_string()),
        ("graph".to_string(), graph.to_string()),
    ]);
    checkpoint::save(path, &tensors, &metadata)?;
    Ok(())
}

/// Evaluates the test set (the training set if there is none) with the
/// inference program and the variables of a checkpoint.
pub fn eval(
    path: &Path,
    checkpoint_path: &Path,
    batch_size: Option<usize>,
) -> Result<(Vec<String>, Scores), Error> {
    let loaded = load(path, &TrainOptions::default())?;
    let sets = load_data(&loaded)?;
    let data = &sets.spec;
    let p = &loaded.programs;
    let mut eval = Session::new(p.eval.clone()).map_err(Error::run("the inference program"))?;
    // The checkpoint of a train step also holds optimizer slots; inference needs the model's variables.
    restore(&mut eval, &checkpoint_file(checkpoint_path))?;
    let fetch: Vec<ValueRef> = std::iter::once(&p.loss)
        .chain(&p.metrics)
        .map(|l| eval.resolve(l))
        .collect::<Result<_, _>>()
        .map_err(Error::run("inference fetches"))?;
    let set = sets.test.as_ref().unwrap_or(&sets.train);
    let batch = batch_size.unwrap_or(1000);
    let values = evaluate(&mut eval, set, &data.features, &data.labels, &fetch, batch)?;
    Ok((p.metrics.clone(), scores(values)))
}
