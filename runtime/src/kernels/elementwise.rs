//! Elementwise kernels: unary maps, broadcasting binary ops, ReluGrad, AddN.

use super::{broadcast_view, Elem};
use ndarray::{ArrayD, ArrayViewD, Zip};

pub(super) fn unary<T: Elem>(x: &ArrayViewD<'_, T>, f: impl Fn(T) -> T) -> ArrayD<T> {
    x.mapv(f)
}

/// `f` applied to `a` and `b` broadcast (NumPy rules) to `out`.
pub(super) fn binary<T: Elem>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    out: &[usize],
    f: impl Fn(T, T) -> T,
) -> Result<ArrayD<T>, String> {
    let a = broadcast_view(a, out)?;
    let b = broadcast_view(b, out)?;
    Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y)))
}

/// The larger of `a` and `b`; NaN if either is NaN (like `np.maximum`).
pub(super) fn maximum<T: Elem>(a: T, b: T) -> T {
    if a >= b || a.is_nan() {
        a
    } else {
        b
    }
}

/// max(x, 0), keeping NaN.
pub(super) fn relu<T: Elem>(x: T) -> T {
    if x > T::zero() || x.is_nan() {
        x
    } else {
        T::zero()
    }
}

/// 1 / (1 + exp(-x)), without overflow for large |x|.
pub(super) fn sigmoid<T: Elem>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// x ^ e; an integral exponent uses `powi`, so negative bases work for it.
pub(super) fn pow<T: Elem>(x: &ArrayViewD<'_, T>, e: f64) -> ArrayD<T> {
    if e.fract() == 0.0 && e.abs() <= f64::from(i32::MAX) {
        let n = e as i32;
        x.mapv(|v| v.powi(n))
    } else {
        let e = T::from_f64(e);
        x.mapv(|v| v.powf(e))
    }
}

/// Inputs (dy, x): dy where x > 0, else 0.
pub(super) fn relu_grad<T: Elem>(
    dy: &ArrayViewD<'_, T>,
    x: &ArrayViewD<'_, T>,
) -> Result<ArrayD<T>, String> {
    if dy.shape() != x.shape() {
        return Err(format!(
            "ReluGrad: dy {:?} and x {:?} differ in shape",
            dy.shape(),
            x.shape()
        ));
    }
    Ok(Zip::from(dy)
        .and(x)
        .map_collect(|&g, &v| if v > T::zero() { g } else { T::zero() }))
}

/// Elementwise sum of inputs of one shape.
pub(super) fn add_n<T: Elem>(xs: &[ArrayViewD<'_, T>]) -> Result<ArrayD<T>, String> {
    let Some((first, rest)) = xs.split_first() else {
        return Err("AddN takes at least 1 input, got 0".into());
    };
    let mut acc = first.to_owned();
    for x in rest {
        if x.shape() != acc.shape() {
            return Err(format!(
                "AddN: inputs of shapes {:?} and {:?}",
                acc.shape(),
                x.shape()
            ));
        }
        Zip::from(&mut acc).and(x).for_each(|a, &b| *a = *a + b);
    }
    Ok(acc)
}
