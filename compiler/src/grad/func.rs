//! Gradients at function boundaries: IdentityN passes gradients through;
//! CustomGradient instantiates the function's gradient graph; a gradient made
//! by a `once_differentiable` function refuses to be differentiated again.

use super::{Ctx, Grads, NodeArgs};
use crate::error::{CompileError, ErrorKind};
use crate::functions::instantiate;
use crate::ir::{Role, TensorRef};
use crate::schema::line_of_function;
use foldhash::HashMap;
use gradc_runtime::Op;

// dx_k = dy_k
pub(super) fn identity_n(_: &mut Ctx, _: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    Ok(g.to_vec())
}

// the function's gradient graph, given its inputs, its outputs and d(<output>)
// for each output (zeros where none came); the body gets no gradient
pub(super) fn custom_gradient(c: &mut Ctx, n: &NodeArgs, g: &[Option<TensorRef>]) -> Grads {
    let Op::CustomGradient { function, inputs } = &n.op else {
        unreachable!("custom_gradient rule on {}", n.op.name())
    };
    let source = c.g.source.clone();
    let fail = |message: String| {
        CompileError::new(ErrorKind::Function, message).at_line(line_of_function(&source, function))
    };
    let f =
        c.g.functions
            .get(function)
            .cloned()
            .ok_or_else(|| fail(format!("function '{function}' is not defined")))?;
    let spec = f
        .gradient
        .clone()
        .ok_or_else(|| fail(format!("function '{function}' has no custom gradient")))?;
    let args = &n.inputs[..*inputs];
    let mut env: HashMap<String, TensorRef> =
        f.inputs.iter().cloned().zip(args.iter().copied()).collect();
    for (k, out) in f.outputs.iter().enumerate() {
        let y = n.outputs[k];
        env.insert(out.clone(), y);
        let dy = match g[k] {
            Some(d) => d,
            None => c.op(Op::ZerosLike, &[y])?,
        };
        env.insert(format!("d({out})"), dy);
    }
    let scope = c.scope().to_string();
    let place = |e: CompileError| {
        let message = format!("in the gradient of function '{function}': {}", e.message);
        CompileError {
            message,
            line: e.line.or(line_of_function(&source, function)),
            ..e
        }
    };
    instantiate(c.g, &spec.nodes, &mut env, &scope, Role::Backward, &place)?;
    let mut grads = Vec::with_capacity(n.inputs.len());
    for (k, ret) in spec.returns.iter().enumerate() {
        let Some(name) = ret else {
            grads.push(None);
            continue;
        };
        let r = env.get(name).copied().ok_or_else(|| {
            fail(format!(
                "the gradient of function '{function}' returns '{name}', which it does not define"
            ))
        })?;
        let (want, got) = (c.ty(args[k]).clone(), c.ty(r).clone());
        if want != got {
            return Err(fail(format!(
                "the gradient of function '{function}' returns {got} for input '{}', which is {want}",
                f.inputs[k]
            )));
        }
        let r = if f.once_differentiable {
            c.op(
                Op::OnceDifferentiable {
                    function: function.clone(),
                },
                &[r],
            )?
        } else {
            r
        };
        grads.push(Some(r));
    }
    grads.resize(n.inputs.len(), None);
    Ok(grads)
}

pub(super) fn once_differentiable(c: &mut Ctx, n: &NodeArgs, _: &[Option<TensorRef>]) -> Grads {
    let Op::OnceDifferentiable { function } = &n.op else {
        unreachable!("once_differentiable rule on {}", n.op.name())
    };
    Err(CompileError::new(
        ErrorKind::Function,
        format!("function '{function}' is once_differentiable: its gradient cannot be differentiated again"),
    )
    .at_line(line_of_function(&c.g.source, function)))
}
