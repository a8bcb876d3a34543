//! `SplitV`: TensorFlow's `tf.split` with `size_splits`: the input cut along
//! `axis` into parts of those sizes, one of which may be -1 (the rest). Its
//! rules are Split's (`split.rs`).

pub(super) use super::split::{attrs_text, infer, run, ARITY, TAKES};
