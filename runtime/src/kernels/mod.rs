//! Forward kernels. Each op has one implementation, generic over the float
//! type, that writes into a preallocated output of the right shape;
//! `eval_with` dispatches on the output dtype once.
//!
//! The session allocates its buffers once (the slots of its memory plan,
//! sized from the types `Op::infer` computed from the concrete input shapes)
//! and reuses them on every run, so the kernels allocate nothing for tensors
//! of rank at most 4 (ndarray keeps shapes of higher rank on the heap).
//! Elementwise kernels can also overwrite an input (`eval_in_place`). `eval` is the allocating convenience:
//! it makes the output from the output types and calls the same kernel.
//! Kernels still check what they rely on and return an error rather than panic.

mod elementwise;
mod fused;
pub mod gemm;
mod int;
mod layout;
mod linalg;
pub(crate) use linalg::bias_activation_rows;
mod norm;
mod reduce;
#[cfg(test)]
mod tests;
mod values;

use crate::dtype::{Scalar, Value};
use crate::op::{BinaryFn, UnaryFn};
use crate::{binary_ops, module_ops, unary_ops, DType, Op, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD, Dimension, IxDyn, LinalgScalar};
use std::cell::RefCell;
use std::sync::atomic::AtomicUsize;

/// The float types the kernels run on.
pub(crate) trait Elem: Scalar + LinalgScalar + gemm::GemmElem {
    /// Runs `f` with this thread's scratch buffer of kind `which`, grown
    /// first to the most any thread's buffer of that kind has held (so which
    /// thread takes which part of a kernel never makes one grow in steady
    /// state); a fresh one if the thread is already using it.
    fn with_scratch<R>(which: Scratch, f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
}

/// The kinds of scratch buffer a thread keeps: a kernel that runs inside
/// another's use of one takes another kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scratch {
    /// The registers of a Fused program.
    Registers = 0,
    /// A convolution's operands and result in NHWC order.
    Layout = 1,
    /// The partial sums of a convolution's filter gradient.
    Partials = 2,
    /// The patches (im2col rows) of one chunk of a convolution.
    Patches = 3,
}

/// How many kinds of [`Scratch`] there are.
const SCRATCH_KINDS: usize = 4;

macro_rules! impl_elem {
    ($t:ty) => {
        impl Elem for $t {
            fn with_scratch<R>(which: Scratch, f: impl FnOnce(&mut Vec<Self>) -> R) -> R {
                thread_local! {
                    static SCRATCH: [RefCell<Vec<$t>>; SCRATCH_KINDS] =
                        const { [const { RefCell::new(Vec::new()) }; SCRATCH_KINDS] };
                }
                static MARKS: [AtomicUsize; SCRATCH_KINDS] =
                    [const { AtomicUsize::new(0) }; SCRATCH_KINDS];
                let k = which as usize;
                SCRATCH.with(|s| gemm::with_buffer(&s[k], &MARKS[k], f))
            }
        }
    };
}

impl_elem!(f32);
impl_elem!(f64);

/// The inputs of one kernel call, by position.
pub trait Inputs {
    fn len(&self) -> usize;
    /// Input `k`; None if it is missing (an error, not a panic).
    fn get(&self, k: usize) -> Option<&Tensor>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inputs for &[&Tensor] {
    fn len(&self) -> usize {
        <[&Tensor]>::len(self)
    }

    fn get(&self, k: usize) -> Option<&Tensor> {
        <[&Tensor]>::get(self, k).copied()
    }
}

/// Why a kernel did not run: the op and what was wrong (inputs or output
/// buffers that do not fit it, an output too large to allocate). The
/// session reports it as [`crate::RunError::Node`], naming the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {message}")]
pub struct KernelError {
    /// The op's name, e.g. `MatMul`.
    pub op: &'static str,
    /// What was wrong, without the op's name.
    pub message: String,
}

impl KernelError {
    /// Makes a message about `op` into its error.
    fn of(op: &Op) -> impl FnOnce(String) -> KernelError {
        let op = op.name();
        move |message| KernelError { op, message }
    }
}

/// Evaluates `op` on `ins`; `outs` are the output types from `op.infer`.
/// Allocates the outputs; see `eval_into` for the allocation-free form.
pub fn eval(op: &Op, ins: &[&Tensor], outs: &[TensorType]) -> Result<Vec<Tensor>, KernelError> {
    let mut results = outs
        .iter()
        .map(|t| {
            let shape = t
                .shape
                .concrete()
                .ok_or_else(|| format!("output shape {} is not concrete", t.shape))?;
            Tensor::zeros(t.dtype, &shape).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(KernelError::of(op))?;
    eval_into(op, ins, &mut results)?;
    Ok(results)
}

/// Evaluates `op` on `ins` into `outs`, which must already have the output
/// types (dtype and shape) `op.infer` gives and be in standard layout.
pub fn eval_into(op: &Op, ins: &[&Tensor], outs: &mut [Tensor]) -> Result<(), KernelError> {
    eval_with(op, &ins, outs)
}

/// `eval_into` with the inputs given by position, e.g. straight from where a
/// session keeps them.
pub fn eval_with(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), KernelError> {
    dispatch(op, ins, outs).map_err(KernelError::of(op))
}

/// `eval_with`, its error a message.
fn dispatch(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    match op {
        // Pass-through ops: their outputs are (the last) of their inputs.
        Op::IdentityN | Op::OnceDifferentiable { .. } | Op::CustomGradient { .. } => {
            check_arity(op, ins.len())?;
            let skip = ins
                .len()
                .checked_sub(outs.len())
                .ok_or("more outputs than inputs")?;
            for (k, out) in outs.iter_mut().enumerate() {
                let t = ins
                    .get(skip + k)
                    .ok_or_else(|| format!("input {} is missing", skip + k))?;
                if !out.has_type(t.dtype(), t.shape()) {
                    return Err(format!(
                        "output {k} does not have the type of input {}",
                        skip + k
                    ));
                }
                out.copy_from(t);
            }
            return Ok(());
        }
        Op::Moments { .. }
        | Op::FusedBatchNorm { .. }
        | Op::FusedBatchNormGrad { .. }
        | Op::ActivationBiasGrad { .. } => {
            let dtype = outs
                .first()
                .map(Tensor::dtype)
                .ok_or("no output buffers were given")?;
            return match dtype {
                DType::F32 => run_multi::<f32>(op, ins, outs),
                DType::F64 => run_multi::<f64>(op, ins, outs),
                other => Err(format!("{} has no {other} kernel", op.name())),
            };
        }
        module_ops!() => {
            check_arity(op, ins.len())?;
            if !outs
                .iter()
                .all(|o| crate::each!(o, y => y.is_standard_layout()))
            {
                return Err("an output buffer is not in standard layout".into());
            }
            return crate::op::module_run(op, ins, outs);
        }
        _ => {}
    }
    let [out] = outs else {
        return Err(format!(
            "{} has one output, but {} output buffers were given",
            op.name(),
            outs.len()
        ));
    };
    check_arity(op, ins.len())?;
    if !crate::each!(&*out, y => y.is_standard_layout()) {
        return Err("the output buffer is not in standard layout".into());
    }
    match out {
        Tensor::F32(y) => kernel::<f32>(op, ins, y),
        Tensor::F64(y) => kernel::<f64>(op, ins, y),
        Tensor::I32(y) => int::kernel(op, ins, y),
        Tensor::I64(y) => int::kernel(op, ins, y),
        Tensor::Bool(y) => values::kernel(op, ins, y),
    }
}

/// `dst += delta` (or `-=` when `subtract`), in place: AssignAdd and AssignSub.
pub(crate) fn accumulate(dst: &mut Tensor, delta: &Tensor, subtract: bool) -> Result<(), String> {
    match (dst, delta) {
        (Tensor::F32(a), Tensor::F32(b)) => elementwise::accumulate(a, b, subtract),
        (Tensor::F64(a), Tensor::F64(b)) => elementwise::accumulate(a, b, subtract),
        (Tensor::I32(a), Tensor::I32(b)) => int::accumulate(a, b, subtract),
        (Tensor::I64(a), Tensor::I64(b)) => int::accumulate(a, b, subtract),
        (a, b) => Err(format!(
            "cannot update a {} variable with a {} value",
            a.dtype(),
            b.dtype()
        )),
    }
}

/// `var -= alpha * delta` in place (ApplyGradientDescent), alpha a scalar.
pub(crate) fn apply_gradient_descent(
    var: &mut Tensor,
    alpha: &Tensor,
    delta: &Tensor,
) -> Result<(), String> {
    match (var, alpha, delta) {
        (Tensor::F32(v), Tensor::F32(a), Tensor::F32(d)) => {
            elementwise::apply_gradient_descent(v, scalar(a)?, d)
        }
        (Tensor::F64(v), Tensor::F64(a), Tensor::F64(d)) => {
            elementwise::apply_gradient_descent(v, scalar(a)?, d)
        }
        (v, a, d) => Err(format!(
            "cannot update a {} variable with {} and {} values",
            v.dtype(),
            a.dtype(),
            d.dtype()
        )),
    }
}

/// ApplyMomentum in place on `var` and `accum` (see `Op::ApplyMomentum`).
pub(crate) fn apply_momentum(
    var: &mut Tensor,
    accum: &mut Tensor,
    lr: &Tensor,
    grad: &Tensor,
    momentum: &Tensor,
    nesterov: bool,
) -> Result<(), String> {
    match (var, accum, lr, grad, momentum) {
        (Tensor::F32(v), Tensor::F32(a), Tensor::F32(l), Tensor::F32(g), Tensor::F32(m)) => {
            elementwise::apply_momentum(v, a, scalar(l)?, g, scalar(m)?, nesterov)
        }
        (Tensor::F64(v), Tensor::F64(a), Tensor::F64(l), Tensor::F64(g), Tensor::F64(m)) => {
            elementwise::apply_momentum(v, a, scalar(l)?, g, scalar(m)?, nesterov)
        }
        (v, ..) => Err(format!(
            "cannot update a {} variable with values of another dtype",
            v.dtype()
        )),
    }
}

/// The value of a one-element array.
fn scalar<T: Copy>(a: &ArrayD<T>) -> Result<T, String> {
    match a.as_slice() {
        Some(&[v]) => Ok(v),
        _ => Err(format!("expected a scalar, got shape {:?}", a.shape())),
    }
}

/// Input `k` as an array of `T`, or an error naming its dtype.
pub(crate) fn input<T: Value>(ins: &dyn Inputs, k: usize) -> Result<ArrayViewD<'_, T>, String> {
    let t = ins.get(k).ok_or_else(|| format!("input {k} is missing"))?;
    T::view(t).ok_or_else(|| format!("an input has dtype {}, expected {}", t.dtype(), T::DTYPE))
}

/// One op on its inputs, written into `out` (already of the output shape).
fn kernel<T: Elem>(op: &Op, ins: &dyn Inputs, out: &mut ArrayD<T>) -> Result<(), String> {
    use Op::*;
    let (zero, one) = (T::zero(), T::one());
    let x = |k: usize| input::<T>(ins, k);
    match op {
        Placeholder { .. }
        | Variable { .. }
        | Assign
        | AssignAdd
        | AssignSub
        | ApplyGradientDescent
        | ApplyMomentum { .. }
        | NoOp => Err(format!(
            "{} is run by the session, not by a kernel",
            op.name()
        )),
        Const(lit) => layout::constant(lit, out),
        Identity | StopGradient => layout::copy(&x(0)?, out),
        unary_ops!() => {
            let f = UnaryFn::of(op).ok_or("not a unary function")?;
            f.with(elementwise::Unary(&x(0)?, out))
        }
        binary_ops!() => {
            let f = BinaryFn::of(op).ok_or("not a binary function")?;
            let (a, b) = (x(0)?, x(1)?);
            same_operand_shapes(f, a.shape(), b.shape())?;
            f.with(elementwise::Binary(&a, &b, out))
        }
        MatMul {
            transpose_a,
            transpose_b,
        } => linalg::matmul(&x(0)?, &x(1)?, *transpose_a, *transpose_b, out),
        BiasAdd { data_format } => linalg::bias_add(&x(0)?, &x(1)?, *data_format, out),
        module_ops!() => Err(format!("{} is run by its module", op.name())),
        Fused { program } => fused::fused(program, ins, out),
        Dense {
            transpose_a,
            transpose_b,
            activation,
        } => linalg::dense(
            &x(0)?,
            &x(1)?,
            &x(2)?,
            *transpose_a,
            *transpose_b,
            *activation,
            out,
        ),
        Sum { axes, .. } => reduce::sum(&x(0)?, axes.as_deref(), out),
        Mean { axes, .. } => reduce::mean(&x(0)?, axes.as_deref(), out),
        ReducedSize { axes } => reduce::reduced_size(&x(0)?, axes.as_deref(), out),
        Reshape { .. } | ReshapeLike | ExpandDims { .. } | Squeeze { .. } => {
            layout::reshape(&x(0)?, out)
        }
        Transpose { perm } => layout::transpose(&x(0)?, perm.as_deref(), out),
        Select => values::select(ins, out),
        BatchNormalization {
            variance_epsilon,
            offset,
            scale,
        } => {
            let [a, b, c, d, e] =
                [0, 1, 2, 3, 4].map(|k| (k < ins.len()).then(|| x(k)).transpose());
            let xs = [a?, b?, c?, d?, e?];
            let n = ins.len().min(xs.len());
            let xs: [Option<ArrayViewD<'_, T>>; 5] = xs;
            norm::batch_normalization(&xs[..n], *variance_epsilon, *offset, *scale, out)
        }
        IdentityN | CustomGradient { .. } | OnceDifferentiable { .. } => Err(format!(
            "{} passes its inputs through; eval_with handles it",
            op.name()
        )),
        Moments { .. }
        | FusedBatchNorm { .. }
        | FusedBatchNormGrad { .. }
        | ActivationBiasGrad { .. } => Err(format!(
            "{} has several outputs; eval_with handles it",
            op.name()
        )),
        Softmax => reduce::softmax(&x(0)?, out),
        LogSoftmax => reduce::log_softmax(&x(0)?, out),
        SoftmaxCrossEntropyWithLogits => reduce::softmax_cross_entropy(&x(0)?, &x(1)?, out),
        AddN => elementwise::add_n(ins.len(), x, out),
        ZerosLike => layout::fill_like(&x(0)?, zero, out),
        OnesLike => layout::fill_like(&x(0)?, one, out),
        Fill { .. } => layout::fill(&x(0)?, out),
        SumToLike => reduce::sum_to_like(&x(0)?, out),
        BroadcastLike => layout::broadcast_to(&x(0)?, out),
    }
}

/// The inputs whose buffer `op` can overwrite with its output
/// (`eval_in_place`): elementwise ops, where each output element depends only
/// on the input elements at the same position (after broadcasting the others).
/// The input must have the output's dtype and shape.
pub fn in_place_inputs(op: &Op) -> &'static [usize] {
    use Op::*;
    match op {
        unary_ops!() => match UnaryFn::of(op) {
            Some(f) if f.in_place() => &[0],
            _ => &[],
        },
        binary_ops!() => match BinaryFn::of(op) {
            Some(f) if f.in_place() => &[0, 1],
            _ => &[],
        },
        Identity | StopGradient => &[0],
        // AddN adds in input order, so only the first input's buffer can
        // start the sum; BiasAdd's bias is never of the output's shape.
        AddN | BiasAdd { .. } => &[0],
        // Each chunk of the output is written after that chunk of every input is read.
        Fused { .. } => &ALL_FUSED_INPUTS,
        // Its first output, dz, element by element from dy and y.
        ActivationBiasGrad { .. } => &[0, 1],
        _ => &[],
    }
}

/// Every input slot a `Fused` op may have.
const ALL_FUSED_INPUTS: [usize; crate::op::FUSED_MAX_INPUTS] = {
    let mut all = [0; crate::op::FUSED_MAX_INPUTS];
    let mut k = 0;
    while k < all.len() {
        all[k] = k;
        k += 1;
    }
    all
};

/// Evaluates `op` with its (first) output written over input `k`, which
/// `outs[0]` holds (of that output's dtype and shape; `k` is one of
/// `in_place_inputs(op)`); the op's other outputs, if it has more, go into
/// `outs[1..]` as with `eval_with`. The other inputs come from `ins`, which
/// is not asked for input `k`. Gives the same values, to the bit, as
/// `eval_with` into separate buffers.
pub fn eval_in_place(
    op: &Op,
    k: usize,
    outs: &mut [Tensor],
    ins: &dyn Inputs,
) -> Result<(), KernelError> {
    dispatch_in_place(op, k, outs, ins).map_err(KernelError::of(op))
}

/// `eval_in_place`, its error a message.
fn dispatch_in_place(
    op: &Op,
    k: usize,
    outs: &mut [Tensor],
    ins: &dyn Inputs,
) -> Result<(), String> {
    if !in_place_inputs(op).contains(&k) {
        return Err(format!("{} cannot overwrite its input {k}", op.name()));
    }
    check_arity(op, ins.len())?;
    match (op, outs) {
        (Op::ActivationBiasGrad { activation }, [io, db]) => match (io, db) {
            (Tensor::F32(io), Tensor::F32(db)) => {
                linalg::activation_bias_grad_in_place(io, k, &input(ins, 1 - k)?, *activation, db)
            }
            (Tensor::F64(io), Tensor::F64(db)) => {
                linalg::activation_bias_grad_in_place(io, k, &input(ins, 1 - k)?, *activation, db)
            }
            _ => Err("ActivationBiasGrad: output buffers of two dtypes".into()),
        },
        (Op::ActivationBiasGrad { .. }, outs) => Err(format!(
            "ActivationBiasGrad has 2 outputs, but {} output buffers were given",
            outs.len()
        )),
        (_, [io]) => match io {
            Tensor::F32(y) => in_place::<f32>(op, k, ins, y),
            Tensor::F64(y) => in_place::<f64>(op, k, ins, y),
            Tensor::I32(y) => int::in_place(op, k, ins, y),
            Tensor::I64(y) => int::in_place(op, k, ins, y),
            Tensor::Bool(_) if matches!(op, Op::Identity | Op::StopGradient) => Ok(()),
            Tensor::Bool(_) => Err(format!("{} cannot run in place on bool", op.name())),
        },
        (_, outs) => Err(format!(
            "{} has one output, but {} output buffers were given",
            op.name(),
            outs.len()
        )),
    }
}

fn in_place<T: Elem>(
    op: &Op,
    k: usize,
    ins: &dyn Inputs,
    io: &mut ArrayD<T>,
) -> Result<(), String> {
    use Op::*;
    let x = |j: usize| input::<T>(ins, j);
    // The other operand of a binary op.
    let other = || x(1 - k);
    match op {
        Identity | StopGradient => Ok(()),
        unary_ops!() => {
            let f = UnaryFn::of(op).ok_or("not a unary function")?;
            f.with(elementwise::MapInPlace(io))
        }
        binary_ops!() => {
            let f = BinaryFn::of(op).ok_or("not a binary function")?;
            let other = other()?;
            same_operand_shapes(f, io.shape(), other.shape())?;
            f.with(elementwise::ZipInPlace(io, k, &other))
        }
        BiasAdd { data_format } => linalg::bias_add_in_place(io, &x(1)?, *data_format),
        AddN => elementwise::add_n_in_place(ins.len(), x, io),
        Fused { program } => fused::fused_in_place(program, k, ins, io),
        _ => Err(format!("{} cannot run in place", op.name())),
    }
}

/// For a function whose inputs do not broadcast: an error unless they have one shape.
fn same_operand_shapes(f: BinaryFn, a: &[usize], b: &[usize]) -> Result<(), String> {
    if f.broadcasts() || a == b {
        return Ok(());
    }
    Err(format!(
        "{}: inputs of shapes {a:?} and {b:?} differ",
        f.name()
    ))
}

/// The output buffer `t` as `T`'s array, or an error naming its dtype.
fn buffer<T: Value>(t: &mut Tensor) -> Result<&mut ArrayD<T>, String> {
    let dtype = t.dtype();
    T::array_mut(t)
        .ok_or_else(|| format!("an output buffer has dtype {dtype}, expected {}", T::DTYPE))
}

/// Ops with several outputs, each written into its buffer.
fn run_multi<T: Elem>(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    check_arity(op, ins.len())?;
    let count = |want: usize| {
        format!(
            "{} makes {want} outputs, {} buffers were given",
            op.name(),
            outs.len()
        )
    };
    match op {
        Op::Moments { axes, .. } => {
            let [mean, var] = outs else {
                return Err(count(2));
            };
            norm::moments(
                &input::<T>(ins, 0)?,
                axes,
                buffer::<T>(mean)?,
                buffer::<T>(var)?,
            )
        }
        Op::FusedBatchNorm {
            epsilon,
            data_format,
            is_training,
        } => {
            let [y, m, v, sm, sv] = outs else {
                return Err(count(5));
            };
            let xs = [0, 1, 2, 3, 4].map(|k| input::<T>(ins, k));
            let [a, b, c, d, e] = xs;
            norm::fused_batch_norm(
                [a?, b?, c?, d?, e?],
                *epsilon,
                *data_format,
                *is_training,
                [buffer(y)?, buffer(m)?, buffer(v)?, buffer(sm)?, buffer(sv)?],
            )
        }
        Op::FusedBatchNormGrad {
            epsilon,
            data_format,
            is_training,
        } => {
            let [dx, ds, doff] = outs else {
                return Err(count(3));
            };
            let [a, b, c, d, e] = [0, 1, 2, 3, 4].map(|k| input::<T>(ins, k));
            norm::fused_batch_norm_grad(
                [a?, b?, c?, d?, e?],
                *epsilon,
                *data_format,
                *is_training,
                [buffer(dx)?, buffer(ds)?, buffer(doff)?],
            )
        }
        Op::ActivationBiasGrad { activation } => {
            let [dz, db] = outs else {
                return Err(count(2));
            };
            linalg::activation_bias_grad(
                &input::<T>(ins, 0)?,
                &input::<T>(ins, 1)?,
                *activation,
                buffer(dz)?,
                buffer(db)?,
            )
        }
        _ => Err(format!("{} has one output", op.name())),
    }
}

/// Lets the kernels index their inputs without panicking.
fn check_arity(op: &Op, n: usize) -> Result<(), String> {
    Ok(op.check_arity(n)?)
}

/// A view of `a` broadcast to `shape` (NumPy rules).
fn broadcast_view<'a, T>(
    a: &'a ArrayViewD<'_, T>,
    shape: &IxDyn,
) -> Result<ArrayViewD<'a, T>, String> {
    a.broadcast(shape.clone())
        .ok_or_else(|| format!("cannot broadcast {:?} to {:?}", a.shape(), shape.slice()))
}

/// Fails unless `got` is `want`, naming what the kernel was given.
fn same_shape(what: &str, got: &[usize], want: &[usize]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what} has shape {got:?}, the output {want:?}"))
    }
}
