//! Elementwise kernels: unary maps, broadcasting binary ops, ReluGrad, AddN,
//! and the in-place updates of AssignAdd and AssignSub.

use super::{broadcast_view, same_shape, Elem};
use ndarray::{ArrayD, ArrayViewD, Zip};

/// `f` applied to each element of `x` (of the output's shape).
pub(super) fn unary<T: Elem>(
    x: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
    f: impl Fn(T) -> T,
) -> Result<(), String> {
    same_shape("the input", x.shape(), out.shape())?;
    Zip::from(out).and(x).for_each(|y, &v| *y = f(v));
    Ok(())
}

/// `f` applied to `a` and `b` broadcast (NumPy rules) to the output's shape.
pub(super) fn binary<T: Elem>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
    f: impl Fn(T, T) -> T,
) -> Result<(), String> {
    let shape = out.raw_dim();
    let a = broadcast_view(a, &shape)?;
    let b = broadcast_view(b, &shape)?;
    Zip::from(out)
        .and(&a)
        .and(&b)
        .for_each(|y, &u, &v| *y = f(u, v));
    Ok(())
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
pub(super) fn pow<T: Elem>(
    x: &ArrayViewD<'_, T>,
    e: f64,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    unary(x, out, |v| pow_scalar(v, e))
}

/// One element of `pow`.
pub(super) fn pow_scalar<T: Elem>(v: T, e: f64) -> T {
    if e.fract() == 0.0 && e.abs() <= f64::from(i32::MAX) {
        v.powi(e as i32)
    } else {
        v.powf(T::from_f64(e))
    }
}

/// Inputs (dy, x): dy where x > 0, else 0.
pub(super) fn relu_grad<T: Elem>(
    dy: &ArrayViewD<'_, T>,
    x: &ArrayViewD<'_, T>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    if dy.shape() != x.shape() {
        return Err(format!(
            "ReluGrad: dy {:?} and x {:?} differ in shape",
            dy.shape(),
            x.shape()
        ));
    }
    same_shape("ReluGrad's x", x.shape(), out.shape())?;
    Zip::from(out)
        .and(dy)
        .and(x)
        .for_each(|y, &g, &v| *y = if v > T::zero() { g } else { T::zero() });
    Ok(())
}

/// Elementwise sum of `n` inputs of one shape, in input order.
pub(super) fn add_n<'a, T: Elem>(
    n: usize,
    x: impl Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    if n == 0 {
        return Err("AddN takes at least 1 input, got 0".into());
    }
    let first = x(0)?;
    same_shape("AddN's first input", first.shape(), out.shape())?;
    out.assign(&first);
    for k in 1..n {
        let xk = x(k)?;
        if xk.shape() != out.shape() {
            return Err(format!(
                "AddN: inputs of shapes {:?} and {:?}",
                out.shape(),
                xk.shape()
            ));
        }
        Zip::from(&mut *out).and(&xk).for_each(|a, &b| *a = *a + b);
    }
    Ok(())
}

/// `dst += delta`, or `dst -= delta` when `subtract`; the shapes must be equal.
pub(super) fn accumulate<T: Elem>(
    dst: &mut ArrayD<T>,
    delta: &ArrayD<T>,
    subtract: bool,
) -> Result<(), String> {
    if dst.shape() != delta.shape() {
        return Err(format!(
            "cannot update a variable of shape {:?} with a value of shape {:?}",
            dst.shape(),
            delta.shape()
        ));
    }
    if subtract {
        Zip::from(dst).and(delta).for_each(|a, &b| *a = *a - b);
    } else {
        Zip::from(dst).and(delta).for_each(|a, &b| *a = *a + b);
    }
    Ok(())
}
