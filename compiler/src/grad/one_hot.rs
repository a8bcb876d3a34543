//! `OneHot` (`runtime/src/op/one_hot.rs`) is not differentiable, as in
//! TensorFlow: its input is an integer.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Zero;
