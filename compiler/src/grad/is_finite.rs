//! `IsFinite` (`runtime/src/op/is_finite.rs`) is not differentiable, as in TensorFlow:
//! its output is a Bool or an integer.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Zero;
