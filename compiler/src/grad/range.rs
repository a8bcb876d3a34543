//! `Range` (`runtime/src/op/range.rs`) is not differentiable, as in TensorFlow:
//! its output is a Bool or an integer.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Zero;
