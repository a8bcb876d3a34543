//! `Prod`: TensorFlow's `tf.reduce_prod`: the product of the elements over
//! `axes` (all when absent), in row-major order. Its gradient
//! (`compiler/src/grad/prod.rs`) is TensorFlow's `_ProdGrad`: the product of
//! the other elements of each one's group, from exclusive cumulative
//! products both ways, so zeros are handled without dividing.

use super::{reduce_axes, reduced_shape, Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(1);
float_kernel!();

pub(super) fn attrs_text(op: &Op) -> String {
    match op {
        Op::Prod { axes, keep_dims } => {
            let axes = axes.as_ref().map_or("all".to_string(), |a| format!("{a:?}"));
            format!("{{axes: {axes}, keep_dims: {keep_dims}}}")
        }
        _ => String::new(),
    }
}

fn parts(op: &Op) -> Result<(&Option<Vec<i64>>, bool), String> {
    match op {
        Op::Prod { axes, keep_dims } => Ok((axes, *keep_dims)),
        _ => Err(format!("{} is not Prod", op.name())),
    }
}

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (axes, keep_dims) = parts(op)?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: reduced_shape(axes, keep_dims, &ins[0].shape)?,
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (axes, _) = parts(op)?;
    let x = input(0)?;
    let reduced = reduce_axes(axes, x.ndim())?;
    let kept = |a: &usize| !reduced.contains(a);
    let count: usize = (0..x.ndim()).filter(kept).map(|a| x.shape()[a]).product();
    if out.len() != count {
        return Err(format!("{:?} reduced over {reduced:?} cannot fill {:?}", x.shape(), out.shape()));
    }
    let dst = out.as_slice_mut().ok_or("the output buffer is not in standard layout")?;
    dst.fill(T::one());
    for (index, &v) in x.indexed_iter() {
        let o = (0..x.ndim()).filter(kept).fold(0, |o, a| o * x.shape()[a] + index[a]);
        dst[o] = dst[o] * v;
    }
    Ok(())
}
