//! MatMul and BiasAdd.

use super::{elementwise, Elem};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView2, ArrayViewD, Ix2, Zip};

/// Matrix product of the last two axes, written into `out`; leading axes are
/// batch axes that must be equal in both inputs. Each product goes through
/// ndarray's matrixmultiply backend straight into the output, with transposes
/// as strided views (no copy).
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
    if r == 2 {
        let a2 = a
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|e| e.to_string())?;
        let b2 = b
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|e| e.to_string())?;
        let mut c = out
            .view_mut()
            .into_dimensionality::<Ix2>()
            .map_err(|e| e.to_string())?;
        general_mat_mul(
            T::one(),
            &orient(a2, transpose_a),
            &orient(b2, transpose_b),
            T::zero(),
            &mut c,
        );
        return Ok(());
    }
    let batch: usize = batch_dims.iter().product();
    let a3 = a
        .to_shape((batch, a_mat[0], a_mat[1]))
        .map_err(|e| e.to_string())?;
    let b3 = b
        .to_shape((batch, b_mat[0], b_mat[1]))
        .map_err(|e| e.to_string())?;
    let mut c3 = out
        .view_mut()
        .into_shape_with_order((batch, m, n))
        .map_err(|e| e.to_string())?;
    Zip::from(c3.outer_iter_mut())
        .and(a3.outer_iter())
        .and(b3.outer_iter())
        .for_each(|mut ci, ai, bi| {
            general_mat_mul(
                T::one(),
                &orient(ai, transpose_a),
                &orient(bi, transpose_b),
                T::zero(),
                &mut ci,
            );
        });
    Ok(())
}

/// The matrix, or its transpose as a strided view.
fn orient<T>(x: ArrayView2<'_, T>, transpose: bool) -> ArrayView2<'_, T> {
    if transpose {
        x.reversed_axes()
    } else {
        x
    }
}

/// x + b, with b of rank 1 added along the last axis of x.
pub(super) fn bias_add<T: Elem>(
    x: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    if b.ndim() != 1 || x.shape().last() != b.shape().first() {
        return Err(format!(
            "BiasAdd: bias {:?} does not match the last axis of {:?}",
            b.shape(),
            x.shape()
        ));
    }
    super::same_shape("BiasAdd's input", x.shape(), out.shape())?;
    elementwise::binary(x, b, out, elementwise::add)
}

/// `bias_add` in place: `io` holds x.
pub(super) fn bias_add_in_place<T: Elem>(
    io: &mut ArrayD<T>,
    b: &ArrayViewD<'_, T>,
) -> Result<(), String> {
    if b.ndim() != 1 || io.shape().last() != b.shape().first() {
        return Err(format!(
            "BiasAdd: bias {:?} does not match the last axis of {:?}",
            b.shape(),
            io.shape()
        ));
    }
    elementwise::zip(io, 0, b, elementwise::add)
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
    use crate::op::Activation;
    matmul(a, w, transpose_a, transpose_b, out)?;
    if bias.ndim() != 1 || out.shape().last() != bias.shape().first() {
        return Err(format!(
            "Dense: bias {:?} does not match the output {:?}",
            bias.shape(),
            out.shape()
        ));
    }
    let b = bias
        .broadcast(out.raw_dim())
        .ok_or("Dense: the bias does not broadcast")?;
    match activation {
        Activation::Linear => ndarray::Zip::from(&mut *out)
            .and(&b)
            .for_each(|y, &b| *y = *y + b),
        Activation::Relu => ndarray::Zip::from(&mut *out)
            .and(&b)
            .for_each(|y, &b| *y = elementwise::relu(*y + b)),
        Activation::Sigmoid => ndarray::Zip::from(&mut *out)
            .and(&b)
            .for_each(|y, &b| *y = elementwise::sigmoid(*y + b)),
        Activation::Tanh => ndarray::Zip::from(&mut *out)
            .and(&b)
            .for_each(|y, &b| *y = (*y + b).tanh()),
    }
    Ok(())
}
