//! MatMul and BiasAdd.

use super::gemm::{self, Operand};
use super::{elementwise, Elem};
use crate::op::{DataFormat, Map1, Map2};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

/// Matrix product of the last two axes, written into `out`; leading axes are
/// batch axes that must be equal in both inputs. Each product goes through
/// gradc's GEMM (`gemm.rs`) straight into the output, with transposes read
/// as strides (no copy).
pub(super) fn matmul<T: Elem>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    transpose_a: bool,
    transpose_b: bool,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let r = a.ndim();
    let bad = |out: &[usize]| {
        format!(
            "MatMul cannot multiply {:?} by {:?} (transpose_a: {transpose_a}, \
             transpose_b: {transpose_b}) into {out:?}",
            a.shape(),
            b.shape()
        )
    };
    if r < 2 || b.ndim() != r || out.ndim() != r {
        return Err(bad(out.shape()));
    }
    let (batch_dims, a_mat) = a.shape().split_at(r - 2);
    let (b_batch, b_mat) = b.shape().split_at(r - 2);
    let (m, k) = if transpose_a {
        (a_mat[1], a_mat[0])
    } else {
        (a_mat[0], a_mat[1])
    };
    let (k2, n) = if transpose_b {
        (b_mat[1], b_mat[0])
    } else {
        (b_mat[0], b_mat[1])
    };
    let o = out.shape();
    if b_batch != batch_dims || o[..r - 2] != *batch_dims || k != k2 || o[r - 2..] != [m, n] {
        return Err(bad(o));
    }
    // Tensors are row-major; a view that is not (none the session makes) is
    // copied once into one that is.
    let a = a.as_standard_layout();
    let b = b.as_standard_layout();
    let (Some(a), Some(b)) = (a.as_slice(), b.as_slice()) else {
        return Err("MatMul: an input is not contiguous".into());
    };
    let c = out
        .as_slice_mut()
        .ok_or("MatMul: the output is not contiguous")?;
    let (a_len, b_len, c_len) = (a_mat[0] * a_mat[1], b_mat[0] * b_mat[1], m * n);
    let batch: usize = batch_dims.iter().product();
    for i in 0..batch {
        let a_i = &a[i * a_len..][..a_len];
        let b_i = &b[i * b_len..][..b_len];
        gemm::gemm(
            matrix(a_i, a_mat, transpose_a)?,
            matrix(b_i, b_mat, transpose_b)?,
            &mut c[i * c_len..][..c_len],
        )?;
    }
    Ok(())
}

/// The row-major `shape[0]`×`shape[1]` matrix in `data`, or its transpose.
fn matrix<'a, T: Elem>(
    data: &'a [T],
    shape: &[usize],
    transpose: bool,
) -> Result<Operand<'a, T>, String> {
    let m = Operand::new(data, shape[0], shape[1], shape[1], 1)
        .ok_or_else(|| format!("MatMul: a {shape:?} matrix does not fit its buffer"))?;
    Ok(if transpose { m.t() } else { m })
}

/// The bias `b` as a view that broadcasts along `x`'s channel axis (see
/// `DataFormat::channel_axis`): `b` itself for the last axis, else [C, 1, …, 1].
fn channel_bias<'a, T: Elem>(
    x: &[usize],
    b: &ArrayViewD<'a, T>,
    data_format: DataFormat,
) -> Result<ArrayViewD<'a, T>, String> {
    let axis = data_format.channel_axis(x.len());
    if b.ndim() != 1 || x.is_empty() || x.get(axis) != b.shape().first() {
        return Err(format!(
            "BiasAdd: bias {:?} does not match the channels (axis {axis}, {data_format:?}) of {x:?}",
            b.shape(),
        ));
    }
    let mut shape = vec![1; x.len() - axis];
    shape[0] = b.len();
    b.clone()
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| format!("BiasAdd: bias {:?}: {e}", b.shape()))
}

/// x + b, with b of rank 1 added along the channel axis of x.
pub(super) fn bias_add<T: Elem>(
    x: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    data_format: DataFormat,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let b = channel_bias(x.shape(), b, data_format)?;
    super::same_shape("BiasAdd's input", x.shape(), out.shape())?;
    elementwise::binary(x, &b, out, elementwise::add)
}

/// `bias_add` in place: `io` holds x.
pub(super) fn bias_add_in_place<T: Elem>(
    io: &mut ArrayD<T>,
    b: &ArrayViewD<'_, T>,
    data_format: DataFormat,
) -> Result<(), String> {
    let b = channel_bias(io.shape(), b, data_format)?;
    elementwise::zip(io, 0, &b, elementwise::add)
}

/// `activation(a·w + bias)`: the product into `out`, then bias and activation in one pass.
pub(super) fn dense<T: Elem>(
    a: &ArrayViewD<'_, T>,
    w: &ArrayViewD<'_, T>,
    bias: &ArrayViewD<'_, T>,
    transpose_a: bool,
    transpose_b: bool,
    activation: crate::op::Activation,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    matmul(a, w, transpose_a, transpose_b, out)?;
    if bias.ndim() != 1 || out.shape().last() != bias.shape().first() {
        return Err(format!(
            "Dense: bias {:?} does not match the output {:?}",
            bias.shape(),
            out.shape()
        ));
    }
    let (Some(bias), Some(y)) = (bias.as_slice(), out.as_slice_mut()) else {
        return Err("Dense: the bias or the output is not contiguous".into());
    };
    bias_activation_rows(y, bias, activation);
    Ok(())
}

/// `y = activation(y + bias)` over the rows of `y` (`bias.len()` values
/// each), as BiasAdd and then the activation compute it: the epilogue of
/// Dense and of the fused convolution.
pub(crate) fn bias_activation_rows<T: Elem>(
    y: &mut [T],
    bias: &[T],
    activation: crate::op::Activation,
) {
    match activation.unary() {
        None => BiasRows(y, bias).call(|v| v),
        Some(f) => f.with(BiasRows(y, bias)),
    }
}

/// `y = f(y + bias)` row after row, with `f` an activation's function.
struct BiasRows<'a, T>(&'a mut [T], &'a [T]);

impl<T: Elem> Map1<T> for BiasRows<'_, T> {
    type Out = ();
    fn call(self, f: impl Fn(T) -> T + Copy + Send + Sync) {
        let BiasRows(y, bias) = self;
        y.chunks_exact_mut(bias.len().max(1))
            .for_each(|r| bias_row(r, bias, f));
    }
}

/// `y = f(y + bias)` over one row.
#[inline(always)]
fn bias_row<T: Elem>(y: &mut [T], bias: &[T], f: impl Fn(T) -> T) {
    for (y, &b) in y.iter_mut().zip(bias) {
        *y = f(*y + b);
    }
}

/// ActivationBiasGrad: `dz = activation'(y)·dy` in the activation gradient
/// rule's order of operations, and `db` its sum over every axis but the
/// last, row after row from zero (as Sum over the leading axes adds).
pub(super) fn activation_bias_grad<T: Elem>(
    dy: &ArrayViewD<'_, T>,
    y: &ArrayViewD<'_, T>,
    activation: crate::op::Activation,
    dz: &mut ArrayD<T>,
    db: &mut ArrayD<T>,
) -> Result<(), String> {
    if dy.shape() != y.shape() || dz.shape() != y.shape() {
        return Err(format!(
            "ActivationBiasGrad: dy {:?}, y {:?} and dz {:?} differ",
            dy.shape(),
            y.shape(),
            dz.shape()
        ));
    }
    let n = y.shape().last().copied().unwrap_or(0);
    if db.shape() != [n] {
        return Err(format!(
            "ActivationBiasGrad: db has shape {:?}, expected [{n}]",
            db.shape()
        ));
    }
    let (Some(dy), Some(y), Some(dz), Some(db)) = (
        dy.as_slice(),
        y.as_slice(),
        dz.as_slice_mut(),
        db.as_slice_mut(),
    ) else {
        return Err("ActivationBiasGrad: an input or output is not contiguous".into());
    };
    db.fill(T::zero());
    let rows = GradRows([dy, y], dz, db, n.max(1));
    match activation.unary() {
        None => rows.call(|dy, _| dy),
        Some(f) => f.with_derivative_of_y(rows),
    }
    Ok(())
}

/// ActivationBiasGrad with dz written over input `k` (dy for 0, y for 1),
/// which `io` holds; `other` is the other input. The same arithmetic in the
/// same order as [`activation_bias_grad`].
pub(super) fn activation_bias_grad_in_place<T: Elem>(
    io: &mut ArrayD<T>,
    k: usize,
    other: &ArrayViewD<'_, T>,
    activation: crate::op::Activation,
    db: &mut ArrayD<T>,
) -> Result<(), String> {
    if other.shape() != io.shape() {
        return Err(format!(
            "ActivationBiasGrad: dy and y of shapes {:?} and {:?}",
            io.shape(),
            other.shape()
        ));
    }
    let n = io.shape().last().copied().unwrap_or(0);
    if db.shape() != [n] {
        return Err(format!(
            "ActivationBiasGrad: db has shape {:?}, expected [{n}]",
            db.shape()
        ));
    }
    let (Some(io), Some(other), Some(db)) =
        (io.as_slice_mut(), other.as_slice(), db.as_slice_mut())
    else {
        return Err("ActivationBiasGrad: an input or output is not contiguous".into());
    };
    db.fill(T::zero());
    let rows = GradRowsInPlace(io, other, db, n.max(1), k);
    match activation.unary() {
        None => rows.call(|dy, _| dy),
        Some(f) => f.with_derivative_of_y(rows),
    }
    Ok(())
}

/// [`GradRows`] with dz over input `k` (`io`; `other` the other input).
struct GradRowsInPlace<'a, T>(&'a mut [T], &'a [T], &'a mut [T], usize, usize);

impl<T: Elem> Map2<T> for GradRowsInPlace<'_, T> {
    type Out = ();
    fn call(self, f: impl Fn(T, T) -> T + Copy + Send + Sync) {
        let GradRowsInPlace(io, other, db, n, k) = self;
        for (dz, o) in io.chunks_exact_mut(n).zip(other.chunks_exact(n)) {
            for ((dz, db), &o) in dz.iter_mut().zip(db.iter_mut()).zip(o) {
                let (dy, y) = if k == 0 { (*dz, o) } else { (o, *dz) };
                *dz = f(dy, y);
                *db = *db + *dz;
            }
        }
    }
}

/// `dz = f(dy, y)` element by element and `db += dz` row after row, over
/// rows of `n`, with `f` an activation's derivative.
struct GradRows<'a, T>([&'a [T]; 2], &'a mut [T], &'a mut [T], usize);

impl<T: Elem> Map2<T> for GradRows<'_, T> {
    type Out = ();
    fn call(self, f: impl Fn(T, T) -> T + Copy + Send + Sync) {
        let GradRows([dy, y], dz, db, n) = self;
        for (dz, (dy, y)) in dz
            .chunks_exact_mut(n)
            .zip(dy.chunks_exact(n).zip(y.chunks_exact(n)))
        {
            for (((dz, db), &dy), &y) in dz.iter_mut().zip(db.iter_mut()).zip(dy).zip(y) {
                *dz = f(dy, y);
                *db = *db + *dz;
            }
        }
    }
}
