//! Kernel tests against hand-computed values.

use super::{eval, eval_in_place, eval_into, in_place_inputs};
use crate::op::DataFormat;
use crate::{DType, Literal, Op, Shape, Tensor, TensorType};
use ndarray::{ArrayD, IxDyn};

fn t64(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F64, shape, data.to_vec()).unwrap()
}

fn t32(shape: &[usize], data: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F32, shape, data.to_vec()).unwrap()
}

/// 1, 2, ..., n in the given shape.
fn iota(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    t64(shape, &(1..=n).map(|v| v as f64).collect::<Vec<_>>())
}

/// Infers the output types as the session does, then evaluates.
fn try_run(op: &Op, ins: &[&Tensor]) -> Result<Tensor, String> {
    let types: Vec<TensorType> = ins.iter().map(|t| t.tensor_type()).collect();
    let outs = op.infer(DType::F64, &types.iter().collect::<Vec<_>>())?;
    let mut result = eval(op, ins, &outs).map_err(|e| e.to_string())?;
    assert_eq!(result.len(), 1);
    let t = result.pop().unwrap();
    assert_eq!(
        t.tensor_type(),
        outs[0],
        "{op:?}: result does not match infer"
    );
    // Into a reused buffer holding garbage, the kernel gives the same values:
    // it overwrites its whole output and reads nothing from it.
    let mut reused = Tensor::zeros(t.dtype(), t.shape()).unwrap();
    match &mut reused {
        Tensor::F32(a) => a.fill(f32::NAN),
        Tensor::F64(a) => a.fill(f64::NAN),
        Tensor::I32(a) => a.fill(i32::MIN),
        Tensor::I64(a) => a.fill(i64::MIN),
        Tensor::Bool(a) => a.fill(true),
    }
    eval_into(op, ins, std::slice::from_mut(&mut reused)).map_err(|e| e.to_string())?;
    let same = t
        .to_f64_vec()
        .iter()
        .zip(reused.to_f64_vec())
        .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
    assert!(same, "{op:?}: a reused output buffer changes the result");
    // In place over any input that has the output's type, the same bits.
    for &k in in_place_inputs(op) {
        let Some(&input) = ins.get(k).filter(|i| i.tensor_type() == t.tensor_type()) else {
            continue;
        };
        let mut io = input.clone();
        eval_in_place(op, k, std::slice::from_mut(&mut io), &ins).map_err(|e| e.to_string())?;
        assert!(
            bits_equal(&t, &io),
            "{op:?}: in place over input {k}, {:?} instead of {:?}",
            io.to_f64_vec(),
            t.to_f64_vec()
        );
    }
    Ok(t)
}

/// Same values bit for bit (any NaN equal to any NaN).
fn bits_equal(a: &Tensor, b: &Tensor) -> bool {
    a.shape() == b.shape()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

fn run(op: Op, ins: &[&Tensor]) -> Tensor {
    try_run(&op, ins).unwrap_or_else(|e| panic!("{op:?}: {e}"))
}

#[track_caller]
fn check(t: &Tensor, shape: &[usize], want: &[f64]) {
    assert_eq!(t.shape(), shape, "shape");
    let got = t.to_f64_vec();
    assert_eq!(got.len(), want.len(), "length");
    let tol = match t.dtype() {
        DType::F32 => 1e-6,
        DType::F64 => 1e-12,
        _ => 0.0,
    };
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g - w).abs() <= tol * w.abs().max(1.0);
        assert!(
            ok,
            "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

fn sum(axes: Option<&[i64]>, keep_dims: bool) -> Op {
    Op::Sum {
        axes: axes.map(<[i64]>::to_vec),
        keep_dims,
    }
}

fn mean(axes: Option<&[i64]>, keep_dims: bool) -> Op {
    Op::Mean {
        axes: axes.map(<[i64]>::to_vec),
        keep_dims,
    }
}

fn matmul(transpose_a: bool, transpose_b: bool) -> Op {
    Op::MatMul {
        transpose_a,
        transpose_b,
    }
}

#[test]
fn add_and_mul_broadcast_a_row() {
    let a = iota(&[2, 3]);
    let b = t64(&[3], &[10.0, 20.0, 30.0]);
    check(
        &run(Op::Add, &[&a, &b]),
        &[2, 3],
        &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0],
    );
    check(
        &run(Op::Mul, &[&a, &b]),
        &[2, 3],
        &[10.0, 40.0, 90.0, 40.0, 100.0, 180.0],
    );
    // The broadcast operand first.
    check(
        &run(Op::Sub, &[&b, &a]),
        &[2, 3],
        &[9.0, 18.0, 27.0, 6.0, 15.0, 24.0],
    );
}

#[test]
fn add_and_mul_broadcast_a_column() {
    let a = iota(&[2, 3]);
    let b = t64(&[2, 1], &[2.0, 3.0]);
    check(
        &run(Op::Add, &[&a, &b]),
        &[2, 3],
        &[3.0, 4.0, 5.0, 7.0, 8.0, 9.0],
    );
    check(
        &run(Op::Mul, &[&a, &b]),
        &[2, 3],
        &[2.0, 4.0, 6.0, 12.0, 15.0, 18.0],
    );
    check(
        &run(Op::Div, &[&a, &b]),
        &[2, 3],
        &[0.5, 1.0, 1.5, 4.0 / 3.0, 5.0 / 3.0, 2.0],
    );
}

#[test]
fn both_operands_broadcast() {
    let col = t64(&[2, 1], &[1.0, 2.0]);
    let row = t64(&[3], &[10.0, 20.0, 30.0]);
    check(
        &run(Op::Add, &[&col, &row]),
        &[2, 3],
        &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0],
    );
    let scalar = t64(&[], &[2.0]);
    check(
        &run(Op::Mul, &[&scalar, &iota(&[3])]),
        &[3],
        &[2.0, 4.0, 6.0],
    );
}

#[test]
fn maximum_and_greater_equal() {
    let a = t64(&[2, 2], &[1.0, 5.0, 3.0, f64::NAN]);
    let b = t64(&[2], &[3.0, 5.0]);
    let max = run(Op::Maximum, &[&a, &b]).to_f64_vec();
    assert_eq!(&max[..3], &[3.0, 5.0, 3.0]);
    assert!(max[3].is_nan());
    check(
        &run(Op::GreaterEqualMask, &[&a, &b]),
        &[2, 2],
        &[0.0, 1.0, 1.0, 0.0],
    );
}

#[test]
fn unary_ops() {
    let x = t64(&[4], &[-2.0, 0.0, 1.0, 4.0]);
    check(&run(Op::Neg, &[&x]), &[4], &[2.0, 0.0, -1.0, -4.0]);
    check(&run(Op::Square, &[&x]), &[4], &[4.0, 0.0, 1.0, 16.0]);
    check(&run(Op::Relu, &[&x]), &[4], &[0.0, 0.0, 1.0, 4.0]);
    check(
        &run(Op::Exp, &[&x]),
        &[4],
        &[(-2f64).exp(), 1.0, 1f64.exp(), 4f64.exp()],
    );
    let pos = t64(&[3], &[1.0, 4.0, 0.25]);
    check(&run(Op::Sqrt, &[&pos]), &[3], &[1.0, 2.0, 0.5]);
    check(&run(Op::Rsqrt, &[&pos]), &[3], &[1.0, 0.5, 2.0]);
    check(
        &run(Op::Log, &[&pos]),
        &[3],
        &[0.0, 4f64.ln(), 0.25f64.ln()],
    );
    check(
        &run(Op::Tanh, &[&t64(&[2], &[0.0, 1000.0])]),
        &[2],
        &[0.0, 1.0],
    );
}

#[test]
fn pow_integral_exponents_take_negative_bases() {
    let x = t64(&[3], &[-2.0, 0.5, 4.0]);
    let pow = |e| run(Op::Pow { exponent: e }, &[&x]);
    check(&pow(3.0), &[3], &[-8.0, 0.125, 64.0]);
    check(&pow(2.0), &[3], &[4.0, 0.25, 16.0]);
    check(&pow(-1.0), &[3], &[-0.5, 2.0, 0.25]);
    check(&pow(0.0), &[3], &[1.0, 1.0, 1.0]);
    let half = pow(0.5).to_f64_vec();
    assert!(half[0].is_nan());
    assert_eq!(&half[1..], &[0.5f64.sqrt(), 2.0]);
}

#[test]
fn relu_grad_passes_dy_where_x_is_positive() {
    let dy = t64(&[4], &[1.0, 2.0, 3.0, 4.0]);
    let x = t64(&[4], &[-1.0, 0.0, 0.5, 7.0]);
    check(&run(Op::ReluGrad, &[&dy, &x]), &[4], &[0.0, 0.0, 3.0, 4.0]);
}

#[test]
fn sigmoid_is_stable_for_large_inputs() {
    let x = [-1000.0, -1.0, 0.0, 1.0, 1000.0];
    let s1 = 1.0 / (1.0 + (-1f64).exp());
    let want = [0.0, 1.0 - s1, 0.5, s1, 1.0];
    check(&run(Op::Sigmoid, &[&t64(&[5], &x)]), &[5], &want);
    check(&run(Op::Sigmoid, &[&t32(&[5], &x)]), &[5], &want);
}

/// A [2,3], B [3,2]; A·B = [[58, 64], [139, 154]].
#[test]
fn matmul_all_transpose_combinations() {
    let a = iota(&[2, 3]);
    let at = t64(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let b = t64(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let bt = t64(&[2, 3], &[7.0, 9.0, 11.0, 8.0, 10.0, 12.0]);
    let want = [58.0, 64.0, 139.0, 154.0];
    check(&run(matmul(false, false), &[&a, &b]), &[2, 2], &want);
    check(&run(matmul(true, false), &[&at, &b]), &[2, 2], &want);
    check(&run(matmul(false, true), &[&a, &bt]), &[2, 2], &want);
    check(&run(matmul(true, true), &[&at, &bt]), &[2, 2], &want);
    // B·A is [3,3]: checks the orientation of a non-square result.
    let ba = [39.0, 54.0, 69.0, 49.0, 68.0, 87.0, 59.0, 82.0, 105.0];
    check(&run(matmul(false, false), &[&b, &a]), &[3, 3], &ba);
}

#[test]
fn matmul_batched() {
    // Batch 0: [[1,2],[3,4]]·[[5,6],[7,8]]; batch 1: I·[[2,3],[4,5]].
    let a = t64(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 1.0, 0.0, 0.0, 1.0]);
    let b = t64(&[2, 2, 2], &[5.0, 6.0, 7.0, 8.0, 2.0, 3.0, 4.0, 5.0]);
    let want = [19.0, 22.0, 43.0, 50.0, 2.0, 3.0, 4.0, 5.0];
    check(&run(matmul(false, false), &[&a, &b]), &[2, 2, 2], &want);
    // transpose_b: batch 0 is [[1,2],[3,4]]·[[5,7],[6,8]], batch 1 is I·[[2,4],[3,5]].
    let want_tb = [17.0, 23.0, 39.0, 53.0, 2.0, 4.0, 3.0, 5.0];
    check(&run(matmul(false, true), &[&a, &b]), &[2, 2, 2], &want_tb);
    // transpose_a: batch 0 is [[1,3],[2,4]]·[[5,6],[7,8]].
    let want_ta = [26.0, 30.0, 38.0, 44.0, 2.0, 3.0, 4.0, 5.0];
    check(&run(matmul(true, false), &[&a, &b]), &[2, 2, 2], &want_ta);
    // Rank 4 with [2,3] batches of [1,2]·[2,1].
    let a4 = iota(&[2, 3, 1, 2]);
    let b4 = t64(&[2, 3, 2, 1], &[1.0; 12]);
    let want4 = [3.0, 7.0, 11.0, 15.0, 19.0, 23.0];
    check(
        &run(matmul(false, false), &[&a4, &b4]),
        &[2, 3, 1, 1],
        &want4,
    );
}

#[test]
fn matmul_empty_dimensions() {
    let zeros = [0.0; 6];
    check(
        &run(
            matmul(false, false),
            &[&t64(&[2, 0], &[]), &t64(&[0, 3], &[])],
        ),
        &[2, 3],
        &zeros,
    );
    check(
        &run(matmul(false, false), &[&t64(&[0, 2], &[]), &iota(&[2, 3])]),
        &[0, 3],
        &[],
    );
    check(
        &run(
            matmul(false, true),
            &[&t64(&[0, 2, 3], &[]), &t64(&[0, 4, 3], &[])],
        ),
        &[0, 2, 4],
        &[],
    );
}

#[test]
fn matmul_f32() {
    let a = t32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = t32(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let c = run(matmul(false, false), &[&a, &b]);
    assert_eq!(c.dtype(), DType::F32);
    check(&c, &[2, 2], &[58.0, 64.0, 139.0, 154.0]);
}

#[test]
fn add_f32_broadcast() {
    let a = t32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = t32(&[2, 1], &[0.5, -1.0]);
    let c = run(Op::Add, &[&a, &b]);
    assert!(matches!(c, Tensor::F32(_)));
    check(&c, &[2, 3], &[1.5, 2.5, 3.5, 3.0, 4.0, 5.0]);
}

#[test]
fn sum_with_negative_axes_and_keep_dims() {
    let x = iota(&[2, 3]);
    check(&run(sum(Some(&[-1]), false), &[&x]), &[2], &[6.0, 15.0]);
    check(&run(sum(Some(&[-1]), true), &[&x]), &[2, 1], &[6.0, 15.0]);
    check(&run(sum(Some(&[-2]), false), &[&x]), &[3], &[5.0, 7.0, 9.0]);
    check(&run(sum(None, false), &[&x]), &[], &[21.0]);
    check(&run(sum(None, true), &[&x]), &[1, 1], &[21.0]);
    check(&run(sum(Some(&[-1, 0]), true), &[&x]), &[1, 1], &[21.0]);
    check(
        &run(sum(Some(&[]), false), &[&x]),
        &[2, 3],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    );
    // [[[1,2],[3,4]],[[5,6],[7,8]]] over axes 0 and 2.
    let x3 = iota(&[2, 2, 2]);
    check(
        &run(sum(Some(&[0, -1]), false), &[&x3]),
        &[2],
        &[14.0, 22.0],
    );
    check(
        &run(sum(Some(&[-1, 0]), true), &[&x3]),
        &[1, 2, 1],
        &[14.0, 22.0],
    );
    check(&run(sum(None, false), &[&t64(&[], &[4.0])]), &[], &[4.0]);
    check(
        &run(sum(Some(&[1]), false), &[&t64(&[2, 0], &[])]),
        &[2],
        &[0.0, 0.0],
    );
}

#[test]
fn mean_with_negative_axes_and_keep_dims() {
    let x = iota(&[2, 3]);
    check(
        &run(mean(Some(&[-2]), false), &[&x]),
        &[3],
        &[2.5, 3.5, 4.5],
    );
    check(
        &run(mean(Some(&[-2]), true), &[&x]),
        &[1, 3],
        &[2.5, 3.5, 4.5],
    );
    check(&run(mean(Some(&[-1]), true), &[&x]), &[2, 1], &[2.0, 5.0]);
    check(&run(mean(None, false), &[&x]), &[], &[3.5]);
    check(
        &run(mean(Some(&[0, 2]), false), &[&iota(&[2, 2, 2])]),
        &[2],
        &[3.5, 5.5],
    );
    let f32_mean = run(mean(None, false), &[&t32(&[4], &[1.0, 2.0, 3.0, 4.0])]);
    assert_eq!(f32_mean.dtype(), DType::F32);
    check(&f32_mean, &[], &[2.5]);
}

#[test]
fn reduced_size_counts_elements() {
    let x = t64(&[2, 3, 4], &[0.0; 24]);
    let size = |axes: Option<Vec<i64>>| run(Op::ReducedSize { axes }, &[&x]);
    check(&size(None), &[], &[24.0]);
    check(&size(Some(vec![0, -1])), &[], &[8.0]);
    check(&size(Some(vec![])), &[], &[1.0]);
}

#[test]
fn sum_to_like_reverses_broadcasting() {
    let x = iota(&[2, 3]);
    let like = |shape: &[usize]| t64(shape, &vec![0.0; shape.iter().product()]);
    check(
        &run(Op::SumToLike, &[&x, &like(&[3])]),
        &[3],
        &[5.0, 7.0, 9.0],
    );
    check(
        &run(Op::SumToLike, &[&x, &like(&[2, 1])]),
        &[2, 1],
        &[6.0, 15.0],
    );
    check(
        &run(Op::SumToLike, &[&x, &like(&[1, 3])]),
        &[1, 3],
        &[5.0, 7.0, 9.0],
    );
    check(&run(Op::SumToLike, &[&x, &like(&[1, 1])]), &[1, 1], &[21.0]);
    check(&run(Op::SumToLike, &[&x, &like(&[])]), &[], &[21.0]);
    let same = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    check(&run(Op::SumToLike, &[&x, &like(&[2, 3])]), &[2, 3], &same);
    // Leading axis dropped and the last axis summed: [2,2,2] to [2,1].
    check(
        &run(Op::SumToLike, &[&iota(&[2, 2, 2]), &like(&[2, 1])]),
        &[2, 1],
        &[14.0, 22.0],
    );
}

#[test]
fn broadcast_like_materializes() {
    let like = t64(&[2, 3], &[0.0; 6]);
    let row = t64(&[3], &[1.0, 2.0, 3.0]);
    let rows = [1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
    check(&run(Op::BroadcastLike, &[&row, &like]), &[2, 3], &rows);
    let col = t64(&[2, 1], &[1.0, 2.0]);
    let cols = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0];
    check(&run(Op::BroadcastLike, &[&col, &like]), &[2, 3], &cols);
    check(
        &run(Op::BroadcastLike, &[&t64(&[], &[7.0]), &like]),
        &[2, 3],
        &[7.0; 6],
    );
}

const SOFTMAX_123: [f64; 3] = [0.09003057317038046, 0.24472847105479767, 0.6652409557748219];

#[test]
fn softmax_matches_hand_computation() {
    // exp(x - 3) / sum: 1 / (1 + e^-1 + e^-2) = 0.66524...
    let x = t64(&[3], &[1.0, 2.0, 3.0]);
    check(&run(Op::Softmax, &[&x]), &[3], &SOFTMAX_123);
    // Per row over the last axis; shifted logits give the same result.
    let x = t64(
        &[3, 3],
        &[
            1.0, 2.0, 3.0, 1001.0, 1002.0, 1003.0, -1000.0, -1000.0, -1000.0,
        ],
    );
    let mut want = [SOFTMAX_123, SOFTMAX_123, [1.0 / 3.0; 3]].concat();
    check(&run(Op::Softmax, &[&x]), &[3, 3], &want);
    // Far apart: exp(-1000) underflows to 0 without a NaN.
    want = vec![0.0, 1.0];
    check(
        &run(Op::Softmax, &[&t64(&[2], &[0.0, 1000.0])]),
        &[2],
        &want,
    );
    check(
        &run(Op::Softmax, &[&t32(&[3], &[1000.0, 1001.0, 1002.0])]),
        &[3],
        &SOFTMAX_123,
    );
}

#[test]
fn log_softmax_matches_hand_computation() {
    // [1,2,3] - (3 + ln(1 + e^-1 + e^-2)); per row; far apart stays finite.
    let lse = 3.0 + (1.0 + (-1f64).exp() + (-2f64).exp()).ln();
    let row = [1.0 - lse, 2.0 - lse, 3.0 - lse];
    let x = t64(&[2, 3], &[1.0, 2.0, 3.0, 1001.0, 1002.0, 1003.0]);
    check(&run(Op::LogSoftmax, &[&x]), &[2, 3], &[row, row].concat());
    check(
        &run(Op::LogSoftmax, &[&t64(&[2], &[0.0, 1000.0])]),
        &[2],
        &[-1000.0, 0.0],
    );
    let f = run(Op::LogSoftmax, &[&t32(&[3], &[1.0, 2.0, 3.0])]);
    check(&f, &[3], &row);
}

#[test]
fn softmax_cross_entropy_matches_hand_computation() {
    // log_softmax([1,2,3]) = [1,2,3] - 3.40760596444438 (= 3 + ln(1 + e^-1 + e^-2)).
    let lse = 3.0 + (1.0 + (-1f64).exp() + (-2f64).exp()).ln();
    assert!((lse - 3.40760596444438).abs() < 1e-12);
    let logits = t64(
        &[3, 3],
        &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1001.0, 1002.0, 1003.0],
    );
    let labels = t64(&[3, 3], &[0.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0]);
    let want = [lse - 3.0, 0.5 * (lse - 1.0) + 0.5 * (lse - 2.0), lse - 3.0];
    check(
        &run(Op::SoftmaxCrossEntropyWithLogits, &[&logits, &labels]),
        &[3],
        &want,
    );
    // Large logits: the loss of the wrong class is 1000, not inf or NaN.
    let logits = t64(&[2, 2], &[1000.0, 0.0, -1000.0, 1000.0]);
    let labels = t64(&[2, 2], &[0.0, 1.0, 0.0, 1.0]);
    check(
        &run(Op::SoftmaxCrossEntropyWithLogits, &[&logits, &labels]),
        &[2],
        &[1000.0, 0.0],
    );
    // Rank 1: a scalar loss; f32.
    let logits = t32(&[3], &[1.0, 2.0, 3.0]);
    let labels = t32(&[3], &[0.0, 0.0, 1.0]);
    let loss = run(Op::SoftmaxCrossEntropyWithLogits, &[&logits, &labels]);
    check(&loss, &[], &[lse - 3.0]);
}

#[test]
fn transpose_permutes_axes() {
    let x = iota(&[2, 3]);
    let t = run(Op::Transpose { perm: None }, &[&x]);
    check(&t, &[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    check(
        &run(
            Op::Transpose {
                perm: Some(vec![0, 1]),
            },
            &[&x],
        ),
        &[2, 3],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    );
    // [2,3,4] with perm [1,2,0]: out[i][j][k] = x[k][i][j] = 1 + 12k + 4i + j.
    let x = iota(&[2, 3, 4]);
    let mut want = Vec::new();
    for i in 0..3 {
        for j in 0..4 {
            for k in 0..2 {
                want.push((1 + 12 * k + 4 * i + j) as f64);
            }
        }
    }
    check(
        &run(
            Op::Transpose {
                perm: Some(vec![1, 2, 0]),
            },
            &[&x],
        ),
        &[3, 4, 2],
        &want,
    );
    // No perm reverses: out[k][j][i] = x[i][j][k].
    let mut want = Vec::new();
    for k in 0..4 {
        for j in 0..3 {
            for i in 0..2 {
                want.push((1 + 12 * i + 4 * j + k) as f64);
            }
        }
    }
    let t = run(Op::Transpose { perm: None }, &[&x]);
    check(&t, &[4, 3, 2], &want);
    let Tensor::F64(a) = t else { unreachable!() };
    assert!(a.is_standard_layout());
}

#[test]
fn reshape_is_row_major() {
    let x = iota(&[2, 3]);
    let y = run(Op::Reshape { shape: vec![3, -1] }, &[&x]);
    check(&y, &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    check(
        &run(Op::Reshape { shape: vec![6] }, &[&x]),
        &[6],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    );
    let like = t64(&[1, 6, 1], &[0.0; 6]);
    check(
        &run(Op::ReshapeLike, &[&x, &like]),
        &[1, 6, 1],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    );
    // A column-major input reshapes in logical (row-major) order.
    let fortran = ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap()
        .reversed_axes();
    assert!(!fortran.is_standard_layout());
    let y = run(Op::Reshape { shape: vec![6] }, &[&Tensor::F64(fortran)]);
    check(&y, &[6], &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    // ExpandDims and Squeeze.
    let e = run(Op::ExpandDims { axes: vec![0, -1] }, &[&x]);
    check(&e, &[1, 2, 3, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s = run(Op::Squeeze { axes: vec![-1, 0] }, &[&e]);
    check(&s, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn bias_add_adds_along_the_last_axis() {
    let x = iota(&[2, 2, 3]);
    let b = t64(&[3], &[10.0, 20.0, 30.0]);
    let want = [
        11.0, 22.0, 33.0, 14.0, 25.0, 36.0, 17.0, 28.0, 39.0, 20.0, 31.0, 42.0,
    ];
    check(&run(BIAS_ADD, &[&x, &b]), &[2, 2, 3], &want);
}

const BIAS_ADD: Op = Op::BiasAdd {
    data_format: DataFormat::NHWC,
};

#[test]
fn bias_add_nchw_adds_along_axis_1() {
    let x = iota(&[2, 3, 2]);
    let b = t64(&[3], &[10.0, 20.0, 30.0]);
    let nchw = Op::BiasAdd {
        data_format: DataFormat::NCHW,
    };
    let want = [
        11.0, 12.0, 23.0, 24.0, 35.0, 36.0, 17.0, 18.0, 29.0, 30.0, 41.0, 42.0,
    ];
    check(&run(nchw.clone(), &[&x, &b]), &[2, 3, 2], &want);
    // Rank 2 has its channels last in either format.
    let x2 = iota(&[2, 3]);
    check(
        &run(nchw.clone(), &[&x2, &b]),
        &[2, 3],
        &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0],
    );
    let e = try_run(&nchw, &[&iota(&[2, 2, 3]), &b]).expect_err("channels 2, bias 3");
    assert!(e.contains("axis 1"), "{e}");
}

#[test]
fn sources_and_fills() {
    let lit = Literal::List(vec![
        Literal::List(vec![Literal::Scalar(1.0), Literal::Scalar(2.0)]),
        Literal::List(vec![Literal::Scalar(3.0), Literal::Scalar(4.5)]),
    ]);
    let op = Op::Const(lit);
    let outs = op.infer(DType::F32, &[]).unwrap();
    let c = eval(&op, &[], &outs).unwrap().pop().unwrap();
    assert_eq!(c.dtype(), DType::F32);
    check(&c, &[2, 2], &[1.0, 2.0, 3.0, 4.5]);
    check(&run(Op::Const(Literal::Scalar(2.5)), &[]), &[], &[2.5]);
    check(
        &run(Op::Fill { shape: vec![2, 2] }, &[&t64(&[], &[3.0])]),
        &[2, 2],
        &[3.0; 4],
    );
    check(&run(Op::ZerosLike, &[&iota(&[2, 3])]), &[2, 3], &[0.0; 6]);
    check(&run(Op::OnesLike, &[&iota(&[3])]), &[3], &[1.0; 3]);
    let x = iota(&[2, 2]);
    check(&run(Op::Identity, &[&x]), &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    check(
        &run(Op::StopGradient, &[&x]),
        &[2, 2],
        &[1.0, 2.0, 3.0, 4.0],
    );
    check(&run(Op::AddN, &[&x]), &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    check(
        &run(Op::AddN, &[&x, &x, &x]),
        &[2, 2],
        &[3.0, 6.0, 9.0, 12.0],
    );
}

#[test]
fn a_kernel_error_names_the_op() {
    let x = iota(&[2]);
    let placeholder = Op::Placeholder {
        shape: Shape::known(&[2]),
    };
    let e = eval(&placeholder, &[], &[x.tensor_type()]).expect_err("not a kernel");
    assert_eq!(
        e,
        super::KernelError {
            op: "Placeholder",
            message: "Placeholder is run by the session, not by a kernel".into(),
        }
    );
    assert_eq!(
        e.to_string(),
        "Placeholder: Placeholder is run by the session, not by a kernel"
    );
    // Every entry point: allocating, into buffers, in place.
    let sym = TensorType {
        dtype: DType::F64,
        shape: Shape(vec![crate::Dim::Sym("n".into())]),
    };
    let e = eval(&Op::Neg, &[&x], &[sym]).expect_err("symbolic");
    assert_eq!(
        (e.op, e.message.as_str()),
        ("Neg", "output shape [n] is not concrete")
    );
    let e = eval_into(&Op::Add, &[&x], &mut [x.clone()]).expect_err("arity");
    assert_eq!(e.op, "Add");
    assert!(e.message.contains("takes 2 inputs"), "{e}");
    let e = eval_in_place(
        &Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        },
        0,
        &mut [x.clone()],
        &&[&x, &x][..],
    )
    .expect_err("not in place");
    assert_eq!(e.op, "MatMul");
    assert!(e.message.contains("cannot overwrite its input 0"), "{e}");
}

#[test]
fn errors_instead_of_panics() {
    let x = iota(&[2]);
    let ty = x.tensor_type();
    let placeholder = Op::Placeholder {
        shape: Shape::known(&[2]),
    };
    assert!(eval(&placeholder, &[], std::slice::from_ref(&ty)).is_err());
    // Wrong input dtype for the output type.
    let f32_ty = TensorType {
        dtype: DType::F32,
        shape: Shape::known(&[2]),
    };
    assert!(eval(&Op::Neg, &[&x], &[f32_ty]).is_err());
    // Wrong arity, missing or non-concrete output types.
    assert!(eval(&Op::Add, &[&x], std::slice::from_ref(&ty)).is_err());
    assert!(eval(&Op::Neg, &[&x], &[]).is_err());
    let sym = TensorType {
        dtype: DType::F64,
        shape: Shape(vec![crate::Dim::Sym("n".into())]),
    };
    assert!(eval(&Op::Neg, &[&x], &[sym]).is_err());
    // An output type that disagrees with the kernel.
    let wrong = TensorType {
        dtype: DType::F64,
        shape: Shape::known(&[3]),
    };
    assert!(eval(&Op::Neg, &[&x], std::slice::from_ref(&wrong)).is_err());
    assert!(eval(
        &matmul(false, false),
        &[&x, &x],
        std::slice::from_ref(&wrong)
    )
    .is_err());
    // A Fill too large to allocate.
    let huge = TensorType {
        dtype: DType::F64,
        shape: Shape::known(&[usize::MAX, 2]),
    };
    let v = t64(&[], &[1.0]);
    assert!(eval(
        &Op::Fill {
            shape: vec![usize::MAX, 2]
        },
        &[&v],
        &[huge]
    )
    .is_err());
}

/// Every op on every input shape combination that `infer` accepts, empty
/// tensors included, evaluates to the inferred type without panicking.
#[test]
fn every_accepted_input_evaluates() {
    let shapes: &[&[usize]] = &[
        &[],
        &[0],
        &[1],
        &[3],
        &[1, 1],
        &[2, 1],
        &[1, 3],
        &[2, 3],
        &[3, 2],
        &[0, 3],
        &[2, 0],
        &[2, 3, 2],
        &[2, 2, 3],
        &[0, 2, 3],
        &[1, 3, 1],
    ];
    let tensor = |s: &[usize]| {
        let n: usize = s.iter().product();
        t64(
            s,
            &(0..n)
                .map(|i| (i as f64 * 0.7).sin() * 3.0)
                .collect::<Vec<_>>(),
        )
    };
    let axes = |a: &[i64]| Some(a.to_vec());
    let unary = [
        Op::Identity,
        Op::StopGradient,
        Op::Neg,
        Op::Exp,
        Op::Log,
        Op::Square,
        Op::Sqrt,
        Op::Rsqrt,
        Op::Relu,
        Op::Sigmoid,
        Op::Tanh,
        Op::Pow { exponent: 3.0 },
        Op::Pow { exponent: 0.5 },
        Op::Sum {
            axes: None,
            keep_dims: false,
        },
        Op::Sum {
            axes: axes(&[-1]),
            keep_dims: true,
        },
        Op::Sum {
            axes: axes(&[0, -1]),
            keep_dims: false,
        },
        Op::Mean {
            axes: None,
            keep_dims: true,
        },
        Op::Mean {
            axes: axes(&[0]),
            keep_dims: false,
        },
        Op::ReducedSize { axes: None },
        Op::ReducedSize { axes: axes(&[-1]) },
        Op::Reshape { shape: vec![-1] },
        Op::Reshape { shape: vec![3, -1] },
        Op::Reshape {
            shape: vec![-1, 2, 3],
        },
        Op::Transpose { perm: None },
        Op::Transpose {
            perm: Some(vec![1, 0]),
        },
        Op::Transpose {
            perm: Some(vec![2, 0, 1]),
        },
        Op::ExpandDims { axes: vec![0] },
        Op::ExpandDims { axes: vec![-1, 1] },
        Op::Squeeze { axes: vec![-1] },
        Op::Squeeze { axes: vec![0] },
        Op::Softmax,
        Op::ZerosLike,
        Op::OnesLike,
        Op::AddN,
        Op::Fill {
            shape: vec![2, 0, 3],
        },
        Op::Fill { shape: vec![2, 3] },
    ];
    let binary = [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::Maximum,
        Op::GreaterEqualMask,
        Op::ReluGrad,
        matmul(false, false),
        matmul(true, false),
        matmul(false, true),
        matmul(true, true),
        BIAS_ADD,
        Op::ReshapeLike,
        Op::SoftmaxCrossEntropyWithLogits,
        Op::SumToLike,
        Op::BroadcastLike,
        Op::AddN,
    ];
    let mut accepted = 0;
    for s in shapes {
        for op in &unary {
            accepted += usize::from(try_ok(op, &[tensor(s)]));
        }
        for s2 in shapes {
            for op in &binary {
                accepted += usize::from(try_ok(op, &[tensor(s), tensor(s2)]));
            }
        }
    }
    assert!(
        accepted > 500,
        "only {accepted} cases were accepted by infer"
    );
}

/// Whether `infer` accepted the inputs; if so, the kernel must succeed.
fn try_ok(op: &Op, ins: &[Tensor]) -> bool {
    let types: Vec<TensorType> = ins.iter().map(Tensor::tensor_type).collect();
    if op
        .infer(DType::F64, &types.iter().collect::<Vec<_>>())
        .is_err()
    {
        return false;
    }
    let refs: Vec<&Tensor> = ins.iter().collect();
    if let Err(e) = try_run(op, &refs) {
        let shapes: Vec<&[usize]> = ins.iter().map(Tensor::shape).collect();
        panic!("{op:?} on {shapes:?}: {e}");
    }
    true
}

#[test]
fn sums_add_in_the_order_of_ndarray_sum_axis() {
    // The kernels sum into their output; the result is bit for bit what
    // reducing the highest axis first with `sum_axis` gives, whenever at most
    // one reduced axis lies outside the block of trailing reduced axes.
    use ndarray::Axis;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for shape in [vec![37], vec![5, 19], vec![3, 4, 17], vec![2, 3, 4, 9]] {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let x = ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap();
        let r = shape.len();
        for mask in 1u32..(1 << r) {
            let axes: Vec<usize> = (0..r).filter(|&a| (mask >> a) & 1 == 1).collect();
            let trailing = (0..=r)
                .rev()
                .take_while(|&t| t == r || axes.contains(&t))
                .last()
                .unwrap_or(r);
            if axes.iter().filter(|&&a| a < trailing).count() > 1 {
                continue;
            }
            let mut want = x.clone();
            for &a in axes.iter().rev() {
                want = want.sum_axis(Axis(a));
            }
            let axes_i64: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
            let got = run(sum(Some(&axes_i64), false), &[&Tensor::F32(x.clone())]);
            let Tensor::F32(got) = got else {
                panic!("f32 in, f32 out")
            };
            let bits = |a: &ArrayD<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "shape {shape:?}, axes {axes:?}");
        }
    }
}

#[test]
fn matmul_over_an_empty_inner_dimension_is_zero() {
    // The output buffer is reused across runs, so the product must write it
    // even when there is nothing to sum (`try_run` also checks a NaN buffer).
    let a = t64(&[2, 0], &[]);
    let b = t64(&[0, 3], &[]);
    check(&run(matmul(false, false), &[&a, &b]), &[2, 3], &[0.0; 6]);
    let a = t64(&[2, 2, 0], &[]);
    let b = t64(&[2, 0, 1], &[]);
    check(&run(matmul(false, false), &[&a, &b]), &[2, 2, 1], &[0.0; 4]);
}

#[test]
fn in_place_refuses_what_it_cannot_do() {
    let x = iota(&[2, 3]);
    let row = iota(&[3]);
    let ins: &[&Tensor] = &[&x, &row];
    let matmul = matmul(false, true);
    let refused = |op: &Op, k: usize, ins: &[&Tensor]| {
        let mut io = x.clone();
        eval_in_place(op, k, std::slice::from_mut(&mut io), &ins)
            .expect_err("refused")
            .message
    };
    assert!(refused(&matmul, 0, ins).contains("cannot overwrite"));
    // AddN sums in input order, so only its first input can hold the sum.
    assert!(refused(&Op::AddN, 1, ins).contains("cannot overwrite"));
    assert!(refused(&Op::Add, 2, ins).contains("cannot overwrite"));
    assert!(refused(&Op::Exp, 0, ins).contains("takes 1 input"));
    let f32_row = t32(&[3], &[1.0, 2.0, 3.0]);
    assert!(refused(&Op::Add, 0, &[&x, &f32_row]).contains("dtype"));
    assert!(refused(&Op::ReluGrad, 0, ins).contains("shapes"));
    assert!(refused(&BIAS_ADD, 0, &[&x, &x]).contains("bias"));
    // The other operand broadcasts; the second operand can hold the result.
    let mut io = x.clone();
    let ins: &[&Tensor] = &[&row, &x];
    eval_in_place(&Op::Sub, 1, std::slice::from_mut(&mut io), &ins).expect("runs");
    check(&io, &[2, 3], &[0.0, 0.0, 0.0, -3.0, -3.0, -3.0]);
}

/// FusedBatchNorm and its gradient on channels-last data (the layer's case,
/// cut into bands of channels on two threads) give the bits of the same
/// data in NCHW with the rows as the spatial axis (the general path), on
/// one thread and on two, in f32 and f64; 203 channels put the bands'
/// border off the middle; 8 channels are too few for bands on two threads
/// (the channels-last data then takes the general path, split by rows),
/// and each op's outputs are checked whole.
#[test]
fn batch_norm_channel_bands_match_the_general_path_on_any_thread_count() {
    for (rows, c) in [(190, 203), (4500, 8)] {
        batch_norm_channel_bands_match(rows, c);
    }
}

fn batch_norm_channel_bands_match(rows: usize, c: usize) {
    use crate::op::DataFormat;
    let value = |r: usize, ch: usize, seed: usize| {
        ((r * 31 + ch * 17 + seed * 7) % 29) as f64 / 29.0 - 0.4 + ch as f64 * 0.01
    };
    for dtype in [DType::F32, DType::F64] {
        let t = |shape: &[usize], f: &dyn Fn(usize, usize) -> f64| {
            let data = (0..rows * c).map(|i| f(i / c, i % c)).collect::<Vec<_>>();
            Tensor::from_f64(dtype, shape, data).expect("shape fits")
        };
        // Element (r, ch) of [rows, c], and at [0, ch, r, 0] of [1, c, rows, 1].
        let nhwc = |seed| t(&[rows, c], &move |r, ch| value(r, ch, seed));
        let nchw = |seed| {
            t(&[1, c, rows, 1], &move |i, j| {
                let flat = i * c + j;
                value(flat % rows, flat / rows, seed)
            })
        };
        let param = |seed: usize| {
            let data = (0..c)
                .map(|ch| 0.5 + ((ch * 13 + seed) % 7) as f64 * 0.1)
                .collect();
            Tensor::from_f64(dtype, &[c], data).expect("shape fits")
        };
        let p = [param(1), param(2), param(3), param(4)];
        let to_nhwc = |t: &Tensor| {
            let v = t.to_f64_vec();
            (0..rows * c)
                .map(|i| v[(i % c) * rows + i / c])
                .collect::<Vec<_>>()
        };
        for training in [true, false] {
            let fwd = |format| Op::FusedBatchNorm {
                epsilon: 1e-3,
                data_format: format,
                is_training: training,
            };
            let grad = |format| Op::FusedBatchNormGrad {
                epsilon: 1e-3,
                data_format: format,
                is_training: training,
            };
            let run_all = |format: DataFormat, x: &Tensor, dy: &Tensor| {
                let t = |shape: &[usize]| TensorType {
                    dtype,
                    shape: Shape::known(shape),
                };
                let y_types = [x.shape(), &[c], &[c], &[c], &[c]].map(&t);
                let y = eval(&fwd(format), &[x, &p[0], &p[1], &p[2], &p[3]], &y_types)
                    .expect("FusedBatchNorm runs");
                let g_types = [x.shape(), &[c], &[c]].map(&t);
                let g = eval(&grad(format), &[dy, x, &p[0], &y[3], &y[4]], &g_types)
                    .expect("FusedBatchNormGrad runs");
                (y, g)
            };
            let (general_y, general_g) = run_all(DataFormat::NCHW, &nchw(1), &nchw(2));
            for threads in [1, 2] {
                let (y, g) = crate::parallel::with_test_threads(threads, || {
                    crate::with_threads(|| run_all(DataFormat::NHWC, &nhwc(1), &nhwc(2)))
                });
                let same = |a: &Tensor, want: Vec<f64>| {
                    a.to_f64_vec()
                        .iter()
                        .zip(&want)
                        .all(|(x, y)| x.to_bits() == y.to_bits())
                };
                let what = format!("{rows}x{c} {dtype} training {training} threads {threads}");
                assert!(same(&y[0], to_nhwc(&general_y[0])), "{what}: y differs");
                assert!(same(&g[0], to_nhwc(&general_g[0])), "{what}: dx differs");
                for k in 1..5 {
                    assert!(
                        bits_equal(&y[k], &general_y[k]),
                        "{what}: output {k} differs"
                    );
                }
                for k in 1..3 {
                    assert!(
                        bits_equal(&g[k], &general_g[k]),
                        "{what}: gradient {k} differs"
                    );
                }
            }
        }
    }
}

/// ActivationBiasGrad's dz over dy or over y (its first output in place,
/// db into its own buffer) gives the bits of the separate form, for every
/// activation, in f32 and f64; with a db buffer missing it is an error.
#[test]
fn activation_bias_grad_runs_in_place_over_either_input() {
    use crate::op::Activation;
    let (rows, n) = (5, 7);
    let values = |seed: usize| -> Vec<f64> {
        (0..rows * n)
            .map(|i| ((i * 13 + seed * 5) % 11) as f64 / 11.0 - 0.45)
            .collect()
    };
    for dtype in [DType::F32, DType::F64] {
        let t = |seed| Tensor::from_f64(dtype, &[rows, n], values(seed)).expect("fits");
        let (dy, y) = (t(1), t(2));
        for activation in [
            Activation::Linear,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
        ] {
            let op = Op::ActivationBiasGrad { activation };
            let types = [
                TensorType {
                    dtype,
                    shape: Shape::known(&[rows, n]),
                },
                TensorType {
                    dtype,
                    shape: Shape::known(&[n]),
                },
            ];
            let want = eval(&op, &[&dy, &y], &types).expect("runs");
            for k in [0, 1] {
                assert!(in_place_inputs(&op).contains(&k));
                let mut outs = [
                    [&dy, &y][k].clone(),
                    Tensor::zeros(dtype, &[n]).expect("fits"),
                ];
                // Input k is read from outs[0] only: NaNs where ins has it.
                let nans =
                    Tensor::from_f64(dtype, &[rows, n], vec![f64::NAN; rows * n]).expect("fits");
                let ins = if k == 0 { [&nans, &y] } else { [&dy, &nans] };
                eval_in_place(&op, k, &mut outs, &&ins[..]).expect("runs in place");
                let what = format!("{dtype} {activation:?} over input {k}");
                assert!(bits_equal(&outs[0], &want[0]), "{what}: dz");
                assert!(bits_equal(&outs[1], &want[1]), "{what}: db");
                let mut one = [ins[k].clone()];
                let e = eval_in_place(&op, k, &mut one, &&ins[..]).expect_err("no db buffer");
                assert!(e.message.contains("2 outputs"), "{e}");
                // A db of the wrong length, an other input of another shape.
                let mut short = [
                    [&dy, &y][k].clone(),
                    Tensor::zeros(dtype, &[n + 1]).expect("fits"),
                ];
                let e = eval_in_place(&op, k, &mut short, &&[&dy, &y][..]).expect_err("db");
                assert!(e.message.contains("db has shape"), "{e}");
                let wide = Tensor::zeros(dtype, &[rows, n + 1]).expect("fits");
                let other: [&Tensor; 2] = if k == 0 { [&dy, &wide] } else { [&wide, &y] };
                let mut outs = [
                    [&dy, &y][k].clone(),
                    Tensor::zeros(dtype, &[n]).expect("fits"),
                ];
                let e = eval_in_place(&op, k, &mut outs, &&other[..]).expect_err("shapes");
                assert!(e.message.contains("dy and y of shapes"), "{e}");
            }
        }
    }
}

#[test]
fn every_row_of_the_elementwise_table() {
    use crate::op::{BinaryFn, FusedStep, UnaryFn};
    // Each function's kernel, in place or not (`try_run`), and as a one-step
    // Fused program gives its scalar function's bits, in f32 and f64.
    let values = [-3.5, -1.0, -0.0, 0.0, 0.25, 1.0, 2.0, 40.0];
    let row = [0.5, -2.0, 0.0, 3.0, 1.0, -0.25, 7.0, 2.0];
    for make in [t32, t64] {
        let x = make(&[2, 4], &values);
        let b = make(&[4], &row[..4]);
        for &f in UnaryFn::EXAMPLES {
            let y = run(f.op(), &[&x]);
            let want: Vec<f64> = match &x {
                Tensor::F32(a) => a.iter().map(|&v| f64::from(f.eval(v))).collect(),
                Tensor::F64(a) => a.iter().map(|&v| f.eval(v)).collect(),
                other => unreachable!("{other:?} is not a float tensor"),
            };
            let got = y.to_f64_vec();
            let same = got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            assert!(same, "{f:?}: {got:?} against {want:?}");
            let fused = Op::Fused {
                program: vec![FusedStep::Input(0), FusedStep::Unary(f, 0)],
            };
            assert!(bits_equal(&run(fused, &[&x]), &y), "{f:?} fused");
        }
        for &f in BinaryFn::ALL {
            let other = if f.broadcasts() { &b } else { &x };
            let y = run(f.op(), &[&x, other]);
            let fused = Op::Fused {
                program: vec![
                    FusedStep::Input(0),
                    FusedStep::Input(1),
                    FusedStep::Binary(f, 0, 1),
                ],
            };
            assert!(bits_equal(&run(fused, &[&x, other]), &y), "{f:?} fused");
            if f.commutes() {
                assert!(bits_equal(&run(f.op(), &[other, &x]), &y), "{f:?} commutes");
            }
        }
    }
}

#[test]
fn activation_derivatives_read_y_only() {
    // ActivationBiasGrad gets dy and y: a Dense activation's derivative must
    // not read x (input 1 of its program).
    for a in crate::op::Activation::FUNCTIONS {
        let f = a.unary().expect("an activation applies a function");
        let d = f.derivative().expect("an activation has a derivative");
        assert!(!d.reads(1) && d.reads(0) && d.reads(2), "{a:?}: {d:?}");
    }
}

#[test]
fn softplus_is_stable() {
    let x = [-1000.0, -20.0, 0.0, 1.0, 1000.0];
    let want = [
        0.0,
        (-20f64).exp().ln_1p(),
        2f64.ln(),
        1f64.exp().ln_1p(),
        1000.0,
    ];
    check(&run(Op::Softplus, &[&t64(&[5], &x)]), &[5], &want);
    let y = run(Op::Softplus, &[&t32(&[5], &x)]).to_f64_vec();
    for (got, want) in y.iter().zip(want) {
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1e-30),
            "{got} against {want}"
        );
    }
    let nan = run(Op::Softplus, &[&t64(&[1], &[f64::NAN])]).to_f64_vec();
    assert!(nan[0].is_nan());
}

fn conv(padding: crate::op::Padding, strides: [i64; 4]) -> Op {
    Op::Conv2D {
        strides: strides.to_vec(),
        padding,
        explicit_paddings: Vec::new(),
        dilations: vec![1; 4],
        data_format: crate::op::DataFormat::NHWC,
    }
}

#[test]
fn conv2d_matches_hand_computed_values() {
    use crate::op::Padding::{SAME, VALID};
    // x = 1..9 in a 3x3 image, w picks the pixel and its lower-right neighbour.
    let x = t64(
        &[1, 3, 3, 1],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    );
    let w = t64(&[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]);
    check(
        &run(conv(VALID, [1, 1, 1, 1]), &[&x, &w]),
        &[1, 2, 2, 1],
        &[6.0, 8.0, 12.0, 14.0],
    );
    // SAME pads one pixel, at the end (TensorFlow's odd pixel).
    check(
        &run(conv(SAME, [1, 1, 1, 1]), &[&x, &w]),
        &[1, 3, 3, 1],
        &[6.0, 8.0, 3.0, 12.0, 14.0, 6.0, 7.0, 8.0, 9.0],
    );
    // Stride 2 with SAME: outputs at (0, 0), (0, 2), (2, 0), (2, 2).
    check(
        &run(conv(SAME, [1, 2, 2, 1]), &[&x, &w]),
        &[1, 2, 2, 1],
        &[6.0, 3.0, 7.0, 9.0],
    );
    // NCHW is NHWC with the axes moved: the same numbers for one channel.
    let nchw = Op::Conv2D {
        strides: vec![1; 4],
        padding: VALID,
        explicit_paddings: Vec::new(),
        dilations: vec![1; 4],
        data_format: crate::op::DataFormat::NCHW,
    };
    check(
        &run(nchw, &[&t64(&[1, 1, 3, 3], &x.to_f64_vec()), &w]),
        &[1, 1, 2, 2],
        &[6.0, 8.0, 12.0, 14.0],
    );
}

fn pooling(
    make: fn(Vec<i64>, Vec<i64>, crate::op::Padding, crate::op::DataFormat) -> Op,
    k: usize,
    s: usize,
    padding: crate::op::Padding,
) -> Op {
    make(
        vec![1, k as i64, k as i64, 1],
        vec![1, s as i64, s as i64, 1],
        padding,
        crate::op::DataFormat::NHWC,
    )
}

#[test]
fn pooling_matches_hand_computed_values() {
    use crate::op::Padding::{SAME, VALID};
    let max = |ksize, strides, padding, data_format| Op::MaxPool {
        ksize,
        strides,
        padding,
        data_format,
    };
    let avg = |ksize, strides, padding, data_format| Op::AvgPool {
        ksize,
        strides,
        padding,
        data_format,
    };
    let grad = |ksize, strides, padding, data_format| Op::MaxPoolGrad {
        ksize,
        strides,
        padding,
        data_format,
    };
    let avg_grad = |ksize, strides, padding, data_format| Op::AvgPoolGrad {
        ksize,
        strides,
        padding,
        data_format,
    };
    // x = 1..9 in a 3x3 image, one channel.
    let x = t64(
        &[1, 3, 3, 1],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    );
    check(
        &run(pooling(max, 2, 1, VALID), &[&x]),
        &[1, 2, 2, 1],
        &[5.0, 6.0, 8.0, 9.0],
    );
    // SAME with stride 2 pads at the end: windows {1,2,4,5}, {3,6}, {7,8}, {9}.
    check(
        &run(pooling(max, 2, 2, SAME), &[&x]),
        &[1, 2, 2, 1],
        &[5.0, 6.0, 8.0, 9.0],
    );
    // The mean counts the elements inside the input only.
    check(
        &run(pooling(avg, 2, 2, SAME), &[&x]),
        &[1, 2, 2, 1],
        &[3.0, 4.5, 7.5, 9.0],
    );
    let dy = t64(&[1, 2, 2, 1], &[1.0, 2.0, 3.0, 4.0]);
    check(
        &run(pooling(avg_grad, 2, 2, SAME), &[&x, &dy]),
        &[1, 3, 3, 1],
        &[0.25, 0.25, 1.0, 0.25, 0.25, 1.0, 1.5, 1.5, 4.0],
    );
    // Ties go to the first maximum in scan order.
    let flat = t64(&[1, 2, 2, 1], &[7.0, 7.0, 7.0, 7.0]);
    let y = run(pooling(max, 2, 2, VALID), &[&flat]);
    let g = t64(&[1, 1, 1, 1], &[5.0]);
    check(
        &run(pooling(grad, 2, 2, VALID), &[&flat, &y, &g]),
        &[1, 2, 2, 1],
        &[5.0, 0.0, 0.0, 0.0],
    );
}

#[test]
fn depthwise_conv2d_matches_hand_computed_values() {
    // Two channels, multiplier 2, a 1x1 filter: each channel scaled twice.
    let x = t64(&[1, 1, 2, 2], &[1.0, 10.0, 2.0, 20.0]);
    let w = t64(&[1, 1, 2, 2], &[1.0, -1.0, 0.5, 3.0]);
    let op = Op::DepthwiseConv2dNative {
        strides: vec![1; 4],
        padding: crate::op::Padding::VALID,
        explicit_paddings: Vec::new(),
        dilations: vec![1; 4],
        data_format: crate::op::DataFormat::NHWC,
    };
    // Output channels (c·M + m): x_c·w[c, m].
    check(
        &run(op, &[&x, &w]),
        &[1, 1, 2, 4],
        &[1.0, -1.0, 5.0, 30.0, 2.0, -2.0, 10.0, 60.0],
    );
}
