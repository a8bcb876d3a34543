//! The gradient of `AllReduceMean` (`runtime/src/op/all_reduce_mean.rs`).

use super::{Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y_i = (1/N) Σ_ranks x_i: a linear map that is its own transpose, so
// dx_i = (1/N) Σ_ranks dy_i, zeros for an output without a gradient
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let dys = n
        .outputs
        .iter()
        .zip(g)
        .map(|(&y, dy)| match dy {
            Some(d) => Ok(*d),
            None => c.op(gradc_runtime::Op::ZerosLike, &[y]),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let node = c.op_multi(n.op.clone(), &dys)?;
    Ok(node.into_iter().map(Some).collect())
}
