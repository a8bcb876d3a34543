//! `AllReduceMean`: each input averaged over the ranks of a data-parallel
//! run (Horovod's `allreduce` with `average`, DistributedDataParallel's
//! gradient averaging). The compiler puts one before the update ops of a
//! train step compiled for `ranks` processes, on every gradient at once, so
//! a step sends one buffer: the inputs are laid end to end, summed across
//! the ranks by the process's [`crate::collective`], and divided by
//! `ranks`. Its gradient (`compiler/src/grad/all_reduce_mean.rs`) is the
//! same average of the outputs' gradients.

use super::{Arity, In, Op, Takes};
use crate::kernels::Inputs;
use crate::{DType, Tensor, TensorType};
use std::cell::RefCell;

pub(super) const ARITY: Arity = Arity::AtLeast(1);
pub(super) const TAKES: Takes = Takes::Uniform(In::Float);

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::AllReduceMean { ranks } => format!("{{ranks: {ranks}}}"),
        _ => String::new(),
    }
}

fn ranks(op: &Op) -> Result<usize, String> {
    match op {
        Op::AllReduceMean { ranks } if *ranks >= 1 => Ok(*ranks),
        Op::AllReduceMean { ranks } => Err(format!("ranks must be at least 1, got {ranks}")),
        _ => Err(format!("{} is not an AllReduceMean", op.name())),
    }
}

pub(super) fn infer(op: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    // One dtype for every input (`Takes::Uniform` of floats, checked by
    // `infer`): they are averaged as one buffer.
    ranks(op)?;
    Ok(ins.iter().map(|&t| t.clone()).collect())
}

thread_local! {
    /// The buffer a step's inputs are laid out in, reused from step to step.
    static BUFFER32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BUFFER64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn run(op: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let n = ranks(op)?;
    if outs.len() != ins.len() {
        return Err(format!("{} inputs but {} outputs", ins.len(), outs.len()));
    }
    let comm = crate::collective::collective();
    let running = comm.map_or(1, |c| c.ranks());
    if running != n {
        return Err(format!(
            "the train step was compiled for {n} ranks and runs on {running}: start it with `mpirun -np {n}` (gradc built with --features mpi)"
        ));
    }
    let inputs: Vec<&Tensor> = (0..ins.len())
        .map(|k| ins.get(k).ok_or_else(|| format!("input {k} is missing")))
        .collect::<Result<_, _>>()?;
    macro_rules! average {
        ($t:ty, $buffer:ident, $variant:ident, $reduce:ident) => {
            $buffer.with(|buffer| {
                let mut buf = buffer.borrow_mut();
                buf.clear();
                for x in &inputs {
                    match x {
                        Tensor::$variant(a) => match a.as_slice() {
                            Some(values) => buf.extend_from_slice(values),
                            None => buf.extend(a.iter().copied()),
                        },
                        other => return Err(format!("an input is {}, not {}", other.dtype(), stringify!($t))),
                    }
                }
                if let Some(c) = comm {
                    let start = std::time::Instant::now();
                    c.$reduce(&mut buf)?;
                    crate::collective::record_exchange(
                        buf.len() * std::mem::size_of::<$t>(),
                        start.elapsed(),
                    );
                }
                let scale = n as $t;
                let mut at = 0;
                for (out, x) in outs.iter_mut().zip(&inputs) {
                    let Tensor::$variant(y) = out else {
                        return Err("an output buffer has another dtype".into());
                    };
                    if y.shape() != x.shape() {
                        return Err(format!("an output buffer is {:?}, its input {:?}", y.shape(), x.shape()));
                    }
                    let sums = buf.get(at..at + x.len()).ok_or("the buffer is shorter than the inputs")?;
                    match y.as_slice_mut() {
                        Some(ys) => ys.iter_mut().zip(sums).for_each(|(y, s)| *y = *s / scale),
                        None => y.iter_mut().zip(sums).for_each(|(y, s)| *y = *s / scale),
                    }
                    at += x.len();
                }
                Ok(())
            })
        };
    }
    match inputs.first().map(|t| t.dtype()) {
        Some(DType::F32) => average!(f32, BUFFER32, F32, all_reduce_sum_f32),
        Some(DType::F64) => average!(f64, BUFFER64, F64, all_reduce_sum_f64),
        Some(other) => Err(format!("AllReduceMean averages floats, got {other}")),
        None => Ok(()),
    }
}
