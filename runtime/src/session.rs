//! Runs a program: binds feeds, prunes to what the fetches and targets need,
//! infers concrete shapes, evaluates kernels in program order, and keeps the
//! values of variables across runs.
//!
//! **Variable semantics:** every read of a variable in a run sees its value at
//! the start of the run; `Assign`, `AssignAdd` and `AssignSub` update the
//! stored value in place, in program order (so two `AssignAdd`s to one
//! variable in a run both count), and the next run sees the result.
//!
//! **Buffer reuse:** the first run with a given set of fetches, targets and
//! feed shapes makes a *plan* (the instructions needed, their concrete output
//! types, where each value is read from) and allocates one buffer per output.
//! Later runs with the same key reuse both, and kernels write into the
//! buffers, so a steady-state run allocates nothing (see `run_with_targets_into`).
//! Feeds and variables are read where they are, without copies; a variable
//! that is read after an assignment to it in the same run is copied into a
//! buffer at the start of the run. Errors found while planning (missing or
//! mis-shaped feeds, shape errors) are reported before anything runs.

use crate::init::initial_value;
use crate::program::{Instr, Program, ValueRef};
use crate::shape::Dim;
use crate::tensor::check_alloc;
use crate::{kernels, DType, Op, Tensor, TensorType};
use std::collections::HashMap;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum RunError {
    #[error("no feed for placeholder '{name}' ({expected})")]
    MissingFeed { name: String, expected: TensorType },
    #[error("'{name}' is fed but the program has no single-output node of that name")]
    UnknownFeed { name: String },
    #[error("'{name}' is fed twice in one run")]
    DuplicateFeed { name: String },
    #[error("feed '{name}' has dtype {got}, the node is {expected}")]
    FeedDtype {
        name: String,
        expected: TensorType,
        got: crate::DType,
    },
    #[error("feed '{name}' has shape {got:?}, the node is {expected}{detail}")]
    FeedShape {
        name: String,
        expected: TensorType,
        got: Vec<usize>,
        detail: String,
    },
    #[error("no output or node named '{name}' to fetch")]
    UnknownFetch { name: String },
    #[error("invalid program: {message}")]
    InvalidProgram { message: String },
    #[error("variable '{name}' has no value: initialize the session or load a checkpoint")]
    Uninitialized { name: String },
    #[error("no variable named '{name}'")]
    UnknownVariable { name: String },
    #[error("variable '{name}' is {expected}, the value given is {got}")]
    VariableType {
        name: String,
        expected: TensorType,
        got: TensorType,
    },
    #[error("node '{node}' ({op}) produced a non-finite value (NaN or Inf)")]
    NonFinite { node: String, op: &'static str },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
}

/// A node resolved once for feeding (see [`Session::resolve_feed`]), so a
/// training loop can feed by position without building a map per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeedId(usize);

impl FeedId {
    /// The instruction it feeds.
    pub fn node(self) -> usize {
        self.0
    }
}

/// How many plans a session keeps (least recently used dropped first).
const MAX_PLANS: usize = 8;

/// Holds a program and its variables; runs it with feeds, fetches and targets.
pub struct Session {
    program: Program,
    by_name: HashMap<String, usize>,
    /// The value of each variable instruction (None for other instructions).
    store: Vec<Option<Tensor>>,
    /// Check every kernel's output for NaN and Inf, naming the first node that makes one.
    pub check_numerics: bool,
    /// Plans of recent runs, reused while fetches, targets and feed shapes repeat.
    plans: Vec<Plan>,
    /// Each instruction's output buffers, kept across runs (empty until needed).
    buffers: Vec<Vec<Tensor>>,
    /// Start-of-run copies of variables that a run reads after assigning them.
    snapshots: Vec<Option<Tensor>>,
    /// Per instruction: the run that last fed it and the feed's position in that run.
    fed_in: Vec<(u64, usize)>,
    /// Runs started, to tell this run's feeds from earlier ones in `fed_in`.
    runs: u64,
}

/// What a run with one set of fetches, targets and feed shapes does.
struct Plan {
    fetches: Vec<ValueRef>,
    targets: Vec<usize>,
    /// The fed nodes with the dtype and shape the plan was made for.
    feeds: Vec<(usize, DType, Vec<usize>)>,
    /// The needed instructions, in program order.
    steps: Vec<Step>,
    /// Where each node's value is read from in this plan.
    sources: Vec<Source>,
    /// Variables to copy into `snapshots` before the first step.
    snapshot: Vec<usize>,
    /// The run that last used this plan.
    last_used: u64,
}

enum Step {
    /// A fed node: only checked for NaN/Inf when `check_numerics` is set.
    Feed(usize),
    /// A kernel writing into the node's buffers, which have these types.
    Kernel {
        node: usize,
        outputs: Vec<(DType, Vec<usize>)>,
    },
    /// Assign, AssignAdd or AssignSub to `var`; `output` is the buffer type for
    /// the new value when something reads this node's output.
    Assign {
        node: usize,
        var: usize,
        output: Option<(DType, Vec<usize>)>,
    },
}

/// Where a value is read from during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    /// Not needed by the plan.
    None,
    /// The caller's feed.
    Feed,
    /// The variable store (the variable is not assigned before it is read).
    Store,
    /// The start-of-run copy of a variable.
    Snapshot,
    /// The node's buffers.
    Buffer,
}

impl Session {
    /// Checks the program (references point backwards, arities hold) and holds it.
    pub fn new(program: Program) -> Result<Session, RunError> {
        program
            .validate()
            .map_err(|message| RunError::InvalidProgram { message })?;
        let by_name = program
            .instrs
            .iter()
            .enumerate()
            .map(|(i, ins)| (ins.name.clone(), i))
            .collect();
        let n = program.instrs.len();
        Ok(Session {
            program,
            by_name,
            store: vec![None; n],
            check_numerics: false,
            plans: Vec::new(),
            buffers: vec![Vec::new(); n],
            snapshots: vec![None; n],
            fed_in: vec![(0, 0); n],
            runs: 0,
        })
    }
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Gives every variable its initial value. Random initializers draw from a
    /// stream that depends only on `seed` and the variable (its own `seed`, or
    /// its name), so results do not depend on the order of the variables.
    pub fn initialize(&mut self, seed: u64) -> Result<(), RunError> {
        for (i, ins) in self.program.instrs.iter().enumerate() {
            if let Op::Variable {
                shape, initializer, ..
            } = &ins.op
            {
                let value = initial_value(&ins.name, ins.dtype, shape, initializer, seed).map_err(
                    |message| RunError::Node {
                        node: ins.name.clone(),
                        op: "Variable",
                        message,
                    },
                )?;
                self.store[i] = Some(value);
            }
        }
        Ok(())
    }

    /// Names and static types of the variables, in program order.
    pub fn variable_types(&self) -> Vec<(String, TensorType)> {
        self.program
            .instrs
            .iter()
            .filter(|ins| matches!(ins.op, Op::Variable { .. }))
            .map(|ins| (ins.name.clone(), ins.outputs[0].clone()))
            .collect()
    }

    /// The variables' current values, in program order (None where uninitialized).
    pub fn variables(&self) -> Vec<(&str, Option<&Tensor>)> {
        self.program
            .instrs
            .iter()
            .zip(&self.store)
            .filter(|(ins, _)| matches!(ins.op, Op::Variable { .. }))
            .map(|(ins, v)| (ins.name.as_str(), v.as_ref()))
            .collect()
    }

    /// Sets a variable, checking its dtype and shape.
    pub fn set_variable(&mut self, name: &str, value: Tensor) -> Result<(), RunError> {
        let unknown = || RunError::UnknownVariable {
            name: name.to_string(),
        };
        let &i = self.by_name.get(name).ok_or_else(unknown)?;
        let ins = &self.program.instrs[i];
        if !matches!(ins.op, Op::Variable { .. }) {
            return Err(unknown());
        }
        let expected = ins.outputs[0].clone();
        if value.tensor_type() != expected {
            return Err(RunError::VariableType {
                name: name.to_string(),
                expected,
                got: value.tensor_type(),
            });
        }
        self.store[i] = Some(value);
        Ok(())
    }

    /// Resolves a fetch: an output label, a node name, or `node:k` for output k.
    pub fn resolve(&self, name: &str) -> Result<ValueRef, RunError> {
        if let Some(o) = self.program.outputs.iter().find(|o| o.label == name) {
            return Ok(o.value);
        }
        if let Some(&node) = self.by_name.get(name) {
            if !self.program.instrs[node].outputs.is_empty() {
                return Ok(ValueRef { node, output: 0 });
            }
        }
        if let Some((base, k)) = name.rsplit_once(':') {
            if let (Some(&node), Ok(output)) = (self.by_name.get(base), k.parse::<usize>()) {
                if output < self.program.instrs[node].outputs.len() {
                    return Ok(ValueRef { node, output });
                }
            }
        }
        Err(RunError::UnknownFetch {
            name: name.to_string(),
        })
    }

    /// Resolves a target: a node to run for its effects (an update op, a `NoOp` group).
    pub fn resolve_target(&self, name: &str) -> Result<usize, RunError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| RunError::UnknownFetch {
                name: name.to_string(),
            })
    }

    /// Resolves a node to feed: any node with one output that is not an
    /// assignment (a placeholder, or any other node, as with TensorFlow's `feed_dict`).
    pub fn resolve_feed(&self, name: &str) -> Result<FeedId, RunError> {
        let unknown = || RunError::UnknownFeed {
            name: name.to_string(),
        };
        let &i = self.by_name.get(name).ok_or_else(unknown)?;
        let ins = &self.program.instrs[i];
        if ins.outputs.len() != 1 || ins.op.is_stateful() {
            return Err(unknown());
        }
        Ok(FeedId(i))
    }

    /// Runs what the fetches need and returns the fetched values in order.
    pub fn run(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        fetches: &[ValueRef],
    ) -> Result<Vec<Tensor>, RunError> {
        self.run_with_targets(feeds, fetches, &[])
    }

    /// Runs what the fetches and the targets need (TensorFlow's `session.run(fetches)`
    /// with ops among them); returns the fetched values in order.
    ///
    /// Convenient, but it allocates the returned tensors on every call; a loop
    /// should use `run_with_targets_into`.
    pub fn run_with_targets(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        fetches: &[ValueRef],
        targets: &[usize],
    ) -> Result<Vec<Tensor>, RunError> {
        let feeds = feeds
            .iter()
            .map(|(name, t)| Ok((self.resolve_feed(name)?, t)))
            .collect::<Result<Vec<_>, RunError>>()?;
        let mut out = Vec::new();
        self.run_with_targets_into(&feeds, fetches, targets, &mut out)?;
        Ok(out)
    }

    /// Runs what the fetches and the targets need and copies the fetched
    /// values into `out` (resized to `fetches.len()`).
    ///
    /// Allocation-free in the steady state: after a first run with the same
    /// fetches, targets and fed nodes with the same dtypes and shapes, this
    /// allocates nothing (for tensors of rank at most 4) as long as `out`
    /// holds tensors of the fetched types from the previous call. ndarray's
    /// matrix product backend still allocates its own packing buffer once
    /// per matrix product; see the README.
    pub fn run_with_targets_into(
        &mut self,
        feeds: &[(FeedId, &Tensor)],
        fetches: &[ValueRef],
        targets: &[usize],
        out: &mut Vec<Tensor>,
    ) -> Result<(), RunError> {
        let instrs = &self.program.instrs;
        self.runs += 1;
        let run = self.runs;
        for (k, (id, _)) in feeds.iter().enumerate() {
            let unknown = || RunError::UnknownFeed {
                name: instrs
                    .get(id.0)
                    .map_or_else(|| format!("#{}", id.0), |ins| ins.name.clone()),
            };
            let ins = instrs.get(id.0).ok_or_else(unknown)?;
            if ins.outputs.len() != 1 || ins.op.is_stateful() {
                return Err(unknown());
            }
            let slot = &mut self.fed_in[id.0];
            if slot.0 == run {
                return Err(RunError::DuplicateFeed {
                    name: ins.name.clone(),
                });
            }
            *slot = (run, k);
        }
        for v in fetches {
            if instrs
                .get(v.node)
                .is_none_or(|ins| v.output >= ins.outputs.len())
            {
                return Err(RunError::UnknownFetch {
                    name: format!("{}:{}", v.node, v.output),
                });
            }
        }
        if let Some(&t) = targets.iter().find(|&&t| t >= instrs.len()) {
            return Err(RunError::UnknownFetch {
                name: format!("instruction {t}"),
            });
        }
        let p = match self.find_plan(feeds, fetches, targets) {
            Some(p) => p,
            None => {
                let plan = self.make_plan(feeds, fetches, targets)?;
                if self.plans.len() >= MAX_PLANS {
                    if let Some(oldest) =
                        (0..self.plans.len()).min_by_key(|&i| self.plans[i].last_used)
                    {
                        self.plans.swap_remove(oldest);
                    }
                }
                self.plans.push(plan);
                self.plans.len() - 1
            }
        };
        self.plans[p].last_used = run;
        self.execute(p, feeds, fetches, out)
    }

    /// The cached plan for these fetches, targets and feeds, if any.
    fn find_plan(
        &self,
        feeds: &[(FeedId, &Tensor)],
        fetches: &[ValueRef],
        targets: &[usize],
    ) -> Option<usize> {
        self.plans.iter().position(|plan| {
            plan.fetches == fetches
                && plan.targets == targets
                && plan.feeds.len() == feeds.len()
                && plan.feeds.iter().all(|(node, dtype, shape)| {
                    let (run, k) = self.fed_in[*node];
                    run == self.runs
                        && feeds
                            .get(k)
                            .is_some_and(|(_, t)| t.dtype() == *dtype && t.shape() == shape)
                })
        })
    }

    /// Prunes to what the fetches and targets need, checks the feeds and
    /// infers every needed node's concrete types, and decides where each value
    /// is read from. Allocates; runs with the same key reuse the plan.
    fn make_plan(
        &self,
        feeds: &[(FeedId, &Tensor)],
        fetches: &[ValueRef],
        targets: &[usize],
    ) -> Result<Plan, RunError> {
        let instrs = &self.program.instrs;
        let n = instrs.len();
        let fed = |i: usize| -> Option<&Tensor> {
            let (run, k) = self.fed_in[i];
            (run == self.runs)
                .then(|| feeds.get(k).map(|(_, t)| *t))
                .flatten()
        };
        // Which instructions the fetches and targets need; a fed node needs nothing upstream.
        let mut needed = vec![false; n];
        let mut stack: Vec<usize> = fetches
            .iter()
            .map(|v| v.node)
            .chain(targets.iter().copied())
            .collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut needed[i], true) && fed(i).is_none() {
                stack.extend(instrs[i].inputs.iter().map(|v| v.node));
                stack.extend(instrs[i].control.iter().copied());
            }
        }
        // Variables must have values before anything runs.
        for (i, ins) in instrs.iter().enumerate() {
            if needed[i]
                && fed(i).is_none()
                && matches!(ins.op, Op::Variable { .. })
                && self.store[i].is_none()
            {
                return Err(RunError::Uninitialized {
                    name: ins.name.clone(),
                });
            }
        }
        let mut bindings: HashMap<String, (usize, String)> = HashMap::new();
        let mut types: Vec<Vec<TensorType>> = vec![Vec::new(); n];
        let mut sources = vec![Source::None; n];
        let mut steps = Vec::new();
        for (i, ins) in instrs.iter().enumerate() {
            if !needed[i] {
                continue;
            }
            let node_err = |message: String| RunError::Node {
                node: ins.name.clone(),
                op: ins.op.name(),
                message,
            };
            if let Some(t) = fed(i) {
                check_feed(&ins.name, &ins.outputs[0], t, &mut bindings)?;
                types[i] = vec![t.tensor_type()];
                sources[i] = Source::Feed;
                steps.push(Step::Feed(i));
            } else if let Op::Placeholder { .. } = ins.op {
                return Err(RunError::MissingFeed {
                    name: ins.name.clone(),
                    expected: ins.outputs[0].clone(),
                });
            } else if let Op::Variable { .. } = ins.op {
                types[i] = ins.outputs.clone();
                sources[i] = Source::Store;
            } else if let Op::NoOp = ins.op {
            } else {
                let in_types = ins
                    .inputs
                    .iter()
                    .map(|v| types[v.node].get(v.output).cloned())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| node_err("an input has no value".into()))?;
                let out_types = ins.op.infer(ins.dtype, &in_types).map_err(node_err)?;
                let outputs = out_types
                    .iter()
                    .map(|t| {
                        let shape = t.shape.concrete().ok_or_else(|| {
                            node_err(format!("output shape {} is not concrete", t.shape))
                        })?;
                        check_alloc(&shape, t.dtype.size_of()).map_err(node_err)?;
                        Ok((t.dtype, shape))
                    })
                    .collect::<Result<Vec<_>, RunError>>()?;
                sources[i] = Source::Buffer;
                types[i] = out_types;
                steps.push(if ins.op.is_stateful() {
                    Step::Assign {
                        node: i,
                        var: ins.inputs[0].node,
                        output: None,
                    }
                } else {
                    Step::Kernel { node: i, outputs }
                });
            }
        }
        // A variable read at or after its first assignment in this run (or
        // fetched, which happens after the run) is read from a start-of-run copy.
        let mut first_assign: Vec<Option<usize>> = vec![None; n];
        for step in &steps {
            if let Step::Assign { node, var, .. } = *step {
                first_assign[var].get_or_insert(node);
            }
        }
        let mut used = vec![false; n];
        let mut snapshot = Vec::new();
        let mut read = |var: usize, at: usize, sources: &mut [Source]| {
            if sources[var] == Source::Store && first_assign[var].is_some_and(|a| a <= at) {
                sources[var] = Source::Snapshot;
                snapshot.push(var);
            }
        };
        for step in &steps {
            let (Step::Kernel { node, .. } | Step::Assign { node, .. }) = *step else {
                continue;
            };
            let stateful = instrs[node].op.is_stateful();
            for (slot, v) in instrs[node].inputs.iter().enumerate() {
                // An assignment's first input names its variable; it is not a read.
                if !(stateful && slot == 0) {
                    read(v.node, node, &mut sources);
                    used[v.node] = true;
                }
            }
        }
        for v in fetches {
            read(v.node, usize::MAX, &mut sources);
            used[v.node] = true;
        }
        // An assignment's output is the new value; keep a copy only if something reads it.
        for step in &mut steps {
            if let Step::Assign { node, output, .. } = step {
                if used[*node] {
                    *output = types[*node]
                        .first()
                        .and_then(|t| Some((t.dtype, t.shape.concrete()?)));
                }
            }
        }
        Ok(Plan {
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
            feeds: feeds
                .iter()
                .map(|(id, t)| (id.0, t.dtype(), t.shape().to_vec()))
                .collect(),
            steps,
            sources,
            snapshot,
            last_used: 0,
        })
    }

    /// Runs plan `p`: buffers, snapshots, steps in order, then the fetches.
    fn execute(
        &mut self,
        p: usize,
        feeds: &[(FeedId, &Tensor)],
        fetches: &[ValueRef],
        out: &mut Vec<Tensor>,
    ) -> Result<(), RunError> {
        let Session {
            program,
            store,
            check_numerics,
            plans,
            buffers,
            snapshots,
            fed_in,
            ..
        } = self;
        let instrs = &program.instrs;
        let plan = &plans[p];
        let node_err = |i: usize| {
            move |message: String| RunError::Node {
                node: instrs[i].name.clone(),
                op: instrs[i].op.name(),
                message,
            }
        };
        // Buffers of the right types: kept from the last run unless a shape changed.
        for step in &plan.steps {
            let (node, types) = match step {
                Step::Kernel { node, outputs } => (*node, outputs.as_slice()),
                Step::Assign {
                    node,
                    output: Some(output),
                    ..
                } => (*node, std::slice::from_ref(output)),
                _ => continue,
            };
            let bufs = &mut buffers[node];
            let fits = bufs.len() == types.len()
                && bufs.iter().zip(types).all(|(b, (d, s))| b.has_type(*d, s));
            if !fits {
                *bufs = types
                    .iter()
                    .map(|(d, s)| Tensor::zeros(*d, s))
                    .collect::<Result<_, _>>()
                    .map_err(node_err(node))?;
            }
        }
        for &v in &plan.snapshot {
            let value = store[v].as_ref().ok_or_else(|| RunError::Uninitialized {
                name: instrs[v].name.clone(),
            })?;
            match &mut snapshots[v] {
                Some(copy) => copy.copy_from(value),
                slot => *slot = Some(value.clone()),
            }
        }
        let non_finite = |i: usize| RunError::NonFinite {
            node: instrs[i].name.clone(),
            op: instrs[i].op.name(),
        };
        for step in &plan.steps {
            match *step {
                Step::Feed(i) => {
                    let values = Values {
                        sources: &plan.sources,
                        feeds,
                        fed_in,
                        store,
                        snapshots,
                        buffers,
                    };
                    let value = values.get(ValueRef { node: i, output: 0 });
                    if *check_numerics && value.is_some_and(|t| !t.is_finite()) {
                        return Err(non_finite(i));
                    }
                }
                Step::Kernel { node: i, .. } => {
                    let mut outs = std::mem::take(&mut buffers[i]);
                    let result = kernels::eval_with(
                        &instrs[i].op,
                        &Args {
                            instr: &instrs[i],
                            values: Values {
                                sources: &plan.sources,
                                feeds,
                                fed_in,
                                store,
                                snapshots,
                                buffers,
                            },
                        },
                        &mut outs,
                    );
                    buffers[i] = outs;
                    result.map_err(node_err(i))?;
                    if *check_numerics && buffers[i].iter().any(|t| !t.is_finite()) {
                        return Err(non_finite(i));
                    }
                }
                Step::Assign {
                    node: i,
                    var,
                    ref output,
                } => {
                    let Some(mut value) = store[var].take() else {
                        return Err(RunError::Uninitialized {
                            name: instrs[var].name.clone(),
                        });
                    };
                    let values = Values {
                        sources: &plan.sources,
                        feeds,
                        fed_in,
                        store,
                        snapshots,
                        buffers,
                    };
                    let result = match instrs[i].inputs.get(1).and_then(|&v| values.get(v)) {
                        None => Err("the assigned value is missing".to_string()),
                        Some(delta) => match instrs[i].op {
                            Op::AssignAdd => kernels::accumulate(&mut value, delta, false),
                            Op::AssignSub => kernels::accumulate(&mut value, delta, true),
                            _ => {
                                value.copy_from(delta);
                                Ok(())
                            }
                        },
                    };
                    let value = &*store[var].insert(value);
                    result.map_err(node_err(i))?;
                    if output.is_some() {
                        if let Some(buf) = buffers[i].first_mut() {
                            buf.copy_from(value);
                        }
                    }
                    if *check_numerics && !value.is_finite() {
                        return Err(non_finite(i));
                    }
                }
            }
        }
        let values = Values {
            sources: &plan.sources,
            feeds,
            fed_in,
            store,
            snapshots,
            buffers,
        };
        out.truncate(fetches.len());
        for (k, &v) in fetches.iter().enumerate() {
            let value = values.get(v).ok_or_else(|| RunError::InvalidProgram {
                message: format!("fetched value {}:{} was not computed", v.node, v.output),
            })?;
            match out.get_mut(k) {
                Some(slot) => slot.copy_from(value),
                None => out.push(value.clone()),
            }
        }
        Ok(())
    }
}

/// Where a run's values are: the caller's feeds, the variable store, the
/// start-of-run copies and the buffers, as the plan's `sources` say.
struct Values<'a> {
    sources: &'a [Source],
    feeds: &'a [(FeedId, &'a Tensor)],
    fed_in: &'a [(u64, usize)],
    store: &'a [Option<Tensor>],
    snapshots: &'a [Option<Tensor>],
    buffers: &'a [Vec<Tensor>],
}

impl Values<'_> {
    fn get(&self, v: ValueRef) -> Option<&Tensor> {
        match self.sources.get(v.node)? {
            Source::None => None,
            Source::Feed => {
                let &(_, k) = self.fed_in.get(v.node)?;
                self.feeds.get(k).map(|(_, t)| *t)
            }
            Source::Store => self.store.get(v.node)?.as_ref(),
            Source::Snapshot => self.snapshots.get(v.node)?.as_ref(),
            Source::Buffer => self.buffers.get(v.node)?.get(v.output),
        }
    }
}

/// The inputs of one instruction, for its kernel.
struct Args<'a> {
    instr: &'a Instr,
    values: Values<'a>,
}

impl kernels::Inputs for Args<'_> {
    fn len(&self) -> usize {
        self.instr.inputs.len()
    }

    fn get(&self, k: usize) -> Option<&Tensor> {
        self.values.get(*self.instr.inputs.get(k)?)
    }
}

/// Checks a feed against its node's type; binds symbolic dims, which must agree across feeds.
fn check_feed(
    name: &str,
    expected: &TensorType,
    fed: &Tensor,
    bindings: &mut HashMap<String, (usize, String)>,
) -> Result<(), RunError> {
    if fed.dtype() != expected.dtype {
        return Err(RunError::FeedDtype {
            name: name.into(),
            expected: expected.clone(),
            got: fed.dtype(),
        });
    }
    let got = fed.shape().to_vec();
    let shape_err = |detail: String| RunError::FeedShape {
        name: name.into(),
        expected: expected.clone(),
        got: got.clone(),
        detail,
    };
    if got.len() != expected.shape.rank() {
        return Err(shape_err(String::new()));
    }
    for (d, &n) in expected.shape.0.iter().zip(&got) {
        match d {
            Dim::Known(k) if *k != n => return Err(shape_err(String::new())),
            Dim::Known(_) => {}
            Dim::Sym(s) => match bindings.get(s) {
                Some((m, by)) if *m != n => {
                    return Err(shape_err(format!(" ('{s}' is {m}, bound by feed '{by}')")))
                }
                Some(_) => {}
                None => {
                    bindings.insert(s.clone(), (n, name.to_string()));
                }
            },
        }
    }
    Ok(())
}
