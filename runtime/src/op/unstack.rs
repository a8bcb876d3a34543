//! `Unstack`: TensorFlow's `tf.unstack`: one output per index along `axis`,
//! each without that axis. Its rules are Split's (`split.rs`).

pub(super) use super::split::{attrs_text, infer, run, ARITY, TAKES};
