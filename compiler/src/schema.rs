//! The RON graph format: plain serde types, kept apart from the IR.
//! `build` converts them to the IR with validation; nothing here checks meaning.

use crate::error::{did_you_mean, CompileError, ErrorKind, Result};
use gradc_runtime::op::DataFormat;
use gradc_runtime::{DType, Initializer, Op};
use serde::de::value::{EnumAccessDeserializer, StringDeserializer};
use serde::de::{DeserializeSeed, EnumAccess, IntoDeserializer, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A graph file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Graph", deny_unknown_fields)]
pub struct GraphSpec {
    pub name: String,
    /// Element type of nodes that do not declare one (TensorFlow's default is f32).
    #[serde(default = "default_dtype")]
    pub dtype: DType,
    pub nodes: Vec<NodeSpec>,
    /// What `gradc run` prints; by default every forward node no other node uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gradients: Vec<GradientSpec>,
    /// Functions that nodes call with `Call("name")`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionSpec>,
    /// How to train the graph: the loss, the optimizer, the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSpec>,
}

/// A function: a small graph with named inputs and outputs, inlined at each
/// call (TensorFlow's function library). With a `gradient`, autodiff uses it
/// instead of differentiating the body (`tf.custom_gradient`, `jax.custom_vjp`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub name: String,
    /// Parameter names, used by the body's nodes as inputs.
    pub inputs: Vec<String>,
    /// Body tensors returned, in order (`"node"` or `"node:k"`).
    pub outputs: Vec<String>,
    pub nodes: Vec<NodeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient: Option<CustomGradientSpec>,
    /// The gradient graph may not be differentiated again (PyTorch's `once_differentiable`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub once_differentiable: bool,
}

/// A custom gradient: nodes that may use the function's inputs, its outputs
/// (by their names in `outputs`) and `d(<output>)`, the incoming gradient of
/// each output; `returns` one gradient per input, or `None` for an input that
/// gets none (PyTorch's `x_requires_grad=False`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomGradientSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeSpec>,
    pub returns: Vec<Option<String>>,
}

/// The line of the function named `name` in the `functions` section.
pub fn line_of_function(text: &str, name: &str) -> Option<usize> {
    line_of_field(text, "functions", "name", name)
}

/// The `train` section: one train step is compiled ahead of time from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// The scalar to minimize.
    pub loss: String,
    pub optimizer: OptimizerSpec,
    /// Variables to train; all trainable variables when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var_list: Option<Vec<String>>,
    /// L2 weight decay: adds `weight_decay * sum(w^2) / 2` (TensorFlow's `l2_loss`)
    /// to the loss for every trained variable of rank >= 2 (weights, not biases).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_decay: f64,
    /// Clips the gradients by their global norm (`tf.clip_by_global_norm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_global_norm: Option<f64>,
    /// Tensors whose gradient the train step exposes as outputs named
    /// `d(<loss>)/d(<tensor>)` (PyTorch's `register_hook`, ahead of time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<String>,
    /// Other values to report while training, e.g. `["accuracy"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<String>,
    /// Where the training data comes from and which placeholders take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Train steps; `epochs` instead counts passes over the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// A scalar placeholder that says whether the graph trains (e.g. the
    /// `is_training` of BatchNorm layers): the compiler sets it to 1 in the
    /// train step and to 0 in the inference program, so each holds only its branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_flag: Option<String>,
    /// Seed of variable initialization and batch order.
    #[serde(default)]
    pub seed: u64,
    /// How the learning rate changes with the step (TensorFlow 1's
    /// `tf.train` schedules), read from a `global_step` variable that the
    /// train step advances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate_schedule: Option<Schedule>,
    /// The dtype the optimizer's hyper-parameters are given in: `F32` makes
    /// each a float32 constant cast to the variables' dtype, as TensorFlow 1
    /// converts a Python float (`learning_rate=0.1`) for float64 variables.
    /// Absent: constants of the variables' dtype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameter_dtype: Option<DType>,
    /// The number of processes a data-parallel run trains on: above 1, the
    /// train step averages the gradients over them (`AllReduceMean`) before
    /// the updates. Set by `gradc train` under `mpirun`, not written in a file.
    #[serde(skip)]
    pub ranks: Option<usize>,
}

/// A learning-rate schedule of the train section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Schedule {
    /// The optimizer's learning rate times decay_rate^(step / decay_steps),
    /// the exponent floored with `staircase` (`tf.train.exponential_decay`).
    ExponentialDecay {
        decay_steps: u64,
        decay_rate: f64,
        #[serde(default)]
        staircase: bool,
    },
    /// values[0] while step ≤ boundaries[0], values[i] while
    /// boundaries[i − 1] < step ≤ boundaries[i], the last value after
    /// (`tf.train.piecewise_constant`); the optimizer's learning rate is not used.
    PiecewiseConstant {
        boundaries: Vec<u64>,
        values: Vec<f64>,
    },
    /// The optimizer's learning rate times
    /// `(1 − alpha) · ½(1 + cos(π · min(step, decay_steps) / decay_steps)) + alpha`
    /// (`tf.compat.v1.train.cosine_decay`): from the full rate down to
    /// `alpha` times it at `decay_steps`, then held.
    CosineDecay {
        decay_steps: u64,
        #[serde(default)]
        alpha: f64,
    },
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_batch_size() -> usize {
    100
}

/// An optimizer of `tf.compat.v1.train`, with TensorFlow 1's update rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum OptimizerSpec {
    /// `w -= lr * g`
    GradientDescent { learning_rate: f64 },
    /// `accum = momentum * accum + g; w -= lr * accum` (Nesterov: `w -= lr * (g + momentum * accum)`)
    Momentum {
        learning_rate: f64,
        momentum: f64,
        #[serde(default)]
        use_nesterov: bool,
    },
    /// TensorFlow 1's Adam: `lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`,
    /// `w -= lr_t * m / (sqrt(v) + epsilon)`.
    Adam {
        #[serde(default = "adam_lr")]
        learning_rate: f64,
        #[serde(default = "adam_beta1")]
        beta1: f64,
        #[serde(default = "adam_beta2")]
        beta2: f64,
        #[serde(default = "adam_epsilon")]
        epsilon: f64,
    },
    /// Adam with decoupled weight decay (TensorFlow 1's
    /// `tf.contrib.opt.AdamWOptimizer`): `w ← w − weight_decay · w`, then
    /// Adam's step, both from the start-of-step `w`. The decay is not scaled
    /// by the learning rate (PyTorch's `AdamW(lr, weight_decay=λ)` is
    /// `weight_decay: lr · λ` here).
    AdamW {
        weight_decay: f64,
        #[serde(default = "adam_lr")]
        learning_rate: f64,
        #[serde(default = "adam_beta1")]
        beta1: f64,
        #[serde(default = "adam_beta2")]
        beta2: f64,
        #[serde(default = "adam_epsilon")]
        epsilon: f64,
    },
    /// TensorFlow 1's RMSProp: `ms ← ms + (g² − ms)(1 − decay)` (ms starts
    /// at ones), `mom ← momentum · mom + lr · g / sqrt(ms + epsilon)`,
    /// `w ← w − mom`. Centered: `mg ← mg + (g − mg)(1 − decay)` and the
    /// denominator `sqrt(ms − mg² + epsilon)`.
    RMSProp {
        learning_rate: f64,
        #[serde(default = "rmsprop_decay")]
        decay: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default = "rmsprop_epsilon")]
        epsilon: f64,
        #[serde(default)]
        centered: bool,
    },
    /// TensorFlow 1's Adagrad: `accum ← accum + g²` (accum starts at
    /// `initial_accumulator_value`), `w ← w − lr · g / sqrt(accum)`.
    Adagrad {
        learning_rate: f64,
        #[serde(default = "adagrad_initial")]
        initial_accumulator_value: f64,
    },
}

fn rmsprop_decay() -> f64 {
    0.9
}
fn rmsprop_epsilon() -> f64 {
    1e-10
}
fn adagrad_initial() -> f64 {
    0.1
}

fn adam_lr() -> f64 {
    0.001
}
fn adam_beta1() -> f64 {
    0.9
}
fn adam_beta2() -> f64 {
    0.999
}
fn adam_epsilon() -> f64 {
    1e-8
}

impl OptimizerSpec {
    /// Its name, which scopes its nodes (`Adam/update_w`).
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerSpec::GradientDescent { .. } => "GradientDescent",
            OptimizerSpec::Momentum { .. } => "Momentum",
            OptimizerSpec::Adam { .. } => "Adam",
            OptimizerSpec::AdamW { .. } => "AdamW",
            OptimizerSpec::RMSProp { .. } => "RMSProp",
            OptimizerSpec::Adagrad { .. } => "Adagrad",
        }
    }

    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerSpec::GradientDescent { learning_rate }
            | OptimizerSpec::Momentum { learning_rate, .. }
            | OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::AdamW { learning_rate, .. }
            | OptimizerSpec::RMSProp { learning_rate, .. }
            | OptimizerSpec::Adagrad { learning_rate, .. } => *learning_rate,
        }
    }

    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            OptimizerSpec::GradientDescent { learning_rate }
            | OptimizerSpec::Momentum { learning_rate, .. }
            | OptimizerSpec::Adam { learning_rate, .. }
            | OptimizerSpec::AdamW { learning_rate, .. }
            | OptimizerSpec::RMSProp { learning_rate, .. }
            | OptimizerSpec::Adagrad { learning_rate, .. } => *learning_rate = lr,
        }
    }
}

/// Training data: a source, and the placeholders that take features and labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub source: DataSource,
    /// Placeholder fed with a batch of features.
    pub features: String,
    /// Placeholder fed with the matching labels.
    pub labels: String,
    /// Draw each epoch's batches in a fresh seeded order (`Dataset.shuffle`);
    /// `false` takes them in the data's order.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub shuffle: bool,
    /// Leave out the last batch of an epoch when it would be smaller than
    /// `batch_size` (`Dataset.batch(drop_remainder=True)`), so every step
    /// has a full batch; `false` trains on it too.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub drop_remainder: bool,
    /// The fraction of the training data, taken from its end (Keras's
    /// `validation_split`), held out and reported each epoch as validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
}

fn is_true(v: &bool) -> bool {
    *v
}

/// Paths are relative to the graph file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DataSource {
    /// The four MNIST IDX files in a directory: images scaled to [0, 1] as
    /// [N, 784], labels one-hot as [N, 10].
    Mnist(String),
    /// `.npz` files with a features array and a labels array (rows on axis 0),
    /// of any dtype: each is converted once to its placeholder's dtype.
    Npz {
        train: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test: Option<String>,
        /// A validation set, reported each epoch beside train and test.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        validation: Option<String>,
        #[serde(default = "npz_x")]
        x: String,
        #[serde(default = "npz_y")]
        y: String,
    },
}

fn npz_x() -> String {
    "x".into()
}
fn npz_y() -> String {
    "y".into()
}

fn default_dtype() -> DType {
    DType::F32
}

/// One node: `(name: "y", op: Mul, inputs: ["a", "b"])`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub op: NodeOp,
    /// Other nodes' outputs: `"x"` for output 0, `"x:1"` for output 1, or a gradient `"d(y)/d(x)"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<DType>,
    /// Nodes that must run before this one (TensorFlow's control dependencies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_inputs: Vec<String>,
    /// Collections the node joins, e.g. `["UPDATE_OPS"]`. Variables join
    /// `GLOBAL_VARIABLES`, and `TRAINABLE_VARIABLES` when trainable, by themselves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
}

/// A gradient request, TensorFlow's `tf.gradients(ys=of, xs=wrt, grad_ys=grad_ys)`.
/// Each result is named `d(of)/d(x)` and may be used as an input or differentiated again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientSpec {
    pub of: String,
    pub wrt: Vec<String>,
    /// The incoming gradient for `of`; ones when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_ys: Option<String>,
}

/// The name under which a gradient result is known.
pub fn gradient_name(of: &str, wrt: &str) -> String {
    format!("d({of})/d({wrt})")
}

fn ron_options() -> ron::Options {
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES)
}

/// The layers, when `expected` are the ops (which a node's `op` may also be).
fn layers(expected: &[&'static str]) -> impl Iterator<Item = &'static str> {
    let ops = expected.contains(&"MatMul");
    Layer::NAMES.iter().copied().filter(move |_| ops)
}

/// Parses the text of the graph file `file` (as a path names it, for
/// errors), and makes the paths in it (a variable's `Npy` or
/// `Safetensors` initializer) relative to the file's directory, as they are
/// written.
pub fn parse_file(text: &str, file: &str) -> Result<GraphSpec> {
    let mut spec = parse(text).map_err(|e| e.in_file(file))?;
    let dir = std::path::Path::new(file)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    for node in &mut spec.nodes {
        if let NodeOp::Op(Op::Variable { initializer, .. }) = &mut node.op {
            if let gradc_runtime::Initializer::Npy(path)
            | gradc_runtime::Initializer::Safetensors(path) = &mut **initializer
            {
                if std::path::Path::new(path.as_str()).is_relative() {
                    *path = dir.join(path.as_str()).display().to_string();
                }
            }
        }
    }
    Ok(spec)
}

/// Parses a graph file's text.
pub fn parse(text: &str) -> Result<GraphSpec> {
    ron_options().from_str(text).map_err(|e| {
        let line = Some(e.span.start.line);
        let (kind, message) = match &e.code {
            ron::Error::NoSuchEnumVariant {
                expected,
                found,
                outer,
            } => match construct(outer.as_deref(), expected) {
                None => (
                    ErrorKind::UnknownOp,
                    format!(
                        "unknown op '{found}'{} (the ops are listed in docs/graph-format.md)",
                        did_you_mean(found, expected.iter().copied().chain(layers(expected)))
                    ),
                ),
                Some(what) => (
                    ErrorKind::Parse,
                    format!(
                        "unknown {what} '{found}'{}: expected one of {}",
                        did_you_mean(found, expected.iter().copied()),
                        expected.join(", ")
                    ),
                ),
            },
            ron::Error::NoSuchStructField {
                expected,
                found,
                outer,
            } => (
                ErrorKind::UnknownAttr,
                format!(
                    "unknown attribute '{found}'{}{}",
                    outer
                        .as_ref()
                        .map(|o| format!(" of {o}"))
                        .unwrap_or_default(),
                    did_you_mean(found, expected.iter().copied())
                ),
            ),
            ron::Error::MissingStructField { field, outer } => (
                ErrorKind::UnknownAttr,
                format!(
                    "missing attribute '{field}'{}",
                    outer
                        .as_ref()
                        .map(|o| format!(" of {o}"))
                        .unwrap_or_default()
                ),
            ),
            // An op, layer, initializer or optimizer written bare where it has attributes.
            ron::Error::ExpectedStructLike => match name_before(text, e.span.start) {
                Some(name) if name.starts_with(|c: char| c.is_ascii_uppercase()) => (
                    ErrorKind::Parse,
                    format!("{name} has attributes, written in parentheses: `{name}()` for its defaults"),
                ),
                _ => (ErrorKind::Parse, e.code.to_string()),
            },
            ron::Error::ExpectedComma => match name_before(text, e.span.start) {
                Some(name) if gradc_runtime::op::OP_NAMES.contains(&name) => (
                    ErrorKind::Parse,
                    format!("{name} takes no attributes: write `{name}`, without parentheses"),
                ),
                _ => (ErrorKind::Parse, e.code.to_string()),
            },
            other => (ErrorKind::Parse, other.to_string()),
        };
        CompileError::new(kind, message).at_line(line)
    })
}

/// What an enum of the graph file is called in an error about a variant
/// that it does not have; None for the ops (and layers), whose list is long.
fn construct(outer: Option<&str>, expected: &[&str]) -> Option<&'static str> {
    if expected.contains(&"MatMul") {
        return None;
    }
    Some(match outer {
        Some("OptimizerSpec") => "optimizer",
        Some("DataSource") => "data source",
        Some("DType") => "dtype",
        Some("Schedule") => "learning-rate schedule",
        Some("Initializer") => "initializer",
        Some("DataFormat") => "data format",
        Some("Padding") => "padding",
        Some("PadMode") => "pad mode",
        Some("Activation") => "activation",
        Some("FusedStep") => "Fused step",
        Some("IsTraining") => "is_training form",
        _ => "variant",
    })
}

/// The identifier written just before `at` on its line (an op's name where
/// RON expected its attributes).
fn name_before(text: &str, at: ron::error::Position) -> Option<&str> {
    let line = text.lines().nth(at.line.checked_sub(1)?)?;
    let before = line.get(
        ..line
            .char_indices()
            .nth(at.col.saturating_sub(1))
            .map_or(line.len(), |(i, _)| i),
    )?;
    let before = before.trim_end();
    let start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    Some(&before[start..]).filter(|name| !name.is_empty())
}

/// Prints a graph back to RON that `parse` reads to the same `GraphSpec`.
pub fn to_ron(spec: &GraphSpec) -> Result<String> {
    let config = ron::ser::PrettyConfig::default()
        .struct_names(true)
        .extensions(ron::extensions::Extensions::IMPLICIT_SOME);
    ron_options()
        .to_string_pretty(spec, config)
        .map_err(|e| CompileError::new(ErrorKind::Internal, format!("printing RON: {e}")))
}

/// The line (1-based) where `name: "<node>"` is written inside `nodes: [...]`, for errors.
pub fn line_of_node(text: &str, node: &str) -> Option<usize> {
    line_of_field(text, "nodes", "name", node)
}

/// The line of the first gradient request whose `of` is `of`.
pub fn line_of_gradient(text: &str, of: &str) -> Option<usize> {
    line_of_field(text, "gradients", "of", of)
}

/// The line where `key:` is first written (as a whole word), if anywhere.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    find_key(text, key, 0).map(|i| text[..i].matches('\n').count() + 1)
}

/// The line of each of `names` (the graph's nodes, in the order of its
/// `nodes` list) where `name: "<node>"` is written after the first `nodes:`:
/// one pass over the text. Lines for errors of a large graph must not cost a
/// scan of the file per node, nor a map of every name: the names are written
/// in the order of the list, so each is found after the one before. Should
/// one not be (text the list does not explain), the rest are looked up in a
/// map of every name written, where the first line wins.
pub fn node_lines(text: &str, names: &[&str]) -> Vec<Option<usize>> {
    // Every `name: "<x>"` after `nodes:`, with its line, in text order.
    let mut written: Vec<(&str, usize)> = Vec::with_capacity(names.len());
    if let Some(mut from) = find_key(text, "nodes", 0) {
        let (mut counted_to, mut line) = (0, 1);
        while let Some(i) = find_key(text, "name", from) {
            let rest = text[i..].trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                if let Some(end) = quoted.find('"') {
                    line += text[counted_to..i].matches('\n').count();
                    counted_to = i;
                    written.push((&quoted[..end], line));
                }
            }
            from = i;
        }
    }
    let mut lines = Vec::with_capacity(names.len());
    let mut next = 0;
    for (k, &name) in names.iter().enumerate() {
        let mut ahead = written[next.min(written.len())..].iter().take(64);
        match ahead.position(|&(w, _)| w == name) {
            // Usually the very next one: the scan stays linear.
            Some(skip) => {
                lines.push(Some(written[next + skip].1));
                next += skip + 1;
            }
            _ => {
                let mut first: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
                for &(w, l) in &written {
                    first.entry(w).or_insert(l);
                }
                lines.extend(names[k..].iter().map(|n| first.get(n).copied()));
                break;
            }
        }
    }
    lines
}

/// The first line after `section:` where `field: "value"` is written.
fn line_of_field(text: &str, section: &str, field: &str, value: &str) -> Option<usize> {
    let quoted = format!("\"{value}\"");
    let start = find_key(text, section, 0)?;
    let mut from = start;
    while let Some(i) = find_key(text, field, from) {
        let rest = text[i..].trim_start();
        if rest.starts_with(&quoted) {
            return Some(text[..i].matches('\n').count() + 1);
        }
        from = i;
    }
    None
}

/// The position just after the next `key:` (as a whole word) at or after `from`.
fn find_key(text: &str, key: &str, from: usize) -> Option<usize> {
    let mut pos = from;
    while let Some(k) = text.get(pos..)?.find(key) {
        let at = pos + k;
        let end = at + key.len();
        let word_start = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let after = text[end..].trim_start();
        if word_start && after.starts_with(':') {
            return Some(text.len() - after.len() + 1);
        }
        pos = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{name_before, node_lines};

    /// Found by the fuzzer: a multi-byte character just before the error's
    /// column was stepped over by one byte, inside the character.
    #[test]
    fn the_name_before_an_error_steps_over_multibyte_characters() {
        let at = |line, col| ron::error::Position { line, col };
        assert_eq!(name_before("       é", at(1, 9)), None);
        assert_eq!(name_before("  éMul", at(1, 7)), Some("Mul"));
        assert_eq!(name_before("op: Mul", at(1, 8)), Some("Mul"));
    }

    const TEXT: &str = r#"Graph(name: "g", nodes: [
    (name: "a", op: Placeholder(shape: [2])),
    (name: "b", op: Call(function: "f", name: "not_a_node")),
    (name: "c", op: Neg, inputs: ["a"]),
    (name: "a", op: Neg, inputs: ["c"]),
])"#;

    #[test]
    fn node_lines_follow_the_list_in_order() {
        // The `name:` inside b's op is passed over; the repeated a is on its own line.
        assert_eq!(
            node_lines(TEXT, &["a", "b", "c", "a"]),
            [Some(2), Some(3), Some(4), Some(5)]
        );
    }

    #[test]
    fn names_out_of_order_or_missing_are_looked_up_by_first_line() {
        // b is not written after c: from there on, each name's first line.
        assert_eq!(
            node_lines(TEXT, &["c", "b", "missing", "a"]),
            [Some(4), Some(3), None, Some(2)]
        );
        assert_eq!(node_lines("Graph(name: \"g\")", &["a"]), [None]);
    }
}

/// What a node of a graph file is: an op of the runtime, or a layer that the
/// compiler expands into ops (`layers.rs`, `functions.rs`) and that is never
/// in a graph or a program. Written the same way: `op: MatMul(..)`,
/// `op: BatchNorm(..)`.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeOp {
    Op(Op),
    Layer(Layer),
}

impl NodeOp {
    pub fn name(&self) -> &'static str {
        match self {
            NodeOp::Op(op) => op.name(),
            NodeOp::Layer(layer) => layer.name(),
        }
    }

    /// The op, if this is not a layer.
    pub fn op(&self) -> Option<&Op> {
        match self {
            NodeOp::Op(op) => Some(op),
            NodeOp::Layer(_) => None,
        }
    }
}

impl From<Op> for NodeOp {
    fn from(op: Op) -> NodeOp {
        NodeOp::Op(op)
    }
}

impl From<Layer> for NodeOp {
    fn from(layer: Layer) -> NodeOp {
        NodeOp::Layer(layer)
    }
}

impl Serialize for NodeOp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            NodeOp::Op(op) => op.serialize(s),
            NodeOp::Layer(layer) => layer.serialize(s),
        }
    }
}

/// Reads the variant's name, then hands the same variant to `Layer` or `Op`.
impl<'de> Deserialize<'de> for NodeOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<NodeOp, D::Error> {
        struct ByName;
        impl<'de> Visitor<'de> for ByName {
            type Value = NodeOp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an op or a layer")
            }
            fn visit_enum<A: EnumAccess<'de>>(
                self,
                data: A,
            ) -> std::result::Result<NodeOp, A::Error> {
                let (name, variant) = data.variant_seed(VariantName)?;
                let is_layer = Layer::NAMES.contains(&name.as_str());
                let again = EnumAccessDeserializer::new(Named { name, variant });
                if is_layer {
                    Layer::deserialize(again).map(NodeOp::Layer)
                } else {
                    Op::deserialize(again).map(NodeOp::Op)
                }
            }
        }
        d.deserialize_enum("Op", gradc_runtime::op::OP_NAMES, ByName)
    }
}

/// Reads a variant's name (an identifier, which RON does not read as a string).
struct VariantName;

impl<'de> DeserializeSeed<'de> for VariantName {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an op's name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<String, E> {
                Ok(v.to_owned())
            }
        }
        d.deserialize_identifier(Name)
    }
}

/// An enum whose variant name was already read: gives that name again, then the variant.
struct Named<V> {
    name: String,
    variant: V,
}

impl<'de, V: serde::de::VariantAccess<'de>> EnumAccess<'de> for Named<V> {
    type Error = V::Error;
    type Variant = V;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> std::result::Result<(S::Value, V), V::Error> {
        let name: StringDeserializer<V::Error> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self.variant))
    }
}

/// Layers: written like ops, expanded by the compiler into ops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Layer {
    /// TensorFlow's `assign_moving_average`, inputs (variable, value):
    /// `variable -= (variable - value) * (1 - decay)`; with `zero_debias`, the
    /// bias-corrected average `biased / (1 - decay^t)`.
    AssignMovingAverage {
        decay: f64,
        #[serde(default)]
        zero_debias: bool,
    },
    /// TensorFlow's `tf.contrib.layers.batch_norm`, input x of rank 2 or 4.
    BatchNorm(Box<BatchNormLayer>),
    /// TensorFlow's `tf.nn.dropout`, input x (a float): in training, each
    /// element kept with probability 1 − `rate` and scaled by 1/(1 − rate),
    /// else 0; the mask drawn by `StatelessRandomUniform` from a seed
    /// variable that an update op (in `UPDATE_OPS`) advances each step.
    /// `is_training` as BatchNorm's (true when absent, as `tf.nn.dropout`).
    Dropout {
        rate: f64,
        #[serde(default)]
        is_training: IsTraining,
    },
    /// A call of a function of the graph file, inlined under the call's name.
    Call(String),
}

impl Layer {
    /// Every layer's name, as a graph file writes it.
    pub const NAMES: &[&str] = &["AssignMovingAverage", "BatchNorm", "Dropout", "Call"];

    pub fn name(&self) -> &'static str {
        match self {
            Layer::AssignMovingAverage { .. } => "AssignMovingAverage",
            Layer::BatchNorm(_) => "BatchNorm",
            Layer::Dropout { .. } => "Dropout",
            Layer::Call(_) => "Call",
        }
    }

    /// The node a layer's `is_training` names, which it reads besides its
    /// inputs (so it is built after that node, wherever the node is written).
    pub fn reads(&self) -> Option<&str> {
        let is_training = match self {
            Layer::BatchNorm(bn) => &bn.is_training,
            Layer::Dropout { is_training, .. } => is_training,
            Layer::AssignMovingAverage { .. } | Layer::Call(_) => return None,
        };
        match is_training {
            IsTraining::Node(n) => Some(n),
            IsTraining::Const(_) => None,
        }
    }

    /// How many inputs it takes, for its error message; None for a call (any).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Layer::AssignMovingAverage { .. } => Some(2),
            Layer::BatchNorm(_) | Layer::Dropout { .. } => Some(1),
            Layer::Call(_) => None,
        }
    }
}

fn yes() -> bool {
    true
}

fn bn_epsilon() -> f64 {
    0.001
}

/// The attributes of the `BatchNorm` layer, with `tf.contrib.layers.batch_norm`'s defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormLayer {
    /// Moving-average decay (TensorFlow: 0.999).
    #[serde(default = "bn_decay")]
    pub decay: f64,
    /// Add a trainable offset `beta` (default true).
    #[serde(default = "yes")]
    pub center: bool,
    /// Multiply by a trainable `gamma` (default false, as in `tf.contrib.layers.batch_norm`).
    #[serde(default)]
    pub scale: bool,
    #[serde(default = "bn_epsilon")]
    pub epsilon: f64,
    #[serde(default)]
    pub param_initializers: BatchNormInitializers,
    #[serde(default)]
    pub data_format: DataFormat,
    /// Use FusedBatchNorm (moving variance fed with the Bessel-corrected batch variance).
    #[serde(default)]
    pub fused: bool,
    /// Where the moving-average updates go; `None` forces them in place: the
    /// output then depends on them through control inputs.
    #[serde(default = "update_ops")]
    pub updates_collections: Option<String>,
    /// `true`, `false`, or the name of a scalar node (1 = training).
    #[serde(default)]
    pub is_training: IsTraining,
    #[serde(default)]
    pub zero_debias_moving_mean: bool,
    /// In a data-parallel run, normalize with the statistics of the global
    /// batch (PyTorch's SyncBatchNorm): the ranks' means and mean squares
    /// are averaged across them, with their gradient. Unfused only.
    #[serde(default)]
    pub sync: bool,
}

fn bn_decay() -> f64 {
    0.999
}

fn update_ops() -> Option<String> {
    Some("UPDATE_OPS".to_string())
}

/// Initializers of the layer's variables (absent: zeros, ones, zeros, ones).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormInitializers {
    #[serde(default)]
    pub beta: Option<Initializer>,
    #[serde(default)]
    pub gamma: Option<Initializer>,
    #[serde(default)]
    pub moving_mean: Option<Initializer>,
    #[serde(default)]
    pub moving_variance: Option<Initializer>,
}

/// Training mode: a constant, or a node whose value decides at run time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IsTraining {
    Const(bool),
    Node(String),
}

impl Default for IsTraining {
    fn default() -> IsTraining {
        IsTraining::Const(true)
    }
}
