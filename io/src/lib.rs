//! gradc's input and output around training: data sets and mini-batches,
//! checkpoints, metrics and plots. Depends on the runtime for `Tensor`, never
//! on the compiler.

pub mod checkpoint;
pub mod dataset;
pub mod metrics;
pub mod plot;
