//! `All`: TensorFlow's `tf.reduce_all`: whether every element of a Bool
//! tensor over `axes` (all when absent) is true. Its rules are Any's
//! (`any.rs`). No gradient.

pub(super) use super::any::{attrs_text, infer, run, ARITY, TAKES};
