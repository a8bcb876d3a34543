//! The matrix product behind MatMul and Dense: a packed, cache-blocked GEMM
//! with BLIS's loop structure, whose packing buffers live in a per-thread
//! workspace that grows to the largest product seen and is then reused, so
//! steady-state products allocate nothing.
//!
//! `C = A·B` for `A` (m×k) and `B` (k×n) in any strides (a transpose is a
//! strided view), `C` row-major and contiguous. The `MR`×`NR` micro-kernel
//! reads, for each of `KC` steps of depth, `MR` values of A's column and `NR`
//! consecutive values of B's row, and stores (or adds) its tile into C. It
//! reads the operands where they are when that is cheaper than packing them:
//! a row-major B that is narrow or read by few rows (the skinny products of
//! training), an A (row-major, or column-major so that a column's `MR` values
//! are consecutive) that few panels of B pass over. Otherwise they are packed
//! first: B once per band of C's columns, shared by the threads of its
//! bands of rows; blocks of A by each thread. On x86-64 the kernel is written with SIMD intrinsics and
//! its accumulators stay in registers: with AVX-512 for f32 where the CPU has
//! it, else with AVX2 and FMA (detected at run time); elsewhere a portable
//! kernel does the same sums.
//!
//! **Each element of C is computed the same way whatever the thread count:**
//! threads split C into a grid of bands of rows and of columns (`grid`), at
//! tile and panel boundaries (so a thread neither waits for nor reads what
//! another wrote),
//! and every element sums its `k`
//! products in order, one `KC` block at a time. (The AVX-512 and AVX2
//! kernels make the same fused multiply-adds in the same order, so they agree
//! to the bit; the portable kernel, without fused multiply-adds, rounds
//! differently, so results can differ between machines, never between runs.)

use ndarray::{s, ArrayViewMut2, Axis};
use num_traits::Float;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A float the GEMM runs on, with its register tile and block sizes.
pub(crate) trait GemmElem: Float + Send + Sync + 'static {
    /// Rows of the micro-kernel's tile.
    const MR: usize;
    /// Columns of the micro-kernel's tile.
    const NR: usize;
    /// Depth of a packed block: one `KC`×`NR` panel of B stays in L1.
    const KC: usize;
    /// `dst` (`NR` values) = `src` (at most `NR`), zero-padded: a copy of
    /// fixed length that compiles to a few vector moves, not a call to
    /// `memcpy` and `memset` for every row of a packed panel.
    fn copy_padded(dst: &mut [Self], src: &[Self]);
    /// Runs `f` with this thread's buffer for packed blocks of A.
    fn with_packed_a<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
    /// Runs `f` with this thread's buffer for a packed B.
    fn with_packed_b<R>(f: impl FnOnce(&mut Vec<Self>) -> R) -> R;
    /// The sums of one tile (see [`portable`]): with the SIMD kernel of
    /// `simd` (the caller checked the CPU has it), else the portable one.
    fn kernel(
        kc: usize,
        a: PanelA<'_, Self>,
        b: Panel<'_, Self>,
        simd: Simd,
        tile: &mut Tile<'_, '_, Self>,
    );
}

thread_local! {
    static PACKED_A_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACKED_B_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACKED_A_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
    static PACKED_B_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// The most elements any thread's buffer of each kind has held: every
/// thread keeps room for that many, so which thread runs which band of a
/// product (work stealing decides) never makes a buffer grow once every
/// product has run and each thread has taken part in a product since.
static MARK_A_F32: AtomicUsize = AtomicUsize::new(0);
static MARK_B_F32: AtomicUsize = AtomicUsize::new(0);
static MARK_A_F64: AtomicUsize = AtomicUsize::new(0);
static MARK_B_F64: AtomicUsize = AtomicUsize::new(0);

/// `f` with the buffer, grown first to the mark of its kind (and the mark
/// raised to what `f` used), or with a fresh one if this thread is already
/// using it (a product started while another waits on this thread).
pub(crate) fn with_buffer<T, R>(
    buffer: &RefCell<Vec<T>>,
    mark: &AtomicUsize,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    match buffer.try_borrow_mut() {
        Ok(mut b) => {
            let want = mark.load(Ordering::Relaxed);
            if b.capacity() < want {
                let len = b.len();
                b.reserve(want - len);
            }
            let r = f(&mut b);
            mark.fetch_max(b.len(), Ordering::Relaxed);
            r
        }
        Err(_) => f(&mut Vec::new()),
    }
}

impl GemmElem for f32 {
    const MR: usize = 6;
    /// Two AVX-512 registers (or four AVX ones, two at a time) a row.
    const NR: usize = 32;
    const KC: usize = 256;
    fn copy_padded(dst: &mut [f32], src: &[f32]) {
        copy_padded::<f32, { <f32 as GemmElem>::NR }>(dst, src);
    }
    fn with_packed_a<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        PACKED_A_F32.with(|w| with_buffer(w, &MARK_A_F32, f))
    }
    fn with_packed_b<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
        PACKED_B_F32.with(|w| with_buffer(w, &MARK_B_F32, f))
    }
    fn kernel(
        kc: usize,
        a: PanelA<'_, f32>,
        b: Panel<'_, f32>,
        simd: Simd,
        tile: &mut Tile<'_, '_, f32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if simd != Simd::None && x86::f32_6x32(kc, a, b, tile, simd == Simd::Avx512) {
            return;
        }
        let _ = simd;
        tile.write(&portable::<f32, 6, 32>(kc, a, b));
    }
}

impl GemmElem for f64 {
    const MR: usize = 6;
    /// Two AVX registers a row.
    const NR: usize = 8;
    const KC: usize = 256;
    fn copy_padded(dst: &mut [f64], src: &[f64]) {
        copy_padded::<f64, { <f64 as GemmElem>::NR }>(dst, src);
    }
    fn with_packed_a<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
        PACKED_A_F64.with(|w| with_buffer(w, &MARK_A_F64, f))
    }
    fn with_packed_b<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
        PACKED_B_F64.with(|w| with_buffer(w, &MARK_B_F64, f))
    }
    fn kernel(
        kc: usize,
        a: PanelA<'_, f64>,
        b: Panel<'_, f64>,
        simd: Simd,
        tile: &mut Tile<'_, '_, f64>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if simd != Simd::None && x86::f64_6x8(kc, a, b, tile) {
            return;
        }
        let _ = simd;
        tile.write(&portable::<f64, 6, 8>(kc, a, b));
    }
}

/// [`GemmElem::copy_padded`] for `N` = `NR`.
#[inline(always)]
fn copy_padded<T: Float, const N: usize>(dst: &mut [T], src: &[T]) {
    let Some(dst) = dst.first_chunk_mut::<N>() else {
        panic!("a packed row of B holds NR values");
    };
    match src.first_chunk::<N>() {
        Some(full) => *dst = *full,
        None => {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = src.get(j).copied().unwrap_or_else(T::zero);
            }
        }
    }
}

/// Products with fewer multiply-adds than this run on one thread: below it,
/// handing work to another thread costs more than it saves.
const PARALLEL_MIN_FMAS: usize = 1 << 18;

/// A matrix operand: element (i, j) is at `data[i * rs + j * cs]`, with
/// offsets checked by the caller (see [`Operand::new`]).
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T: Copy> Operand<'a, T> {
    /// A rows×cols matrix in `data` with these strides; None unless every
    /// element's offset falls inside `data`.
    pub(crate) fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Option<Self> {
        let last = if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1)
                .checked_mul(rs)?
                .checked_add((cols - 1).checked_mul(cs)?)?
                .checked_add(1)?
        };
        (last <= data.len()).then_some(Operand {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// Columns `j0..j0 + width` (a view; `j0 + width <= cols`, `width > 0`).
    fn columns(self, j0: usize, width: usize) -> Self {
        debug_assert!(width > 0 && j0 + width <= self.cols);
        // In bounds: j0 < cols, so j0 * cs is below the last offset.
        Operand {
            data: &self.data[j0 * self.cs..],
            cols: width,
            ..self
        }
    }

    /// The transpose (a view: the strides swap).
    pub(crate) fn t(self) -> Self {
        Operand {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `c = a·b`, with `c` row-major m×n (`c.len() == m * n`), on up to
/// [`crate::threads`] threads, with the best SIMD kernel the CPU has.
pub(crate) fn gemm<T: GemmElem>(
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    c: &mut [T],
) -> Result<(), String> {
    gemm_with(a, b, c, Simd::best(), crate::parallel::threads())
}

/// `gemm` with the kernel and the thread count given (a `simd` the CPU lacks
/// falls back to the portable kernel).
pub(crate) fn gemm_with<T: GemmElem>(
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    c: &mut [T],
    simd: Simd,
    threads: usize,
) -> Result<(), String> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.len() != m * n {
        return Err(format!(
            "cannot multiply {m}x{k} by {}x{n} into {} elements",
            b.rows,
            c.len()
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        c.fill(T::zero());
        return Ok(());
    }
    let c = ArrayViewMut2::from_shape((m, n), c).map_err(|e| e.to_string())?;
    let threads = if m * n * k >= PARALLEL_MIN_FMAS {
        threads
    } else {
        1
    };
    let (row_bands, column_bands) = grid::<T>(m, n, threads);
    if column_bands > 1 {
        // Each band of columns packs the panels of B it reads, once, and
        // its bands of rows share them; nothing a thread writes is read by
        // another.
        split(column_bands, Axis(1), T::NR, c, &|j0, columns| {
            T::with_packed_b(|packed| {
                let b = PackedB::new(b.columns(j0, columns.ncols()), m, row_bands, packed);
                split(row_bands, Axis(0), T::MR, columns, &|r0, band| {
                    T::with_packed_a(|packed_a| compute(a, &b, r0, band, packed_a, simd));
                });
            });
        });
    } else {
        T::with_packed_b(|packed| {
            let b = PackedB::new(b, m, row_bands, packed);
            split(row_bands, Axis(0), T::MR, c, &|r0, band| {
                T::with_packed_a(|packed_a| compute(a, &b, r0, band, packed_a, simd));
            });
        });
    }
    Ok(())
}

/// The bands of rows and of columns that `threads` threads cut C (m×n)
/// into, one block a thread (BLIS's ic and jc loops): of the grids with at
/// most `threads` blocks, the one whose largest block costs least, a block
/// costing its `rows·cols` multiply-adds per step of depth plus
/// `READ_COST·(rows + cols)` for the values of A and B it reads. Blocks are
/// whole `MR` rows and `NR` columns. Square-ish blocks read the least, so a
/// product like 128×512 on 16 threads is cut 2 × 8 (blocks of 66 × 64)
/// rather than into 16 bands of rows that each read all of B; on 2 threads
/// a wide C is cut into two bands of columns (each packing only its half of
/// B), a tall narrow one into two of rows.
fn grid<T: GemmElem>(m: usize, n: usize, threads: usize) -> (usize, usize) {
    let (row_units, column_units) = (m.div_ceil(T::MR), n.div_ceil(T::NR));
    let mut best = (1, 1);
    let mut best_cost = usize::MAX;
    for columns in 1..=threads.min(column_units) {
        let rows = (threads / columns).min(row_units).max(1);
        let block_rows = row_units.div_ceil(rows) * T::MR;
        let block_cols = column_units.div_ceil(columns) * T::NR;
        let cost = block_rows * block_cols + READ_COST * (block_rows + block_cols);
        if cost < best_cost {
            (best, best_cost) = ((rows, columns), cost);
        }
    }
    best
}

/// What reading one value of A or B costs a block, in multiply-adds: a
/// value of B loaded into a register serves the `MR` rows of a tile, and
/// comes from L2 or L3 rather than L1.
const READ_COST: usize = 8;

/// Runs `f(offset, band)` over `threads` disjoint bands of C cut along
/// `axis` (rows or columns) at multiples of `unit` (`MR` rows or `NR`
/// columns), in parallel when `threads > 1`; `offset` is the band's first
/// row or column.
fn split<T: GemmElem>(
    threads: usize,
    axis: Axis,
    unit: usize,
    c: ArrayViewMut2<'_, T>,
    f: &(dyn Fn(usize, ArrayViewMut2<'_, T>) + Sync),
) {
    fn go<T: GemmElem>(
        threads: usize,
        axis: Axis,
        unit: usize,
        offset: usize,
        c: ArrayViewMut2<'_, T>,
        f: &(dyn Fn(usize, ArrayViewMut2<'_, T>) + Sync),
    ) {
        let units = c.len_of(axis).div_ceil(unit);
        if threads <= 1 || units <= 1 {
            f(offset, c);
            return;
        }
        // The calling thread takes the left part at once, the right one
        // waits to be taken by another thread: the left gets the extra unit.
        let left_threads = threads / 2;
        let left = ((units * left_threads).div_ceil(threads) * unit).min(c.len_of(axis));
        let (l, r) = c.split_at(axis, left);
        rayon::join(
            || go(left_threads, axis, unit, offset, l, f),
            || go(threads - left_threads, axis, unit, offset + left, r, f),
        );
    }
    go(threads, axis, unit, 0, c, f);
}

/// `MR` (or `NR`) values per step of depth: step `p`'s are
/// `data[p * step..][..width]`.
#[derive(Clone, Copy)]
pub(crate) struct Panel<'a, T> {
    data: &'a [T],
    step: usize,
}

/// A panel of A: strided as a [`Panel`], or `MR` rows of a row-major A, each
/// `kc` long (rows past A's end repeat its last row; their results are not
/// written).
#[derive(Clone, Copy)]
pub(crate) enum PanelA<'a, T> {
    Columns(Panel<'a, T>),
    Rows(&'a [&'a [T]]),
}

/// B as the micro-kernel reads it: in place when row-major and read by few
/// row panels, except a last, partial panel of columns; otherwise packed
/// (each panel all `k` rows deep, `NR` values per row, zero-padded), which
/// keeps a panel's rows on consecutive cache lines whatever B's row stride.
struct PackedB<'a, T> {
    b: Operand<'a, T>,
    direct: bool,
    /// The packed panels: all of them, or only the last partial one when `direct`.
    packed: &'a [T],
}

impl<'a, T: GemmElem> PackedB<'a, T> {
    /// B for a product with `m` rows, packed on up to `threads` threads.
    fn new(b: Operand<'a, T>, m: usize, threads: usize, buffer: &'a mut Vec<T>) -> Self {
        let (k, n) = (b.rows, b.cols);
        let direct = b.cs == 1 && (m <= DIRECT_B_MAX_ROWS || n <= DIRECT_B_MAX_COLS);
        let panels = n.div_ceil(T::NR);
        let first = if direct { n / T::NR } else { 0 };
        // Every element is written below (padding included), so the buffer
        // keeps its old contents where it does not grow.
        buffer.resize((panels - first) * k * T::NR, T::zero());
        let threads = if k * n >= PARALLEL_MIN_PACK {
            threads
        } else {
            1
        };
        pack_panels(b, first, buffer, threads);
        PackedB {
            b,
            direct,
            packed: buffer,
        }
    }

    /// Panel `jp` from depth `p0` on.
    fn panel(&self, jp: usize, p0: usize) -> Panel<'a, T> {
        let k = self.b.rows;
        let full = self.b.cols / T::NR;
        if self.direct && jp < full {
            Panel {
                data: &self.b.data[p0 * self.b.rs + jp * T::NR..],
                step: self.b.rs,
            }
        } else {
            let index = if self.direct { jp - full } else { jp };
            Panel {
                data: &self.packed[(index * k + p0) * T::NR..],
                step: T::NR,
            }
        }
    }
}

/// B is packed on several threads from this many elements on (below it,
/// the other thread's reads cost more, in cache lines to take back before
/// B is next written, than they save).
const PARALLEL_MIN_PACK: usize = 1 << 17;

/// Products with at most this many rows read a row-major B in place: too
/// few row panels pass over it to pay for packing it.
const DIRECT_B_MAX_ROWS: usize = 24;

/// A row-major B this narrow is read in place too: its rows are close
/// enough together that a panel's rows do not compete for cache sets.
const DIRECT_B_MAX_COLS: usize = 64;

/// Blocks of A are packed when at least this many panels of B pass over them.
const PACK_A_MIN_PANELS: usize = 8;

/// The most rows a micro-kernel's tile has (`MR` of f32 and f64).
const MAX_MR: usize = 6;
const _: () = assert!(<f32 as GemmElem>::MR <= MAX_MR && <f64 as GemmElem>::MR <= MAX_MR);

/// Row panels of A per block: the block's `KC`-deep rows (96 of them, 96 KiB
/// in f32) stay in L2 while every panel of B passes over them.
const MC_PANELS: usize = 16;

/// The depth of the blocks `k` is cut into: as few blocks of at most `KC`
/// as can be, of equal depth (so no thin last block).
fn block_depth<T: GemmElem>(k: usize) -> usize {
    k.div_ceil(k.div_ceil(T::KC).max(1)).max(1)
}

/// The micro-kernels a CPU may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// The portable kernel.
    None,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512F as well (f32 only; f64 runs the AVX2 kernel).
    Avx512,
}

impl Simd {
    /// The widest this CPU runs.
    pub(crate) fn best() -> Simd {
        if has_avx512() {
            Simd::Avx512
        } else if has_avx2() {
            Simd::Avx2
        } else {
            Simd::None
        }
    }

    /// Every kernel this CPU runs, the portable one first.
    #[cfg(test)]
    fn available() -> Vec<Simd> {
        [Simd::None, Simd::Avx2, Simd::Avx512]
            .into_iter()
            .filter(|&s| match s {
                Simd::None => true,
                Simd::Avx2 => has_avx2(),
                Simd::Avx512 => has_avx512(),
            })
            .collect()
    }
}

/// Whether this CPU has AVX2 and FMA.
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512F (besides AVX2 and FMA).
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2() && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Packs panels `first..` of B into `out`, `k * NR` values each, on up to
/// `threads` threads.
fn pack_panels<T: GemmElem>(b: Operand<'_, T>, first: usize, out: &mut [T], threads: usize) {
    let panel_len = (b.rows * T::NR).max(1);
    let panels = out.len() / panel_len;
    if threads <= 1 || panels <= 1 {
        for (i, panel) in out.chunks_exact_mut(panel_len).enumerate() {
            pack_panel(b, first + i, panel);
        }
        return;
    }
    let left_threads = threads / 2;
    let left = panels * left_threads / threads;
    let (l, r) = out.split_at_mut(left * panel_len);
    rayon::join(
        || pack_panels(b, first, l, left_threads),
        || pack_panels(b, first + left, r, threads - left_threads),
    );
}

/// Packs panel `jp` of B: row p of the panel is B's row p, columns
/// `jp * NR..`, zero-padded to `NR` values.
fn pack_panel<T: GemmElem>(b: Operand<'_, T>, jp: usize, panel: &mut [T]) {
    let j0 = jp * T::NR;
    let nr = T::NR.min(b.cols - j0);
    if b.cs == 1 {
        for (p, row) in panel.chunks_exact_mut(T::NR).enumerate() {
            T::copy_padded(row, &b.data[p * b.rs + j0..][..nr]);
        }
    } else if b.rs == 1 {
        // A transposed B: its columns are contiguous. Blocks of `TB` steps,
        // each read as `nr` short contiguous runs, written into `TB` rows of
        // the panel that stay in L1 while the block is filled.
        const TB: usize = 16;
        for (pb, rows) in panel.chunks_mut(TB * T::NR).enumerate() {
            let p0 = pb * TB;
            let steps = rows.len() / T::NR;
            for j in 0..nr {
                let col = &b.data[(j0 + j) * b.cs + p0..][..steps];
                for (row, &v) in rows.chunks_exact_mut(T::NR).zip(col) {
                    row[j] = v;
                }
            }
            if nr < T::NR {
                for row in rows.chunks_exact_mut(T::NR) {
                    row[nr..].fill(T::zero());
                }
            }
        }
    } else {
        // Column by column: a transposed B's columns are contiguous.
        for j in 0..T::NR {
            let rows = panel.chunks_exact_mut(T::NR);
            if j < nr {
                let base = (j0 + j) * b.cs;
                for (p, row) in rows.enumerate() {
                    row[j] = b.data[base + p * b.rs];
                }
            } else {
                rows.for_each(|row| row[j] = T::zero());
            }
        }
    }
}

/// Rows `i0..i0 + mr` (at most `MR`) and steps `p0..` of A into `panel`:
/// `MR` values per step, zero past row `mr`.
fn pack_a_panel<T: GemmElem>(a: Operand<'_, T>, i0: usize, mr: usize, p0: usize, panel: &mut [T]) {
    let kc = panel.len() / T::MR;
    if a.rs == 1 && mr == T::MR {
        // Column-major: each step's `MR` values are consecutive.
        for (p, col) in panel.chunks_exact_mut(T::MR).enumerate() {
            col.copy_from_slice(&a.data[(p0 + p) * a.cs + i0..][..T::MR]);
        }
        return;
    }
    if a.cs == 1 {
        // Row-major: `mr` contiguous rows, interleaved a step at a time.
        let mut rows: [&[T]; MAX_MR] = [&[]; MAX_MR];
        for (r, row) in rows.iter_mut().enumerate().take(mr) {
            *row = &a.data[(i0 + r) * a.rs + p0..][..kc];
        }
        for (p, col) in panel.chunks_exact_mut(T::MR).enumerate() {
            for (r, v) in col.iter_mut().enumerate() {
                *v = if r < mr { rows[r][p] } else { T::zero() };
            }
        }
        return;
    }
    for (p, col) in panel.chunks_exact_mut(T::MR).enumerate() {
        let base = i0 * a.rs + (p0 + p) * a.cs;
        for (r, v) in col.iter_mut().enumerate() {
            *v = if r < mr {
                a.data[base + r * a.rs]
            } else {
                T::zero()
            };
        }
    }
}

/// The loops around the micro-kernel: `KC` blocks of depth, `NR` panels of
/// columns, `MR` panels of rows. `c` is a band of C: rows `r0..` of the
/// product (A's rows from `r0` on), and the columns of `b`.
fn compute<T: GemmElem>(
    a: Operand<'_, T>,
    b: &PackedB<'_, T>,
    r0: usize,
    mut c: ArrayViewMut2<'_, T>,
    packed_a: &mut Vec<T>,
    simd: Simd,
) {
    let k = a.cols;
    let (m, n) = c.dim();
    let panels_a = m.div_ceil(T::MR);
    let kc_max = block_depth::<T>(k);
    let mc_panels = panels_a
        .div_ceil(panels_a.div_ceil(MC_PANELS).max(1))
        .max(1);
    let mut row_refs: [&[T]; 16] = [&[]; 16];
    let pack_a_block = n.div_ceil(T::NR) >= PACK_A_MIN_PANELS;
    for p0 in (0..k).step_by(kc_max) {
        let kc = kc_max.min(k - p0);
        for ib in (0..panels_a).step_by(mc_panels) {
            let ib_end = panels_a.min(ib + mc_panels);
            // The block's rows of C (each row of a band is contiguous).
            let mut c_rows: [&mut [T]; MC_PANELS * MAX_MR] =
                std::array::from_fn(|_| <&mut [T]>::default());
            let mut block = c.slice_mut(s![ib * T::MR..m.min(ib_end * T::MR), ..]);
            for (slot, row) in c_rows.iter_mut().zip(block.rows_mut()) {
                *slot = row
                    .into_slice()
                    .expect("a row of a band of C is contiguous");
            }
            // With enough panels of B passing over it, the block of A is
            // packed once (each panel `kc` steps of `MR` values): one
            // sequential stream for the kernel instead of `MR` strided ones.
            let packed = pack_a_block || !(a.cs == 1 || a.rs == 1);
            if packed {
                packed_a.resize((ib_end - ib) * kc * T::MR, T::zero());
                for (q, panel) in packed_a.chunks_exact_mut(kc * T::MR).enumerate() {
                    let i = (ib + q) * T::MR;
                    let mr = T::MR.min(m - i);
                    pack_a_panel(a, r0 + i, mr, p0, panel);
                }
            }
            for jp in 0..n.div_ceil(T::NR) {
                let j0 = jp * T::NR;
                let panel_b = b.panel(jp, p0);
                for ip in ib..ib_end {
                    let i = ip * T::MR;
                    let mr = T::MR.min(m - i);
                    let ai = r0 + i;
                    let panel_a = if packed {
                        PanelA::Columns(Panel {
                            data: &packed_a[(ip - ib) * kc * T::MR..],
                            step: T::MR,
                        })
                    } else if a.cs == 1 {
                        for (r, slot) in row_refs[..T::MR].iter_mut().enumerate() {
                            let row = ai + r.min(mr - 1);
                            *slot = &a.data[row * a.rs + p0..][..kc];
                        }
                        PanelA::Rows(&row_refs[..T::MR])
                    } else if mr == T::MR {
                        PanelA::Columns(Panel {
                            data: &a.data[ai + p0 * a.cs..],
                            step: a.cs,
                        })
                    } else {
                        // A last, partial panel of a column-major A.
                        packed_a.resize(kc * T::MR, T::zero());
                        pack_a_panel(a, ai, mr, p0, &mut packed_a[..kc * T::MR]);
                        PanelA::Columns(Panel {
                            data: packed_a,
                            step: T::MR,
                        })
                    };
                    let mut tile = Tile {
                        rows: &mut c_rows[(ip - ib) * T::MR..][..mr],
                        j0,
                        cols: T::NR.min(n - j0),
                        accumulate: p0 > 0,
                    };
                    T::kernel(kc, panel_a, panel_b, simd, &mut tile);
                }
            }
        }
    }
}

/// Where a micro-kernel writes: columns `j0..j0 + cols` of `rows` (at most
/// `MR` rows of C); added to C's values when `accumulate`, else stored.
pub(crate) struct Tile<'t, 'c, T> {
    rows: &'t mut [&'c mut [T]],
    j0: usize,
    cols: usize,
    accumulate: bool,
}

impl<T: Float> Tile<'_, '_, T> {
    /// Stores (or adds) a tile's sums into C.
    fn write<const MR: usize, const NR: usize>(&mut self, acc: &[[T; NR]; MR]) {
        for (c_row, row) in self.rows.iter_mut().zip(acc) {
            let dst = &mut c_row[self.j0..][..self.cols];
            if self.accumulate {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d = *d + v;
                }
            } else {
                dst.copy_from_slice(&row[..self.cols]);
            }
        }
    }
}

/// One `MR`×`NR` tile: for each of `kc` steps, `MR` values of A times `NR`
/// values of B, summed in step order (portable code, no fused multiply-add).
fn portable<T: Float, const MR: usize, const NR: usize>(
    kc: usize,
    a: PanelA<'_, T>,
    b: Panel<'_, T>,
) -> [[T; NR]; MR] {
    let mut acc = [[T::zero(); NR]; MR];
    for p in 0..kc {
        let bp = chunk::<T, NR>(b.data, p * b.step);
        let ap: [T; MR] = match a {
            PanelA::Columns(a) => *chunk::<T, MR>(a.data, p * a.step),
            PanelA::Rows(rows) => std::array::from_fn(|i| rows[i][p]),
        };
        for (row, &ai) in acc.iter_mut().zip(&ap) {
            for (c, &bj) in row.iter_mut().zip(bp) {
                *c = ai * bj + *c;
            }
        }
    }
    acc
}

/// The micro-kernels for x86-64: the accumulators of a 6-row tile stay in
/// registers (two 512-bit ones a row for f32 with AVX-512, else two 256-bit
/// ones a row per pass of 16 f32 or 8 f64 columns); each step loads one row of
/// B into them and broadcasts each of A's 6 values.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Panel, PanelA, Tile};
    use std::arch::x86_64::*;

    /// Row starts of an A panel and the distance between steps: a(i, p) is
    /// `rows[i][p * step]`. None unless every read of `kc` steps is in bounds.
    fn a_rows<T>(kc: usize, a: PanelA<'_, T>) -> Option<([*const T; 6], usize)> {
        let last = kc.checked_sub(1)?;
        match a {
            PanelA::Columns(a) => {
                (a.data.len() >= last.checked_mul(a.step)?.checked_add(6)?).then(|| {
                    let base = a.data.as_ptr();
                    (std::array::from_fn(|i| base.wrapping_add(i)), a.step)
                })
            }
            PanelA::Rows(rows) => {
                let rows: &[&[T]; 6] = rows.try_into().ok()?;
                rows.iter()
                    .all(|r| r.len() >= kc)
                    .then(|| (std::array::from_fn(|i| rows[i].as_ptr()), 1))
            }
        }
    }

    /// Whether `kc` steps of `width` values of B are in bounds.
    fn b_fits<T>(kc: usize, b: Panel<'_, T>, width: usize) -> bool {
        kc.checked_sub(1)
            .and_then(|last| last.checked_mul(b.step))
            .and_then(|end| end.checked_add(width))
            .is_some_and(|end| b.data.len() >= end)
    }

    macro_rules! kernel {
        ($name:ident, $inner:ident, $t:ty, $nr:literal, $lanes:literal) => {
            /// Writes the 6×NR tile's sums into `tile` (stored, or added
            /// to C when `tile.accumulate`): straight into C for a whole
            /// tile, through a local copy for a partial one. False if the
            /// panels are too short (never, as `compute` builds them) or the
            /// CPU lacks AVX2 and FMA; nothing is written then.
            pub(super) fn $name(
                kc: usize,
                a: PanelA<'_, $t>,
                b: Panel<'_, $t>,
                tile: &mut Tile<'_, '_, $t>,
            ) -> bool {
                let Some((rows, step)) = a_rows(kc, a) else {
                    return false;
                };
                let half = tile.cols <= $lanes;
                if !b_fits(kc, b, if half { $lanes } else { $nr }) || !super::has_avx2() {
                    return false;
                }
                if tile.rows.len() == 6 && tile.cols == $nr {
                    let mut out: [*mut $t; 6] = [std::ptr::null_mut(); 6];
                    let mut c_rows = tile.rows.iter_mut();
                    for o in out.iter_mut() {
                        match c_rows
                            .next()
                            .and_then(|r| r.get_mut(tile.j0..tile.j0 + $nr))
                        {
                            Some(r) => *o = r.as_mut_ptr(),
                            None => return false,
                        }
                    }
                    // SAFETY: the CPU has AVX2 and FMA (checked above); every
                    // read is in bounds: a(i, p) = rows[i] + p * step and
                    // b + p * b.step .. + V * LANES for p < kc (checked by
                    // a_rows and b_fits); every write is too: each out[i]
                    // starts NR values of a distinct row of C.
                    unsafe {
                        $inner::<2>(
                            kc,
                            rows,
                            step,
                            b.data.as_ptr(),
                            b.step,
                            out,
                            tile.accumulate,
                        )
                    };
                    return true;
                }
                let mut acc = [[0.0; $nr]; 6];
                let out: [*mut $t; 6] = {
                    let mut rows = acc.iter_mut();
                    std::array::from_fn(|_| {
                        rows.next().map_or(std::ptr::null_mut(), |r| r.as_mut_ptr())
                    })
                };
                // SAFETY: as above; the writes go to `acc`, NR values a row.
                unsafe {
                    if half {
                        $inner::<1>(kc, rows, step, b.data.as_ptr(), b.step, out, false)
                    } else {
                        $inner::<2>(kc, rows, step, b.data.as_ptr(), b.step, out, false)
                    }
                }
                tile.write(&acc);
                true
            }
        };
    }

    /// The inner loop of a 6-row tile, `V` registers of `LANES` values a row.
    macro_rules! inner {
        ($inner:ident, $feature:literal, $t:ty, $lanes:literal, $vec:ty,
         $zero:ident, $load:ident, $broadcast:ident, $fmadd:ident, $store:ident, $add:ident) => {
            /// `V` registers (of `LANES` values) per row: 2 for a full
            /// tile, 1 for a last panel of at most NR / 2 columns. The sums
            /// go to `out[i]`, `V * LANES` values a row, stored or added.
            #[target_feature(enable = $feature)]
            unsafe fn $inner<const V: usize>(
                kc: usize,
                a: [*const $t; 6],
                a_step: usize,
                b: *const $t,
                b_step: usize,
                out: [*mut $t; 6],
                accumulate: bool,
            ) {
                let mut c: [[$vec; V]; 6] = [[$zero(); V]; 6];
                for p in 0..kc {
                    // SAFETY (all reads): in bounds, as the caller checked.
                    let bp = unsafe { b.add(p * b_step) };
                    let bv: [$vec; V] =
                        std::array::from_fn(|v| unsafe { $load(bp.add(v * $lanes)) });
                    for (ci, ai) in c.iter_mut().zip(&a) {
                        let x = unsafe { $broadcast(&*ai.add(p * a_step)) };
                        for (cv, &b) in ci.iter_mut().zip(&bv) {
                            *cv = $fmadd(x, b, *cv);
                        }
                    }
                }
                for (row, ci) in out.iter().zip(&c) {
                    for (v, &cv) in ci.iter().enumerate() {
                        // SAFETY: each row of `out` holds V * LANES values.
                        unsafe {
                            let dst = row.add(v * $lanes);
                            let cv = if accumulate { $add($load(dst), cv) } else { cv };
                            $store(dst, cv);
                        }
                    }
                }
            }
        };
    }

    inner!(
        f32_avx2,
        "avx2,fma",
        f32,
        8,
        __m256,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_broadcast_ss,
        _mm256_fmadd_ps,
        _mm256_storeu_ps,
        _mm256_add_ps
    );
    inner!(
        f32_avx512,
        "avx512f",
        f32,
        16,
        __m512,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        broadcast_512,
        _mm512_fmadd_ps,
        _mm512_storeu_ps,
        _mm512_add_ps
    );
    inner!(
        f64_avx2,
        "avx2,fma",
        f64,
        4,
        __m256d,
        _mm256_setzero_pd,
        _mm256_loadu_pd,
        _mm256_broadcast_sd,
        _mm256_fmadd_pd,
        _mm256_storeu_pd,
        _mm256_add_pd
    );
    kernel!(f64_6x8, f64_avx2, f64, 8, 4);

    /// `_mm256_broadcast_ss`'s AVX-512 counterpart: the value at `x` in all
    /// 16 lanes.
    #[target_feature(enable = "avx512f")]
    fn broadcast_512(x: &f32) -> __m512 {
        _mm512_set1_ps(*x)
    }

    /// Writes the 6×32 f32 tile's sums into `tile` (stored, or added to C
    /// when `tile.accumulate`): straight into C for a whole tile, through a
    /// local copy for a partial one; with AVX-512 when `wide` (two registers
    /// a row, one for a last panel of at most 16 columns), else with AVX2
    /// (16 columns a pass, four registers a row over two passes). False if the
    /// panels are too short (never, as `compute` builds them) or the CPU
    /// lacks the instructions; nothing is written then.
    pub(super) fn f32_6x32(
        kc: usize,
        a: PanelA<'_, f32>,
        b: Panel<'_, f32>,
        tile: &mut Tile<'_, '_, f32>,
        wide: bool,
    ) -> bool {
        let Some((rows, step)) = a_rows(kc, a) else {
            return false;
        };
        let lanes = if wide { 16 } else { 8 };
        // The columns the registers cover: the tile's, rounded up to a register.
        let width = tile.cols.div_ceil(lanes) * lanes;
        let has = if wide {
            super::has_avx512()
        } else {
            super::has_avx2()
        };
        if width > 32 || !b_fits(kc, b, width) || !has {
            return false;
        }
        let full = tile.rows.len() == 6 && tile.cols == 32;
        let mut acc = [[0.0f32; 32]; 6];
        let mut out: [*mut f32; 6] = [std::ptr::null_mut(); 6];
        if full {
            let mut c_rows = tile.rows.iter_mut();
            for o in out.iter_mut() {
                match c_rows.next().and_then(|r| r.get_mut(tile.j0..tile.j0 + 32)) {
                    Some(r) => *o = r.as_mut_ptr(),
                    None => return false,
                }
            }
        } else {
            for (o, r) in out.iter_mut().zip(acc.iter_mut()) {
                *o = r.as_mut_ptr();
            }
        }
        let accumulate = full && tile.accumulate;
        let (b, b_step) = (b.data.as_ptr(), b.step);
        // SAFETY: the CPU has the instructions (checked above); every read is
        // in bounds: a(i, p) = rows[i] + p * step (checked by a_rows) and
        // b + p * b.step .. + width for p < kc (checked by b_fits), and each
        // pass reads columns below `width`; every write is too: each out[i]
        // starts 32 values of a distinct row of C, or of `acc`.
        unsafe {
            if wide {
                if width == 32 {
                    f32_avx512::<2>(kc, rows, step, b, b_step, out, accumulate)
                } else {
                    f32_avx512::<1>(kc, rows, step, b, b_step, out, accumulate)
                }
            } else {
                for h in (0..width).step_by(16) {
                    let (b, out) = (b.add(h), out.map(|o| o.add(h)));
                    if width - h >= 16 {
                        f32_avx2::<2>(kc, rows, step, b, b_step, out, accumulate)
                    } else {
                        f32_avx2::<1>(kc, rows, step, b, b_step, out, accumulate)
                    }
                }
            }
        }
        if !full {
            tile.write(&acc);
        }
        true
    }
}

/// The `W` values of `data` from `offset` on.
#[inline(always)]
fn chunk<T, const W: usize>(data: &[T], offset: usize) -> &[T; W] {
    match data[offset..].first_chunk::<W>() {
        Some(c) => c,
        None => panic!("a GEMM panel ends before its last step"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values<T: GemmElem>(n: usize, seed: usize) -> Vec<T> {
        (0..n)
            .map(|i| {
                let v = ((i * 7919 + seed * 104_729) % 2003) as f64 / 1001.5 - 1.0;
                T::from(v).unwrap_or_else(T::zero)
            })
            .collect()
    }

    /// An m×k operand, stored transposed when `transposed` (then read as a view).
    fn operand<T: GemmElem>(
        data: &[T],
        rows: usize,
        cols: usize,
        transposed: bool,
    ) -> Operand<'_, T> {
        if transposed {
            Operand::new(data, cols, rows, rows, 1).map(Operand::t)
        } else {
            Operand::new(data, rows, cols, cols, 1)
        }
        .expect("the data fits")
    }

    /// Each element of a·b, and the sum of |a||b| of its terms, in f64.
    fn reference<T: GemmElem>(a: Operand<'_, T>, b: Operand<'_, T>) -> (Vec<f64>, Vec<f64>) {
        let at = |o: &Operand<'_, T>, i: usize, j: usize| {
            o.data[i * o.rs + j * o.cs].to_f64().unwrap_or(f64::NAN)
        };
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let mut c = vec![0.0; m * n];
        let mut scale = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += at(&a, i, p) * at(&b, p, j);
                    scale[i * n + j] += (at(&a, i, p) * at(&b, p, j)).abs();
                }
            }
        }
        (c, scale)
    }

    /// Every shape and layout against the f64 reference, with the portable
    /// and every SIMD kernel the CPU has, on 1 and 3 threads; the thread
    /// count never changes a bit, nor does AVX-512 against AVX2.
    fn check<T: GemmElem>(tolerance: f64) {
        let shapes = [
            (1, 1, 1),
            (5, 7, 9),
            (6, 3, 16),
            (7, 1, 17),
            (13, 255, 8),
            (12, 257, 33),
            (100, 784 / 4, 50),
            (37, 600, 3),
            (50, 300, 40),
            // Wide enough that 3 threads split C by columns, with a last,
            // partial panel.
            (20, 70, 389),
            // A last panel of more than 16 of f32's 32 columns, and the
            // shapes of W1's products.
            (6, 40, 50),
            (100, 784, 50),
            (784, 100, 50),
            // W2's products, which 16 threads cut into a grid of rows and columns.
            (128, 784, 512),
            (128, 512, 784),
        ];
        for &(m, k, n) in &shapes {
            let (a_data, b_data) = (values::<T>(m * k, 1), values::<T>(k * n, 2));
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = operand(&a_data, m, k, ta);
                let b = operand(&b_data, k, n, tb);
                let (want, scale) = reference(a, b);
                let mut fused: Option<(Simd, Vec<T>)> = None;
                for simd in Simd::available() {
                    let mut one = vec![T::nan(); m * n];
                    gemm_with(a, b, &mut one, simd, 1).expect("shapes agree");
                    for (i, ((&got, &w), &s)) in one.iter().zip(&want).zip(&scale).enumerate() {
                        let got = got.to_f64().unwrap_or(f64::NAN);
                        assert!(
                            (got - w).abs() <= tolerance * s.max(1e-30),
                            "{m}x{k}x{n} ta {ta} tb {tb} simd {simd:?}: element {i} is {got}, want {w}"
                        );
                    }
                    for threads in [2, 3, 16] {
                        let mut many = vec![T::nan(); m * n];
                        gemm_with(a, b, &mut many, simd, threads).expect("shapes agree");
                        assert!(
                            one.iter()
                                .zip(&many)
                                .all(|(x, y)| x.to_f64().map(f64::to_bits)
                                    == y.to_f64().map(f64::to_bits)),
                            "{m}x{k}x{n} ta {ta} tb {tb} simd {simd:?}: {threads} threads differ from 1"
                        );
                    }
                    // The SIMD kernels make the same fused multiply-adds.
                    if simd != Simd::None {
                        match &fused {
                            None => fused = Some((simd, one)),
                            Some((first, c)) => assert!(
                                c.iter().zip(&one).all(|(x, y)| x.to_f64().map(f64::to_bits)
                                    == y.to_f64().map(f64::to_bits)),
                                "{m}x{k}x{n} ta {ta} tb {tb}: {simd:?} differs from {first:?}"
                            ),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_products_match_the_reference_on_any_thread_count() {
        check::<f32>(1e-5);
    }

    #[test]
    fn f64_products_match_the_reference_on_any_thread_count() {
        check::<f64>(1e-13);
    }

    #[test]
    fn the_grid_cuts_wide_products_by_columns_and_many_threads_both_ways() {
        // f32: MR 6, NR 32.
        assert_eq!(
            grid::<f32>(128, 512, 2),
            (1, 2),
            "W2's forward product on 2 threads"
        );
        assert_eq!(grid::<f32>(784, 50, 2), (2, 1), "W1's dW on 2 threads");
        assert_eq!(
            grid::<f32>(128, 512, 16),
            (2, 8),
            "W2's forward product on 16 threads"
        );
        let (r, c) = grid::<f32>(1024, 1024, 16);
        assert_eq!(r * c, 16, "a large square product uses every thread");
        assert!(r >= 2 && c >= 2, "and both of its dimensions: {r} x {c}");
        assert_eq!(grid::<f32>(5, 30, 16), (1, 1), "one tile");
    }

    #[test]
    fn degenerate_products() {
        let a = [1.0f64; 6];
        // k = 0: C is all zeros whatever it held.
        let mut c = [f64::NAN; 4];
        let empty: [f64; 0] = [];
        let a0 = Operand::new(&empty, 2, 0, 0, 1).expect("empty");
        let b0 = Operand::new(&empty, 0, 2, 2, 1).expect("empty");
        gemm(a0, b0, &mut c).expect("2x0 by 0x2");
        assert_eq!(c, [0.0; 4]);
        // m = 0 or n = 0: nothing to write.
        let a_m0 = Operand::new(&empty, 0, 3, 3, 1).expect("empty");
        let b = Operand::new(&a, 3, 2, 2, 1).expect("fits");
        gemm(a_m0, b, &mut []).expect("0x3 by 3x2");
        // Mismatched shapes and short buffers are errors.
        let a23 = Operand::new(&a, 2, 3, 3, 1).expect("fits");
        assert!(gemm(a23, a23, &mut c).is_err(), "2x3 by 2x3");
        assert!(gemm(a23, b, &mut c[..3]).is_err(), "C too small");
        assert!(
            Operand::new(&a, 3, 3, 3, 1).is_none(),
            "9 elements do not fit in 6"
        );
        assert!(
            Operand::new(&a, 2, 3, usize::MAX, 1).is_none(),
            "overflowing strides"
        );
    }
}
