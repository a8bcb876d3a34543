//! Algebraic simplification: named rules, each with the invariant that makes
//! it exact. A rule either replaces a node's output by an existing tensor of
//! the same type, or rewrites the node in place (keeping its name). Every
//! rule is exact in IEEE arithmetic but `mean_of_broadcast`, which returns
//! the exact mean where the unoptimized graph rounds a sum (and where that
//! sum overflows or stalls, see the rule). Rules that change a result for
//! inf or NaN inputs (x * 0 = 0 fails for them) are not here.

use super::{is_const, producer, Fired, Pass};
use crate::error::Result;
use crate::ir::{Graph, TensorRef};
use gradc_runtime::shape::{normalize_axes, Dim};
use gradc_runtime::Op;
use petgraph::stable_graph::NodeIndex;

#[derive(Default)]
pub struct Simplify {
    fired: Fired,
}

enum Change {
    /// Every use of the node's output uses this tensor instead.
    Replace(TensorRef),
    /// The node becomes this op on these inputs.
    Rewrite(Box<Op>, Vec<TensorRef>),
}

/// Whether every axis `axes` reduces (all when None) of `b`, a broadcast of
/// `x`, is one along which `x` is repeated (absent from `x` or of size 1
/// there, NumPy alignment) and has a known, non-zero size in `b`.
fn only_repeats(g: &Graph, x: TensorRef, b: TensorRef, axes: Option<&[i64]>) -> bool {
    let (xs, bs) = (&g.ty(x).shape, &g.ty(b).shape);
    let Some(pad) = bs.rank().checked_sub(xs.rank()) else {
        return false;
    };
    let reduced = match axes {
        None => (0..bs.rank()).collect(),
        Some(axes) => match normalize_axes(axes, bs.rank()) {
            Ok(a) => a,
            Err(_) => return false,
        },
    };
    reduced.iter().all(|&i| {
        let repeated = i < pad || xs.0[i - pad] == Dim::Known(1);
        repeated && bs.0[i].known().is_some_and(|k| k >= 1)
    })
}

/// The rule that fires at `n`, whose inputs are `ins`: its name and change.
fn rule(g: &Graph, n: NodeIndex, ins: &[TensorRef]) -> Option<(&'static str, Change)> {
    let node = g.node(n);
    let y = TensorRef::of(n);
    let same = |t: TensorRef| g.ty(t) == g.ty(y);
    use Change::*;
    Some(match (&node.op, ins) {
        // Identity and StopGradient compute x (StopGradient acts only on differentiation, done by now).
        (Op::Identity | Op::StopGradient, &[x]) => ("identity", Replace(x)),
        // x + 0 = x and 0 + x = x (a zero of x's shape or one that broadcasts into it).
        (Op::Add, &[x, z]) | (Op::Add, &[z, x]) if is_const(g, z, 0.0) && same(x) => {
            ("add_zero", Replace(x))
        }
        // x - 0 = x
        (Op::Sub, &[x, z]) if is_const(g, z, 0.0) && same(x) => ("sub_zero", Replace(x)),
        // x * 1 = 1 * x = x, exactly, for every x including inf and NaN
        (Op::Mul, &[x, o]) | (Op::Mul, &[o, x]) if is_const(g, o, 1.0) && same(x) => {
            ("mul_one", Replace(x))
        }
        // x / 1 = x
        (Op::Div, &[x, o]) if is_const(g, o, 1.0) && same(x) => ("div_one", Replace(x)),
        // x^1 = x; x^2 = x * x, which Square computes
        (Op::Pow { exponent }, &[x]) if *exponent == 1.0 => ("pow_one", Replace(x)),
        (Op::Pow { exponent }, &[x]) if *exponent == 2.0 => {
            ("pow_two_is_square", Rewrite(Box::new(Op::Square), vec![x]))
        }
        // a sum of one tensor is that tensor
        (Op::AddN, &[x]) => ("add_n_of_one", Replace(x)),
        // -(-x) = x
        (Op::Neg, &[t]) => match producer(g, t) {
            Some((_, Op::Neg)) => ("neg_neg", Replace(g.inputs(t.node)[0])),
            _ => return None,
        },
        // reducing or broadcasting to the shape a tensor already has does nothing
        (Op::SumToLike | Op::BroadcastLike, &[x, _]) if same(x) => ("like_same_shape", Replace(x)),
        // a reshape to the shape the tensor has is the tensor; a reshape of a reshape is one reshape
        (
            Op::Reshape { .. } | Op::ReshapeLike | Op::ExpandDims { .. } | Op::Squeeze { .. },
            &[x, ..],
        ) if same(x) => ("reshape_same_shape", Replace(x)),
        (Op::Reshape { shape }, &[t]) => match producer(g, t) {
            Some((p, Op::Reshape { .. } | Op::ReshapeLike)) => (
                "reshape_of_reshape",
                Rewrite(
                    Box::new(Op::Reshape {
                        shape: shape.clone(),
                    }),
                    vec![g.inputs(p)[0]],
                ),
            ),
            _ => return None,
        },
        (Op::ReshapeLike, &[t, like]) => match producer(g, t) {
            Some((p, Op::Reshape { .. } | Op::ReshapeLike)) => (
                "reshape_of_reshape",
                Rewrite(Box::new(Op::ReshapeLike), vec![g.inputs(p)[0], like]),
            ),
            _ => return None,
        },
        // transposing twice is one transpose by the composed permutation (none if it is the identity)
        (Op::Transpose { perm: outer }, &[t]) => match producer(g, t) {
            Some((p, Op::Transpose { perm: inner })) => {
                let rank = g.ty(t).shape.rank();
                let full =
                    |p: &Option<Vec<usize>>| p.clone().unwrap_or_else(|| (0..rank).rev().collect());
                let (outer, inner) = (full(outer), full(inner));
                let composed: Vec<usize> = outer.iter().map(|&a| inner[a]).collect();
                let x = g.inputs(p)[0];
                if composed.iter().enumerate().all(|(i, &a)| i == a) {
                    ("transpose_of_transpose", Replace(x))
                } else {
                    (
                        "transpose_of_transpose",
                        Rewrite(
                            Box::new(Op::Transpose {
                                perm: Some(composed),
                            }),
                            vec![x],
                        ),
                    )
                }
            }
            _ => return None,
        },
        // mean over axes along which x was only repeated is x: each mean
        // averages k copies of one value. Equal in real arithmetic; the
        // unoptimized sum of k copies rounds (the two agree within k ulps)
        // and can overflow to inf (k·|x| above the largest float) or stall
        // (k beyond 2^24 in f32), where x is the exact mean it missed. Only
        // over axes of known size ≥ 1: over an empty axis the mean is NaN.
        (Op::Mean { axes, .. }, &[t]) => match producer(g, t) {
            Some((p, Op::BroadcastLike)) => {
                let x = g.inputs(p)[0];
                if !(same(x) && only_repeats(g, x, t, axes.as_deref())) {
                    return None;
                }
                ("mean_of_broadcast", Replace(x))
            }
            _ => return None,
        },
        _ => return None,
    })
}

impl Pass for Simplify {
    fn name(&self) -> &'static str {
        "simplify"
    }

    fn run(&mut self, g: &mut Graph) -> Result<bool> {
        let mut changed = false;
        let mut ins = Vec::new();
        for n in g.topo_order()? {
            if !g.g.contains_node(n) || g.has_control(n) || g.node(n).outputs.len() != 1 {
                continue;
            }
            g.inputs_into(n, &mut ins);
            let Some((name, change)) = rule(g, n, &ins) else {
                continue;
            };
            match change {
                // A node nobody uses any more is left to dce: no change.
                Change::Replace(x) => {
                    if !g.replace_uses(TensorRef::of(n), x) {
                        continue;
                    }
                }
                Change::Rewrite(op, inputs) => g.rewrite(n, *op, &inputs)?,
            }
            self.fired.hit(name);
            changed = true;
        }
        Ok(changed)
    }

    fn fired(&self) -> Vec<(&'static str, usize)> {
        self.fired.list()
    }
}
