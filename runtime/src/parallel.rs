//! Threads for matrix products, convolutions, pooling and large elementwise work.
//!
//! A product splits its rows or columns over [`threads`] threads with
//! `rayon::join`; elementwise ops, Fused kernels, batch norm's passes,
//! variable updates and copies split over up to as many, each part at least
//! 16K elements ([`split_elements`]).
//! Handing half the rows to a sleeping thread costs a wake-up (tens of
//! microseconds on some machines), more than the products of a small train
//! step take, so loops that run many steps call [`with_threads`]: it runs
//! the loop on a thread of rayon's pool while the pool's other threads spin,
//! taking the halves the moment they are offered.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
                    let since = PROFILING.load(Ordering::Relaxed).then(Instant::now);
                    let ran = rayon::yield_now() == Some(rayon::Yield::Executed);
                    if !ran {
                        // Looking for work touches rayon's shared queues;
                        // pausing in between leaves the other thread alone.
                        for _ in 0..SPIN_PAUSES {
                            std::hint::spin_loop();
                        }
                    }
                    if let Some(t) = since {
                        let nanos = t.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
                        HELD_NANOS.fetch_add(nanos, Ordering::Relaxed);
                        if ran {
                            BUSY_NANOS.fetch_add(nanos, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        let _done = Done(&done);
        f()
    })
}

/// Whether the helper threads of [`with_threads`] count their time.
static PROFILING: AtomicBool = AtomicBool::new(false);
/// The helpers' time running work, and in all, while profiling.
static BUSY_NANOS: AtomicU64 = AtomicU64::new(0);
static HELD_NANOS: AtomicU64 = AtomicU64::new(0);

/// Starts (from zero) or stops counting how the helper threads of
/// [`with_threads`] spend their time: running a part of a kernel, or
/// waiting for one.
pub fn set_thread_profiling(on: bool) {
    if on {
        BUSY_NANOS.store(0, Ordering::Relaxed);
        HELD_NANOS.store(0, Ordering::Relaxed);
    }
    PROFILING.store(on, Ordering::Relaxed);
}

/// The helper threads' time running work and their time in all (summed
/// over the helpers) since [`set_thread_profiling`] turned counting on;
/// the rest of the time they waited for work.
pub fn thread_profile() -> (Duration, Duration) {
    (
        Duration::from_nanos(BUSY_NANOS.load(Ordering::Relaxed)),
        Duration::from_nanos(HELD_NANOS.load(Ordering::Relaxed)),
    )
}

/// The cores this process may run on (`std::thread::available_parallelism`, 1 if unknown).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Elementwise kernels split their output between threads from this many
/// elements on (below it, handing half over costs more than it saves).
pub(crate) const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// How many parts an elementwise kernel over `len` elements is cut into:
/// one per thread, each of at least half [`PARALLEL_MIN_ELEMENTS`] (the
/// share of two threads at the threshold, where a part's work first pays for
/// handing it over), so 32K elements go to two threads and 256K to sixteen.
fn parts(len: usize) -> usize {
    threads().min(len / (PARALLEL_MIN_ELEMENTS / 2)).max(1)
}

/// Where `len` elements split between `left` of `parts` parts: the left
/// parts' share, rounded up to a multiple of `align`.
fn split_point(len: usize, left: usize, parts: usize, align: usize) -> usize {
    (len / parts * left).next_multiple_of(align).min(len)
}

/// Runs `f(offset, part)` over `y` cut into up to [`threads`] parts at
/// multiples of `align` (each part starting at `offset`), on as many threads
/// when `y` is large; else `f(0, y)`. Elementwise kernels use it: each
/// element is computed as it would be on one thread, so the results do not
/// depend on the thread count.
pub(crate) fn split_elements<T: Send>(
    y: &mut [T],
    align: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    fn go<T: Send>(
        parts: usize,
        offset: usize,
        y: &mut [T],
        align: usize,
        f: &(dyn Fn(usize, &mut [T]) + Sync),
    ) {
        let left = parts / 2;
        let mid = split_point(y.len(), left, parts, align);
        if parts < 2 || mid == 0 || mid == y.len() {
            f(offset, y);
            return;
        }
        let (a, b) = y.split_at_mut(mid);
        rayon::join(
            || go(left, offset, a, align, f),
            || go(parts - left, offset + mid, b, align, f),
        );
    }
    go(parts(y.len()), 0, y, align.max(1), f);
}

/// The work [`split_pair`] hands each part: `(offset, a_part, b_part)`.
type PairFn<'f, T, U> = dyn Fn(usize, &mut [T], &mut [U]) + Sync + 'f;

/// [`split_elements`] over two slices of one length cut at the same places
/// (a variable and its optimizer slot): `f(offset, a_part, b_part)`.
pub(crate) fn split_pair<T: Send, U: Send>(a: &mut [T], b: &mut [U], f: &PairFn<'_, T, U>) {
    fn go<T: Send, U: Send>(
        parts: usize,
        offset: usize,
        a: &mut [T],
        b: &mut [U],
        f: &PairFn<'_, T, U>,
    ) {
        let left = parts / 2;
        let mid = split_point(a.len(), left, parts, 1);
        if parts < 2 || mid == 0 || mid == a.len() || a.len() != b.len() {
            f(offset, a, b);
            return;
        }
        let (a0, a1) = a.split_at_mut(mid);
        let (b0, b1) = b.split_at_mut(mid);
        rayon::join(
            || go(left, offset, a0, b0, f),
            || go(parts - left, offset + mid, a1, b1, f),
        );
    }
    go(parts(a.len()), 0, a, b, f);
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

    /// Every element is visited once, at its own offset, for any thread
    /// count and alignment; parts are at least 16K elements.
    #[test]
    fn split_elements_covers_each_element_once_at_aligned_cuts() {
        for threads in [1, 2, 3, 16] {
            with_test_threads(threads, || {
                for (len, align) in [(10, 1), (1 << 15, 1), (100_000, 7), (1 << 18, 512)] {
                    let mut y = vec![0usize; len];
                    let cuts = std::sync::Mutex::new(Vec::new());
                    split_elements(&mut y, align, &|offset, part| {
                        cuts.lock().expect("lock").push((offset, part.len()));
                        for (k, v) in part.iter_mut().enumerate() {
                            *v += offset + k + 1;
                        }
                    });
                    assert!(y.iter().enumerate().all(|(k, &v)| v == k + 1), "{len}");
                    let cuts = cuts.into_inner().expect("lock");
                    assert!(cuts.len() <= threads.max(1));
                    assert_eq!(cuts.len(), parts(len).min(cuts.len()).max(1));
                    for &(offset, n) in &cuts {
                        assert_eq!(offset % align, 0, "cut at a multiple of {align}");
                        assert!(cuts.len() == 1 || n >= PARALLEL_MIN_ELEMENTS / 2 - align);
                    }
                }
                let (mut a, mut b) = (vec![1u32; 300_000], vec![2u32; 300_000]);
                split_pair(&mut a, &mut b, &|_, a, b| {
                    for (a, b) in a.iter_mut().zip(b) {
                        *a += *b;
                    }
                });
                assert!(a.iter().all(|&v| v == 3));
            });
        }
    }

    #[test]
    fn a_panic_inside_with_threads_reaches_the_caller() {
        let caught = with_test_threads(2, || {
            std::panic::catch_unwind(|| with_threads(|| panic!("inside")))
        });
        assert!(caught.is_err(), "the panic propagates instead of hanging");
    }
}
