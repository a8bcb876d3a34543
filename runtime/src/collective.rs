//! Collectives between the processes of a data-parallel run. The runtime
//! says what it needs ([`Collective`]); whoever starts the processes
//! provides it (the CLI's MPI communicator, with the `mpi` feature) with
//! [`set_collective`]. Without one, a process is a run of one rank.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The operations the `AllReduceMean` kernel and a data-parallel training
/// loop use. Every rank must call them in the same order.
pub trait Collective: Send + Sync {
    /// This process's rank, 0 to `ranks() - 1`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn ranks(&self) -> usize;
    /// `buf` summed elementwise over every rank, in place; every rank gets
    /// the same sums.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), String>;
    /// As [`Collective::all_reduce_sum_f32`], for f64.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), String>;
    /// Whether every rank passed the same `value` (a hash of what it runs).
    fn agree(&self, value: u64) -> Result<bool, String>;
}

static COLLECTIVE: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// Makes `c` the process's collective; fails if one was set already.
pub fn set_collective(c: Box<dyn Collective>) -> Result<(), String> {
    COLLECTIVE
        .set(c)
        .map_err(|_| "the process's collective is set already".to_string())
}

/// The process's collective, if one was set.
pub fn collective() -> Option<&'static dyn Collective> {
    COLLECTIVE.get().map(|c| &**c)
}

/// This process's rank and the number of ranks: (0, 1) without a collective.
pub fn rank_and_ranks() -> (usize, usize) {
    collective().map_or((0, 1), |c| (c.rank(), c.ranks()))
}

/// What the exchanges of `AllReduceMean` cost this process: how many ran,
/// their time in all, and the bytes each rank contributed.
static EXCHANGES: AtomicU64 = AtomicU64::new(0);
static EXCHANGE_NANOS: AtomicU64 = AtomicU64::new(0);
static EXCHANGE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts one exchange of `bytes` that took `time` (the kernel calls it).
pub(crate) fn record_exchange(bytes: usize, time: Duration) {
    EXCHANGES.fetch_add(1, Ordering::Relaxed);
    EXCHANGE_NANOS.fetch_add(
        time.as_nanos().try_into().unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    EXCHANGE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// The exchanges since the last [`reset_exchanges`]: (count, time, bytes).
pub fn exchanges() -> (u64, Duration, u64) {
    (
        EXCHANGES.load(Ordering::Relaxed),
        Duration::from_nanos(EXCHANGE_NANOS.load(Ordering::Relaxed)),
        EXCHANGE_BYTES.load(Ordering::Relaxed),
    )
}

/// Starts counting the exchanges from zero.
pub fn reset_exchanges() {
    for c in [&EXCHANGES, &EXCHANGE_NANOS, &EXCHANGE_BYTES] {
        c.store(0, Ordering::Relaxed);
    }
}
