//! Reverse-mode differentiation into the same IR.
//!
//! The driver owns the bookkeeping, rules own the math:
//! - walk the nodes between `xs` and `y` in reverse topological order;
//! - sum the contributions to each tensor with one `AddN`;
//! - reduce a gradient that was broadcast back to its input's shape (`SumToLike`);
//! - symbolic zeros: a missing gradient is `None` until someone asks for it,
//!   and only then becomes a `ZerosLike`.
//!
//! A rule (see `math`, `nn`, `linalg`, `array`) gets the node and the gradients
//! of its outputs and returns one optional gradient per input, built from
//! ordinary differentiable ops, so gradient graphs can be differentiated again.

mod array;
mod func;
mod linalg;
mod math;
mod nn;
mod norm;

use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Graph, Role, TensorRef};
use foldhash::{HashSet, HashSetExt};
use gradc_runtime::{Literal, Op, TensorType};
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{Dfs, Reversed, Walker};
use petgraph::Direction;
use std::collections::BTreeMap;

/// A gradient rule: one optional gradient per input of `node`.
pub type GradFn = fn(&mut Ctx, &NodeArgs, &[Option<TensorRef>]) -> Grads;

/// What a rule returns: one optional gradient per input.
pub type Grads = Result<Vec<Option<TensorRef>>>;

/// The gradient of a single-output node's output. The driver calls a rule only
/// when some output has a gradient, so for single-output ops it is there.
pub(super) fn dy(g: &[Option<TensorRef>]) -> TensorRef {
    g[0].expect("the driver calls a single-output rule only with a gradient")
}

/// The node being differentiated, as a rule sees it.
pub struct NodeArgs {
    pub op: Op,
    pub inputs: Vec<TensorRef>,
    pub outputs: Vec<TensorRef>,
}

impl NodeArgs {
    pub fn x(&self, i: usize) -> TensorRef {
        self.inputs[i]
    }
    pub fn y(&self) -> TensorRef {
        self.outputs[0]
    }
}

/// Builds backward nodes under one name scope, e.g. `gradients/price/Mul_grad/`.
pub struct Ctx<'g> {
    pub g: &'g mut Graph,
    scope: String,
    role: Role,
}

impl<'g> Ctx<'g> {
    /// A builder of nodes named `<scope>/<Op>`, with the given role.
    pub fn new(g: &'g mut Graph, scope: impl Into<String>, role: Role) -> Ctx<'g> {
        Ctx {
            g,
            scope: scope.into(),
            role,
        }
    }

    /// The name scope of the nodes this builder adds.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    pub fn ty(&self, t: TensorRef) -> &TensorType {
        self.g.ty(t)
    }

    /// Adds `op(inputs)` named `<scope>/<Op>` (made unique).
    pub fn op(&mut self, op: Op, inputs: &[TensorRef]) -> Result<TensorRef> {
        let name = self.g.unique_name(&format!("{}/{}", self.scope, op.name()));
        let dtype = inputs
            .first()
            .map(|&t| self.g.ty(t).dtype)
            .unwrap_or_default();
        self.g
            .add(name, op, dtype, inputs, self.role, None)
            .map(TensorRef::of)
    }

    /// A scalar constant of `like`'s dtype.
    pub fn scalar(&mut self, v: f64, like: TensorRef) -> Result<TensorRef> {
        let name = self.g.unique_name(&format!("{}/Const", self.scope));
        let dtype = self.g.ty(like).dtype;
        self.g
            .add(
                name,
                Op::Const(Literal::Scalar(v)),
                dtype,
                &[],
                self.role,
                None,
            )
            .map(TensorRef::of)
    }

    pub fn add(&mut self, a: TensorRef, b: TensorRef) -> Result<TensorRef> {
        self.op(Op::Add, &[a, b])
    }
    pub fn sub(&mut self, a: TensorRef, b: TensorRef) -> Result<TensorRef> {
        self.op(Op::Sub, &[a, b])
    }
    pub fn mul(&mut self, a: TensorRef, b: TensorRef) -> Result<TensorRef> {
        self.op(Op::Mul, &[a, b])
    }
    pub fn div(&mut self, a: TensorRef, b: TensorRef) -> Result<TensorRef> {
        self.op(Op::Div, &[a, b])
    }
    pub fn neg(&mut self, a: TensorRef) -> Result<TensorRef> {
        self.op(Op::Neg, &[a])
    }
    /// `c * a` for a constant `c`.
    pub fn scale(&mut self, c: f64, a: TensorRef) -> Result<TensorRef> {
        let c = self.scalar(c, a)?;
        self.mul(c, a)
    }
}

/// The vector-Jacobian product of `outputs` (built by a rule from `inputs`)
/// with the incoming gradients `g`: d/d(inputs) of sum_k sum(outputs_k * g_k).
/// Lets a fused op's rule differentiate its decomposition into primitives.
pub(super) fn vjp_of(
    c: &mut Ctx,
    outputs: &[TensorRef],
    g: &[Option<TensorRef>],
    inputs: &[TensorRef],
) -> Grads {
    let mut terms = Vec::new();
    for (&o, gk) in outputs.iter().zip(g) {
        if let Some(gk) = *gk {
            let t = c.mul(o, gk)?;
            terms.push(c.op(
                Op::Sum {
                    axes: None,
                    keep_dims: false,
                },
                &[t],
            )?);
        }
    }
    let total = match terms.as_slice() {
        [one] => *one,
        _ => c.op(Op::AddN, &terms)?,
    };
    let scope = format!("{}/vjp", c.scope);
    // The incoming gradients are constants of this product: they may depend on
    // the inputs themselves, and that dependence is not part of this node's VJP
    // (it is differentiated when the gradient graph itself is differentiated).
    let constants: Vec<TensorRef> = g.iter().flatten().copied().collect();
    let grads = backward(c.g, total, inputs, None, &scope, Some(&constants))?;
    Ok(grads.into_iter().map(Some).collect())
}

/// The rule for `op`, or None if the op has no gradient.
fn rule_for(op: &Op) -> Option<GradFn> {
    math::rule(op)
        .or_else(|| nn::rule(op))
        .or_else(|| norm::rule(op))
        .or_else(|| linalg::rule(op))
        .or_else(|| array::rule(op))
        .or_else(|| func::rule(op))
}

/// Ops whose output does not depend differentiably on their inputs: their inputs get no gradient.
fn is_constant_wrt_inputs(op: &Op) -> bool {
    matches!(
        op,
        Op::Placeholder { .. }
            | Op::Const(_)
            | Op::StopGradient
            | Op::GreaterEqual
            | Op::Equal
            | Op::ZerosLike
            | Op::OnesLike
            | Op::ReducedSize { .. }
    )
}

/// TensorFlow's `tf.gradients(y, xs, grad_ys)`, ahead of time: appends the backward
/// nodes under `scope` and returns d(y)/d(x) for each x (zeros where y does not depend on x).
pub fn gradients(
    g: &mut Graph,
    y: TensorRef,
    xs: &[TensorRef],
    grad_y: Option<TensorRef>,
    scope: &str,
) -> Result<Vec<TensorRef>> {
    backward(g, y, xs, grad_y, scope, None)
}

/// The driver. With `partial: Some(constants)`, no gradient flows out of a node
/// that holds an x, nor into the `constants`: the results are partial
/// derivatives, as if the xs were independent and the constants fixed (what
/// `vjp_of` needs when inputs of a decomposition depend on each other).
fn backward(
    g: &mut Graph,
    y: TensorRef,
    xs: &[TensorRef],
    grad_y: Option<TensorRef>,
    scope: &str,
    partial: Option<&[TensorRef]>,
) -> Result<Vec<TensorRef>> {
    let first_new = g.next_seq();
    // Nodes between the xs and y: reachable from an x without passing through an
    // op that is constant in its inputs, and reaching y.
    let mut from_xs: HashSet<NodeIndex> = xs.iter().map(|x| x.node).collect();
    let mut stack: Vec<NodeIndex> = from_xs.iter().copied().collect();
    while let Some(n) = stack.pop() {
        for m in g.data_consumers(n) {
            if !is_constant_wrt_inputs(&g.node(m).op) && from_xs.insert(m) {
                stack.push(m);
            }
        }
    }
    let to_y: HashSet<NodeIndex> = Dfs::new(Reversed(&g.g), y.node)
        .iter(Reversed(&g.g))
        .collect();
    let order: Vec<NodeIndex> = g
        .topo_order()?
        .into_iter()
        .filter(|n| from_xs.contains(n) && to_y.contains(n))
        .collect();
    let between: HashSet<NodeIndex> = order.iter().copied().collect();

    let seed = match grad_y {
        Some(t) => {
            if g.ty(t) != g.ty(y) {
                return Err(CompileError::new(
                    ErrorKind::Shape,
                    format!(
                        "grad_ys '{}' is {} but '{}' is {}",
                        g.tensor_name(t),
                        g.ty(t),
                        g.tensor_name(y),
                        g.ty(y)
                    ),
                ));
            }
            t
        }
        None => {
            let scope = format!("{scope}/{}", g.tensor_name(y));
            Ctx::new(g, scope, Role::Backward).op(Op::OnesLike, &[y])?
        }
    };
    let mut pending: BTreeMap<TensorRef, Vec<TensorRef>> = BTreeMap::new();
    pending.entry(y).or_default().push(seed);
    let mut done: BTreeMap<TensorRef, TensorRef> = BTreeMap::new();

    for &n in order.iter().rev() {
        let node = g.node(n).clone();
        let mut out_grads = Vec::with_capacity(node.outputs.len());
        for k in 0..node.outputs.len() {
            let t = TensorRef { node: n, output: k };
            let summed = match pending.remove(&t) {
                None => None,
                Some(parts) if parts.len() == 1 => Some(parts[0]),
                Some(parts) => {
                    let mut ctx = Ctx::new(g, format!("{scope}/{}", node.name), Role::Backward);
                    Some(ctx.op(Op::AddN, &parts)?)
                }
            };
            if let Some(s) = summed {
                done.insert(t, s);
            }
            out_grads.push(summed);
        }
        if partial.is_some() && xs.iter().any(|x| x.node == n) {
            continue;
        }
        let inputs = g.inputs(n);
        let wanted = inputs.iter().any(|i| between.contains(&i.node));
        if out_grads.iter().all(Option::is_none) || !wanted || is_constant_wrt_inputs(&node.op) {
            continue;
        }
        let Some(rule) = rule_for(&node.op) else {
            return Err(CompileError::new(
                ErrorKind::NoGradient,
                format!(
                    "op {} has no gradient, and the gradient of '{}' passes through it",
                    node.op.name(),
                    g.tensor_name(y)
                ),
            )
            .at_node(&node.name, node.op.name())
            .at_line(node.line));
        };
        let args = NodeArgs {
            op: node.op.clone(),
            inputs: inputs.clone(),
            outputs: (0..node.outputs.len())
                .map(|k| TensorRef { node: n, output: k })
                .collect(),
        };
        let mut ctx = Ctx::new(
            g,
            format!("{scope}/{}/{}_grad", node.name, node.op.name()),
            Role::Backward,
        );
        let in_grads =
            rule(&mut ctx, &args, &out_grads).map_err(|e| e.at_node(&node.name, node.op.name()))?;
        debug_assert_eq!(
            in_grads.len(),
            inputs.len(),
            "a rule returns one gradient per input"
        );
        for (input, grad) in inputs.iter().zip(in_grads) {
            let Some(mut grad) = grad else { continue };
            if !between.contains(&input.node) || partial.is_some_and(|c| c.contains(input)) {
                continue;
            }
            if ctx.ty(grad).shape != ctx.ty(*input).shape {
                grad = ctx.op(Op::SumToLike, &[grad, *input])?;
            }
            pending.entry(*input).or_default().push(grad);
        }
    }

    let results = xs
        .iter()
        .map(|x| match done.get(x) {
            Some(&d) => Ok(d),
            None => {
                let scope = format!("{scope}/{}", g.tensor_name(*x));
                Ctx::new(g, scope, Role::Backward).op(Op::ZerosLike, &[*x])
            }
        })
        .collect::<Result<Vec<_>>>()?;
    prune_unused(g, first_new, &results);
    Ok(results)
}

/// Removes the nodes this call added that no result depends on: rules build a
/// gradient for every input, and those for inputs off the path are dropped.
fn prune_unused(g: &mut Graph, first_new: u64, results: &[TensorRef]) {
    let mut live: HashSet<NodeIndex> = HashSet::new();
    let mut stack: Vec<NodeIndex> = results.iter().map(|r| r.node).collect();
    while let Some(n) = stack.pop() {
        if g.node(n).seq >= first_new && live.insert(n) {
            stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
        }
    }
    let dead: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| g.node(n).seq >= first_new && !live.contains(&n))
            .collect();
    for n in dead {
        g.remove(n);
    }
}
