//! Plans and memory planning: what a run with one set of fetches, targets and
//! feed shapes does, and where each of its values lives.
//!
//! A plan is the needed instructions in program order ("steps"), each
//! output's concrete type, and where each value is read from (the caller's
//! feed, the variable store, a start-of-run snapshot, or a buffer). Then
//! **liveness** gives every value a buffer computes (a kernel's output, or an
//! assignment's output when something reads it) a lifetime, from the step
//! that writes it to the last step that reads it, or to the end of the run if
//! it is fetched or read by an assignment. Values are assigned **slots**
//! greedily in step order: a value takes a free slot of its dtype and element
//! count (a slot holds values of different shapes in turn, reshaped in
//! standard layout) or opens a new one; after a step, the slots of the values
//! it read for the last time are free again. Values whose lifetimes overlap
//! never share a slot, and a step's outputs never share with its inputs,
//! except **in place**: an elementwise op (`kernels::in_place_inputs`) whose
//! input dies at this step, is in a buffer (not a feed, a variable or a
//! snapshot), appears once among the op's inputs and has the output's dtype
//! and shape writes its output (its first, for ActivationBiasGrad) over that
//! input (`kernels::eval_in_place`).
//!
//! [`plan_memory`] runs the same planning on a program without a session.

use crate::error::RunError;
use crate::kernels;
use crate::memory::{check_alloc, memory_limit};
use crate::program::{Instr, Program, ValueRef};
use crate::shape::Dim;
use crate::{DType, Op, TensorType};
use std::collections::HashMap;

/// What memory planning gave a plan: the bytes of its slots against one
/// buffer per value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanMemory {
    /// Bytes of the plan's slots: what the values computed into buffers take
    /// (feeds, variables and snapshots are not counted). At least the peak of
    /// the live values' bytes, as slots of different sizes are not merged.
    pub slot_bytes: usize,
    /// The most bytes of computed values alive at once (counted when a
    /// step's outputs are written, before the inputs it read for the last
    /// time die; an output written in place over an input counted once): the
    /// peak of the run's planned values, the least any placement needs.
    pub peak_bytes: usize,
    /// Bytes one buffer per value would hold (what sessions held before planning).
    pub unshared_bytes: usize,
    /// Slots (buffers) the plan uses.
    pub slots: usize,
    /// Values computed into buffers.
    pub values: usize,
    /// Steps that write their output over one of their inputs.
    pub in_place: usize,
}

/// What a run with one set of fetches, targets and feed shapes does.
pub(crate) struct Plan {
    pub fetches: Vec<ValueRef>,
    pub targets: Vec<usize>,
    /// The fed nodes with the dtype and shape the plan was made for.
    pub feeds: Vec<(usize, DType, Vec<usize>)>,
    /// The needed instructions, in program order.
    pub steps: Vec<Step>,
    /// Where each node's value is read from in this plan.
    pub sources: Vec<Source>,
    /// Variables to copy into `snapshots` before the first step.
    pub snapshot: Vec<usize>,
    /// Per node and output, the slot holding the value (empty for nodes
    /// whose values are not in buffers).
    pub value_slot: Vec<Vec<usize>>,
    /// Each slot's dtype and element count.
    pub slot_types: Vec<(DType, usize)>,
    /// Each slot's buffer in the session's pool (set when the plan is cached).
    pub slot_buffer: Vec<usize>,
    pub memory: PlanMemory,
    /// The run that last used this plan.
    pub last_used: u64,
}

impl Plan {
    /// The pool buffer holding value `v`, if it is in a buffer.
    pub fn buffer(&self, v: ValueRef) -> Option<usize> {
        let slot = *self.value_slot.get(v.node)?.get(v.output)?;
        self.slot_buffer.get(slot).copied()
    }
}

/// A value's concrete dtype and shape.
pub(crate) type Concrete = (DType, Vec<usize>);

pub(crate) enum Step {
    /// A fed node: only checked for NaN/Inf when `check_numerics` is set.
    Feed(usize),
    /// A kernel writing into the node's slots, with these types; `in_place`:
    /// the input whose slot (the output's too) it overwrites.
    Kernel {
        node: usize,
        outputs: Vec<Concrete>,
        in_place: Option<usize>,
    },
    /// An update of `var` (Assign, AssignAdd, AssignSub, ApplyGradientDescent,
    /// ApplyMomentum), and of `also` (ApplyMomentum's accumulator); `output`
    /// is the type of the new value's copy in a slot, when something reads
    /// this node's output.
    Assign {
        node: usize,
        var: usize,
        also: Option<usize>,
        output: Option<Concrete>,
    },
}

impl Step {
    /// The instruction this step runs.
    pub(crate) fn node(&self) -> usize {
        match *self {
            Step::Feed(node) | Step::Kernel { node, .. } | Step::Assign { node, .. } => node,
        }
    }
}

/// Where a value is read from during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Source {
    /// Not needed by the plan.
    None,
    /// The caller's feed.
    Feed,
    /// The variable store (the variable is not assigned before it is read).
    Store,
    /// The start-of-run copy of a variable.
    Snapshot,
    /// A slot (a buffer of the session's pool).
    Buffer,
}

/// Which instructions the fetches and targets need (control inputs included);
/// a fed node needs nothing upstream.
pub(crate) fn needed(
    instrs: &[Instr],
    fetches: &[ValueRef],
    targets: &[usize],
    is_fed: impl Fn(usize) -> bool,
) -> Vec<bool> {
    let mut needed = vec![false; instrs.len()];
    let mut stack: Vec<usize> = fetches
        .iter()
        .map(|v| v.node)
        .chain(targets.iter().copied())
        .collect();
    while let Some(i) = stack.pop() {
        if !std::mem::replace(&mut needed[i], true) && !is_fed(i) {
            stack.extend(instrs[i].inputs.iter().map(|v| v.node));
            stack.extend(instrs[i].control.iter().copied());
        }
    }
    needed
}

/// A plan without its key: steps, sources, snapshots and slots.
pub(crate) struct Body {
    pub steps: Vec<Step>,
    pub sources: Vec<Source>,
    pub snapshot: Vec<usize>,
    pub value_slot: Vec<Vec<usize>>,
    pub slot_types: Vec<(DType, usize)>,
    pub memory: PlanMemory,
}

/// Plans the needed instructions: `feed(i)` gives the checked type of a fed
/// node (None if it is not fed). Infers every output's concrete type, decides
/// where each value is read from, and assigns slots (`sharing`: by liveness,
/// with in-place steps; otherwise one slot per value).
pub(crate) fn body(
    instrs: &[Instr],
    needed: &[bool],
    feed: &mut dyn FnMut(usize) -> Option<Result<TensorType, RunError>>,
    fetches: &[ValueRef],
    sharing: bool,
) -> Result<Body, RunError> {
    let n = instrs.len();
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
        if let Some(t) = feed(i) {
            types[i] = vec![t?];
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
                .map(|v| types[v.node].get(v.output))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| node_err("an input has no value".into()))?;
            let out_types = ins
                .op
                .infer(ins.dtype, &in_types)
                .map_err(|e| node_err(e.to_string()))?;
            let outputs = out_types
                .iter()
                .map(|t| {
                    let shape = t.shape.concrete().ok_or_else(|| {
                        node_err(format!("output shape {} is not concrete", t.shape))
                    })?;
                    check_alloc(t.dtype, &shape).map_err(|source| RunError::TooLarge {
                        node: ins.name.clone(),
                        op: ins.op.name(),
                        source,
                    })?;
                    Ok((t.dtype, shape))
                })
                .collect::<Result<Vec<_>, RunError>>()?;
            sources[i] = Source::Buffer;
            types[i] = out_types;
            steps.push(if ins.op.is_stateful() {
                Step::Assign {
                    node: i,
                    var: ins.inputs[0].node,
                    also: (ins.op.updated_inputs() > 1)
                        .then(|| ins.inputs.get(1).map(|v| v.node))
                        .flatten(),
                    output: None,
                }
            } else {
                Step::Kernel {
                    node: i,
                    outputs,
                    in_place: None,
                }
            });
        }
    }
    // A variable read at or after its first assignment in this run (or
    // fetched, which happens after the run) is read from a start-of-run copy.
    let mut first_assign: Vec<Option<usize>> = vec![None; n];
    for step in &steps {
        if let Step::Assign {
            node, var, also, ..
        } = *step
        {
            first_assign[var].get_or_insert(node);
            if let Some(a) = also {
                first_assign[a].get_or_insert(node);
            }
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
        for v in reads(&instrs[node]) {
            read(v.node, node, &mut sources);
            used[v.node] = true;
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
    let slots = assign_slots(instrs, &mut steps, &sources, fetches, sharing);
    // Each fetched value is also copied out to the caller.
    let fetch_bytes = fetches
        .iter()
        .filter_map(|v| types.get(v.node)?.get(v.output))
        .filter_map(|t| Some(elements(&t.shape.concrete()?).saturating_mul(t.dtype.size_of())))
        .fold(0usize, usize::saturating_add);
    let total = slots.memory.slot_bytes.saturating_add(fetch_bytes);
    check_total(instrs, &steps, total, memory_limit())?;
    Ok(Body {
        steps,
        sources,
        snapshot,
        value_slot: slots.value_slot,
        slot_types: slots.slot_types,
        memory: slots.memory,
    })
}

/// Refuses a plan whose buffers together take more than `limit` bytes (each
/// value alone was checked when its type was inferred), naming its largest value.
fn check_total(
    instrs: &[Instr],
    steps: &[Step],
    slot_bytes: usize,
    limit: u64,
) -> Result<(), RunError> {
    if slot_bytes as u128 <= u128::from(limit) {
        return Ok(());
    }
    let bytes = |(dtype, shape): &Concrete| elements(shape) * dtype.size_of();
    let (largest_bytes, node) = steps
        .iter()
        .filter_map(written)
        .flat_map(|(node, outs)| outs.iter().map(move |o| (bytes(o), node)))
        .max()
        .unwrap_or((0, 0));
    Err(RunError::BuffersTooLarge {
        bytes: slot_bytes,
        limit,
        largest: instrs
            .get(node)
            .map_or_else(String::new, |i| i.name.clone()),
        largest_bytes,
    })
}

/// The values an instruction reads: its inputs, except an update's first
/// ones, which name the variables it writes (and reads in the store).
fn reads(ins: &Instr) -> &[ValueRef] {
    let skip = ins.op.updated_inputs().min(ins.inputs.len());
    &ins.inputs[skip..]
}

/// The values a step writes into slots, with their types.
fn written(step: &Step) -> Option<(usize, &[Concrete])> {
    match step {
        Step::Kernel { node, outputs, .. } => Some((*node, outputs.as_slice())),
        Step::Assign {
            node,
            output: Some(output),
            ..
        } => Some((*node, std::slice::from_ref(output))),
        _ => None,
    }
}

struct Slots {
    value_slot: Vec<Vec<usize>>,
    slot_types: Vec<(DType, usize)>,
    memory: PlanMemory,
}

/// Liveness and greedy slot assignment in step order (see the module docs);
/// marks the steps that run in place.
fn assign_slots(
    instrs: &[Instr],
    steps: &mut [Step],
    sources: &[Source],
    fetches: &[ValueRef],
    sharing: bool,
) -> Slots {
    const END: usize = usize::MAX;
    let n = instrs.len();
    // Each value in a slot: its type and the last step reading it (a value
    // nobody reads dies at the step that writes it).
    let mut types: Vec<&[Concrete]> = vec![&[]; n];
    let mut last: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (s, step) in steps.iter().enumerate() {
        if let Some((node, outputs)) = written(step) {
            types[node] = outputs;
            last[node] = vec![s; outputs.len()];
        }
    }
    let mut extend = |v: &ValueRef, to: usize| {
        if let Some(l) = last.get_mut(v.node).and_then(|l| l.get_mut(v.output)) {
            *l = (*l).max(to);
        }
    };
    for (s, step) in steps.iter().enumerate() {
        match *step {
            Step::Kernel { node, .. } => instrs[node].inputs.iter().for_each(|v| extend(v, s)),
            // Kept to the end of the run: the update ops' operands are never reused.
            Step::Assign { node, .. } => reads(&instrs[node]).iter().for_each(|v| extend(v, END)),
            Step::Feed(_) => {}
        }
    }
    // Fetches are copied out after the last step.
    fetches.iter().for_each(|v| extend(v, END));

    let mut value_slot: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut slot_types: Vec<(DType, usize)> = Vec::new();
    // Free slots by dtype and element count, the last freed on top.
    let mut free: HashMap<(DType, usize), Vec<usize>> = HashMap::new();
    let mut in_place_at: Vec<Option<usize>> = vec![None; steps.len()];
    let mut memory = PlanMemory::default();
    let bytes = |(dtype, shape): &Concrete| elements(shape) * dtype.size_of();
    // Bytes of the values alive after the step before.
    let mut live = 0;
    let mut read_here: std::collections::HashSet<ValueRef> = std::collections::HashSet::new();
    for (s, step) in steps.iter().enumerate() {
        let Some((node, outputs)) = written(step) else {
            continue;
        };
        let ins = &instrs[node];
        for output in outputs {
            memory.values += 1;
            memory.unshared_bytes += bytes(output);
        }
        // Whether the output can take input k's slot: the input is in a
        // slot, dies here, is read once by this op and has the output's type.
        let dies_into_output = |k: usize| {
            let (Some(v), Some(out)) = (ins.inputs.get(k), outputs.first()) else {
                return false;
            };
            sources[v.node] == Source::Buffer
                && last[v.node].get(v.output) == Some(&s)
                && types[v.node].get(v.output) == Some(out)
                && ins.inputs.iter().filter(|&u| u == v).count() == 1
        };
        let in_place = match step {
            Step::Kernel { .. } if sharing => kernels::in_place_inputs(&ins.op)
                .iter()
                .copied()
                .find(|&k| dies_into_output(k)),
            _ => None,
        };
        // The first output over input k, in place; the others in slots.
        let (first, rest) = match in_place {
            Some(k) => {
                let v = ins.inputs[k];
                in_place_at[s] = Some(k);
                memory.in_place += 1;
                (vec![value_slot[v.node][v.output]], &outputs[1..])
            }
            None => (Vec::new(), outputs),
        };
        live += rest.iter().map(bytes).sum::<usize>();
        value_slot[node] = first
            .into_iter()
            .chain(rest.iter().map(|(dtype, shape)| {
                let key = (*dtype, elements(shape));
                let reused = free.get_mut(&key).and_then(Vec::pop);
                reused.unwrap_or_else(|| {
                    slot_types.push(key);
                    slot_types.len() - 1
                })
            }))
            .collect();
        memory.peak_bytes = memory.peak_bytes.max(live);
        // After the step: the values it read for the last time (except the
        // one its output took) and its outputs nobody reads die, and with
        // sharing their slots are free again.
        let mut dies = |v: ValueRef| {
            if let Some(t) = types[v.node].get(v.output) {
                live -= bytes(t);
            }
            if sharing {
                let slot = value_slot[v.node][v.output];
                free.entry(slot_types[slot]).or_default().push(slot);
            }
        };
        // A value read more than once here dies once. Many inputs (an AddN
        // summing a gradient's parts) are told apart by a set, not by
        // searching the inputs before each.
        let many = ins.inputs.len() > 16;
        if many {
            read_here.clear();
        }
        for (j, &v) in ins.inputs.iter().enumerate() {
            let again = if many {
                !read_here.insert(v)
            } else {
                ins.inputs[..j].contains(&v)
            };
            if Some(j) == in_place || again || last[v.node].get(v.output) != Some(&s) {
                continue;
            }
            dies(v);
        }
        for (o, &l) in last[node].iter().enumerate() {
            if l == s {
                dies(ValueRef { node, output: o });
            }
        }
    }
    for (step, k) in steps.iter_mut().zip(in_place_at) {
        if let Step::Kernel { in_place, .. } = step {
            *in_place = k;
        }
    }
    memory.slots = slot_types.len();
    memory.slot_bytes = slot_types
        .iter()
        .map(|&(dtype, len)| len * dtype.size_of())
        .sum();
    Slots {
        value_slot,
        slot_types,
        memory,
    }
}

/// Elements of a tensor of this shape (saturated: a shape past `usize` is
/// refused by the size checks, which count in `u128`).
fn elements(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

/// Plans the run of `program` that fetches `fetches` and runs `targets`, with
/// every placeholder the run needs fed, its symbolic dimensions bound by
/// `bindings` (e.g. `batch` to 100), and reports its memory, as a session
/// would hold it. Variables are taken to have their declared types.
pub fn plan_memory(
    program: &Program,
    fetches: &[ValueRef],
    targets: &[usize],
    bindings: &HashMap<String, usize>,
) -> Result<PlanMemory, RunError> {
    program.validate().map_err(|e| RunError::InvalidProgram {
        message: e.to_string(),
    })?;
    let instrs = &program.instrs;
    if let Some(v) = fetches.iter().find(|v| {
        instrs
            .get(v.node)
            .is_none_or(|i| v.output >= i.outputs.len())
    }) {
        return Err(RunError::UnknownFetch {
            name: format!("{}:{}", v.node, v.output),
        });
    }
    if let Some(&t) = targets.iter().find(|&&t| t >= instrs.len()) {
        return Err(RunError::UnknownFetch {
            name: format!("instruction {t}"),
        });
    }
    let needed = needed(instrs, fetches, targets, |_| false);
    let mut feed = |i: usize| {
        let ins = &instrs[i];
        let Op::Placeholder { .. } = ins.op else {
            return None;
        };
        let t = &ins.outputs[0];
        let shape = t
            .shape
            .0
            .iter()
            .map(|d| match d {
                Dim::Known(n) => Ok(*n),
                Dim::Sym(s) => bindings.get(&**s).copied().ok_or_else(|| RunError::Node {
                    node: ins.name.clone(),
                    op: ins.op.name(),
                    message: format!("no size given for the symbolic dimension '{s}'"),
                }),
            })
            .collect::<Result<Vec<_>, _>>();
        Some(shape.map(|shape| TensorType {
            dtype: t.dtype,
            shape: crate::Shape::known(&shape),
        }))
    };
    Ok(body(instrs, &needed, &mut feed, fetches, true)?.memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_past_the_limit_name_the_largest_value() {
        let instr = |name: &str| Instr {
            name: name.into(),
            op: Op::Neg,
            dtype: DType::F64,
            inputs: Vec::new(),
            outputs: Vec::new(),
            control: Vec::new(),
        };
        let instrs = [instr("small"), instr("big")];
        let kernel = |node: usize, len: usize| Step::Kernel {
            node,
            outputs: vec![(DType::F64, vec![len])],
            in_place: None,
        };
        let steps = [kernel(0, 10), kernel(1, 100)];
        assert!(check_total(&instrs, &steps, 880, 880).is_ok());
        let err = check_total(&instrs, &steps, 880, 879).unwrap_err();
        assert!(
            matches!(
                &err,
                RunError::BuffersTooLarge { bytes: 880, limit: 879, largest, largest_bytes: 800 }
                    if largest == "big"
            ),
            "{err:?}"
        );
    }
}
