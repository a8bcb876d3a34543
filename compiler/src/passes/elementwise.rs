//! Elementwise fusion: a connected group of elementwise ops (broadcasting
//! binary ops and explicit broadcasts, `BroadcastLike`, included) becomes one `Fused` node that computes the group's
//! result in a single pass over the output, reading each outside input once
//! per element. The group's intermediate tensors must have the output's shape,
//! be used only inside the group, and not be named; scalar constants are
//! folded into the program. The kernel calls the same scalar functions as the
//! ops it replaces, so results are bit-identical.

use super::{Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, Node, TensorRef};
use foldhash::{HashMap, HashMapExt, HashSet};
use gradc_runtime::op::{BinaryFn, FusedStep, UnaryFn, FUSED_MAX_INPUTS, FUSED_MAX_STEPS};
use gradc_runtime::{Literal, Op};
use petgraph::stable_graph::NodeIndex;

#[derive(Default)]
pub struct Elementwise {
    fired: Fired,
}

/// A node a `Fused` program can compute: a fusable function of floats
/// (the program's registers are of the float type).
fn fusable(node: &Node) -> bool {
    let op = &node.op;
    node.outputs.iter().all(|t| t.dtype.is_float())
        && (UnaryFn::of(op).is_some_and(UnaryFn::fusable)
            || BinaryFn::of(op).is_some_and(BinaryFn::fusable))
}

/// Ops a group takes in besides the fusable ones: an explicit broadcast
/// (`BroadcastLike(x, like)`), which the kernel's own broadcasting of x to
/// the output makes: its register is x's, and `like` is read for its shape
/// only. Not a group's root (the root's step is the program's result).
fn joins_as_broadcast(op: &Op) -> bool {
    matches!(op, Op::BroadcastLike)
}

/// The group rooted at `root`: elementwise producers pulled in while they feed only the group.
fn group(g: &Graph, root: NodeIndex) -> Vec<NodeIndex> {
    let shape = &g.ty(TensorRef::of(root)).shape;
    let mut members = vec![root];
    let mut inside: HashSet<NodeIndex> = [root].into_iter().collect();
    let mut k = 0;
    while k < members.len() {
        let mut ins = g.inputs(members[k]);
        if joins_as_broadcast(&g.node(members[k]).op) {
            // A broadcast reads its `like` for the shape only: not a value
            // the group computes.
            ins.truncate(1);
        }
        for t in ins {
            let m = t.node;
            let node = g.node(m);
            let joins = !inside.contains(&m)
                && t.output == 0
                && node.outputs.len() == 1
                && (fusable(node) || joins_as_broadcast(&node.op))
                && !g.has_control(m)
                && !g.is_named(t)
                && &node.outputs[0].shape == shape
                && g.used_only_by(t, |user| inside.contains(&user))
                && members.len() < FUSED_MAX_STEPS / 2;
            if joins {
                inside.insert(m);
                members.push(m);
            }
        }
        k += 1;
    }
    members
}

impl Pass for Elementwise {
    fn name(&self) -> &'static str {
        "elementwise"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let order = g.topo_order()?;
        // Indexed by node: cache-friendly on large graphs.
        let mut position = vec![0; g.node_bound()];
        for (i, &n) in order.iter().enumerate() {
            position[n.index()] = i;
        }
        let mut done = vec![false; g.node_bound()];
        for &root in order.iter().rev() {
            if done[root.index()] || !g.g.contains_node(root) {
                continue;
            }
            let node = g.node(root);
            if !fusable(node) || g.has_control(root) || node.outputs.len() != 1 {
                continue;
            }
            let mut members = group(g, root);
            if members.len() < 2 {
                continue;
            }
            members.sort_by_key(|m| position[m.index()]);
            // Registers: outside inputs and scalar constants first, then one per member.
            let mut program = Vec::new();
            let mut inputs: Vec<TensorRef> = Vec::new();
            let mut reg: HashMap<TensorRef, usize> = HashMap::new();
            let inside: HashSet<NodeIndex> = members.iter().copied().collect();
            // The tensors whose shape a broadcast member takes (`like`).
            let mut likes: Vec<TensorRef> = Vec::new();
            for &m in &members {
                let mut ins = g.inputs(m);
                if joins_as_broadcast(&g.node(m).op) {
                    likes.extend(ins.drain(1..));
                }
                for t in ins {
                    if inside.contains(&t.node) || reg.contains_key(&t) {
                        continue;
                    }
                    let step = match &g.node(t.node).op {
                        Op::Const(Literal::Scalar(v)) => FusedStep::Const(*v),
                        _ => {
                            inputs.push(t);
                            FusedStep::Input(inputs.len() - 1)
                        }
                    };
                    reg.insert(t, program.len());
                    program.push(step);
                }
            }
            // The output's shape is the inputs' broadcast: where a broadcast
            // member's target shape is not among them, its `like` is an input
            // too, read for its shape only.
            let out = g.ty(TensorRef::of(root)).clone();
            let infers = |program: &[FusedStep], inputs: &[TensorRef]| {
                let types: Vec<_> = inputs.iter().map(|&t| g.ty(t)).collect();
                Op::Fused {
                    program: program.to_vec(),
                }
                .infer(out.dtype, &types)
                .is_ok_and(|o| o.first() == Some(&out))
            };
            let mut likes = likes.into_iter();
            while !inputs.is_empty() && !infers(&program, &inputs) {
                match likes.next() {
                    Some(like) if !inputs.contains(&like) && !inside.contains(&like.node) => {
                        inputs.push(like);
                        program.push(FusedStep::Input(inputs.len() - 1));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            if inputs.is_empty()
                || inputs.len() > FUSED_MAX_INPUTS
                || program.len() + members.len() > FUSED_MAX_STEPS
                || !infers(&program, &inputs)
            {
                continue;
            }
            for &m in &members {
                let op = &g.node(m).op;
                if joins_as_broadcast(op) {
                    // x's register, broadcast by the kernel.
                    let x = reg[&g.inputs(m)[0]];
                    reg.insert(TensorRef::of(m), x);
                    continue;
                }
                let args: Vec<usize> = g.inputs(m).iter().map(|t| reg[t]).collect();
                let step = match (UnaryFn::of(op), BinaryFn::of(op), args.as_slice()) {
                    (Some(f), _, &[a]) => FusedStep::Unary(f, a),
                    (_, Some(f), &[a, b]) => FusedStep::Binary(f, a, b),
                    _ => unreachable!("fusable ops are unary or binary"),
                };
                reg.insert(TensorRef::of(m), program.len());
                program.push(step);
            }
            g.rewrite(root, Op::Fused { program }, &inputs)?;
            for m in &members {
                done[m.index()] = true;
            }
            self.fired.hit("fuse_elementwise");
            changed = true;
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
