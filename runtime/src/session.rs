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
//! types, where each value is read from, and the slot each computed value
//! lives in: values whose lifetimes do not overlap share one, see `plan.rs`).
//! The slots are buffers of a pool the session keeps for all its cached plans
//! (for each dtype and element count, as many buffers as the plan needing
//! most of them). Later runs with the same key reuse both, and kernels write
//! into the buffers, so a steady-state run allocates nothing (see
//! `run_with_targets_into`). Feeds and variables are read where they are,
//! without copies; a variable that is read after an assignment to it in the
//! same run is copied into a buffer at the start of the run. Errors found
//! while planning (missing or mis-shaped feeds, shape errors) are reported
//! before anything runs.

use crate::error::RunError;
use crate::init::{initial_value, InitError};
use crate::plan::{self, Plan, PlanMemory, Source, Step};
use crate::program::{Instr, Program, ValueRef};
use crate::shape::Dim;
use crate::{kernels, DType, Op, Tensor, TensorType};
use std::collections::HashMap;
use std::time::{Duration, Instant};

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
    /// The buffers the cached plans' slots map to, kept across runs.
    pool: Vec<Tensor>,
    /// A kernel step's output buffers while they are lent out of the pool.
    outs: Vec<Tensor>,
    /// Whether plans share buffers between values (off: one per value).
    sharing: bool,
    /// Start-of-run copies of variables that a run reads after assigning them.
    snapshots: Vec<Option<Tensor>>,
    /// Per instruction: the run that last fed it and the feed's position in that run.
    fed_in: Vec<(u64, usize)>,
    /// Runs started, to tell this run's feeds from earlier ones in `fed_in`.
    runs: u64,
    /// Per instruction: steps timed and their total time, while profiling.
    profile: Option<Vec<(u64, Duration)>>,
}

/// The time one instruction took over the profiled runs (see [`Session::set_profiling`]).
#[derive(Clone, Debug, PartialEq)]
pub struct InstrProfile {
    pub node: String,
    pub op: &'static str,
    /// Steps of this instruction that ran (kernel, assignment or feed check).
    pub calls: u64,
    pub total: Duration,
}

impl Session {
    /// Checks the program (references point backwards, arities hold) and holds it.
    pub fn new(program: Program) -> Result<Session, RunError> {
        program.validate().map_err(|e| RunError::InvalidProgram {
            message: e.to_string(),
        })?;
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
            pool: Vec::new(),
            outs: Vec::new(),
            sharing: true,
            snapshots: vec![None; n],
            fed_in: vec![(0, 0); n],
            runs: 0,
            profile: None,
        })
    }
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Turns buffer sharing (memory planning, in-place steps) off or back on;
    /// off, every computed value has a buffer of its own, as before memory
    /// planning. For tests and comparisons: results are the same either way.
    /// Drops the cached plans and buffers.
    pub fn set_buffer_sharing(&mut self, on: bool) {
        if self.sharing != on {
            self.sharing = on;
            self.plans.clear();
            self.pool.clear();
        }
    }

    /// Turns per-instruction timing on (clearing earlier figures) or off.
    /// On, every step of a run is timed with a monotonic clock, which costs
    /// two clock reads per step; results are unchanged.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(|| vec![(0, Duration::ZERO); self.program.instrs.len()]);
    }

    /// The instructions that ran while profiling, slowest first (ties by
    /// program order). Empty unless profiling is on.
    pub fn profile(&self) -> Vec<InstrProfile> {
        let Some(times) = &self.profile else {
            return Vec::new();
        };
        let mut rows: Vec<InstrProfile> = times
            .iter()
            .zip(&self.program.instrs)
            .filter(|((calls, _), _)| *calls > 0)
            .map(|(&(calls, total), ins)| InstrProfile {
                node: ins.name.clone(),
                op: ins.op.name(),
                calls,
                total,
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.total));
        rows
    }

    /// The memory plan of the last run's plan: its slots' bytes against one
    /// buffer per value. None before the first run.
    pub fn last_plan_memory(&self) -> Option<PlanMemory> {
        self.plans
            .iter()
            .max_by_key(|p| p.last_used)
            .map(|p| p.memory)
    }

    /// Bytes of the buffers the session holds for its cached plans (feeds,
    /// variables and snapshots not counted).
    pub fn buffer_bytes(&self) -> usize {
        self.pool
            .iter()
            .map(|t| t.len() * t.dtype().size_of())
            .sum()
    }

    /// Gives every variable its initial value. Random initializers draw from a
    /// stream that depends only on `seed` and the variable (its own `seed`, or
    /// its name), so results do not depend on the order of the variables.
    pub fn initialize(&mut self, seed: u64) -> Result<(), RunError> {
        let result = self.initialize_each(seed);
        // A weights file read for several variables is not kept after them.
        crate::init::forget_files();
        result
    }

    fn initialize_each(&mut self, seed: u64) -> Result<(), RunError> {
        for (i, ins) in self.program.instrs.iter().enumerate() {
            if let Op::Variable {
                shape, initializer, ..
            } = &ins.op
            {
                if let Some(dims) = shape.concrete() {
                    crate::memory::check_alloc(ins.dtype, &dims).map_err(|source| {
                        RunError::TooLarge {
                            node: ins.name.clone(),
                            op: "Variable",
                            source,
                        }
                    })?;
                }
                let value =
                    initial_value(&ins.name, ins.dtype, shape, initializer, seed).map_err(|e| {
                        match e {
                            InitError::TooLarge(source) => RunError::TooLarge {
                                node: ins.name.clone(),
                                op: "Variable",
                                source,
                            },
                            e => RunError::Node {
                                node: ins.name.clone(),
                                op: "Variable",
                                message: e.to_string(),
                            },
                        }
                    })?;
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
        if self.program.optimized && !matches!(ins.op, Op::Placeholder { .. } | Op::Variable { .. })
        {
            return Err(RunError::NotFeedable {
                name: name.to_string(),
                op: ins.op.name(),
            });
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
    /// holds tensors of the fetched types from the previous call (matrix
    /// products and Fused kernels included: their per-thread buffers stop
    /// growing after the first runs; see docs/runtime.md).
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
                self.assign_pool();
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
    /// infers every needed node's concrete types, decides where each value
    /// is read from and plans the slots. Allocates; runs with the same key
    /// reuse the plan.
    fn make_plan(
        &self,
        feeds: &[(FeedId, &Tensor)],
        fetches: &[ValueRef],
        targets: &[usize],
    ) -> Result<Plan, RunError> {
        let instrs = &self.program.instrs;
        let fed = |i: usize| -> Option<&Tensor> {
            let (run, k) = self.fed_in[i];
            (run == self.runs)
                .then(|| feeds.get(k).map(|(_, t)| *t))
                .flatten()
        };
        let needed = plan::needed(instrs, fetches, targets, |i| fed(i).is_some());
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
        let mut feed = |i: usize| {
            let t = fed(i)?;
            let ins = &instrs[i];
            Some(check_feed(&ins.name, &ins.outputs[0], t, &mut bindings).map(|()| t.tensor_type()))
        };
        let body = plan::body(instrs, &needed, &mut feed, fetches, self.sharing)?;
        Ok(Plan {
            fetches: fetches.to_vec(),
            targets: targets.to_vec(),
            feeds: feeds
                .iter()
                .map(|(id, t)| (id.0, t.dtype(), t.shape().to_vec()))
                .collect(),
            steps: body.steps,
            sources: body.sources,
            snapshot: body.snapshot,
            value_slot: body.value_slot,
            slot_types: body.slot_types,
            slot_buffer: Vec::new(),
            memory: body.memory,
            last_used: 0,
        })
    }

    /// Maps every cached plan's slots to buffers of the pool. For each dtype
    /// and element count the pool holds as many buffers as the plan needing
    /// most of them; plans share them, as they run one at a time and nothing
    /// stays in a slot from one run to the next. Buffers still needed are
    /// kept, others dropped, missing ones allocated.
    fn assign_pool(&mut self) {
        let mut need: HashMap<(DType, usize), usize> = HashMap::new();
        for plan in &self.plans {
            let mut count: HashMap<(DType, usize), usize> = HashMap::new();
            for &key in &plan.slot_types {
                *count.entry(key).or_default() += 1;
            }
            for (key, c) in count {
                let n = need.entry(key).or_default();
                *n = (*n).max(c);
            }
        }
        let mut old: HashMap<(DType, usize), Vec<Tensor>> = HashMap::new();
        for t in self.pool.drain(..) {
            old.entry((t.dtype(), t.len())).or_default().push(t);
        }
        let mut need: Vec<_> = need.into_iter().collect();
        need.sort_by_key(|&((dtype, len), _)| (dtype == DType::F64, len));
        // The first pool buffer of each dtype and element count.
        let mut first: HashMap<(DType, usize), usize> = HashMap::new();
        for ((dtype, len), count) in need {
            first.insert((dtype, len), self.pool.len());
            let mut kept = old.remove(&(dtype, len)).unwrap_or_default();
            kept.truncate(count);
            let missing = count - kept.len();
            self.pool.extend(kept);
            self.pool
                .extend((0..missing).map(|_| Tensor::buffer(dtype, len)));
        }
        for plan in &mut self.plans {
            let mut next = first.clone();
            plan.slot_buffer = plan
                .slot_types
                .iter()
                .map(|key| {
                    let b = next.get_mut(key).expect("every slot's key has buffers");
                    *b += 1;
                    *b - 1
                })
                .collect();
        }
    }

    /// Runs plan `p`: snapshots, steps in order, then the fetches.
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
            pool,
            outs,
            snapshots,
            fed_in,
            profile,
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
        let lost = |i: usize| RunError::InvalidProgram {
            message: format!("the plan has no buffer for {}", instrs[i].name),
        };
        for step in &plan.steps {
            let started = profile.is_some().then(Instant::now);
            match *step {
                Step::Feed(i) => {
                    let values = Values::new(plan, feeds, fed_in, store, snapshots, pool);
                    let value = values.get(ValueRef { node: i, output: 0 });
                    if *check_numerics && value.is_some_and(|t| !t.is_finite()) {
                        return Err(non_finite(i));
                    }
                }
                Step::Kernel {
                    node: i,
                    ref outputs,
                    in_place,
                } => {
                    // The output buffers, in the outputs' shapes, are lent to
                    // the kernel: the plan gave them to no input of this
                    // step, except the one an in-place step overwrites.
                    for (output, (_, shape)) in outputs.iter().enumerate() {
                        let b = plan.buffer(ValueRef { node: i, output });
                        let buf = b.and_then(|b| pool.get_mut(b)).ok_or_else(|| lost(i))?;
                        buf.reshape_buffer(shape)
                            .map_err(|e| node_err(i)(e.to_string()))?;
                    }
                    outs.clear();
                    for &slot in &plan.value_slot[i] {
                        let b = plan.slot_buffer[slot];
                        outs.push(std::mem::replace(&mut pool[b], Tensor::empty()));
                    }
                    let args = Args {
                        instr: &instrs[i],
                        values: Values::new(plan, feeds, fed_in, store, snapshots, pool),
                    };
                    let result = match (in_place, outs.as_mut_slice()) {
                        (Some(k), outs) => kernels::eval_in_place(&instrs[i].op, k, outs, &args),
                        (None, outs) => kernels::eval_with(&instrs[i].op, &args, outs),
                    };
                    for (&slot, t) in plan.value_slot[i].iter().zip(outs.drain(..)) {
                        pool[plan.slot_buffer[slot]] = t;
                    }
                    // The node names the op: the kernel's message is enough.
                    result.map_err(|e| node_err(i)(e.message))?;
                    if *check_numerics {
                        let values = Values::new(plan, feeds, fed_in, store, snapshots, pool);
                        let finite = (0..outputs.len()).all(|output| {
                            values
                                .get(ValueRef { node: i, output })
                                .is_none_or(Tensor::is_finite)
                        });
                        if !finite {
                            return Err(non_finite(i));
                        }
                    }
                }
                Step::Assign {
                    node: i,
                    var,
                    also,
                    ref output,
                } => {
                    let take = |store: &mut [Option<Tensor>], v: usize| {
                        store[v].take().ok_or_else(|| RunError::Uninitialized {
                            name: instrs[v].name.clone(),
                        })
                    };
                    let mut value = take(store, var)?;
                    let mut second = match also {
                        Some(a) => match take(store, a) {
                            Ok(t) => Some(t),
                            Err(e) => {
                                store[var] = Some(value);
                                return Err(e);
                            }
                        },
                        None => None,
                    };
                    let values = Values::new(plan, feeds, fed_in, store, snapshots, pool);
                    let input = |k: usize| {
                        instrs[i]
                            .inputs
                            .get(k)
                            .and_then(|&v| values.get(v))
                            .ok_or_else(|| format!("input {k} is missing"))
                    };
                    let result = match (&instrs[i].op, second.as_mut()) {
                        (Op::AssignAdd, _) => {
                            input(1).and_then(|d| kernels::accumulate(&mut value, d, false))
                        }
                        (Op::AssignSub, _) => {
                            input(1).and_then(|d| kernels::accumulate(&mut value, d, true))
                        }
                        (Op::ApplyGradientDescent, _) => input(1).and_then(|a| {
                            kernels::apply_gradient_descent(&mut value, a, input(2)?)
                        }),
                        (Op::ApplyMomentum { use_nesterov }, Some(accum)) => {
                            match (input(2), input(3), input(4)) {
                                (Ok(lr), Ok(grad), Ok(momentum)) => kernels::apply_momentum(
                                    &mut value,
                                    accum,
                                    lr,
                                    grad,
                                    momentum,
                                    *use_nesterov,
                                ),
                                (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => Err(e),
                            }
                        }
                        (Op::ApplyMomentum { .. }, None) => {
                            Err("the accumulator variable is missing".to_string())
                        }
                        _ => input(1).map(|d| value.copy_from(d)),
                    };
                    if let (Some(a), Some(t)) = (also, second) {
                        store[a] = Some(t);
                    }
                    let value = &*store[var].insert(value);
                    result.map_err(node_err(i))?;
                    if let Some((_, shape)) = output {
                        let b = plan.buffer(ValueRef { node: i, output: 0 });
                        let buf = b.and_then(|b| pool.get_mut(b)).ok_or_else(|| lost(i))?;
                        buf.reshape_buffer(shape)
                            .and_then(|()| buf.assign_from(value))
                            .map_err(|e| node_err(i)(e.to_string()))?;
                    }
                    if *check_numerics && !value.is_finite() {
                        return Err(non_finite(i));
                    }
                }
            }
            if let (Some(times), Some(started)) = (profile.as_mut(), started) {
                let (calls, total) = &mut times[step.node()];
                *calls += 1;
                *total += started.elapsed();
            }
        }
        let values = Values::new(plan, feeds, fed_in, store, snapshots, pool);
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
/// start-of-run copies and the pool's buffers, as the plan's `sources` and
/// slots say.
struct Values<'a> {
    plan: &'a Plan,
    feeds: &'a [(FeedId, &'a Tensor)],
    fed_in: &'a [(u64, usize)],
    store: &'a [Option<Tensor>],
    snapshots: &'a [Option<Tensor>],
    pool: &'a [Tensor],
}

impl<'a> Values<'a> {
    /// The values as they are now (the pool and the store change between steps).
    fn new(
        plan: &'a Plan,
        feeds: &'a [(FeedId, &'a Tensor)],
        fed_in: &'a [(u64, usize)],
        store: &'a [Option<Tensor>],
        snapshots: &'a [Option<Tensor>],
        pool: &'a [Tensor],
    ) -> Values<'a> {
        Values {
            plan,
            feeds,
            fed_in,
            store,
            snapshots,
            pool,
        }
    }

    fn get(&self, v: ValueRef) -> Option<&Tensor> {
        match self.plan.sources.get(v.node)? {
            Source::None => None,
            Source::Feed => {
                let &(_, k) = self.fed_in.get(v.node)?;
                self.feeds.get(k).map(|(_, t)| *t)
            }
            Source::Store => self.store.get(v.node)?.as_ref(),
            Source::Snapshot => self.snapshots.get(v.node)?.as_ref(),
            Source::Buffer => self.pool.get(self.plan.buffer(v)?),
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
            Dim::Sym(s) => match bindings.get(&**s) {
                Some((m, by)) if *m != n => {
                    return Err(shape_err(format!(" ('{s}' is {m}, bound by feed '{by}')")))
                }
                Some(_) => {}
                None => {
                    bindings.insert(s.to_string(), (n, name.to_string()));
                }
            },
        }
    }
    Ok(())
}
