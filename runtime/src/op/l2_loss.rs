//! `L2Loss`: half the sum of the squares of a tensor's elements, a scalar
//! (TensorFlow's `tf.nn.l2_loss`, the usual weight-decay term).
//! Its gradient rule is `compiler/src/grad/nn.rs::l2_loss`.

use crate::dtype::Scalar;
use crate::{Shape, TensorType};
use ndarray::{ArrayD, ArrayViewD};

/// Any input; the output is a scalar of its dtype.
pub(super) fn infer(x: &TensorType) -> Vec<TensorType> {
    vec![TensorType {
        dtype: x.dtype,
        shape: Shape::scalar(),
    }]
}

/// sum(x²) / 2, summed in the input's row-major order.
pub(crate) fn kernel<T: Scalar>(x: &ArrayViewD<'_, T>, out: &mut ArrayD<T>) -> Result<(), String> {
    let shape = out.shape().to_vec();
    let Some(y) = out.first_mut().filter(|_| shape.is_empty()) else {
        return Err(format!(
            "L2Loss writes a scalar, got a buffer of shape {shape:?}"
        ));
    };
    let sum = x.iter().fold(T::zero(), |s, &v| s + v * v);
    *y = sum / T::from_f64(2.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr0, ArrayD, IxDyn};

    #[test]
    fn half_the_sum_of_squares() {
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f64, -2.0, 3.0, 0.5]).unwrap();
        let mut y = arr0(f64::NAN).into_dyn();
        kernel(&x.view(), &mut y).unwrap();
        assert_eq!(y[[]], (1.0 + 4.0 + 9.0 + 0.25) / 2.0);
        let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 3]));
        let mut y = arr0(f32::NAN).into_dyn();
        kernel(&empty.view(), &mut y).unwrap();
        assert_eq!(y[[]], 0.0);
        let mut wrong = ArrayD::<f64>::zeros(IxDyn(&[1]));
        assert!(kernel(&x.view(), &mut wrong)
            .unwrap_err()
            .contains("scalar"));
    }
}
