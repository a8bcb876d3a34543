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

use crate::builder::Ctx;
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Graph, Role, TensorRef};
use gradc_runtime::op::{BinaryFn, UnaryFn};
use gradc_runtime::{binary_ops, module_ops, module_ops_table, unary_ops, Op};
use petgraph::stable_graph::NodeIndex;
use petgraph::visit::{Dfs, Reversed};
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
    let scope = format!("{}/vjp", c.scope());
    // The incoming gradients are constants of this product: they may depend on
    // the inputs themselves, and that dependence is not part of this node's VJP
    // (it is differentiated when the gradient graph itself is differentiated).
    let constants: Vec<TensorRef> = g.iter().flatten().copied().collect();
    let grads = backward(c.g, total, inputs, None, &scope, Some(&constants))?;
    Ok(grads.into_iter().map(Some).collect())
}

/// How the inputs of an op get their gradients.
#[derive(Clone, Copy)]
enum Gradient {
    /// A rule builds them.
    Rule(GradFn),
    /// The output is constant in the inputs: they get none (TensorFlow's
    /// `ops.NotDifferentiable` for ops like `StopGradient` or `ZerosLike`).
    Zero,
    /// The op has no gradient: asking for one through it is an error naming it.
    Undefined,
}

/// Every op's gradient, in one match without a wildcard: an op added to the
/// runtime does not compile here until it says how it is differentiated.
fn gradient(op: &Op) -> Gradient {
    use Gradient::{Rule, Undefined, Zero};
    match op {
        unary_ops!() | binary_ops!() => {
            let unary = UnaryFn::of(op).is_some_and(UnaryFn::zero_gradient);
            if unary || BinaryFn::of(op).is_some_and(BinaryFn::zero_gradient) {
                Zero
            } else {
                Rule(math::elementwise)
            }
        }
        Op::Identity => Rule(math::identity),
        Op::AddN => Rule(math::add_n),
        Op::Select => Rule(math::select),
        Op::Fused { .. } => Rule(math::fused),
        Op::BiasAdd { .. } => Rule(nn::bias_add),
        Op::Softmax => Rule(nn::softmax),
        Op::LogSoftmax => Rule(nn::log_softmax),
        Op::SoftmaxCrossEntropyWithLogits => Rule(nn::softmax_cross_entropy),
        module_ops!() => module_gradient(op),
        Op::Moments { .. } => Rule(norm::moments),
        Op::BatchNormalization { .. } => Rule(norm::batch_normalization),
        Op::FusedBatchNorm { .. } => Rule(norm::fused_batch_norm),
        Op::FusedBatchNormGrad { .. } => Rule(norm::fused_batch_norm_grad),
        Op::MatMul { .. } => Rule(linalg::matmul),
        Op::Dense { .. } => Rule(linalg::dense),
        Op::ActivationBiasGrad { .. } => Rule(linalg::activation_bias_grad),
        Op::Reshape { .. } | Op::ReshapeLike => Rule(array::reshape),
        Op::Transpose { .. } => Rule(array::transpose),
        Op::ExpandDims { .. } => Rule(array::expand_dims),
        Op::Squeeze { .. } => Rule(array::squeeze),
        Op::Sum { .. } => Rule(array::sum),
        Op::Mean { .. } => Rule(array::mean),
        Op::Fill { .. } => Rule(array::fill),
        Op::SumToLike => Rule(array::sum_to_like),
        Op::BroadcastLike => Rule(array::broadcast_like),
        Op::IdentityN => Rule(func::identity_n),
        Op::CustomGradient { .. } => Rule(func::custom_gradient),
        Op::OnceDifferentiable { .. } => Rule(func::once_differentiable),
        Op::Placeholder { .. }
        | Op::Const(_)
        | Op::StopGradient
        | Op::ZerosLike
        | Op::OnesLike
        | Op::ReducedSize { .. } => Zero,
        // Sources have no inputs to differentiate: a gradient stops there.
        Op::Variable { .. } | Op::NoOp => Zero,
        // Updates of state, and an index.
        Op::Assign
        | Op::AssignAdd
        | Op::AssignSub
        | Op::ApplyGradientDescent
        | Op::ApplyMomentum { .. } => Undefined,
    }
}

/// The gradient modules of the runtime's module ops: `grad/<module>.rs`
/// for `runtime/src/op/<module>.rs`, each with its `GRADIENT`.
macro_rules! gradient_modules {
    ({} modules { $( $(#[$m:meta])* $name:ident $({ $($f:tt)* })? => $module:ident, )* }) => {
        $( mod $module; )*

        /// A module op's gradient: its gradient module's `GRADIENT`.
        fn module_gradient(op: &Op) -> Gradient {
            match op {
                $( Op::$name { .. } => $module::GRADIENT, )*
                _ => Gradient::Undefined,
            }
        }
    };
}

module_ops_table!((gradient_modules) {});

/// Ops whose output does not depend differentiably on their inputs: their inputs get no gradient.
fn is_constant_wrt_inputs(op: &Op) -> bool {
    matches!(gradient(op), Gradient::Zero)
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
    // Per-node tables are indexed by node index: every node they ask about
    // exists now, so its index is below the bound.
    let bound = g.node_bound();
    // Nodes between the xs and y: reachable from an x without passing through an
    // op that is constant in its inputs, and reaching y.
    let mut from_xs = vec![false; bound];
    let mut stack: Vec<NodeIndex> = Vec::new();
    for x in xs {
        if !std::mem::replace(&mut from_xs[x.node.index()], true) {
            stack.push(x.node);
        }
    }
    // Gradients flow through float tensors only: an integer or bool output
    // (an index, a comparison, a cast to an integer) is constant almost everywhere.
    let carries = |g: &Graph, m: NodeIndex| g.node(m).outputs.iter().any(|t| t.dtype.is_float());
    while let Some(n) = stack.pop() {
        for m in g.data_consumers(n) {
            if !is_constant_wrt_inputs(&g.node(m).op) && carries(g, m) && !from_xs[m.index()] {
                from_xs[m.index()] = true;
                stack.push(m);
            }
        }
    }
    let mut to_y = vec![false; bound];
    let mut dfs = Dfs::new(Reversed(&g.g), y.node);
    while let Some(n) = dfs.next(Reversed(&g.g)) {
        to_y[n.index()] = true;
    }
    let order: Vec<NodeIndex> = g
        .topo_order()?
        .into_iter()
        .filter(|n| from_xs[n.index()] && to_y[n.index()])
        .collect();
    let mut between = vec![false; bound];
    order.iter().for_each(|n| between[n.index()] = true);
    // A rule makes a few nodes per node on the path.
    g.reserve(2 * order.len());

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
    // The gradient parts that reached each node, as (output, part), and each
    // tensor's summed gradient once its node is done.
    let mut pending: Vec<Vec<(usize, TensorRef)>> = vec![Vec::new(); bound];
    pending[y.node.index()].push((y.output, seed));
    let mut done: BTreeMap<TensorRef, TensorRef> = BTreeMap::new();
    let wanted_x: Vec<bool> = {
        let mut w = vec![false; bound];
        xs.iter().for_each(|x| w[x.node.index()] = true);
        w
    };

    for &n in order.iter().rev() {
        let node = g.node(n);
        let (name, op, line, n_out) = (
            node.name.clone(),
            node.op.clone(),
            node.line,
            node.outputs.len(),
        );
        let parts = std::mem::take(&mut pending[n.index()]);
        let mut out_grads = Vec::with_capacity(n_out);
        for k in 0..n_out {
            let t = TensorRef { node: n, output: k };
            let mine: Vec<TensorRef> = parts
                .iter()
                .filter(|&&(o, _)| o == k)
                .map(|&(_, p)| p)
                .collect();
            let summed = match mine.len() {
                0 => None,
                1 => Some(mine[0]),
                _ => {
                    let mut ctx = Ctx::new(g, format!("{scope}/{name}"), Role::Backward);
                    Some(ctx.op(Op::AddN, &mine)?)
                }
            };
            if let Some(s) = summed.filter(|_| wanted_x[n.index()]) {
                done.insert(t, s);
            }
            out_grads.push(summed);
        }
        if partial.is_some() && wanted_x[n.index()] {
            continue;
        }
        let inputs = g.inputs(n);
        let wanted = inputs.iter().any(|i| between[i.node.index()]);
        if out_grads.iter().all(Option::is_none) || !wanted {
            continue;
        }
        let rule = match gradient(&op) {
            Gradient::Rule(rule) => rule,
            Gradient::Zero => continue,
            Gradient::Undefined => {
                return Err(CompileError::new(
                    ErrorKind::NoGradient,
                    format!(
                        "op {} has no gradient, and the gradient of '{}' passes through it",
                        op.name(),
                        g.tensor_name(y)
                    ),
                )
                .at_node(&name, op.name())
                .at_line(line));
            }
        };
        let op_name = op.name();
        let args = NodeArgs {
            op,
            inputs: inputs.clone(),
            outputs: (0..n_out)
                .map(|k| TensorRef { node: n, output: k })
                .collect(),
        };
        let mut ctx = Ctx::new(g, format!("{scope}/{name}/{op_name}_grad"), Role::Backward);
        let in_grads = rule(&mut ctx, &args, &out_grads).map_err(|e| e.at_node(&name, op_name))?;
        debug_assert_eq!(
            in_grads.len(),
            inputs.len(),
            "a rule returns one gradient per input"
        );
        for (input, grad) in inputs.iter().zip(in_grads) {
            let Some(mut grad) = grad else { continue };
            if !between[input.node.index()]
                || partial.is_some_and(|c| c.contains(input))
                || !ctx.ty(*input).dtype.is_float()
            {
                continue;
            }
            if ctx.ty(grad).shape != ctx.ty(*input).shape {
                grad = ctx.op(Op::SumToLike, &[grad, *input])?;
            }
            pending[input.node.index()].push((input.output, grad));
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
    let mut live = vec![false; g.node_bound()];
    let mut stack: Vec<NodeIndex> = results.iter().map(|r| r.node).collect();
    while let Some(n) = stack.pop() {
        if g.node(n).seq() >= first_new && !std::mem::replace(&mut live[n.index()], true) {
            stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
        }
    }
    let dead: Vec<NodeIndex> =
        g.g.node_indices()
            .filter(|&n| g.node(n).seq() >= first_new && !live[n.index()])
            .collect();
    g.remove_all(&dead);
}
