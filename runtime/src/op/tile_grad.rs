//! `TileGrad`: the gradient of Tile: inputs (x, read for its shape only,
//! and dy of the tiled shape); each value of x's shape the sum of its
//! copies' gradients in dy's row-major order. Its gradient is Tile
//! (`compiler/src/grad/tile_grad.rs`).

use super::index::{check_out, scatter_by_maps};
use super::tile::{maps, multiples, tiled};
use super::{same_shape, Arity, Op};
use crate::kernels::Elem;
use crate::{DType, TensorType};
use ndarray::{ArrayD, ArrayViewD};

pub(super) const ARITY: Arity = Arity::Exactly(2);
float_kernel!();

pub(super) use super::tile::attrs_text;

pub(super) fn infer(op: &Op, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let (x, dy) = (&ins[0].shape, &ins[1].shape);
    let want = tiled(op, x, |d, m| d.checked_mul(m).ok_or_else(|| "the tiled size overflows".to_string()))?;
    same_shape(dy, &want).map_err(|_| format!("dy {dy} is not Tile's shape {want} of {x}"))?;
    Ok(vec![TensorType {
        dtype: dt,
        shape: x.clone(),
    }])
}

pub(super) fn kernel<'a, T: Elem>(
    op: &Op,
    input: &dyn Fn(usize) -> Result<ArrayViewD<'a, T>, String>,
    out: &mut ArrayD<T>,
) -> Result<(), String> {
    let (x, dy) = (input(0)?, input(1)?);
    let m = multiples(op, x.ndim())?;
    check_out(op, out.shape(), x.shape())?;
    let tiled: Vec<usize> = x.shape().iter().zip(&m).map(|(d, m)| d * m).collect();
    if dy.shape() != tiled {
        return Err(format!("TileGrad: dy {:?} is not Tile's shape {tiled:?}", dy.shape()));
    }
    scatter_by_maps(&dy, &maps(x.shape(), dy.shape()), &mut out.view_mut());
    Ok(())
}
