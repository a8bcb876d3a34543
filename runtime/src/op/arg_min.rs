//! `ArgMin`: TensorFlow's `tf.math.argmin`: the index of the smallest element
//! along `axis` (the first of equal ones), as `output_type`. Not
//! differentiable. Its rules are ArgMax's (`arg_max.rs`).

pub(super) use super::arg_max::{attrs_text, infer, run, ARITY, TAKES};
