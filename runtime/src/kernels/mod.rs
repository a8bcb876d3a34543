//! Forward kernels. Each op has one implementation, generic over the float
//! type; `eval` dispatches on the output dtype once.
//!
//! `eval` is called with the output types `Op::infer` computed from the
//! concrete input shapes, so the kernels take their output shape from there.
//! They still check what they rely on and return an error rather than panic.

mod elementwise;
mod layout;
mod linalg;
mod norm;
mod reduce;
#[cfg(test)]
mod tests;

use crate::op::Arity;
use crate::{DType, Op, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD, IxDyn, LinalgScalar};
use num_traits::Float;
use std::fmt::Debug;

/// The float types the kernels run on.
trait Elem: Float + LinalgScalar + Debug + Send + Sync + 'static {
    const DTYPE: DType;
    /// A view of the tensor's data, if it holds this type.
    fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>>;
    fn wrap(a: ArrayD<Self>) -> Tensor;
    /// Converts from f64; f32 rounds, and overflows to infinity like `as`.
    fn from_f64(v: f64) -> Self;
}

macro_rules! impl_elem {
    ($t:ty, $variant:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$variant;

            fn view(t: &Tensor) -> Option<ArrayViewD<'_, Self>> {
                match t {
                    Tensor::$variant(a) => Some(a.view()),
                    _ => None,
                }
            }

            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$variant(a)
            }

            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}

impl_elem!(f32, F32);
impl_elem!(f64, F64);

/// Evaluates `op` on `ins`; `outs` are the output types from `op.infer`.
pub fn eval(op: &Op, ins: &[&Tensor], outs: &[TensorType]) -> Result<Vec<Tensor>, String> {
    // Pass-through ops: their outputs are (some of) their inputs.
    match op {
        Op::IdentityN | Op::OnceDifferentiable { .. } => {
            return Ok(ins.iter().map(|t| (*t).clone()).collect())
        }
        Op::CustomGradient { inputs, .. } => {
            return Ok(ins
                .get(*inputs..)
                .unwrap_or_default()
                .iter()
                .map(|t| (*t).clone())
                .collect())
        }
        _ => {}
    }
    if matches!(
        op,
        Op::Moments { .. } | Op::FusedBatchNorm { .. } | Op::FusedBatchNormGrad { .. }
    ) {
        let first = outs
            .first()
            .ok_or_else(|| format!("{} has outputs, none were given", op.name()))?;
        return match first.dtype {
            DType::F32 => run_multi::<f32>(op, ins, outs),
            DType::F64 => run_multi::<f64>(op, ins, outs),
        };
    }
    let [out] = outs else {
        return Err(format!(
            "{} has one output, but {} output types were given",
            op.name(),
            outs.len()
        ));
    };
    let shape = out
        .shape
        .concrete()
        .ok_or_else(|| format!("output shape {} is not concrete", out.shape))?;
    let result = match out.dtype {
        DType::F32 => run::<f32>(op, ins, &shape)?,
        DType::F64 => run::<f64>(op, ins, &shape)?,
    };
    Ok(vec![result])
}

/// Ops with several outputs; each result is checked against its inferred type.
fn run_multi<T: Elem>(
    op: &Op,
    ins: &[&Tensor],
    outs: &[TensorType],
) -> Result<Vec<Tensor>, String> {
    let xs = ins
        .iter()
        .map(|t| {
            T::view(t)
                .ok_or_else(|| format!("an input has dtype {}, expected {}", t.dtype(), T::DTYPE))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_arity(op, xs.len())?;
    let shapes = outs
        .iter()
        .map(|o| {
            o.shape
                .concrete()
                .ok_or_else(|| format!("output shape {} is not concrete", o.shape))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for s in &shapes {
        check_alloc::<T>(s)?;
    }
    let ys = match op {
        Op::Moments { axes, .. } => {
            let (mean, var) = norm::moments(&xs[0], axes, &shapes[0])?;
            vec![mean, var]
        }
        Op::FusedBatchNorm {
            epsilon,
            data_format,
            is_training,
        } => norm::fused_batch_norm(&xs, *epsilon, *data_format, *is_training)?,
        Op::FusedBatchNormGrad {
            epsilon,
            data_format,
            is_training,
        } => norm::fused_batch_norm_grad(&xs, *epsilon, *data_format, *is_training)?,
        _ => return Err(format!("{} has one output", op.name())),
    };
    if ys.len() != shapes.len()
        || ys
            .iter()
            .zip(&shapes)
            .any(|(y, s)| y.shape() != s.as_slice())
    {
        return Err(format!(
            "{} produced outputs of the wrong shapes",
            op.name()
        ));
    }
    Ok(ys.into_iter().map(|y| T::wrap(standard(y))).collect())
}

fn run<T: Elem>(op: &Op, ins: &[&Tensor], shape: &[usize]) -> Result<Tensor, String> {
    let xs = ins
        .iter()
        .map(|t| {
            T::view(t)
                .ok_or_else(|| format!("an input has dtype {}, expected {}", t.dtype(), T::DTYPE))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_arity(op, xs.len())?;
    check_alloc::<T>(shape)?;
    let y = kernel(op, &xs, shape)?;
    if y.shape() != shape {
        return Err(format!(
            "kernel produced shape {:?}, expected {shape:?}",
            y.shape()
        ));
    }
    Ok(T::wrap(standard(y)))
}

/// One op on views of its inputs; `out` is the output shape.
fn kernel<T: Elem>(op: &Op, xs: &[ArrayViewD<'_, T>], out: &[usize]) -> Result<ArrayD<T>, String> {
    use elementwise::{binary, unary};
    use Op::*;
    let (zero, one) = (T::zero(), T::one());
    Ok(match op {
        Placeholder { .. } | Variable { .. } | Assign | AssignAdd | AssignSub | NoOp => {
            return Err(format!(
                "{} is run by the session, not by a kernel",
                op.name()
            ))
        }
        Const(lit) => layout::constant(lit, out)?,
        Identity | StopGradient => xs[0].to_owned(),
        Add => binary(&xs[0], &xs[1], out, |a, b| a + b)?,
        Sub => binary(&xs[0], &xs[1], out, |a, b| a - b)?,
        Mul => binary(&xs[0], &xs[1], out, |a, b| a * b)?,
        Div => binary(&xs[0], &xs[1], out, |a, b| a / b)?,
        Maximum => binary(&xs[0], &xs[1], out, elementwise::maximum)?,
        GreaterEqual => binary(&xs[0], &xs[1], out, |a, b| if a >= b { one } else { zero })?,
        Equal => binary(&xs[0], &xs[1], out, |a, b| if a == b { one } else { zero })?,
        Neg => unary(&xs[0], |x| -x),
        Exp => unary(&xs[0], T::exp),
        Log => unary(&xs[0], T::ln),
        Square => unary(&xs[0], |x| x * x),
        Sqrt => unary(&xs[0], T::sqrt),
        Rsqrt => unary(&xs[0], |x| x.sqrt().recip()),
        Relu => unary(&xs[0], elementwise::relu),
        Sigmoid => unary(&xs[0], elementwise::sigmoid),
        Tanh => unary(&xs[0], T::tanh),
        Pow { exponent } => elementwise::pow(&xs[0], *exponent),
        ReluGrad => elementwise::relu_grad(&xs[0], &xs[1])?,
        MatMul {
            transpose_a,
            transpose_b,
        } => linalg::matmul(&xs[0], &xs[1], *transpose_a, *transpose_b, out)?,
        BiasAdd => linalg::bias_add(&xs[0], &xs[1], out)?,
        Sum { axes, .. } => reduce::sum(&xs[0], axes.as_deref(), out)?,
        Mean { axes, .. } => reduce::mean(&xs[0], axes.as_deref(), out)?,
        ReducedSize { axes } => reduce::reduced_size(&xs[0], axes.as_deref())?,
        Reshape { .. } | ReshapeLike | ExpandDims { .. } | Squeeze { .. } => {
            layout::reshape(&xs[0], out)?
        }
        Transpose { perm } => layout::transpose(&xs[0], perm.as_deref())?,
        ArgMax { axis } => reduce::argmax(&xs[0], *axis, out)?,
        Select => norm::select(&xs[0], &xs[1], &xs[2], out)?,
        IdentityN | CustomGradient { .. } | OnceDifferentiable { .. } => {
            return Err(format!(
                "{} passes its inputs through; eval handles it",
                op.name()
            ))
        }
        AssignMovingAverage { .. } | BatchNorm(_) | Call(_) => {
            return Err(format!("{} is a layer the compiler expands", op.name()))
        }
        Moments { .. } | FusedBatchNorm { .. } | FusedBatchNormGrad { .. } => {
            return Err(format!(
                "{} has several outputs; eval handles it",
                op.name()
            ))
        }
        BatchNormalization {
            variance_epsilon,
            offset,
            scale,
        } => norm::batch_normalization(xs, *variance_epsilon, *offset, *scale, out)?,
        Softmax => reduce::softmax(&xs[0])?,
        SoftmaxCrossEntropyWithLogits => reduce::softmax_cross_entropy(&xs[0], &xs[1], out)?,
        AddN => elementwise::add_n(xs)?,
        ZerosLike => ArrayD::zeros(xs[0].raw_dim()),
        OnesLike => ArrayD::ones(xs[0].raw_dim()),
        Fill { .. } => layout::fill(&xs[0], out)?,
        SumToLike => reduce::sum_to_like(&xs[0], out)?,
        BroadcastLike => layout::broadcast_to(&xs[0], out)?,
    })
}

/// Lets the kernels index their inputs without panicking.
fn check_arity(op: &Op, n: usize) -> Result<(), String> {
    match op.arity() {
        Arity::Exactly(k) if n != k => Err(format!("{} takes {k} inputs, got {n}", op.name())),
        Arity::AtLeast(k) if n < k => {
            Err(format!("{} takes at least {k} inputs, got {n}", op.name()))
        }
        _ => Ok(()),
    }
}

/// Refuses output shapes ndarray or `Vec` would panic on (more than
/// `isize::MAX` bytes, counting zero-length axes as 1 as ndarray does).
fn check_alloc<T>(shape: &[usize]) -> Result<(), String> {
    let limit = isize::MAX as usize / std::mem::size_of::<T>().max(1);
    shape
        .iter()
        .try_fold(1usize, |n, &d| {
            n.checked_mul(d.max(1)).filter(|&n| n <= limit)
        })
        .map(|_| ())
        .ok_or_else(|| format!("output shape {shape:?} is too large"))
}

/// The array itself if it is in row-major layout, else a row-major copy.
fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Reshapes in row-major order.
fn reshape_owned<T: Clone>(a: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    let from = a.shape().to_vec();
    standard(a)
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| format!("cannot reshape {from:?} to {shape:?}: {e}"))
}

/// A view of `a` broadcast to `shape` (NumPy rules).
fn broadcast_view<'a, T>(
    a: &'a ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayViewD<'a, T>, String> {
    a.broadcast(IxDyn(shape))
        .ok_or_else(|| format!("cannot broadcast {:?} to {shape:?}", a.shape()))
}
