//! Threads for matrix products, convolutions, pooling and large elementwise work.
//!
//! A product splits its rows or columns over [`threads`] threads with
//! `rayon::join`; elementwise ops, Fused kernels, batch norm's passes,
//! variable updates and copies split in two ([`split_elements`]).
//! Handing half the rows to a sleeping thread costs a wake-up (tens of
//! microseconds on some machines), more than the products of a small train
//! step take, so loops that run many steps call [`with_threads`]: it runs
//! the loop on a thread of rayon's pool while the pool's other threads spin,
//! taking the halves the moment they are offered.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Pause instructions between two looks for work in `with_threads` (a
/// fraction of a microsecond in all).
const SPIN_PAUSES: usize = 8;

/// Threads matrix products may use (1 until [`set_threads`] says otherwise).
static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Lets matrix products split their rows over up to `n` threads (at least
/// 1): the calling one and workers of rayon's global pool, which this sizes
/// to `n` if nothing has started it yet. 1, the default, runs every product
/// on the calling thread. Results do not depend on `n`.
pub fn set_threads(n: usize) {
    let n = n.max(1);
    if n > 1 {
        // Fails only if the pool already runs; products then use it as it is.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    THREADS.store(n, Ordering::Relaxed);
}

/// The thread count set by [`set_threads`].
pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Runs `f` with the threads of [`set_threads`] at hand: `f` runs on a
/// thread of rayon's global pool while up to `threads() - 1` others (no more
/// than [`cores`]` - 1`) wait for work in a spin loop (keeping their cores
/// busy until `f` returns). With one
/// thread, just `f()`. Results are the same either way.
pub fn with_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let n = threads();
    if n <= 1 {
        return f();
    }
    /// Tells the spinning threads to stop when `f` returns or unwinds
    /// (otherwise a panic in `f` would leave the scope waiting for them).
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let done = AtomicBool::new(false);
    // Never more spinning threads than cores besides `f`'s: oversubscribed,
    // spinners take the cores from the threads with work (20 steps of a small
    // net on 2 cores take seconds with 512 threads). The others sleep until
    // rayon hands them work.
    let spinners = n.min(rayon::current_num_threads()).min(cores());
    rayon::scope(|s| {
        for _ in 1..spinners {
            s.spawn(|_| {
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        // Looking for work touches rayon's shared queues;
                        // pausing in between leaves the other thread alone.
                        for _ in 0..SPIN_PAUSES {
                            std::hint::spin_loop();
                        }
                    }
                }
            });
        }
        let _done = Done(&done);
        f()
    })
}

/// The cores this process may run on (`std::thread::available_parallelism`, 1 if unknown).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Elementwise kernels split their output between threads from this many
/// elements on (below it, handing half over costs more than it saves).
pub(crate) const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Runs `f(offset, part)` over `y` cut in two at a multiple of `align` (the
/// second part starting at `offset`), on two threads when [`threads`] allows
/// and `y` is large; else `f(0, y)`. Elementwise kernels use it: each element
/// is computed as it would be on one thread.
pub(crate) fn split_elements<T: Send>(
    y: &mut [T],
    align: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let align = align.max(1);
    let mid = (y.len() / 2).next_multiple_of(align).min(y.len());
    if threads() < 2 || y.len() < PARALLEL_MIN_ELEMENTS || mid == 0 || mid == y.len() {
        f(0, y);
        return;
    }
    let (a, b) = y.split_at_mut(mid);
    rayon::join(|| f(0, a), || f(mid, b));
}

/// Runs `f(index, chunk)` over `y` cut into chunks of `chunk` elements (the
/// last may be shorter), the chunks shared between up to [`threads`]
/// threads in contiguous runs. Which thread takes a chunk never changes what
/// `f` computes for it, so results do not depend on the thread count.
pub(crate) fn for_chunks<T: Send>(y: &mut [T], chunk: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    fn go<T: Send>(
        threads: usize,
        first: usize,
        y: &mut [T],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let chunks = y.len().div_ceil(chunk);
        if threads <= 1 || chunks <= 1 {
            for (k, part) in y.chunks_mut(chunk).enumerate() {
                f(first + k, part);
            }
            return;
        }
        let left_threads = threads / 2;
        let left = (chunks * left_threads).div_ceil(threads);
        let (l, r) = y.split_at_mut(left * chunk);
        rayon::join(
            || go(left_threads, first, l, chunk, f),
            || go(threads - left_threads, first + left, r, chunk, f),
        );
    }
    go(threads(), 0, y, chunk.max(1), f);
}

/// For unit tests that change the process-wide thread count: runs `f` with
/// `n` threads, one such test at a time, and puts 1 back even if `f` panics.
#[cfg(test)]
pub(crate) fn with_test_threads<R>(n: usize, f: impl FnOnce() -> R) -> R {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            set_threads(1);
        }
    }
    let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _restore = Restore;
    set_threads(n);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_with_threads_reaches_the_caller() {
        let caught = with_test_threads(2, || {
            std::panic::catch_unwind(|| with_threads(|| panic!("inside")))
        });
        assert!(caught.is_err(), "the panic propagates instead of hanging");
    }
}
