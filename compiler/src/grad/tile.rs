//! The gradient of `Tile` (`runtime/src/op/tile.rs`), TensorFlow's `_TileGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

// y = tile(x): dx = TileGrad(x's shape, dy), each value the sum of its copies' gradients
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Tile { multiples } = &n.op else {
        return Err(CompileError::new(ErrorKind::Internal, format!("Tile's rule on {}", n.op.name())));
    };
    let grad = Op::TileGrad {
        multiples: multiples.clone(),
    };
    Ok(vec![Some(c.op(grad, &[n.x(0), dy(g)])?)])
}
