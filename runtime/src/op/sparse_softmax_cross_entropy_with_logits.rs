//! `SparseSoftmaxCrossEntropyWithLogits`: TensorFlow's
//! `tf.nn.sparse_softmax_cross_entropy_with_logits`: inputs (logits
//! [..., classes], labels [...] of I32 or I64 class indices); per example
//! logsumexp(logits) − logits[label]. A label outside [0, classes) is a
//! run-time error naming it, as on TensorFlow's CPU. Its gradient
//! (`compiler/src/grad/sparse_softmax_cross_entropy_with_logits.rs`) is
//! (softmax(logits) − one_hot(labels))·dy; the labels get none.

use super::gather::checked;
use super::{Arity, In, Op, Takes};
use crate::kernels::{input, Elem, Inputs};
use crate::shape::Shape;
use crate::{DType, Tensor, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
pub(super) const TAKES: Takes = Takes::Each(&[In::Float, In::Int]);

pub(super) fn attrs_text(_: &Op) -> String {
    String::new()
}

pub(super) fn infer(_: &Op, _: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (logits, labels) = (&ins[0].shape, &ins[1].shape);
    let Some(batch) = logits.0.split_last().map(|(_, b)| Shape(b.to_vec())) else {
        return Err("logits must have rank >= 1, got a scalar".into());
    };
    super::same_shape(&batch, labels).map_err(|_| {
        format!("labels {labels} must have the shape of logits {logits} without its last axis")
    })?;
    Ok(vec![TensorType {
        dtype: ins[0].dtype,
        shape: batch,
    }])
}

pub(super) fn run(_: &Op, ins: &dyn Inputs, outs: &mut [Tensor]) -> Result<(), String> {
    let out = super::single(outs)?;
    let labels = ins.get(1).ok_or("input 1 is missing")?;
    match (out, labels) {
        (Tensor::F32(y), Tensor::I32(l)) => loss(&input(ins, 0)?, &l.view(), y),
        (Tensor::F32(y), Tensor::I64(l)) => loss(&input(ins, 0)?, &l.view(), y),
        (Tensor::F64(y), Tensor::I32(l)) => loss(&input(ins, 0)?, &l.view(), y),
        (Tensor::F64(y), Tensor::I64(l)) => loss(&input(ins, 0)?, &l.view(), y),
        (y, l) => Err(format!("no kernel for {} logits and {} labels", y.dtype(), l.dtype())),
    }
}

fn loss<T: Elem, I: Copy + Into<i64>>(
    logits: &ArrayViewD<'_, T>,
    labels: &ArrayViewD<'_, I>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let classes = logits.shape().last().copied().unwrap_or(0);
    if logits.shape().split_last().map(|(_, b)| b) != Some(labels.shape()) || out.len() != labels.len() {
        return Err(format!(
            "logits {:?}, labels {:?} and the output {:?} do not fit",
            logits.shape(),
            labels.shape(),
            out.shape()
        ));
    }
    let logits = logits.as_standard_layout();
    let (Some(z), Some(o)) = (logits.as_slice(), out.as_slice_mut()) else {
        return Err("the output buffer is not in standard layout".into());
    };
    for (k, (loss, &label)) in o.iter_mut().zip(labels.iter()).enumerate() {
        let c = checked("labels", label.into(), k, labels.shape(), classes)?;
        let row = &z[k * classes..(k + 1) * classes];
        let m = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        let lse = m + row.iter().fold(T::zero(), |s, &v| s + (v - m).exp()).ln();
        *loss = lse - row[c];
    }
    Ok(())
}
