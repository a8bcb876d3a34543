//! `L2Loss`: half the sum of the squares of a tensor's elements, a scalar
//! (TensorFlow's `tf.nn.l2_loss`, the usual weight-decay term). Its gradient
//! is `compiler/src/grad/l2_loss.rs`.

use super::{Arity, Op};
use crate::dtype::Scalar;
use crate::{DType, Shape, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

/// No attributes.
pub(super) fn attrs_text(_: &Op) -> String {
    String::new()
}

/// Any input; the output is a scalar of its dtype.
pub(super) fn infer(_: &Op, dt: DType, _: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: dt,
        shape: Shape::scalar(),
    }])
}

/// sum(x²) / 2, summed in the input's row-major order.
pub(super) fn kernel<'a, T: Scalar>(
    _: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let x = input(0)?;
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
        let input = |_| Ok(x.view());
        let mut y = arr0(f64::NAN).into_dyn();
        kernel(&Op::L2Loss, &input, &mut y).unwrap();
        assert_eq!(y[[]], (1.0 + 4.0 + 9.0 + 0.25) / 2.0);
        let empty = ArrayD::<f32>::zeros(IxDyn(&[0, 3]));
        let input = |_| Ok(empty.view());
        let mut y = arr0(f32::NAN).into_dyn();
        kernel(&Op::L2Loss, &input, &mut y).unwrap();
        assert_eq!(y[[]], 0.0);
        let input = |_| Ok(x.view());
        let mut wrong = ArrayD::<f64>::zeros(IxDyn(&[1]));
        let e = kernel(&Op::L2Loss, &input, &mut wrong).unwrap_err();
        assert!(e.contains("scalar"), "{e}");
    }
}
