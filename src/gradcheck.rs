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

use crate::compiler::{passes::Pipeline, Compiler, Graph};
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
        _ => 1e-2,
    }
}

fn step(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => 1e-3,
        _ => 1e-2,
    }
}

/// Checks every gradient the graph requests.
pub fn gradcheck(
    g: &Graph,
    feeds: &HashMap<String, Tensor>,
    tolerance: Option<f64>,
) -> Result<Vec<Check>, Error> {
    // Unoptimized: the check perturbs constants by feeding them, which constant
    // folding would have baked into the program.
    let program = Compiler::new(g.clone())
        .passes(Pipeline::none())
        .compile()?
        .program;
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
                let xt = Tensor::from_f64(dtype, x0.shape(), x)?;
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

/// The check of one custom gradient at one call site.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionCheck {
    pub function: String,
    pub call: String,
    /// One row per input that has a gradient, named `d(loss)/d(<input>)`.
    pub checks: Vec<Check>,
}

/// Checks every custom gradient against finite differences of its function's
/// body, at the values each call receives when the graph runs with `feeds`.
/// For each call, the function is called on those values as constants, its
/// outputs are weighted by fixed pseudo-random weights and summed, and the
/// custom gradient of that sum is compared with the numeric one.
pub fn check_functions(
    g: &Graph,
    feeds: &HashMap<String, Tensor>,
    tolerance: Option<f64>,
) -> Result<Vec<FunctionCheck>, Error> {
    use crate::compiler::schema::{GraphSpec, Layer, NodeOp, NodeSpec};
    use crate::runtime::{Literal, Op};
    let calls: Vec<_> =
        g.g.node_indices()
            .filter_map(|n| match &g.node(n).op {
                Op::CustomGradient { function, inputs } => Some((n, function.clone(), *inputs)),
                _ => None,
            })
            .collect();
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let program = Compiler::new(g.clone())
        .passes(Pipeline::none())
        .compile()?
        .program;
    let mut session = Session::new(program).map_err(Error::run("gradcheck"))?;
    let mut results = Vec::new();
    for (node, function, n_inputs) in calls {
        let call = g.node(node).name.clone();
        let f = g
            .functions
            .get(&function)
            .cloned()
            .ok_or_else(|| Error::Usage(format!("no function '{function}'")))?;
        let args = g.inputs(node);
        let refs: Vec<_> = args
            .iter()
            .take(n_inputs)
            .map(|&t| session.resolve(&g.tensor_name(t)))
            .chain((0..g.node(node).outputs.len()).map(|k| session.resolve(&format!("{call}:{k}"))))
            .collect::<Result<_, _>>()
            .map_err(Error::run(&call))?;
        let values = session.run(feeds, &refs).map_err(Error::run(&call))?;
        let (inputs, outputs) = values.split_at(n_inputs);
        let dtype = inputs.first().map(Tensor::dtype).unwrap_or(DType::F64);
        let constant = |name: String, t: &Tensor| -> Result<NodeSpec, Error> {
            let lit = Literal::from_flat(t.shape(), &t.to_f64_vec())
                .ok_or_else(|| Error::Usage(format!("{name}: bad value")))?;
            Ok(NodeSpec {
                name,
                op: Op::Const(lit).into(),
                inputs: vec![],
                dtype: Some(dtype),
                control_inputs: vec![],
                collections: vec![],
            })
        };
        let node = |name: String, op: NodeOp, inputs: Vec<String>| NodeSpec {
            name,
            op,
            inputs,
            dtype: None,
            control_inputs: vec![],
            collections: vec![],
        };
        let mut nodes = Vec::new();
        for (p, v) in f.inputs.iter().zip(inputs) {
            nodes.push(constant(p.clone(), v)?);
        }
        nodes.push(node(
            "call".into(),
            Layer::Call(function.clone()).into(),
            f.inputs.clone(),
        ));
        let mut terms = Vec::new();
        for (k, out) in outputs.iter().enumerate() {
            // Weights in [0.5, 1.5), fixed, so that every output element counts differently.
            let w: Vec<f64> = (0..out.to_f64_vec().len())
                .map(|i| 0.5 + ((i * 7919 + k * 104729) % 1000) as f64 / 1000.0)
                .collect();
            let w = Tensor::from_f64(dtype, out.shape(), w)?;
            nodes.push(constant(format!("w{k}"), &w)?);
            let y = if outputs.len() == 1 {
                "call".to_string()
            } else {
                format!("call:{k}")
            };
            nodes.push(node(
                format!("yw{k}"),
                Op::Mul.into(),
                vec![y, format!("w{k}")],
            ));
            nodes.push(node(
                format!("s{k}"),
                Op::Sum {
                    axes: None,
                    keep_dims: false,
                }
                .into(),
                vec![format!("yw{k}")],
            ));
            terms.push(format!("s{k}"));
        }
        nodes.push(node("loss".into(), Op::AddN.into(), terms));
        let wrt: Vec<String> = f
            .inputs
            .iter()
            .zip(
                f.gradient
                    .as_ref()
                    .map(|gr| gr.returns.clone())
                    .unwrap_or_default(),
            )
            .filter(|(_, r)| r.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        let spec = GraphSpec {
            name: format!("check_{function}"),
            dtype,
            nodes,
            outputs: None,
            gradients: vec![crate::compiler::schema::GradientSpec {
                of: "loss".into(),
                wrt,
                grad_ys: None,
            }],
            // The function and every function it may call.
            functions: g.functions.values().cloned().collect(),
            train: None,
        };
        let text = crate::compiler::schema::to_ron(&spec)?;
        let check_graph =
            crate::compiler::graph_from_str(&text, &format!("<check of {function}>"))?;
        let checks = gradcheck(&check_graph, &HashMap::new(), tolerance)?;
        results.push(FunctionCheck {
            function,
            call,
            checks,
        });
    }
    Ok(results)
}
