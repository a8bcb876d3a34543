//! The gradient of `TileGrad` (`runtime/src/op/tile_grad.rs`).

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// z = TileGrad(x's shape, g), linear in g, the adjoint of Tile: dg = Tile(dz); x's shape gets none
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::TileGrad { multiples } = &n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("TileGrad's rule on {}", n.op.name())));
    };
    let tile = Op::Tile {
        multiples: multiples.clone(),
    };
    Ok(vec![None, Some(c.op(tile, &[dy(g)])?)])
}
