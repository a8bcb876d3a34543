//! gradc-fuzz: a fuzz harness for gradc that runs on stable Rust.
//!
//! - [`mutate`]: from the example graphs to inputs (numbers, op names,
//!   bytes; renamed, deleted, duplicated and rewired nodes, cycles, output
//!   indices, huge shapes, long names, recursive functions), seeded.
//! - [`exec`]: one input through parse, build, gradients, printing, the
//!   passes (and none), lowering, a saved and loaded program, runs, the
//!   gradient check and a train step, in process.
//! - [`campaign`]: inputs in worker processes with a deadline and a memory
//!   limit, classified as ok, clean error, panic, abort or hang (and, not
//!   crashes, internal errors and optimized/unoptimized mismatches);
//!   findings deduplicated and minimized.

pub mod campaign;
pub mod exec;
pub mod mutate;
