//! `Cumprod`: TensorFlow's `tf.math.cumprod`: running products along `axis`,
//! `exclusive` and `reverse` as Cumsum's, whose rules it shares
//! (`cumsum.rs`). Its gradient is TensorFlow's `_CumprodGrad`
//! (`compiler/src/grad/cumprod.rs`).

pub(super) use super::cumsum::{attrs_text, infer, run, ARITY, TAKES};
