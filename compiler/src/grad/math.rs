//! Gradients of elementwise math. Broadcast inputs are reduced by the driver.

use super::{dy, Ctx, GradFn, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::op::FusedStep;
use gradc_runtime::Op;

pub(super) fn rule(op: &Op) -> Option<GradFn> {
    Some(match op {
        Op::Identity => identity,
        Op::Add => add,
        Op::Sub => sub,
        Op::Mul => mul,
        Op::Div => div,
        Op::Neg => neg,
        Op::Exp => exp,
        Op::Log => log,
        Op::Square => square,
        Op::Pow { .. } => pow,
        Op::Sqrt => sqrt,
        Op::Rsqrt => rsqrt,
        Op::Maximum => maximum,
        Op::AddN => add_n,
        Op::Sigmoid => sigmoid,
        Op::Tanh => tanh,
        Op::Select => select,
        Op::Fused { .. } => fused,
        _ => return None,
    })
}

// dx = dy
fn identity(_: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(dy(g))])
}

// da = dy, db = dy
fn add(_: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(dy(g)), Some(dy(g))])
}

// da = dy, db = -dy
fn sub(c: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(dy(g)), Some(c.neg(dy(g))?)])
}

// da = dy * b, db = dy * a
fn mul(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![
        Some(c.mul(dy(g), n.x(1))?),
        Some(c.mul(dy(g), n.x(0))?),
    ])
}

// da = dy / b, db = -dy * y / b   (y = a / b)
fn div(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let da = c.div(dy(g), n.x(1))?;
    let t = c.mul(dy(g), n.y())?;
    let t = c.div(t, n.x(1))?;
    Ok(vec![Some(da), Some(c.neg(t)?)])
}

// dx = -dy
fn neg(c: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.neg(dy(g))?)])
}

// dx = dy * y   (y = exp x)
fn exp(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.mul(dy(g), n.y())?)])
}

// dx = dy / x
fn log(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(c.div(dy(g), n.x(0))?)])
}

// dx = dy * 2x
fn square(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let two_x = c.scale(2.0, n.x(0))?;
    Ok(vec![Some(c.mul(dy(g), two_x)?)])
}

// dx = dy * e * x^(e-1)
fn pow(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Pow { exponent } = n.op else {
        unreachable!("pow rule on {}", n.op.name())
    };
    let p = c.op(
        Op::Pow {
            exponent: exponent - 1.0,
        },
        &[n.x(0)],
    )?;
    let p = c.scale(exponent, p)?;
    Ok(vec![Some(c.mul(dy(g), p)?)])
}

// dx = dy * 0.5 / y   (y = sqrt x)
fn sqrt(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let half = c.scale(0.5, dy(g))?;
    Ok(vec![Some(c.div(half, n.y())?)])
}

// dx = dy * -0.5 * y^3   (y = x^-1/2)
fn rsqrt(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let y3 = c.op(Op::Pow { exponent: 3.0 }, &[n.y()])?;
    let y3 = c.scale(-0.5, y3)?;
    Ok(vec![Some(c.mul(dy(g), y3)?)])
}

// da = dy * [a >= b], db = dy - da   (ties go to a, as in TensorFlow)
fn maximum(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let mask = c.op(Op::GreaterEqual, &[n.x(0), n.x(1)])?;
    let da = c.mul(dy(g), mask)?;
    let db = c.sub(dy(g), da)?;
    Ok(vec![Some(da), Some(db)])
}

// dx_i = dy for every input
fn add_n(_: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(vec![Some(dy(g)); n.inputs.len()])
}

// dx = dy * y * (1 - y)
fn sigmoid(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let one = c.scalar(1.0, n.y())?;
    let one_minus = c.sub(one, n.y())?;
    let s = c.mul(n.y(), one_minus)?;
    Ok(vec![Some(c.mul(dy(g), s)?)])
}

// dx = dy * (1 - y^2)
fn tanh(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let one = c.scalar(1.0, n.y())?;
    let y2 = c.op(Op::Square, &[n.y()])?;
    let d = c.sub(one, y2)?;
    Ok(vec![Some(c.mul(dy(g), d)?)])
}

// da = select(cond, dy, 0), db = select(cond, 0, dy); cond gets none
fn select(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let zeros = c.op(Op::ZerosLike, &[dy(g)])?;
    let da = c.op(Op::Select, &[n.x(0), dy(g), zeros])?;
    let db = c.op(Op::Select, &[n.x(0), zeros, dy(g)])?;
    Ok(vec![None, Some(da), Some(db)])
}

// the gradient of the program's decomposition into the ops it fused
fn fused(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::Fused { program } = &n.op else {
        unreachable!("fused rule on {}", n.op.name())
    };
    let mut regs: Vec<TensorRef> = Vec::with_capacity(program.len());
    for step in program {
        let r = match *step {
            FusedStep::Input(i) => n.x(i),
            FusedStep::Const(v) => c.scalar(v, n.x(0))?,
            FusedStep::Unary(f, a) => c.op(f.op(), &[regs[a]])?,
            FusedStep::Binary(f, a, b) => c.op(f.op(), &[regs[a], regs[b]])?,
        };
        regs.push(r);
    }
    let out = *regs.last().expect("a Fused program has steps");
    super::vjp_of(c, &[out], g, &n.inputs)
}
