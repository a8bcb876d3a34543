//! gradc runtime: runs compiled gradc programs on ndarray.
//!
//! It does not depend on the compiler: a program saved with `gradc compile`
//! loads and runs with this crate alone.

pub mod collective;
pub mod dtype;
pub mod error;
pub mod init;
pub mod io;
pub mod kernels;
pub mod memory;
pub mod op;
pub mod parallel;
mod plan;
pub mod program;
pub mod session;
pub mod shape;
pub mod tensor;

pub use dtype::{DType, TensorType};
pub use error::RunError;
pub use init::InitError;
pub use kernels::KernelError;
pub use memory::{memory_limit, TooLarge};
pub use op::{Arity, Initializer, Literal, Op};
pub use parallel::{set_threads, threads, with_threads};
pub use plan::{plan_memory, PlanMemory};
pub use program::{Instr, InvalidProgram, NamedOutput, Program, ProgramError, ValueRef};
pub use session::{FeedId, InstrProfile, Session};
pub use shape::{Dim, Shape};
pub use tensor::{Tensor, TensorError};
