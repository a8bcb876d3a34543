//! `StatelessRandomUniform` (`runtime/src/op/stateless_random_uniform.rs`)
//! is not differentiable, as in TensorFlow: its values do not depend on
//! its first input's values, and its seed is an integer.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Zero;
