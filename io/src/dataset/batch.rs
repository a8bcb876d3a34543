//! Mini-batches: a seeded shuffling sampler, row gathering into preallocated
//! buffers, and in-order chunks for evaluation.

use super::DataError;
use ndarray::{ArrayBase, ArrayD, Axis, Data, DataMut, Dimension, IxDyn, Slice};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;

/// Yields mini-batches of row indices `0..n`, epoch after epoch, each epoch in
/// a fresh random order.
///
/// The order of epoch `e` depends only on `(n, seed, e)`: it is a
/// Fisher-Yates shuffle driven by a [`ChaCha8Rng`] seeded with `seed` on
/// stream `e`, with integer sampling done here rather than by `rand`, so the
/// batches are identical on every platform, run and `rand` version. Training
/// resumed at epoch `e` ([`Batches::set_next_epoch`]) sees the same batches as
/// an uninterrupted run.
///
/// ```
/// # use gradc_io::dataset::Batches;
/// let mut batches = Batches::shuffled(10, 4, 42)?;
/// for _epoch in 0..2 {
///     for batch in batches.next_epoch() {
///         assert!(batch.len() == 4 || batch.len() == 2);
///     }
/// }
/// # Ok::<(), gradc_io::dataset::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Batches {
    /// The current epoch's permutation of `0..n`.
    order: Vec<usize>,
    batch_size: usize,
    seed: u64,
    /// The used prefix of `order`: `n`, or `n` rounded down to whole batches.
    end: usize,
    /// Where the next batch of the current epoch starts; `end` when it is used up.
    pos: usize,
    /// How many epochs have been started (the next one is numbered this).
    started: u64,
    /// Whether each epoch has its own order; `false`: `0..n` every epoch.
    shuffle: bool,
}

impl Batches {
    /// Batches of `batch_size` rows out of `n`, every row exactly once per
    /// epoch; the last batch of an epoch has the `n % batch_size` left-over rows
    /// when `batch_size` does not divide `n`.
    ///
    /// Fails if `n` or `batch_size` is zero.
    pub fn shuffled(n: usize, batch_size: usize, seed: u64) -> Result<Batches, DataError> {
        Self::make(n, batch_size, seed, false)
    }

    /// Batches of exactly `batch_size` rows out of `n` (so one preallocated
    /// buffer fits them all): each epoch uses the first `n - n % batch_size`
    /// rows of its permutation and skips the rest, which differ from epoch to
    /// epoch.
    ///
    /// Fails if `n` or `batch_size` is zero, or `batch_size > n`.
    pub fn shuffled_full(n: usize, batch_size: usize, seed: u64) -> Result<Batches, DataError> {
        Self::make(n, batch_size, seed, true)
    }

    /// Batches as [`Batches::shuffled_full`] (`drop_remainder`) or
    /// [`Batches::shuffled`], with `shuffle: false` taking the rows in order
    /// every epoch (`0..batch_size` first) instead.
    pub fn new(
        n: usize,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
        drop_remainder: bool,
    ) -> Result<Batches, DataError> {
        let mut b = Self::make(n, batch_size, seed, drop_remainder)?;
        b.shuffle = shuffle;
        Ok(b)
    }

    fn make(n: usize, batch_size: usize, seed: u64, full: bool) -> Result<Batches, DataError> {
        let bad = |reason| DataError::BadBatchSize {
            batch_size,
            rows: n,
            reason,
        };
        if batch_size == 0 {
            return Err(bad("must be at least 1"));
        }
        if n == 0 {
            return Err(bad("the data set is empty"));
        }
        if full && batch_size > n {
            return Err(bad("full batches cannot be larger than the data set"));
        }
        let end = if full { n - n % batch_size } else { n };
        Ok(Batches {
            order: (0..n).collect(),
            batch_size,
            seed,
            end,
            pos: end,
            started: 0,
            shuffle: true,
        })
    }

    /// The number of rows sampled from.
    pub fn rows(&self) -> usize {
        self.order.len()
    }

    /// The (largest) batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// How many batches each epoch has.
    pub fn batches_per_epoch(&self) -> usize {
        self.end.div_ceil(self.batch_size)
    }

    /// The number of the epoch the last batch came from (0-based), `None`
    /// before the first.
    pub fn epoch(&self) -> Option<u64> {
        self.started.checked_sub(1)
    }

    /// Makes `epoch` the next epoch to start, e.g. to resume training.
    pub fn set_next_epoch(&mut self, epoch: u64) {
        self.started = epoch;
        self.pos = self.end;
    }

    /// The next batch, starting a new epoch when the current one is used up.
    /// For loops that count steps rather than epochs.
    pub fn next_batch(&mut self) -> &[usize] {
        if self.pos >= self.end {
            self.start_epoch();
        }
        let start = self.pos;
        let stop = (start + self.batch_size).min(self.end);
        self.pos = stop;
        &self.order[start..stop]
    }

    /// Starts the next epoch (abandoning what is left of the current one)
    /// and returns all its batches in order.
    pub fn next_epoch(&mut self) -> std::slice::Chunks<'_, usize> {
        self.start_epoch();
        self.pos = self.end;
        self.order[..self.end].chunks(self.batch_size)
    }

    /// Shuffles `order` for epoch number `started` and moves to its start.
    fn start_epoch(&mut self) {
        if self.shuffle {
            permute(&mut self.order, self.seed, self.started);
        }
        self.started = self.started.saturating_add(1);
        self.pos = 0;
    }
}

/// Fills `order` with the permutation of `0..order.len()` for `(seed, epoch)`.
fn permute(order: &mut [usize], seed: u64, epoch: u64) {
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    for i in (1..order.len()).rev() {
        // `below` returns at most `i`, which is a usize.
        let j = below(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
}

/// A uniform integer in `0..bound` (`bound > 0`), by Lemire's multiply-and-reject
/// method on 64-bit draws: no bias and no dependence on the platform's `usize`.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Copies rows `indices` (along axis 0) of `src` into `out`, in order: row `k`
/// of `out` becomes row `indices[k]` of `src`. Allocates nothing, so a
/// training loop can reuse one buffer for every step.
///
/// `out` must have shape `[indices.len(), ...]` where `...` is the shape of a
/// row of `src`; it may be an owned array or a view (e.g. the first `k` rows
/// of a larger buffer). Fails, before writing anything, on a shape mismatch
/// or an index out of range.
pub fn gather_into<A, S, D, T, E>(
    src: &ArrayBase<S, D>,
    indices: &[usize],
    out: &mut ArrayBase<T, E>,
) -> Result<(), DataError>
where
    A: Copy,
    S: Data<Elem = A>,
    D: Dimension,
    T: DataMut<Elem = A>,
    E: Dimension,
{
    let Some((&rows, row_shape)) = src.shape().split_first() else {
        return Err(DataError::Shape(
            "cannot gather rows from a 0-dimensional array".to_string(),
        ));
    };
    if out.shape().first() != Some(&indices.len()) || &out.shape()[1..] != row_shape {
        return Err(DataError::Shape(format!(
            "a buffer of shape {:?} cannot hold {} rows of shape {:?}",
            out.shape(),
            indices.len(),
            row_shape
        )));
    }
    if let Some(&index) = indices.iter().find(|&&i| i >= rows) {
        return Err(DataError::IndexOutOfRange { index, rows });
    }
    // A row of a data set that was read into memory: its length fits.
    let row_len = row_shape.iter().fold(1usize, |a, &d| a.saturating_mul(d));
    if row_len == 0 {
        return Ok(());
    }
    match (src.as_slice(), out.as_slice_mut()) {
        (Some(s), Some(o)) => {
            for (dst, &i) in o.chunks_exact_mut(row_len).zip(indices) {
                dst.copy_from_slice(&s[i * row_len..(i + 1) * row_len]);
            }
        }
        _ => {
            for (k, &i) in indices.iter().enumerate() {
                out.slice_axis_mut(Axis(0), Slice::from(k..k + 1))
                    .assign(&src.slice_axis(Axis(0), Slice::from(i..i + 1)));
            }
        }
    }
    Ok(())
}

/// Rows `indices` (along axis 0) of `src` as a new array `[indices.len(), ...]`.
/// Allocates; in a training loop prefer [`gather_into`].
pub fn gather<A, S, D>(src: &ArrayBase<S, D>, indices: &[usize]) -> Result<ArrayD<A>, DataError>
where
    A: Copy + Default,
    S: Data<Elem = A>,
    D: Dimension,
{
    let mut shape = src.shape().to_vec();
    if let Some(first) = shape.first_mut() {
        *first = indices.len();
    }
    let mut out = ArrayD::from_elem(IxDyn(&shape), A::default());
    gather_into(src, indices, &mut out)?;
    Ok(out)
}

/// Row ranges `0..size`, `size..2*size`, … covering `0..n` in order, the last
/// one shorter if `size` does not divide `n`: for evaluating a test set in
/// chunks (slice rows with `array.slice_axis(Axis(0), range.into())`, no copy).
///
/// Fails if `size` is zero.
pub fn in_order(
    n: usize,
    size: usize,
) -> Result<impl ExactSizeIterator<Item = Range<usize>>, DataError> {
    if size == 0 {
        return Err(DataError::BadBatchSize {
            batch_size: size,
            rows: n,
            reason: "must be at least 1",
        });
    }
    Ok((0..n.div_ceil(size)).map(move |k| k * size..((k + 1) * size).min(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array2, Array3};

    fn epoch_of(b: &mut Batches) -> Vec<Vec<usize>> {
        b.next_epoch().map(<[usize]>::to_vec).collect()
    }

    fn sorted(batches: &[Vec<usize>]) -> Vec<usize> {
        let mut all: Vec<usize> = batches.concat();
        all.sort_unstable();
        all
    }

    #[test]
    fn in_order_batches_with_and_without_the_remainder() {
        let mut b = Batches::new(5, 2, 7, false, false).unwrap();
        assert_eq!(epoch_of(&mut b), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(epoch_of(&mut b), vec![vec![0, 1], vec![2, 3], vec![4]]);
        let mut b = Batches::new(5, 2, 7, false, true).unwrap();
        assert_eq!(b.batches_per_epoch(), 2);
        assert_eq!(epoch_of(&mut b), vec![vec![0, 1], vec![2, 3]]);
        let mut b = Batches::new(5, 2, 7, true, false).unwrap();
        assert_eq!(b.batches_per_epoch(), 3);
        let epoch = epoch_of(&mut b);
        assert_eq!(
            epoch.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(sorted(&epoch), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn every_index_once_per_epoch() {
        for (n, bs) in [(10, 3), (10, 5), (10, 10), (10, 32), (1, 1), (1000, 64)] {
            let mut b = Batches::shuffled(n, bs, 7).unwrap();
            assert_eq!(b.batches_per_epoch(), n.div_ceil(bs));
            for _ in 0..3 {
                let e = epoch_of(&mut b);
                assert_eq!(e.len(), n.div_ceil(bs));
                assert!(e[..e.len() - 1].iter().all(|x| x.len() == bs));
                assert_eq!(sorted(&e), (0..n).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let mut a = Batches::shuffled(100, 8, 1234).unwrap();
        let mut b = Batches::shuffled(100, 8, 1234).unwrap();
        for _ in 0..3 {
            assert_eq!(epoch_of(&mut a), epoch_of(&mut b));
        }
        // Pinned values: the same on every platform and run.
        let mut c = Batches::shuffled(10, 10, 0).unwrap();
        assert_eq!(epoch_of(&mut c), vec![PINNED_SEED0_EPOCH0.to_vec()]);
    }

    const PINNED_SEED0_EPOCH0: [usize; 10] = [6, 1, 8, 3, 2, 9, 0, 5, 4, 7];

    #[test]
    fn differs_across_epochs_and_seeds() {
        let mut a = Batches::shuffled(100, 10, 1).unwrap();
        let e0 = epoch_of(&mut a);
        let e1 = epoch_of(&mut a);
        assert_ne!(e0, e1);
        let mut b = Batches::shuffled(100, 10, 2).unwrap();
        assert_ne!(e0, epoch_of(&mut b));
        // Not the identity either.
        assert_ne!(e0.concat(), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn next_batch_walks_epochs_like_next_epoch() {
        let mut a = Batches::shuffled(10, 4, 9).unwrap();
        let mut b = Batches::shuffled(10, 4, 9).unwrap();
        assert_eq!(a.epoch(), None);
        let expected: Vec<Vec<usize>> = [epoch_of(&mut b), epoch_of(&mut b)].concat();
        let mut got = Vec::new();
        for step in 0..6 {
            got.push(a.next_batch().to_vec());
            assert_eq!(a.epoch(), Some(step / 3));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn resuming_at_an_epoch_repeats_it() {
        let mut a = Batches::shuffled(50, 7, 3).unwrap();
        let _ = epoch_of(&mut a);
        let _ = epoch_of(&mut a);
        let third = epoch_of(&mut a);
        let mut b = Batches::shuffled(50, 7, 3).unwrap();
        b.set_next_epoch(2);
        assert_eq!(epoch_of(&mut b), third);
        assert_eq!(b.epoch(), Some(2));
    }

    #[test]
    fn full_batches_only() {
        let mut b = Batches::shuffled_full(10, 4, 5).unwrap();
        assert_eq!(b.batches_per_epoch(), 2);
        let mut skipped = Vec::new();
        for _ in 0..4 {
            let e = epoch_of(&mut b);
            assert_eq!(e.len(), 2);
            assert!(e.iter().all(|x| x.len() == 4));
            let all = sorted(&e);
            all.windows(2).for_each(|w| assert!(w[0] < w[1]));
            skipped.push((0..10).filter(|i| !all.contains(i)).collect::<Vec<_>>());
        }
        assert!(skipped.windows(2).any(|w| w[0] != w[1]), "{skipped:?}");
        for _ in 0..5 {
            assert_eq!(b.next_batch().len(), 4);
        }
    }

    #[test]
    fn bad_batch_sizes() {
        for r in [
            Batches::shuffled(10, 0, 0),
            Batches::shuffled(0, 4, 0),
            Batches::shuffled_full(3, 4, 0),
        ] {
            let err = r.unwrap_err();
            assert!(matches!(err, DataError::BadBatchSize { .. }), "{err:?}");
        }
        assert!(Batches::shuffled(3, 4, 0).is_ok());
        assert!(in_order(5, 0).is_err());
    }

    #[test]
    fn below_is_in_range_and_uses_all_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(below(&mut rng, 1), 0);
    }

    #[test]
    fn gather_into_copies_the_rows() {
        let src = Array3::from_shape_fn((5, 2, 3), |(i, j, k)| (100 * i + 10 * j + k) as f32);
        let mut out = ArrayD::<f32>::zeros(IxDyn(&[3, 2, 3]));
        gather_into(&src, &[4, 0, 4], &mut out).unwrap();
        assert_eq!(
            out.index_axis(Axis(0), 0),
            src.index_axis(Axis(0), 4).into_dyn()
        );
        assert_eq!(
            out.index_axis(Axis(0), 1),
            src.index_axis(Axis(0), 0).into_dyn()
        );
        assert_eq!(
            out.index_axis(Axis(0), 2),
            src.index_axis(Axis(0), 4).into_dyn()
        );
        assert_eq!(gather(&src, &[4, 0, 4]).unwrap(), out);

        // Non-contiguous source (every other column) and a view of a bigger buffer.
        let wide = Array2::from_shape_fn((4, 6), |(i, j)| (10 * i + j) as f64);
        let src = wide.slice(s![.., ..;2]);
        let mut buf = Array2::<f64>::zeros((5, 3));
        gather_into(&src, &[3, 1], &mut buf.slice_mut(s![..2, ..])).unwrap();
        assert_eq!(buf.row(0).to_vec(), vec![30.0, 32.0, 34.0]);
        assert_eq!(buf.row(1).to_vec(), vec![10.0, 12.0, 14.0]);
        assert_eq!(buf.row(2).to_vec(), vec![0.0; 3]);
    }

    #[test]
    fn gather_into_refuses_bad_shapes_and_indices() {
        let src = Array2::<f32>::ones((4, 3));
        let mut out = Array2::<f32>::zeros((2, 3));
        let err = gather_into(&src, &[0, 4], &mut out).unwrap_err();
        assert!(
            matches!(err, DataError::IndexOutOfRange { index: 4, rows: 4 }),
            "{err:?}"
        );
        assert_eq!(
            out,
            Array2::<f32>::zeros((2, 3)),
            "nothing written on error"
        );
        let err = gather_into(&src, &[0], &mut out).unwrap_err();
        assert!(matches!(err, DataError::Shape(_)), "{err:?}");
        let mut wrong_row = Array2::<f32>::zeros((2, 4));
        assert!(gather_into(&src, &[0, 1], &mut wrong_row).is_err());
        let scalar = ndarray::arr0(1.0f32);
        assert!(gather_into(&scalar, &[], &mut out).is_err());
    }

    #[test]
    fn in_order_chunks() {
        let r: Vec<_> = in_order(10, 4).unwrap().collect();
        assert_eq!(r, vec![0..4, 4..8, 8..10]);
        let r: Vec<_> = in_order(8, 4).unwrap().collect();
        assert_eq!(r, vec![0..4, 4..8]);
        assert_eq!(in_order(0, 4).unwrap().count(), 0);
    }
}
