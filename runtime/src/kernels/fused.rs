//! The Fused kernel: a small program evaluated over the inputs broadcast to
//! the output. Each step calls the same scalar function as the op it
//! replaces, so a fused result equals the unfused one bit for bit.
//!
//! When every input meets the output in one of the simple broadcast patterns
//! of `elementwise::Lanes` (same shape, a scalar, a row repeated, one value
//! per row) and the output is contiguous, the program runs a chunk of
//! `CHUNK` elements at a time: each step is one loop over the chunk (its
//! function chosen once per chunk, not per element), its values kept in a
//! register (a part of the thread's scratch buffer, which grows to the
//! largest program and is kept), the last step's written into the output;
//! a step whose operands are all single values (scalar constants, a
//! column's value within one row) computes one value.
//! Large outputs are split between two threads like the other elementwise
//! ops. Other broadcasts go element by element. Nothing is allocated once
//! the thread's scratch buffer has grown to the largest program.

use super::elementwise::Lanes;
use super::{input, Elem, Inputs, Scratch};
use crate::op::{
    check_fused, BinaryFn, FusedStep, Map1, Map2, UnaryFn, FUSED_MAX_INPUTS, FUSED_MAX_STEPS,
};
use crate::parallel::split_elements;
use ndarray::{ArrayD, ArrayViewD};

/// Elements per chunk: enough that choosing each step's loop costs little
/// per element, few enough that a program's registers (10 steps: 20 KiB in
/// f32) stay in L1.
const CHUNK: usize = 512;

/// The program on `ins` into `out` (of the output's shape).
pub(super) fn fused<T: Elem>(
    program: &[FusedStep],
    ins: &dyn Inputs,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    run(program, ins, None, out)
}

/// The program with input `k`'s values in `io` (of the output's shape),
/// which takes the output; the other inputs come from `ins`. Each chunk's
/// values of input k are read before the chunk's output is written.
pub(super) fn fused_in_place<T: Elem>(
    program: &[FusedStep],
    k: usize,
    ins: &dyn Inputs,
    io: &mut ArrayD<T>,
) -> Result<(), String> {
    run(program, ins, Some(k), io)
}

fn run<T: Elem>(
    program: &[FusedStep],
    ins: &dyn Inputs,
    in_place: Option<usize>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let n = ins.len();
    check_fused(program, n)?;
    let mut views: [Option<ArrayViewD<'_, T>>; FUSED_MAX_INPUTS] = Default::default();
    for (k, v) in views.iter_mut().enumerate().take(n) {
        if Some(k) != in_place {
            *v = Some(input::<T>(ins, k)?);
        }
    }
    // Inputs past the program's (none is read: `check_fused`) and the one
    // in `out` are placeholders.
    let mut lanes = [Lanes::Scalar(T::zero()); FUSED_MAX_INPUTS];
    let simple = views.iter().take(n).zip(&mut lanes).all(|(v, l)| match v {
        None => true,
        Some(v) => match Lanes::of(v, out.shape()) {
            Some(pattern) => {
                *l = pattern;
                true
            }
            None => false,
        },
    });
    let width = out.shape().last().copied().unwrap_or(1).max(1);
    if simple {
        if let Some(y) = out.as_slice_mut() {
            // Parts start at a row, where a repeated row starts over.
            split_elements(y, width, &|offset, y| {
                let lanes = lanes.map(|l| l.from(offset, width));
                by_chunks(program, &lanes, in_place, y, width);
            });
            return Ok(());
        }
    }
    by_element(program, &views, n, in_place, out)
}

/// Where a register's values are, for the chunk being computed.
#[derive(Clone, Copy)]
enum At<'a, T> {
    /// In the register array.
    Register,
    /// In an output-shaped input's data (from the part's first element).
    Data(&'a [T]),
    /// One value for the whole chunk.
    One(T),
}

/// An operand of a step: a chunk of values or one value.
#[derive(Clone, Copy)]
enum Val<'a, T> {
    Many(&'a [T]),
    One(T),
}

/// The program over `y` (whose rows have `width` elements; the lanes start
/// where `y` does), `CHUNK` elements at a time, with this thread's scratch
/// buffer as registers.
fn by_chunks<'a, T: Elem>(
    program: &[FusedStep],
    lanes: &[Lanes<'a, T>; FUSED_MAX_INPUTS],
    in_place: Option<usize>,
    y: &mut [T],
    width: usize,
) {
    T::with_scratch(Scratch::Registers, |registers| {
        // The last step writes into the output: no register.
        let size = (program.len() - 1) * CHUNK;
        if registers.len() < size {
            registers.resize(size, T::zero());
        }
        // Each chunk writes a register's place before reading it.
        let mut at = [At::Register; FUSED_MAX_STEPS];
        for (c, y) in y.chunks_mut(CHUNK).enumerate() {
            chunk(
                program,
                lanes,
                in_place,
                c * CHUNK,
                width,
                y,
                registers,
                &mut at,
            );
        }
    });
}

/// The program over one chunk `y`, elements `e0..` of the lanes; register
/// k is `registers[k * CHUNK..][..y.len()]`, the last step's is `y`. Input
/// `in_place`, if any, is `y`'s values on entry.
#[allow(clippy::too_many_arguments)]
fn chunk<'a, T: Elem>(
    program: &[FusedStep],
    lanes: &[Lanes<'a, T>; FUSED_MAX_INPUTS],
    in_place: Option<usize>,
    e0: usize,
    width: usize,
    y: &mut [T],
    registers: &mut [T],
    at: &mut [At<'a, T>; FUSED_MAX_STEPS],
) {
    let len = y.len();
    let last = program.len() - 1;
    for (k, step) in program.iter().enumerate() {
        let (done, rest) = registers.split_at_mut(k * CHUNK);
        if matches!(*step, FusedStep::Input(i) if Some(i) == in_place) {
            // Copied before the last step writes `y` (a last step that is
            // this input leaves `y` as it is).
            if k != last {
                rest[..len].copy_from_slice(y);
            }
            at[k] = At::Register;
            continue;
        }
        let val = |j: usize| operand(at[j], &done[j * CHUNK..], e0, len);
        let out: &mut [T] = if k == last { &mut *y } else { &mut rest[..len] };
        at[k] = match *step {
            FusedStep::Input(i) => input_chunk(lanes[i], e0, width, out),
            FusedStep::Const(v) => At::One(T::from_f64(v)),
            FusedStep::Unary(f, a) => match val(a) {
                Val::One(x) => At::One(f.eval(x)),
                Val::Many(x) => {
                    map1(f, x, out);
                    At::Register
                }
            },
            FusedStep::Binary(f, a, b) => match (val(a), val(b)) {
                (Val::One(u), Val::One(v)) => At::One(f.eval(u, v)),
                (u, v) => {
                    map2(f, u, v, out);
                    At::Register
                }
            },
        };
    }
    // A last step in a register wrote `y`; otherwise `y` takes its values.
    match at[last] {
        At::Register => {}
        At::Data(s) => y.copy_from_slice(&s[e0..e0 + len]),
        At::One(v) => y.fill(v),
    }
}

/// Where an input's values for elements `e0..e0 + out.len()` are: read in
/// place (same shape), one value (a scalar, or a column within one row), or
/// written into `out` (a row repeated, a column across rows).
fn input_chunk<'a, T: Elem>(
    lanes: Lanes<'a, T>,
    e0: usize,
    width: usize,
    out: &mut [T],
) -> At<'a, T> {
    match lanes {
        Lanes::Full(s) => At::Data(s),
        Lanes::Scalar(v) => At::One(v),
        Lanes::Row(s) => {
            // Row segments: the rest of the chunk's first row, then whole rows.
            let mut j = e0 % width;
            let mut rest = out;
            while !rest.is_empty() {
                let take = (width - j).min(rest.len());
                let (segment, tail) = rest.split_at_mut(take);
                segment.copy_from_slice(&s[j..j + take]);
                (rest, j) = (tail, 0);
            }
            At::Register
        }
        Lanes::Column(s) => {
            let first = e0 / width;
            if first == (e0 + out.len()).saturating_sub(1) / width {
                return At::One(s[first]);
            }
            let (mut r, mut j) = (first, e0 % width);
            let mut rest = out;
            while !rest.is_empty() {
                let take = (width - j).min(rest.len());
                let (segment, tail) = rest.split_at_mut(take);
                segment.fill(s[r]);
                (rest, r, j) = (tail, r + 1, 0);
            }
            At::Register
        }
    }
}

/// An operand's values for a chunk of `len` from `e0` (`register` is its
/// register's place onwards).
fn operand<'a, T: Elem>(at: At<'a, T>, register: &'a [T], e0: usize, len: usize) -> Val<'a, T> {
    match at {
        At::Register => Val::Many(&register[..len]),
        At::Data(s) => Val::Many(&s[e0..e0 + len]),
        At::One(v) => Val::One(v),
    }
}

/// `out = f(x)`, one loop per function.
fn map1<T: Elem>(f: UnaryFn, x: &[T], out: &mut [T]) {
    struct Each<'a, T>(&'a [T], &'a mut [T]);
    impl<T: Copy> Map1<T> for Each<'_, T> {
        type Out = ();
        fn call(self, g: impl Fn(T) -> T + Copy + Send + Sync) {
            for (o, &v) in self.1.iter_mut().zip(self.0) {
                *o = g(v);
            }
        }
    }
    f.with(Each(x, out))
}

/// `out = f(a, b)` (not both single values), one loop per function.
fn map2<T: Elem>(f: BinaryFn, a: Val<'_, T>, b: Val<'_, T>, out: &mut [T]) {
    struct Each<'a, 'o, T>(Val<'a, T>, Val<'a, T>, &'o mut [T]);
    impl<T: Copy> Map2<T> for Each<'_, '_, T> {
        type Out = ();
        fn call(self, g: impl Fn(T, T) -> T + Copy + Send + Sync) {
            let Each(a, b, out) = self;
            match (a, b) {
                (Val::Many(a), Val::Many(b)) => {
                    for ((o, &u), &v) in out.iter_mut().zip(a).zip(b) {
                        *o = g(u, v);
                    }
                }
                (Val::Many(a), Val::One(v)) => {
                    for (o, &u) in out.iter_mut().zip(a) {
                        *o = g(u, v);
                    }
                }
                (Val::One(u), Val::Many(b)) => {
                    for (o, &v) in out.iter_mut().zip(b) {
                        *o = g(u, v);
                    }
                }
                (Val::One(u), Val::One(v)) => out.fill(g(u, v)),
            }
        }
    }
    f.with(Each(a, b, out))
}

/// The program element by element, over any broadcast of the inputs
/// (input `in_place`, if any, is `out`'s element on entry).
fn by_element<T: Elem>(
    program: &[FusedStep],
    views: &[Option<ArrayViewD<'_, T>>; FUSED_MAX_INPUTS],
    n: usize,
    in_place: Option<usize>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let shape = out.raw_dim();
    let mut broadcast: [Option<ArrayViewD<'_, T>>; FUSED_MAX_INPUTS] = Default::default();
    for (b, v) in broadcast.iter_mut().zip(views) {
        if let Some(v) = v {
            let view = v.broadcast(shape.clone()).ok_or_else(|| {
                format!(
                    "Fused: an input of shape {:?} does not broadcast to {:?}",
                    v.shape(),
                    out.shape()
                )
            })?;
            *b = Some(view);
        }
    }
    let mut iters: [Option<ndarray::iter::Iter<'_, T, ndarray::IxDyn>>; FUSED_MAX_INPUTS] =
        Default::default();
    for (it, b) in iters.iter_mut().zip(&broadcast) {
        *it = b.as_ref().map(|v| v.iter());
    }
    let mut xs = [T::zero(); FUSED_MAX_INPUTS];
    let mut regs = [T::zero(); FUSED_MAX_STEPS];
    let last = program.len() - 1;
    for y in out.iter_mut() {
        for (j, (x, it)) in xs.iter_mut().zip(iters.iter_mut()).take(n).enumerate() {
            *x = if Some(j) == in_place {
                *y
            } else {
                *it.as_mut()
                    .and_then(|i| i.next())
                    .ok_or("Fused: an input ran out of elements")?
            };
        }
        for (k, step) in program.iter().enumerate() {
            regs[k] = match *step {
                FusedStep::Input(i) => xs[i],
                FusedStep::Const(v) => T::from_f64(v),
                FusedStep::Unary(f, a) => f.eval(regs[a]),
                FusedStep::Binary(f, a, b) => f.eval(regs[a], regs[b]),
            };
        }
        *y = regs[last];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Value;
    use crate::tensor::Tensor;
    use ndarray::{ArrayD, IxDyn};

    /// Values with negatives, zeros and a spread of magnitudes.
    fn values(shape: &[usize], seed: usize) -> ArrayD<f64> {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| match (i * 31 + seed * 17) % 7 {
                0 => 0.0,
                k => ((i * 7919 + seed * 104_729) % 2003) as f64 / 500.0 - 2.0 + k as f64 * 1e-3,
            })
            .collect();
        ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape")
    }

    /// The program's result element by element, the reference.
    fn reference(program: &[FusedStep], ins: &[Tensor], shape: &[usize]) -> ArrayD<f64> {
        let views: [Option<ArrayViewD<'_, f64>>; FUSED_MAX_INPUTS] =
            std::array::from_fn(|k| ins.get(k).and_then(|t| f64::view(t)));
        let mut out = ArrayD::zeros(IxDyn(shape));
        by_element(program, &views, ins.len(), None, &mut out).expect("reference");
        out
    }

    /// The fused result of `program` on `ins`, bit-compared with the
    /// element-by-element reference.
    fn check(program: &[FusedStep], ins: &[Tensor], shape: &[usize], what: &str) {
        let want = reference(program, ins, shape);
        let refs: Vec<&Tensor> = ins.iter().collect();
        let mut got = ArrayD::from_elem(IxDyn(shape), f64::NAN);
        fused(program, &refs.as_slice(), &mut got).expect("runs");
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits()),
            "{shape:?}, {what}: chunked evaluation differs"
        );
        // In place over each input of the output's shape: the same bits.
        for (k, t) in ins.iter().enumerate() {
            let Some(view) = f64::view(t).filter(|v| v.shape() == shape) else {
                continue;
            };
            let mut io = view.to_owned();
            fused_in_place(program, k, &refs.as_slice(), &mut io).expect("runs in place");
            assert!(
                io.iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
                "{shape:?}, {what}: in place over input {k} differs"
            );
        }
    }

    /// Every broadcast pattern, on outputs below and above a chunk and above
    /// the threshold of splitting in two, gives the element-by-element bits.
    #[test]
    fn chunks_agree_with_element_by_element_evaluation() {
        use BinaryFn::*;
        use FusedStep::*;
        // ((x - m) * r + c) then relu, ReluGrad against x, times exp(0.5),
        // divided by r, max with 0.5, cubed.
        let program = vec![
            Input(0),
            Input(1),
            Input(2),
            Input(3),
            Const(0.5),
            Binary(Sub, 0, 1),
            Binary(Mul, 5, 2),
            Binary(Add, 6, 3),
            Unary(UnaryFn::Relu, 7),
            Binary(ReluGrad, 8, 0),
            Unary(UnaryFn::Exp, 4),
            Binary(Mul, 9, 10),
            Binary(Div, 11, 2),
            Binary(Maximum, 12, 4),
            Unary(UnaryFn::Pow(3.0), 13),
        ];
        crate::parallel::with_test_threads(2, || {
            for &(rows, cols) in &[(1, 1), (3, 5), (7, 130), (500, 130), (1, 70_000)] {
                let shape = [rows, cols];
                let r = Tensor::from(values(&[rows, 1], 3).mapv(|v| v + 3.0));
                // m a row, r a column, c a scalar.
                let ins = vec![
                    Tensor::from(values(&shape, 1)),
                    Tensor::from(values(&[cols], 2)),
                    r.clone(),
                    Tensor::from(values(&[], 4)),
                ];
                check(&program, &ins, &shape, "row, column and scalar");
                // Every input full or scalar: chunks over the whole output.
                let full = vec![
                    Tensor::from(values(&shape, 1)),
                    Tensor::from(values(&shape, 2)),
                    Tensor::from(values(&shape, 3).mapv(|v| v + 3.0)),
                    Tensor::from(values(&[1, 1], 4)),
                ];
                check(&program, &full, &shape, "full and scalar");
                // A transposed input takes the element-by-element path.
                let mut strided = ins.clone();
                strided[0] = Tensor::from(values(&[cols, rows], 5).reversed_axes());
                check(&program, &strided, &shape, "a strided input");
            }
        });
    }
}
