//! Gradient check: every requested gradient against finite differences (the
//! source text's `gradient_check`, PyTorch's `gradcheck`).
//!
//! For a result d(y)/d(x) with incoming gradient w (ones by default), the
//! numeric gradient of f(x) = sum(y * w) is the fourth-order central difference
//! (8 (f(x + h) - f(x - h)) - (f(x + 2h) - f(x - 2h))) / 12h along each element,
//! with h = step * max(1, |x_i|). Its truncation error is O(h^4), so h can be
//! large enough that rounding noise stays small, which matters for checking
//! second derivatives of normalizations, where large terms cancel. The error
//! reported is the max absolute difference, and that difference relative to
//! the larger of the two gradients' max-norms, floored at `REL_FLOOR` so that a
//! gradient that is zero in exact arithmetic is not judged by rounding noise.

use crate::compiler::Graph;
use crate::runtime::{DType, Session, Tensor};
use crate::Error;
use std::collections::HashMap;

/// Gradients smaller than this in max-norm are compared absolutely against it.
pub const REL_FLOOR: f64 = 1e-3;

/// The result for one gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub max_abs: f64,
    pub max_rel: f64,
    pub tolerance: f64,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.max_rel <= self.tolerance
    }
}

/// Default tolerance on the relative error, by dtype.
pub fn default_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-6,
        DType::F32 => 1e-2,
    }
}

fn step(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-3,
        DType::F32 => 1e-2,
    }
}

/// Checks every gradient the graph requests.
pub fn gradcheck(
    g: &Graph,
    feeds: &HashMap<String, Tensor>,
    tolerance: Option<f64>,
) -> Result<Vec<Check>, Error> {
    let program = crate::compiler::compile(g.clone())?;
    let mut session = Session::new(program).map_err(Error::run("gradcheck"))?;
    let mut fetch = |feeds: &HashMap<String, Tensor>, name: &str| -> Result<Tensor, Error> {
        let v = session.resolve(name).map_err(Error::run("gradcheck"))?;
        let mut out = session.run(feeds, &[v]).map_err(Error::run(name))?;
        Ok(out.remove(0))
    };
    let mut checks = Vec::new();
    for r in &g.gradients {
        let analytic = fetch(feeds, &r.name)?.to_f64_vec();
        let x0 = fetch(feeds, &r.wrt)?;
        let y0 = fetch(feeds, &r.of)?;
        let w = match &r.grad_ys {
            Some(name) => fetch(feeds, name)?.to_f64_vec(),
            None => vec![1.0; y0.to_f64_vec().len()],
        };
        let dtype = x0.dtype();
        let h = step(dtype);
        let base = x0.to_f64_vec();
        let mut numeric = Vec::with_capacity(base.len());
        for i in 0..base.len() {
            let hi = h * base[i].abs().max(1.0);
            let mut f = [0.0; 4];
            for (k, offset) in [hi, -hi, 2.0 * hi, -2.0 * hi].into_iter().enumerate() {
                let mut x = base.clone();
                x[i] += offset;
                let mut perturbed = feeds.clone();
                let xt = Tensor::from_f64(dtype, x0.shape(), x).map_err(Error::Usage)?;
                perturbed.insert(r.wrt.clone(), xt);
                let y = fetch(&perturbed, &r.of)?.to_f64_vec();
                f[k] = y.iter().zip(&w).map(|(a, b)| a * b).sum();
            }
            numeric.push((8.0 * (f[0] - f[1]) - (f[2] - f[3])) / (12.0 * hi));
        }
        let diff = |(a, n): (&f64, &f64)| {
            if (a - n).is_nan() {
                f64::INFINITY
            } else {
                (a - n).abs()
            }
        };
        let max_abs = analytic.iter().zip(&numeric).map(diff).fold(0.0, f64::max);
        let scale = analytic
            .iter()
            .chain(&numeric)
            .map(|v| v.abs())
            .fold(0.0, f64::max);
        let max_rel = if max_abs == 0.0 {
            0.0
        } else {
            max_abs / scale.max(REL_FLOOR)
        };
        checks.push(Check {
            name: r.name.clone(),
            max_abs,
            max_rel,
            tolerance: tolerance.unwrap_or_else(|| default_tolerance(dtype)),
        });
    }
    Ok(checks)
}
