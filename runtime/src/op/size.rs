//! `Size`: TensorFlow's `tf.size`: the input's element count as an I32
//! scalar. Its rules are Shape's (`shape_of.rs`).

pub(super) use super::shape_of::{attrs_text, infer, run, ARITY, TAKES};
