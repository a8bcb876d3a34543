//! The gradient of `SplitV` (`runtime/src/op/split_v.rs`): Split's rule
//! (`split.rs`), the parts' gradients joined by Concat.

use super::Gradient;

pub(super) const GRADIENT: Gradient = Gradient::Rule(super::split::rule);
