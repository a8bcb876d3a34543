//! MatMul and BiasAdd.

use super::{elementwise, Elem};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array3, ArrayD, ArrayViewD, IxDyn, Zip};

/// Matrix product of the last two axes; leading axes are batch axes that must
/// be equal in both inputs. Each product goes through ndarray's matrixmultiply
/// backend, with transposes as strided views (no copy).
pub(super) fn matmul<T: Elem>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    transpose_a: bool,
    transpose_b: bool,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    let r = a.ndim();
    let bad = || {
        format!(
            "MatMul cannot multiply {:?} by {:?} (transpose_a: {transpose_a}, \
             transpose_b: {transpose_b}) into {out:?}",
            a.shape(),
            b.shape()
        )
    };
    if r < 2 || b.ndim() != r || out.len() != r {
        return Err(bad());
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
    if b_batch != batch_dims || out[..r - 2] != *batch_dims || k != k2 || out[r - 2..] != [m, n] {
        return Err(bad());
    }
    let batch: usize = batch_dims.iter().product();
    let a3 = a
        .to_shape((batch, a_mat[0], a_mat[1]))
        .map_err(|e| e.to_string())?;
    let b3 = b
        .to_shape((batch, b_mat[0], b_mat[1]))
        .map_err(|e| e.to_string())?;
    let mut c = Array3::<T>::zeros((batch, m, n));
    Zip::from(c.outer_iter_mut())
        .and(a3.outer_iter())
        .and(b3.outer_iter())
        .for_each(|mut ci, ai, bi| {
            let ai = if transpose_a { ai.reversed_axes() } else { ai };
            let bi = if transpose_b { bi.reversed_axes() } else { bi };
            general_mat_mul(T::one(), &ai, &bi, T::zero(), &mut ci);
        });
    c.into_dyn()
        .into_shape_with_order(IxDyn(out))
        .map_err(|e| e.to_string())
}

/// x + b, with b of rank 1 added along the last axis of x.
pub(super) fn bias_add<T: Elem>(
    x: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    out: &[usize],
) -> Result<ArrayD<T>, String> {
    if b.ndim() != 1 || x.shape().last() != b.shape().first() {
        return Err(format!(
            "BiasAdd: bias {:?} does not match the last axis of {:?}",
            b.shape(),
            x.shape()
        ));
    }
    elementwise::binary(x, b, out, |x, b| x + b)
}
