//! The Fused kernel: a small program evaluated once per output element, over
//! the inputs broadcast to the output. Each step calls the same scalar
//! function as the op it replaces, so a fused result equals the unfused one
//! bit for bit. Inputs and registers live on the stack: no allocation.

use super::{input, Elem, Inputs};
use crate::op::{check_fused, BinaryFn, FusedStep, UnaryFn, FUSED_MAX_INPUTS, FUSED_MAX_STEPS};
use ndarray::{ArrayD, ArrayViewD};

fn unary<T: Elem>(f: UnaryFn, x: T) -> T {
    match f {
        UnaryFn::Neg => -x,
        UnaryFn::Exp => x.exp(),
        UnaryFn::Log => x.ln(),
        UnaryFn::Square => x * x,
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Rsqrt => x.sqrt().recip(),
        UnaryFn::Relu => super::elementwise::relu(x),
        UnaryFn::Sigmoid => super::elementwise::sigmoid(x),
        UnaryFn::Tanh => x.tanh(),
        UnaryFn::Pow(e) => super::elementwise::pow_scalar(x, e),
    }
}

fn binary<T: Elem>(f: BinaryFn, a: T, b: T) -> T {
    let (zero, one) = (T::zero(), T::one());
    match f {
        BinaryFn::Add => a + b,
        BinaryFn::Sub => a - b,
        BinaryFn::Mul => a * b,
        BinaryFn::Div => a / b,
        BinaryFn::Maximum => super::elementwise::maximum(a, b),
        BinaryFn::GreaterEqual => {
            if a >= b {
                one
            } else {
                zero
            }
        }
        BinaryFn::Equal => {
            if a == b {
                one
            } else {
                zero
            }
        }
        BinaryFn::ReluGrad => {
            if b > zero {
                a
            } else {
                zero
            }
        }
    }
}

pub(super) fn fused<T: Elem>(
    program: &[FusedStep],
    ins: &dyn Inputs,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let n = ins.len();
    check_fused(program, n)?;
    let shape = out.raw_dim();
    let mut views: [Option<ArrayViewD<'_, T>>; FUSED_MAX_INPUTS] = Default::default();
    for (k, v) in views.iter_mut().enumerate().take(n) {
        *v = Some(input::<T>(ins, k)?);
    }
    let mut broadcast: [Option<ArrayViewD<'_, T>>; FUSED_MAX_INPUTS] = Default::default();
    for (b, v) in broadcast.iter_mut().zip(&views) {
        if let Some(v) = v {
            let view = v.broadcast(shape.clone()).ok_or_else(|| {
                format!(
                    "Fused: an input of shape {:?} does not broadcast to {:?}",
                    v.shape(),
                    out.shape()
                )
            })?;
            *b = Some(view);
        }
    }
    let mut iters: [Option<ndarray::iter::Iter<'_, T, ndarray::IxDyn>>; FUSED_MAX_INPUTS] =
        Default::default();
    for (it, b) in iters.iter_mut().zip(&broadcast) {
        *it = b.as_ref().map(|v| v.iter());
    }
    let mut xs = [T::zero(); FUSED_MAX_INPUTS];
    let mut regs = [T::zero(); FUSED_MAX_STEPS];
    let last = program.len() - 1;
    for y in out.iter_mut() {
        for (x, it) in xs.iter_mut().zip(iters.iter_mut()).take(n) {
            *x = *it
                .as_mut()
                .and_then(|i| i.next())
                .ok_or("Fused: an input ran out of elements")?;
        }
        for (k, step) in program.iter().enumerate() {
            regs[k] = match *step {
                FusedStep::Input(i) => xs[i],
                FusedStep::Const(v) => T::from_f64(v),
                FusedStep::Unary(f, a) => unary(f, regs[a]),
                FusedStep::Binary(f, a, b) => binary(f, regs[a], regs[b]),
            };
        }
        *y = regs[last];
    }
    Ok(())
}
