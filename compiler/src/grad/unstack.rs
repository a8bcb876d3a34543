//! The gradient of `Unstack` (`runtime/src/op/unstack.rs`), TensorFlow's
//! `_UnpackGrad`: the parts' gradients joined by Stack along the axis
//! (Split's rule, `split.rs`).

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Rule(super::split::rule);
