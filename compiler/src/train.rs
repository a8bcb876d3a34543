//! The `train` section: weight decay, gradients of the loss with respect to the
//! trained variables, clipping, and the optimizer's update ops, all appended to
//! the graph ahead of time (TensorFlow 1's `optimizer.minimize` under
//! `control_dependencies(UPDATE_OPS)`).
//!
//! Update rules are TensorFlow 1's (`tf.compat.v1.train`); hyper-parameters
//! are constants of the variables' dtype (TensorFlow makes them float32 even
//! for float64 variables), made once per optimizer and shared by every
//! variable's update, as TensorFlow's `Optimizer._prepare` converts them to
//! tensors once (`GradientDescent/learning_rate`, `Adam/beta1`, ...). Every read of a variable in a step sees its value
//! at the start of the step (see the runtime's session), so the order of the
//! updates within a step does not change the result.

use crate::builder::resolve_ref;
use crate::builder::Ctx;
use crate::error::{did_you_mean, CompileError, ErrorKind, Result};
use crate::grad;
use crate::ir::{
    Graph, Role, TensorRef, TrainInfo, GLOBAL_VARIABLES, LEARNING_RATE, TRAINABLE_VARIABLES,
    UPDATE_OPS,
};
use crate::schema::{OptimizerSpec, Schedule, TrainSpec};
use foldhash::HashMap;
use gradc_runtime::{DType, Initializer, Literal, Op, Shape};
use petgraph::stable_graph::NodeIndex;

/// Builds the train step of `spec` into `g` and records it in `g.train`.
pub fn build_train(
    g: &mut Graph,
    spec: &TrainSpec,
    aliases: &HashMap<String, TensorRef>,
    text: &str,
) -> Result<()> {
    let line = crate::schema::line_of_key(text, "train");
    let err = |msg: String| CompileError::new(ErrorKind::Train, msg).at_line(line);
    let find = |g: &Graph, r: &str, what: &str| {
        resolve_ref(g, aliases, r).ok_or_else(|| {
            CompileError::new(
                ErrorKind::UnknownNode,
                format!(
                    "train {what} '{r}' does not exist{}",
                    did_you_mean(r, g.names())
                ),
            )
            .at_line(line)
        })
    };
    if let Some(f) = spec.data.as_ref().and_then(|d| d.validation_split) {
        if !(f > 0.0 && f < 1.0) {
            return Err(CompileError::new(
                ErrorKind::Train,
                format!("validation_split must be in (0, 1), got {f}"),
            )
            .at_line(crate::schema::line_of_key(text, "validation_split").or(line)));
        }
    }
    if let (Some(steps), Some(epochs)) = (spec.steps, spec.epochs) {
        return Err(err(format!(
            "the train section gives both steps ({steps}) and epochs ({epochs}): give one"
        )));
    }
    let loss = find(g, &spec.loss, "loss")?;
    if g.ty(loss).shape.rank() != 0 {
        return Err(err(format!(
            "the loss '{}' must be a scalar, it is {}",
            spec.loss,
            g.ty(loss)
        )));
    }
    let metrics = spec
        .metrics
        .iter()
        .map(|m| find(g, m, "metric").map(|t| (m.clone(), t)))
        .collect::<Result<Vec<_>>>()?;
    let var_list: Vec<NodeIndex> = match &spec.var_list {
        Some(names) => names
            .iter()
            .map(|n| {
                let t = find(g, n, "variable")?;
                match g.node(t.node).op {
                    Op::Variable { .. } => Ok(t.node),
                    ref op => Err(err(format!(
                        "'{n}' in var_list is a {}, not a Variable",
                        op.name()
                    ))),
                }
            })
            .collect::<Result<_>>()?,
        None => g
            .collections
            .get(TRAINABLE_VARIABLES)
            .cloned()
            .unwrap_or_default(),
    };
    if var_list.is_empty() {
        return Err(err("there is no trainable variable to train".into()));
    }
    let dtype = g.ty(loss).dtype;
    if let Some(&v) = var_list.iter().find(|&&v| g.node(v).dtype != dtype) {
        return Err(err(format!(
            "variable '{}' is {} but the loss is {dtype}; an optimizer updates variables of one dtype",
            g.node(v).name,
            g.node(v).dtype
        )));
    }
    let vars: Vec<TensorRef> = var_list.iter().map(|&v| TensorRef::of(v)).collect();

    let objective = with_weight_decay(g, loss, &vars, spec.weight_decay)?;
    let hooked = spec
        .hooks
        .iter()
        .map(|h| find(g, h, "hook"))
        .collect::<Result<Vec<_>>>()?;
    let scope = g.free_scope("gradients");
    let xs: Vec<TensorRef> = vars.iter().chain(&hooked).copied().collect();
    let mut grads = grad::gradients(g, objective, &xs, None, &scope)?;
    let hooks: Vec<(String, TensorRef)> = spec
        .hooks
        .iter()
        .zip(grads.split_off(vars.len()))
        .map(|(h, t)| (crate::schema::gradient_name(&spec.loss, h), t))
        .collect();
    // Data parallel: every gradient averaged over the ranks in one exchange,
    // before clipping, so that every rank clips and updates alike.
    if let Some(ranks) = spec.ranks.filter(|&n| n > 1) {
        let mut c = Ctx::new(g, "AllReduce", Role::Update);
        grads = c.op_multi(Op::AllReduceMean { ranks }, &grads)?;
    }
    if let Some(clip) = spec.clip_global_norm {
        if clip.is_nan() || clip <= 0.0 {
            return Err(err(format!(
                "clip_global_norm must be positive, got {clip}"
            )));
        }
        grads = clip_by_global_norm(g, &grads, clip)?;
    }
    if let OptimizerSpec::Adagrad {
        initial_accumulator_value: init,
        ..
    } = spec.optimizer
    {
        if init.is_nan() || init <= 0.0 {
            return Err(err(format!(
                "Adagrad's initial_accumulator_value must be positive, got {init}"
            )));
        }
    }
    let schedule = match &spec.learning_rate_schedule {
        Some(schedule) => {
            check_schedule(schedule).map_err(err)?;
            let step = slot(
                g,
                "global_step",
                Shape::scalar(),
                Initializer::Zeros,
                DType::I64,
            )?;
            Some((schedule, step))
        }
        None => None,
    };
    let hyper = HyperSpec {
        given: spec.hyperparameter_dtype,
        schedule,
    };
    let (mut updates, learning_rate) = apply(g, &spec.optimizer, &hyper, &vars, &grads, dtype)?;
    if let Some((_, step)) = schedule {
        let one = g.add(
            g.unique_name("global_step/one"),
            Op::Const(Literal::Scalar(1.0)),
            DType::I64,
            &[],
            Role::Update,
            None,
        )?;
        let name = g.unique_name("global_step/AssignAdd");
        updates.push(g.add(
            name,
            Op::AssignAdd,
            DType::I64,
            &[step, TensorRef::of(one)],
            Role::Update,
            None,
        )?);
    }
    updates.extend(g.collections.get(UPDATE_OPS).cloned().unwrap_or_default());
    let name = g.unique_name("train");
    let train_op = g.add(name, Op::NoOp, dtype, &[], Role::Update, line)?;
    for u in updates {
        g.add_control(u, train_op);
    }
    g.train = Some(TrainInfo {
        train_op,
        loss: (spec.loss.clone(), loss),
        metrics,
        hooks,
        learning_rate: learning_rate.map(|t| (LEARNING_RATE.to_string(), t)),
        var_list,
    });
    Ok(())
}

// objective = loss + wd/2 * sum over weights of sum(w^2)
fn with_weight_decay(
    g: &mut Graph,
    loss: TensorRef,
    vars: &[TensorRef],
    wd: f64,
) -> Result<TensorRef> {
    let weights: Vec<TensorRef> = vars
        .iter()
        .copied()
        .filter(|&v| g.ty(v).shape.rank() >= 2)
        .collect();
    if wd == 0.0 || weights.is_empty() {
        return Ok(loss);
    }
    let mut c = Ctx::new(g, "weight_decay", Role::Forward);
    let mut terms = Vec::with_capacity(weights.len());
    for w in weights {
        let sq = c.op(Op::Square, &[w])?;
        terms.push(c.op(
            Op::Sum {
                axes: None,
                keep_dims: false,
            },
            &[sq],
        )?);
    }
    let total = if terms.len() == 1 {
        terms[0]
    } else {
        c.op(Op::AddN, &terms)?
    };
    let penalty = c.scale(wd / 2.0, total)?;
    c.add(loss, penalty)
}

// g_i *= clip / max(global_norm, clip), global_norm = sqrt(sum_i sum(g_i^2))
fn clip_by_global_norm(g: &mut Graph, grads: &[TensorRef], clip: f64) -> Result<Vec<TensorRef>> {
    let mut c = Ctx::new(g, "clip_by_global_norm", Role::Update);
    let mut sums = Vec::with_capacity(grads.len());
    for &gr in grads {
        let sq = c.op(Op::Square, &[gr])?;
        sums.push(c.op(
            Op::Sum {
                axes: None,
                keep_dims: false,
            },
            &[sq],
        )?);
    }
    let total = if sums.len() == 1 {
        sums[0]
    } else {
        c.op(Op::AddN, &sums)?
    };
    let norm = c.op(Op::Sqrt, &[total])?;
    let limit = c.scalar(clip, norm)?;
    let denom = c.op(Op::Maximum, &[norm, limit])?;
    let scale = c.div(limit, denom)?;
    grads.iter().map(|&gr| c.mul(gr, scale)).collect()
}

/// What a schedule needs to make sense: a positive decay, values for every interval.
fn check_schedule(schedule: &Schedule) -> std::result::Result<(), String> {
    match schedule {
        Schedule::ExponentialDecay {
            decay_steps,
            decay_rate,
            ..
        } => {
            if *decay_steps == 0 || !(decay_rate.is_finite() && *decay_rate > 0.0) {
                return Err(format!(
                    "ExponentialDecay needs decay_steps > 0 and a finite decay_rate > 0, got {decay_steps} and {decay_rate}"
                ));
            }
        }
        Schedule::CosineDecay { decay_steps, alpha } => {
            if *decay_steps == 0 || !alpha.is_finite() {
                return Err(format!(
                    "CosineDecay needs decay_steps > 0 and a finite alpha, got {decay_steps} and {alpha}"
                ));
            }
        }
        Schedule::PiecewiseConstant { boundaries, values } => {
            if values.len() != boundaries.len() + 1 || boundaries.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "PiecewiseConstant needs increasing boundaries and one value more than boundaries, got {} and {}",
                    boundaries.len(),
                    values.len()
                ));
            }
        }
    }
    Ok(())
}

/// How the optimizer's hyper-parameters are made: the dtype they are given
/// in, and the learning rate's schedule with the step variable it reads.
struct HyperSpec<'s> {
    given: Option<DType>,
    schedule: Option<(&'s Schedule, TensorRef)>,
}

/// A non-trainable optimizer variable (a slot, or Adam's beta powers).
fn slot(
    g: &mut Graph,
    name: &str,
    shape: Shape,
    init: Initializer,
    dtype: DType,
) -> Result<TensorRef> {
    let name = g.unique_name(name);
    let op = Op::Variable {
        shape,
        initializer: Box::new(init),
        trainable: false,
    };
    let v = g.add(name, op, dtype, &[], Role::Update, None)?;
    g.collections
        .entry(GLOBAL_VARIABLES.to_string())
        .or_default()
        .push(v);
    Ok(TensorRef::of(v))
}

/// An optimizer's hyper-parameters as constants made on first use and then
/// shared: `<optimizer>/<name>`, one per dtype of the variables using it.
struct Hyper<'s> {
    scope: &'static str,
    /// The dtype the values are given in, when not the variables'; the
    /// learning rate's schedule.
    spec: &'s HyperSpec<'s>,
    made: Vec<(&'static str, DType, TensorRef)>,
}

impl<'s> Hyper<'s> {
    fn new(scope: &'static str, spec: &'s HyperSpec<'s>) -> Hyper<'s> {
        Hyper {
            scope,
            spec,
            made: Vec::new(),
        }
    }

    /// The constant `name` = `v` of `like`'s dtype; given in another dtype,
    /// a constant of that dtype cast to `like`'s (TensorFlow 1 converts a
    /// Python float to a float32 tensor, then casts it to the variable's dtype).
    fn get(
        &mut self,
        g: &mut Graph,
        name: &'static str,
        v: f64,
        like: TensorRef,
    ) -> Result<TensorRef> {
        let dtype = g.ty(like).dtype;
        if let Some(&(_, _, t)) = self.made.iter().find(|m| m.0 == name && m.1 == dtype) {
            return Ok(t);
        }
        let node = g.unique_name(format!("{}/{name}", self.scope));
        let op = Op::Const(Literal::Scalar(v));
        if let (Some((schedule, step)), "learning_rate") = (self.spec.schedule, name) {
            let t = scheduled(g, &node, schedule, step, v, dtype)?;
            self.made.push((name, dtype, t));
            return Ok(t);
        }
        let t = match self.spec.given.filter(|&d| d != dtype) {
            None => TensorRef::of(g.add(node, op, dtype, &[], Role::Update, None)?),
            Some(given) => {
                let c = TensorRef::of(g.add(node.clone(), op, given, &[], Role::Update, None)?);
                let cast = g.unique_name(format!("{node}/Cast"));
                TensorRef::of(g.add(
                    cast,
                    Op::Cast { to: dtype },
                    dtype,
                    &[c],
                    Role::Update,
                    None,
                )?)
            }
        };
        self.made.push((name, dtype, t));
        Ok(t)
    }
}

/// The learning rate `lr` under `schedule` at the step `step` holds, of `dtype`, under `scope`.
fn scheduled(
    g: &mut Graph,
    scope: &str,
    schedule: &Schedule,
    step: TensorRef,
    lr: f64,
    dtype: DType,
) -> Result<TensorRef> {
    let mut c = Ctx::new(g, scope, Role::Update);
    let constant = |c: &mut Ctx, v: f64, dtype: DType| {
        let name = c.g.unique_name(format!("{scope}/Const"));
        c.g.add(
            name,
            Op::Const(Literal::Scalar(v)),
            dtype,
            &[],
            Role::Update,
            None,
        )
        .map(TensorRef::of)
    };
    match schedule {
        // lr · rate^p = lr · exp(p · ln rate), p = step / decay_steps (floored for a staircase)
        Schedule::ExponentialDecay {
            decay_steps,
            decay_rate,
            staircase,
        } => {
            let t = c.op(Op::Cast { to: dtype }, &[step])?;
            let steps = constant(&mut c, *decay_steps as f64, dtype)?;
            let mut p = c.div(t, steps)?;
            if *staircase {
                p = c.op(Op::Floor, &[p])?;
            }
            let log_rate = c.scale(decay_rate.ln(), p)?;
            let factor = c.op(Op::Exp, &[log_rate])?;
            c.scale(lr, factor)
        }
        // lr · ((1 − alpha) · ½(1 + cos(π · min(step, decay_steps) / decay_steps)) + alpha)
        Schedule::CosineDecay { decay_steps, alpha } => {
            let t = c.op(Op::Cast { to: dtype }, &[step])?;
            let steps = constant(&mut c, *decay_steps as f64, dtype)?;
            let t = c.op(Op::Minimum, &[t, steps])?;
            let fraction = c.div(t, steps)?;
            let angle = c.scale(std::f64::consts::PI, fraction)?;
            let cos = c.op(Op::Cos, &[angle])?;
            let one = constant(&mut c, 1.0, dtype)?;
            let cos = c.add(one, cos)?;
            let cosine = c.scale(0.5, cos)?;
            let kept = c.scale(1.0 - alpha, cosine)?;
            let floor = constant(&mut c, *alpha, dtype)?;
            let decayed = c.add(kept, floor)?;
            c.scale(lr, decayed)
        }
        // the last value, then for each boundary from the last: values[i] where step <= boundaries[i]
        Schedule::PiecewiseConstant { boundaries, values } => {
            let last = values.last().copied().unwrap_or(lr);
            let mut rate = constant(&mut c, last, dtype)?;
            for (&b, &v) in boundaries.iter().zip(values).rev() {
                let bound = constant(&mut c, b as f64, DType::I64)?;
                let within = c.op(Op::LessEqual, &[step, bound])?;
                let value = constant(&mut c, v, dtype)?;
                rate = c.op(Op::Select, &[within, value, rate])?;
            }
            Ok(rate)
        }
    }
}

/// The update ops of `opt` for each (variable, gradient); returns the nodes
/// to run, and the learning rate tensor (scheduled or constant).
fn apply(
    g: &mut Graph,
    opt: &OptimizerSpec,
    hyper_spec: &HyperSpec<'_>,
    vars: &[TensorRef],
    grads: &[TensorRef],
    dtype: DType,
) -> Result<(Vec<NodeIndex>, Option<TensorRef>)> {
    let mut updates = Vec::with_capacity(vars.len() + 2);
    let mut hyper = Hyper::new(opt.name(), hyper_spec);
    match *opt {
        // w -= lr * g, one ApplyGradientDescent per variable
        OptimizerSpec::GradientDescent { learning_rate } => {
            for (&w, &gr) in vars.iter().zip(grads) {
                let lr = hyper.get(g, "learning_rate", learning_rate, w)?;
                let name = g.node(w.node).name.clone();
                let mut c = Ctx::new(g, format!("GradientDescent/update_{name}"), Role::Update);
                updates.push(c.op(Op::ApplyGradientDescent, &[w, lr, gr])?.node);
            }
        }
        // accum = momentum * accum + g; w -= lr * accum   (Nesterov: w -= lr * (g + momentum * accum)),
        // one ApplyMomentum per variable
        OptimizerSpec::Momentum {
            learning_rate,
            momentum,
            use_nesterov,
        } => {
            for (&w, &gr) in vars.iter().zip(grads) {
                let lr = hyper.get(g, "learning_rate", learning_rate, w)?;
                let mu = hyper.get(g, "momentum", momentum, w)?;
                let name = g.node(w.node).name.clone();
                let shape = g.ty(w).shape.clone();
                let accum = slot(
                    g,
                    &format!("{name}/Momentum"),
                    shape,
                    Initializer::Zeros,
                    dtype,
                )?;
                let mut c = Ctx::new(g, format!("Momentum/update_{name}"), Role::Update);
                let apply = Op::ApplyMomentum { use_nesterov };
                updates.push(c.op(apply, &[w, accum, lr, gr, mu])?.node);
            }
        }
        OptimizerSpec::Adam {
            learning_rate,
            beta1,
            beta2,
            epsilon,
        } => {
            let adam = AdamSpec {
                learning_rate,
                beta1,
                beta2,
                epsilon,
                weight_decay: None,
            };
            updates.extend(apply_adam(g, &adam, &mut hyper, vars, grads, dtype)?);
        }
        OptimizerSpec::AdamW {
            weight_decay,
            learning_rate,
            beta1,
            beta2,
            epsilon,
        } => {
            let adam = AdamSpec {
                learning_rate,
                beta1,
                beta2,
                epsilon,
                weight_decay: Some(weight_decay),
            };
            updates.extend(apply_adam(g, &adam, &mut hyper, vars, grads, dtype)?);
        }
        // ms += (g^2 - ms)(1 - decay); [centered: mg += (g - mg)(1 - decay)];
        // mom = momentum * mom + lr * g / sqrt(ms [- mg^2] + epsilon); w -= mom
        OptimizerSpec::RMSProp {
            learning_rate,
            decay,
            momentum,
            epsilon,
            centered,
        } => {
            for (&w, &gr) in vars.iter().zip(grads) {
                let lr = hyper.get(g, "learning_rate", learning_rate, w)?;
                let rho = hyper.get(g, "decay", decay, w)?;
                let one = hyper.get(g, "one", 1.0, w)?;
                let mu = hyper.get(g, "momentum", momentum, w)?;
                let eps = hyper.get(g, "epsilon", epsilon, w)?;
                let name = g.node(w.node).name.clone();
                let shape = g.ty(w).shape.clone();
                let slot_name = format!("{name}/RMSProp");
                let ms = slot(g, &slot_name, shape.clone(), Initializer::Ones, dtype)?;
                let mg = match centered {
                    true => Some(slot(
                        g,
                        &slot_name,
                        shape.clone(),
                        Initializer::Zeros,
                        dtype,
                    )?),
                    false => None,
                };
                let mom = slot(g, &slot_name, shape, Initializer::Zeros, dtype)?;
                let mut c = Ctx::new(g, format!("RMSProp/update_{name}"), Role::Update);
                let keep = c.sub(one, rho)?;
                let g2 = c.op(Op::Square, &[gr])?;
                let ms_step = c.sub(g2, ms)?;
                let ms_step = c.mul(ms_step, keep)?;
                let ms_sum = c.add(ms, ms_step)?;
                let ms_new = c.op(Op::Assign, &[ms, ms_sum])?;
                let mut den = ms_new;
                if let Some(mg) = mg {
                    let mg_step = c.sub(gr, mg)?;
                    let mg_step = c.mul(mg_step, keep)?;
                    let mg_sum = c.add(mg, mg_step)?;
                    let mg_new = c.op(Op::Assign, &[mg, mg_sum])?;
                    let mg2 = c.op(Op::Square, &[mg_new])?;
                    den = c.sub(den, mg2)?;
                }
                let den = c.add(den, eps)?;
                let den = c.op(Op::Sqrt, &[den])?;
                let scaled = c.mul(gr, lr)?;
                let dir = c.div(scaled, den)?;
                let mom_old = c.mul(mom, mu)?;
                let mom_sum = c.add(mom_old, dir)?;
                let mom_new = c.op(Op::Assign, &[mom, mom_sum])?;
                updates.push(c.op(Op::AssignSub, &[w, mom_new])?.node);
            }
        }
        // accum += g^2; w -= lr * g / sqrt(accum)
        OptimizerSpec::Adagrad {
            learning_rate,
            initial_accumulator_value,
        } => {
            for (&w, &gr) in vars.iter().zip(grads) {
                let lr = hyper.get(g, "learning_rate", learning_rate, w)?;
                let name = g.node(w.node).name.clone();
                let shape = g.ty(w).shape.clone();
                let init = Initializer::Constant(initial_accumulator_value);
                let accum = slot(g, &format!("{name}/Adagrad"), shape, init, dtype)?;
                let mut c = Ctx::new(g, format!("Adagrad/update_{name}"), Role::Update);
                let g2 = c.op(Op::Square, &[gr])?;
                let sum = c.add(accum, g2)?;
                let accum_new = c.op(Op::Assign, &[accum, sum])?;
                let root = c.op(Op::Sqrt, &[accum_new])?;
                let scaled = c.mul(gr, lr)?;
                let step = c.div(scaled, root)?;
                updates.push(c.op(Op::AssignSub, &[w, step])?.node);
            }
        }
    }
    let lr = hyper
        .made
        .iter()
        .find(|m| m.0 == "learning_rate")
        .map(|m| m.2);
    Ok((updates, lr))
}

/// Adam's hyper-parameters, and the decoupled weight decay of AdamW.
struct AdamSpec {
    learning_rate: f64,
    beta1: f64,
    beta2: f64,
    epsilon: f64,
    weight_decay: Option<f64>,
}

/// Adam's update ops (AdamW's with a weight decay); returns the nodes to run.
fn apply_adam(
    g: &mut Graph,
    adam: &AdamSpec,
    hyper: &mut Hyper<'_>,
    vars: &[TensorRef],
    grads: &[TensorRef],
    dtype: DType,
) -> Result<Vec<NodeIndex>> {
    let scope = hyper.scope;
    let AdamSpec {
        learning_rate,
        beta1,
        beta2,
        epsilon,
        weight_decay,
    } = *adam;
    // lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    // w -= lr_t * m / (sqrt(v) + epsilon)   (AdamW: w = (w - weight_decay * w) - lr_t * m / (sqrt(v) + epsilon));
    // then beta1^t *= b1, beta2^t *= b2
    let b1p = slot(
        g,
        "beta1_power",
        Shape::scalar(),
        Initializer::Constant(beta1),
        dtype,
    )?;
    let b2p = slot(
        g,
        "beta2_power",
        Shape::scalar(),
        Initializer::Constant(beta2),
        dtype,
    )?;
    let lr = hyper.get(g, "learning_rate", learning_rate, b1p)?;
    let mut c = Ctx::new(g, scope, Role::Update);
    let one = c.scalar(1.0, b1p)?;
    let num = c.sub(one, b2p)?;
    let num = c.op(Op::Sqrt, &[num])?;
    let den = c.sub(one, b1p)?;
    let ratio = c.div(num, den)?;
    let lr_t = c.mul(lr, ratio)?;
    let mut var_updates = Vec::with_capacity(vars.len());
    for (&w, &gr) in vars.iter().zip(grads) {
        let b1 = hyper.get(g, "beta1", beta1, w)?;
        let b1c = hyper.get(g, "one_minus_beta1", 1.0 - beta1, w)?;
        let b2 = hyper.get(g, "beta2", beta2, w)?;
        let b2c = hyper.get(g, "one_minus_beta2", 1.0 - beta2, w)?;
        let eps = hyper.get(g, "epsilon", epsilon, w)?;
        let wd = match weight_decay {
            Some(wd) => Some(hyper.get(g, "weight_decay", wd, w)?),
            None => None,
        };
        let name = g.node(w.node).name.clone();
        let shape = g.ty(w).shape.clone();
        let m = slot(
            g,
            &format!("{name}/{scope}"),
            shape.clone(),
            Initializer::Zeros,
            dtype,
        )?;
        let v = slot(
            g,
            &format!("{name}/{scope}_1"),
            shape,
            Initializer::Zeros,
            dtype,
        )?;
        let mut c = Ctx::new(g, format!("{scope}/update_{name}"), Role::Update);
        let m_old = c.mul(b1, m)?;
        let m_g = c.mul(b1c, gr)?;
        let m_sum = c.add(m_old, m_g)?;
        let m_new = c.op(Op::Assign, &[m, m_sum])?;
        let v_old = c.mul(b2, v)?;
        let g2 = c.op(Op::Square, &[gr])?;
        let v_g = c.mul(b2c, g2)?;
        let v_sum = c.add(v_old, v_g)?;
        let v_new = c.op(Op::Assign, &[v, v_sum])?;
        let root = c.op(Op::Sqrt, &[v_new])?;
        let den = c.add(root, eps)?;
        let dir = c.div(m_new, den)?;
        let step = c.mul(lr_t, dir)?;
        var_updates.push(match wd {
            None => c.op(Op::AssignSub, &[w, step])?.node,
            Some(wd) => {
                let decay = c.mul(wd, w)?;
                let decayed = c.sub(w, decay)?;
                let next = c.sub(decayed, step)?;
                c.op(Op::Assign, &[w, next])?.node
            }
        });
    }
    let mut c = Ctx::new(g, format!("{scope}/finish"), Role::Update);
    let b1_next = c.scale(beta1, b1p)?;
    let b1_upd = c.op(Op::Assign, &[b1p, b1_next])?.node;
    let b2_next = c.scale(beta2, b2p)?;
    let b2_upd = c.op(Op::Assign, &[b2p, b2_next])?.node;
    for &u in &var_updates {
        g.add_control(u, b1_upd);
        g.add_control(u, b2_upd);
    }
    var_updates.extend([b1_upd, b2_upd]);
    Ok(var_updates)
}
