//! `Greater` (`runtime/src/op/greater.rs`) is not differentiable, as in TensorFlow:
//! its output is a Bool or an index, constant almost everywhere.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Zero;
