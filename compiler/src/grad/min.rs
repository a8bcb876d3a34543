//! The gradient of `Min` (`runtime/src/op/min.rs`): Max's rule, TensorFlow's `_MinGrad`.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Rule(super::max::rule);
