//! The gradient of `MaxPool` (`runtime/src/op/max_pool.rs`), TensorFlow's `_MaxPoolGrad`.

use super::{dy, Ctx, Gradient, Grads, NodeArgs};
use crate::ir::TensorRef;
use gradc_runtime::Op;

pub(super) const GRADIENT: Gradient = Gradient::Rule(rule);

/// The pooling op `make` with the attributes of pooling `op`.
pub(super) fn like(op: &Op, make: fn(Vec<i64>, Vec<i64>, gradc_runtime::op::Padding, gradc_runtime::op::DataFormat) -> Op) -> Op {
    match op {
        Op::MaxPool {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::MaxPoolGrad {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::MaxPoolGradGrad {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::AvgPool {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::AvgPoolGrad {
            ksize,
            strides,
            padding,
            data_format,
        } => make(ksize.clone(), strides.clone(), *padding, *data_format),
        other => unreachable!("a pooling's rule on {}", other.name()),
    }
}

// y = max over each window of x: dx = MaxPoolGrad(x, y, dy), dy to each window's first maximum
fn rule(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let grad = like(&n.op, |ksize, strides, padding, data_format| Op::MaxPoolGrad {
        ksize,
        strides,
        padding,
        data_format,
    });
    Ok(vec![Some(c.op(grad, &[n.x(0), n.y(), dy(g)])?)])
}
