//! Building nodes into the IR, for everything that adds nodes after the file
//! is read: layer expansion, function inlining, gradient rules, the
//! optimizer's updates and the passes. `Ctx` adds nodes under one name scope;
//! `resolve_ref` finds a tensor by name; `check_updated` is the check every
//! op that changes variables gets.

use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Graph, Role, TensorRef};
use foldhash::HashMap;
use gradc_runtime::op::{DataFormat, FusedStep};
use gradc_runtime::{Literal, Op, TensorType};

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
        let name = self.g.unique_name(format!("{}/{}", self.scope, op.name()));
        let dtype = inputs
            .first()
            .map(|&t| self.g.ty(t).dtype)
            .unwrap_or_default();
        self.g
            .add(name, op, dtype, inputs, self.role, None)
            .map(TensorRef::of)
    }

    /// [`Ctx::op`] for an op of several outputs: every output, in order.
    pub fn op_multi(&mut self, op: Op, inputs: &[TensorRef]) -> Result<Vec<TensorRef>> {
        let node = self.op(op, inputs)?.node;
        let outputs = self.g.node(node).outputs.len();
        Ok((0..outputs)
            .map(|output| TensorRef { node, output })
            .collect())
    }

    /// A scalar constant of `like`'s dtype.
    pub fn scalar(&mut self, v: f64, like: TensorRef) -> Result<TensorRef> {
        let name = self.g.unique_name(format!("{}/Const", self.scope));
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
    /// The nodes of a program of `FusedStep`s over `inputs`, one per step
    /// but the inputs, in step order; the tensor of every register.
    pub fn program(&mut self, steps: &[FusedStep], inputs: &[TensorRef]) -> Result<Vec<TensorRef>> {
        let like = inputs.first().copied();
        let mut regs: Vec<TensorRef> = Vec::with_capacity(steps.len());
        for (k, step) in steps.iter().enumerate() {
            let bad = || {
                CompileError::new(
                    ErrorKind::Internal,
                    format!("step {k} of a program reads a later register or a missing input"),
                )
            };
            let r = match *step {
                FusedStep::Input(i) => *inputs.get(i).ok_or_else(bad)?,
                FusedStep::Const(v) => self.scalar(v, like.ok_or_else(bad)?)?,
                FusedStep::Unary(f, a) => {
                    let a = *regs.get(a).ok_or_else(bad)?;
                    self.op(f.op(), &[a])?
                }
                FusedStep::Binary(f, a, b) => {
                    let (a, b) = (*regs.get(a).ok_or_else(bad)?, *regs.get(b).ok_or_else(bad)?);
                    self.op(f.op(), &[a, b])?
                }
            };
            regs.push(r);
        }
        Ok(regs)
    }

    /// `c * a` for a constant `c`.
    pub fn scale(&mut self, c: f64, a: TensorRef) -> Result<TensorRef> {
        let c = self.scalar(c, a)?;
        self.mul(c, a)
    }
}

/// An op that changes variables (`Op::updated_inputs`) must take them as
/// its leading inputs: each a `Variable` node.
pub(crate) fn check_updated(g: &Graph, op: &Op, inputs: &[TensorRef]) -> Result<()> {
    let updated = inputs.iter().take(op.updated_inputs());
    if let Some((k, v)) = updated
        .enumerate()
        .find(|(_, v)| !matches!(g.node(v.node).op, Op::Variable { .. }))
    {
        let which = if k == 0 { "first" } else { "second" };
        return Err(CompileError::new(
            ErrorKind::NotAVariable,
            format!(
                "{} changes a variable, but its {which} input '{}' is a {}",
                op.name(),
                g.tensor_name(*v),
                g.node(v.node).op.name()
            ),
        ));
    }
    Ok(())
}

/// A tensor by name: a gradient result `d(y)/d(x)`, a node `x` (output 0) or `x:k`.
pub fn resolve_ref(g: &Graph, aliases: &HashMap<String, TensorRef>, r: &str) -> Option<TensorRef> {
    if let Some(&t) = aliases.get(r) {
        return Some(t);
    }
    let (name, output) = match g.find(r) {
        Some(n) => (n, 0),
        None => {
            let (b, k) = r.rsplit_once(':')?;
            (g.find(b)?, k.parse().ok()?)
        }
    };
    (output < g.node(name).outputs.len()).then_some(TensorRef { node: name, output })
}

/// A [C] parameter shaped to broadcast against a tensor of `rank` in `format`:
/// itself, or reshaped to [1, C, 1, 1] for NCHW.
pub(crate) fn broadcastable(
    c: &mut Ctx,
    p: TensorRef,
    format: DataFormat,
    rank: usize,
) -> Result<TensorRef> {
    if format == DataFormat::NCHW && rank == 4 {
        c.op(
            Op::Reshape {
                shape: vec![1, -1, 1, 1],
            },
            &[p],
        )
    } else {
        Ok(p)
    }
}
