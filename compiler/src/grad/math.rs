//! Gradients of elementwise math. Broadcast inputs are reduced by the driver.

use super::{dy, Ctx, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::op::{BinaryFn, UnaryFn};

// dx = dy
pub(super) fn identity(_: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(dy(g))])
}

// the derivative of the elementwise table's row, node by node, over
// (dy, the inputs, y)
pub(super) fn elementwise(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let derivative = match (UnaryFn::of(&n.op), BinaryFn::of(&n.op)) {
        (Some(f), _) => f.derivative(),
        (_, Some(f)) => f.derivative(),
        _ => unreachable!("elementwise rule on {}", n.op.name()),
    };
    let Some(d) = derivative else {
        return Ok(vec![None; n.inputs.len()]);
    };
    let mut args = Vec::with_capacity(n.inputs.len() + 2);
    args.push(dy(g));
    args.extend(&n.inputs);
    args.push(n.y());
    let regs = c.program(&d.steps, &args)?;
    Ok(d.outputs.iter().map(|o| o.map(|r| regs[r])).collect())
}

// dx_i = dy for every input
pub(super) fn add_n(_: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(dy(g)); n.inputs.len()])
}

// da = select(cond, dy, 0), db = select(cond, 0, dy); cond gets none
pub(super) fn select(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let zeros = c.op(gradc_runtime::Op::ZerosLike, &[dy(g)])?;
    let da = c.op(gradc_runtime::Op::Select, &[n.x(0), dy(g), zeros])?;
    let db = c.op(gradc_runtime::Op::Select, &[n.x(0), zeros, dy(g)])?;
    Ok(vec![None, Some(da), Some(db)])
}

// the gradient of the program's decomposition into the ops it fused
pub(super) fn fused(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let gradc_runtime::Op::Fused { program } = &n.op else {
        unreachable!("fused rule on {}", n.op.name())
    };
    let regs = c.program(program, &n.inputs)?;
    let out = *regs.last().expect("a Fused program has steps");
    super::vjp_of(c, &[out], g, &n.inputs)
}
