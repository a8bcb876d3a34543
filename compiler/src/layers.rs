//! Layers: ops of the graph file that the compiler expands into ops, the way
//! TensorFlow's Python layers build their subgraphs. `BatchNorm` follows
//! `tf.contrib.layers.batch_norm` (the legacy path of the source text, which
//! handles `updates_collections` and `zero_debias_moving_mean`), and
//! `AssignMovingAverage` follows `moving_averages.assign_moving_average`.
//!
//! A layer named `bn` becomes nodes under `bn/...` and a final node named `bn`
//! holding its result, so the rest of the graph refers to it as to any node.

use crate::builder::{broadcastable, resolve_ref, Ctx};
use crate::error::{CompileError, ErrorKind, Result};
use crate::ir::{Graph, Role, TensorRef, GLOBAL_VARIABLES, TRAINABLE_VARIABLES};
use crate::schema::{BatchNormLayer, IsTraining, Layer};
use gradc_runtime::{DType, Dim, Initializer, Literal, Op, Shape};
use petgraph::stable_graph::NodeIndex;

/// What expanding a layer made: the node that carries the layer's name, and
/// nodes to add to collections (e.g. moving-average updates to `UPDATE_OPS`).
pub struct Expansion {
    pub node: NodeIndex,
    pub collections: Vec<(String, NodeIndex)>,
}

/// Expands `layer` named `name` with `inputs` (a `Call` is inlined by `functions`).
pub fn expand(
    g: &mut Graph,
    name: &str,
    layer: &Layer,
    inputs: &[TensorRef],
    line: Option<usize>,
) -> Result<Expansion> {
    let op = layer;
    let located = |e: CompileError| e.at_node(name, op.name()).at_line(line);
    match op {
        Layer::AssignMovingAverage { decay, zero_debias } => {
            let [var, value] = inputs else {
                return Err(located(arity_error(op, inputs.len())));
            };
            check_decay(*decay).map_err(located)?;
            let how = Factor::Double;
            let node = moving_average(g, name, *var, *value, *decay, how, *zero_debias, line)
                .map_err(located)?;
            Ok(Expansion {
                node,
                collections: Vec::new(),
            })
        }
        Layer::BatchNorm(layer) => {
            let [x] = inputs else {
                return Err(located(arity_error(op, inputs.len())));
            };
            batch_norm(g, name, *x, layer, line).map_err(located)
        }
        Layer::Dropout { rate, is_training } => {
            let [x] = inputs else {
                return Err(located(arity_error(op, inputs.len())));
            };
            dropout(g, name, *x, *rate, is_training, line).map_err(located)
        }
        Layer::Call(f) => Err(located(CompileError::new(
            ErrorKind::Internal,
            format!("a call of '{f}' is inlined, not expanded"),
        ))),
    }
}

fn arity_error(layer: &Layer, got: usize) -> CompileError {
    let takes = layer
        .arity()
        .map_or("any number of".into(), |n| n.to_string());
    CompileError::new(
        ErrorKind::Shape,
        format!("{} takes {takes} inputs, got {got}", layer.name()),
    )
}

fn check_decay(decay: f64) -> Result<()> {
    if (0.0..=1.0).contains(&decay) {
        Ok(())
    } else {
        Err(CompileError::new(
            ErrorKind::Shape,
            format!("decay must be in [0, 1], got {decay}"),
        ))
    }
}

fn variable(
    g: &mut Graph,
    name: &str,
    shape: Shape,
    init: Initializer,
    trainable: bool,
    dtype: DType,
) -> Result<TensorRef> {
    let op = Op::Variable {
        shape,
        initializer: Box::new(init),
        trainable,
    };
    let v = g.add(name.to_string(), op, dtype, &[], Role::Forward, None)?;
    g.collections
        .entry(GLOBAL_VARIABLES.to_string())
        .or_default()
        .push(v);
    if trainable {
        g.collections
            .entry(TRAINABLE_VARIABLES.to_string())
            .or_default()
            .push(v);
    }
    Ok(TensorRef::of(v))
}

/// How `1 - decay` is rounded, as TensorFlow forms it on each path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Factor {
    /// `assign_moving_average` with a Python float: `1.0 - decay` in double
    /// precision, then converted to the variable's dtype.
    Double,
    /// The fused batch-norm path: `decay` is first a tensor of the
    /// variable's dtype and `1 - decay` is taken in that dtype (in float32,
    /// 0.0009999871 for decay 0.999 where the double route gives 0.0010000000475).
    InDtype,
}

/// `1 - decay` as `how` forms it for a variable of `dtype`.
fn one_minus(decay: f64, dtype: gradc_runtime::DType, how: Factor) -> f64 {
    match (how, dtype) {
        (Factor::InDtype, gradc_runtime::DType::F32) => f64::from(1.0f32 - decay as f32),
        _ => 1.0 - decay,
    }
}

/// `variable -= (variable - value) * (1 - decay)`; with `zero_debias`
/// (TensorFlow's `_zero_debias`): `biased -= (biased - value) * (1 - decay)`,
/// `local_step += 1`, `variable = biased / (1 - decay^local_step)`.
/// The last assignment is named `name`.
#[allow(clippy::too_many_arguments)]
fn moving_average(
    g: &mut Graph,
    name: &str,
    var: TensorRef,
    value: TensorRef,
    decay: f64,
    how: Factor,
    zero_debias: bool,
    line: Option<usize>,
) -> Result<NodeIndex> {
    if !matches!(g.node(var.node).op, Op::Variable { .. }) {
        return Err(CompileError::new(
            ErrorKind::NotAVariable,
            format!(
                "the first input '{}' is a {}, not a Variable",
                g.tensor_name(var),
                g.node(var.node).op.name()
            ),
        ));
    }
    let dtype = g.ty(var).dtype;
    let shape = g.ty(var).shape.clone();
    let mut c = Ctx::new(g, name, Role::Forward);
    let finish = |c: &mut Ctx, op: Op, inputs: &[TensorRef]| -> Result<NodeIndex> {
        c.g.add(name.to_string(), op, dtype, inputs, Role::Forward, line)
    };
    if !zero_debias {
        let diff = c.sub(var, value)?;
        let delta = c.scale(one_minus(decay, dtype, how), diff)?;
        return finish(&mut c, Op::AssignSub, &[var, delta]);
    }
    let biased = variable(
        c.g,
        &format!("{name}/biased"),
        shape,
        Initializer::Zeros,
        false,
        dtype,
    )?;
    let step = variable(
        c.g,
        &format!("{name}/local_step"),
        Shape::scalar(),
        Initializer::Zeros,
        false,
        dtype,
    )?;
    let diff = c.sub(biased, value)?;
    let delta = c.scale(one_minus(decay, dtype, how), diff)?;
    let new_biased = c.op(Op::AssignSub, &[biased, delta])?;
    let one = c.scalar(1.0, step)?;
    let new_step = c.op(Op::AssignAdd, &[step, one])?;
    // decay^t = exp(t ln decay)
    let log_decay = c.scale(decay.ln(), new_step)?;
    let power = c.op(Op::Exp, &[log_decay])?;
    let factor = c.sub(one, power)?;
    let unbiased = c.div(new_biased, factor)?;
    finish(&mut c, Op::Assign, &[var, unbiased])
}

/// Whether the layer trains: known now, or decided at run time by a node's value.
enum Mode {
    Known(bool),
    Dynamic(TensorRef),
}

fn mode(g: &Graph, is_training: &IsTraining) -> Result<Mode> {
    match is_training {
        IsTraining::Const(b) => Ok(Mode::Known(*b)),
        IsTraining::Node(n) => {
            let t = resolve_ref(g, &Default::default(), n).ok_or_else(|| {
                CompileError::new(
                    ErrorKind::UnknownNode,
                    format!(
                        "is_training names '{n}', which does not exist{}",
                        crate::error::did_you_mean(n, g.names())
                    ),
                )
            })?;
            if g.ty(t).shape.rank() != 0 {
                return Err(CompileError::new(
                    ErrorKind::Shape,
                    format!("is_training '{n}' must be a scalar, it is {}", g.ty(t)),
                ));
            }
            // A constant decides now, as TensorFlow's smart_cond does.
            Ok(match &g.node(t.node).op {
                Op::Const(Literal::Scalar(v)) => Mode::Known(*v != 0.0),
                _ => Mode::Dynamic(t),
            })
        }
    }
}

fn batch_norm(
    g: &mut Graph,
    name: &str,
    x: TensorRef,
    layer: &BatchNormLayer,
    line: Option<usize>,
) -> Result<Expansion> {
    let xt = g.ty(x).clone();
    let rank = xt.shape.rank();
    if rank != 2 && rank != 4 {
        return Err(CompileError::new(
            ErrorKind::Shape,
            format!("BatchNorm takes an input of rank 2 or 4, got {xt}"),
        ));
    }
    let channel = layer.data_format.channel_axis(rank);
    let Dim::Known(c) = xt.shape.0[channel] else {
        return Err(CompileError::new(
            ErrorKind::Shape,
            format!(
                "the channel dimension of {xt} ({:?}, axis {channel}) must be known",
                layer.data_format
            ),
        ));
    };
    check_decay(layer.decay)?;
    if !(layer.epsilon.is_finite() && layer.epsilon >= 0.0) {
        return Err(CompileError::new(
            ErrorKind::Shape,
            format!("epsilon must be finite and >= 0, got {}", layer.epsilon),
        ));
    }
    let mode = mode(g, &layer.is_training)?;
    if layer.sync && layer.fused {
        return Err(CompileError::new(
            ErrorKind::Shape,
            "sync: true averages the statistics of the unfused path across the ranks; set fused: false",
        ));
    }
    if layer.zero_debias_moving_mean && matches!(mode, Mode::Dynamic(_)) {
        return Err(CompileError::new(
            ErrorKind::Shape,
            "zero_debias_moving_mean needs is_training to be a constant (its step count must not advance at inference)",
        ));
    }
    let dtype = xt.dtype;
    let params = Shape::known(&[c]);
    let init = |i: &Option<Initializer>, default: Initializer| i.clone().unwrap_or(default);
    let inits = &layer.param_initializers;
    let beta = match layer.center {
        true => Some(variable(
            g,
            &format!("{name}/beta"),
            params.clone(),
            init(&inits.beta, Initializer::Zeros),
            true,
            dtype,
        )?),
        false => None,
    };
    let gamma = match layer.scale {
        true => Some(variable(
            g,
            &format!("{name}/gamma"),
            params.clone(),
            init(&inits.gamma, Initializer::Ones),
            true,
            dtype,
        )?),
        false => None,
    };
    let mm_init = init(&inits.moving_mean, Initializer::Zeros);
    let mv_init = init(&inits.moving_variance, Initializer::Ones);
    let moving_mean = variable(
        g,
        &format!("{name}/moving_mean"),
        params.clone(),
        mm_init,
        false,
        dtype,
    )?;
    let moving_var = variable(
        g,
        &format!("{name}/moving_variance"),
        params.clone(),
        mv_init,
        false,
        dtype,
    )?;

    let mut c = Ctx::new(g, name, Role::Forward);
    let axes: Vec<i64> = (0..rank as i64).filter(|&a| a != channel as i64).collect();
    let mut collections = Vec::new();
    let training = !matches!(mode, Mode::Known(false));
    // Batch statistics (when the layer may train) and the variance that feeds the moving average.
    let (y_train, batch_mean, batch_var, stats_var) = if !training {
        (None, None, None, None)
    } else if layer.fused {
        let (scale, offset) = fused_params(&mut c, gamma, beta, moving_var)?;
        let op = Op::FusedBatchNorm {
            epsilon: layer.epsilon,
            data_format: layer.data_format,
            is_training: true,
        };
        let f = c.op(op, &[x, scale, offset, moving_mean, moving_var])?;
        let out = |k| TensorRef {
            node: f.node,
            output: k,
        };
        // TensorFlow's fused kernel feeds the Bessel-corrected variance to the moving average.
        (Some(f), Some(out(1)), Some(out(4)), Some(out(2)))
    } else {
        let m = c.op(
            Op::Moments {
                axes: axes.clone(),
                keep_dims: false,
            },
            &[x],
        )?;
        let var = TensorRef {
            node: m.node,
            output: 1,
        };
        if layer.sync && c.g.ranks > 1 {
            // The global batch's statistics from the ranks' equal shares:
            // mean = avg(mean_r), var = avg(var_r + mean_r²) − mean².
            let m2 = c.op(Op::Square, &[m])?;
            let s = c.add(var, m2)?;
            let avg = c.op_multi(Op::AllReduceMean { ranks: c.g.ranks }, &[m, s])?;
            let (mean, meansq) = (avg[0], avg[1]);
            let mean2 = c.op(Op::Square, &[mean])?;
            let var = c.sub(meansq, mean2)?;
            // E[x²] − E[x]² can come out below zero by rounding when the mean
            // is large against the spread: clamped, as a variance is.
            let var = c.op(Op::Relu, &[var])?;
            (None, Some(mean), Some(var), Some(var))
        } else {
            (None, Some(m), Some(var), Some(var))
        }
    };
    // The moving-average updates: of the batch statistics in training, no change otherwise.
    let mut updates = Vec::new();
    if let (Some(bm), Some(sv)) = (batch_mean, stats_var) {
        let (mean_value, var_value) = match mode {
            Mode::Dynamic(t) => (
                c.op(Op::Select, &[t, bm, moving_mean])?,
                c.op(Op::Select, &[t, sv, moving_var])?,
            ),
            _ => (bm, sv),
        };
        let g = &mut *c.g;
        let decay = layer.decay;
        let how = if layer.fused {
            Factor::InDtype
        } else {
            Factor::Double
        };
        updates.push(moving_average(
            g,
            &format!("{name}/AssignMovingAvg"),
            moving_mean,
            mean_value,
            decay,
            how,
            layer.zero_debias_moving_mean,
            None,
        )?);
        updates.push(moving_average(
            g,
            &format!("{name}/AssignMovingAvg_1"),
            moving_var,
            var_value,
            decay,
            how,
            false,
            None,
        )?);
    }
    // The statistics the output is normalized with.
    let y = if layer.fused {
        let inference = if matches!(mode, Mode::Known(true)) {
            None
        } else {
            let (scale, offset) = fused_params(&mut c, gamma, beta, moving_var)?;
            let op = Op::FusedBatchNorm {
                epsilon: layer.epsilon,
                data_format: layer.data_format,
                is_training: false,
            };
            Some(c.op(op, &[x, scale, offset, moving_mean, moving_var])?)
        };
        match (mode, y_train, inference) {
            (Mode::Dynamic(t), Some(yt), Some(yi)) => c.op(Op::Select, &[t, yt, yi])?,
            (_, Some(yt), None) => yt,
            (_, None, Some(yi)) => yi,
            _ => {
                return Err(CompileError::new(
                    ErrorKind::Internal,
                    "batch norm: no output",
                ))
            }
        }
    } else {
        let (mean, var) = match (mode, batch_mean, batch_var) {
            (Mode::Known(false), _, _) => (moving_mean, moving_var),
            (Mode::Dynamic(t), Some(bm), Some(bv)) => (
                c.op(Op::Select, &[t, bm, moving_mean])?,
                c.op(Op::Select, &[t, bv, moving_var])?,
            ),
            (_, Some(bm), Some(bv)) => (bm, bv),
            _ => {
                return Err(CompileError::new(
                    ErrorKind::Internal,
                    "batch norm: no statistics",
                ))
            }
        };
        let format = layer.data_format;
        let shape = |c: &mut Ctx, p: TensorRef| broadcastable(c, p, format, rank);
        let mut inputs = vec![x, shape(&mut c, mean)?, shape(&mut c, var)?];
        if let Some(b) = beta {
            inputs.push(shape(&mut c, b)?);
        }
        if let Some(s) = gamma {
            inputs.push(shape(&mut c, s)?);
        }
        let op = Op::BatchNormalization {
            variance_epsilon: layer.epsilon,
            offset: beta.is_some(),
            scale: gamma.is_some(),
        };
        c.op(op, &inputs)?
    };
    let node = g.add(
        name.to_string(),
        Op::Identity,
        dtype,
        &[y],
        Role::Forward,
        line,
    )?;
    match &layer.updates_collections {
        Some(col) => collections.extend(updates.into_iter().map(|u| (col.clone(), u))),
        // Forced in place: whoever uses the output runs the updates (the source's _force_updates).
        None => {
            for u in updates {
                g.add_control(u, node);
            }
        }
    }
    Ok(Expansion { node, collections })
}

/// `tf.nn.dropout` (its TensorFlow 2 form): `keep = uniform >= rate`,
/// `y = x · (1/(1 − rate)) · keep` in training, x otherwise. The uniform
/// values come from `StatelessRandomUniform` seeded by the variable
/// `<name>/seed` (drawn from the run's seed and its name), which
/// `<name>/next_seed` advances by one; that update goes to `UPDATE_OPS`, so
/// each train step has its own mask, the forward and backward passes of a
/// step share it, and a checkpoint resumes the sequence. Built not training,
/// the layer is the identity and has no variable.
fn dropout(
    g: &mut Graph,
    name: &str,
    x: TensorRef,
    rate: f64,
    is_training: &IsTraining,
    line: Option<usize>,
) -> Result<Expansion> {
    let dtype = g.ty(x).dtype;
    if !dtype.is_float() {
        return Err(CompileError::new(
            ErrorKind::DType,
            format!("Dropout takes a float input, got {}", g.ty(x)),
        ));
    }
    if !(0.0..1.0).contains(&rate) {
        return Err(CompileError::new(
            ErrorKind::Shape,
            format!("rate must be in [0, 1), got {rate}"),
        ));
    }
    let mode = mode(g, is_training)?;
    if rate == 0.0 || matches!(mode, Mode::Known(false)) {
        let node = g.add(
            name.to_string(),
            Op::Identity,
            dtype,
            &[x],
            Role::Forward,
            line,
        )?;
        return Ok(Expansion {
            node,
            collections: Vec::new(),
        });
    }
    let seed = variable(
        g,
        &format!("{name}/seed"),
        Shape::scalar(),
        Initializer::Seed,
        false,
        DType::I64,
    )?;
    let mut c = Ctx::new(g, name, Role::Forward);
    let uniform = c.op(Op::StatelessRandomUniform, &[x, seed])?;
    let threshold = c.scalar(rate, x)?;
    let keep = c.op(Op::GreaterEqualMask, &[uniform, threshold])?;
    let scaled = c.scale(1.0 / (1.0 - rate), x)?;
    let dropped = c.mul(scaled, keep)?;
    let y = match mode {
        Mode::Dynamic(t) => c.op(Op::Select, &[t, dropped, x])?,
        _ => dropped,
    };
    let one = c.g.add(
        format!("{name}/one"),
        Op::Const(Literal::Scalar(1.0)),
        DType::I64,
        &[],
        Role::Forward,
        None,
    )?;
    let next = c.g.add(
        format!("{name}/next_seed"),
        Op::AssignAdd,
        DType::I64,
        &[seed, TensorRef::of(one)],
        Role::Forward,
        None,
    )?;
    let node = g.add(
        name.to_string(),
        Op::Identity,
        dtype,
        &[y],
        Role::Forward,
        line,
    )?;
    Ok(Expansion {
        node,
        collections: vec![(crate::ir::UPDATE_OPS.to_string(), next)],
    })
}

/// FusedBatchNorm needs a scale and an offset: ones and zeros stand in for absent ones.
fn fused_params(
    c: &mut Ctx,
    gamma: Option<TensorRef>,
    beta: Option<TensorRef>,
    like: TensorRef,
) -> Result<(TensorRef, TensorRef)> {
    let scale = match gamma {
        Some(s) => s,
        None => c.op(Op::OnesLike, &[like])?,
    };
    let offset = match beta {
        Some(b) => b,
        None => c.op(Op::ZerosLike, &[like])?,
    };
    Ok((scale, offset))
}
