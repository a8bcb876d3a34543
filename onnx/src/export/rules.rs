//! Each gradc op as ONNX ops (opset 17). A rule gets the instruction, the
//! ONNX names of its inputs and their types, and returns the names of its
//! outputs; `Err` says why the op (or this use of it) has no ONNX form.

use super::Builder;
use crate::attr::{float, int, ints, string};
use crate::tensor::onnx_dtype;
use gradc_runtime::op::{Activation, BinaryFn, FusedStep, UnaryFn};
use gradc_runtime::op::{DataFormat, Padding};
use gradc_runtime::{DType, Instr, Op, Tensor, TensorType};

/// What a rule reads.
pub(super) struct Cx<'a> {
    pub instr: &'a Instr,
    pub ins: &'a [String],
    pub types: &'a [&'a TensorType],
}

impl Cx<'_> {
    fn x(&self, k: usize) -> &str {
        &self.ins[k]
    }

    fn rank(&self, k: usize) -> usize {
        self.types[k].shape.rank()
    }

    /// The dtype of the instruction's (first) output: what its constants are made of.
    fn dtype(&self) -> DType {
        self.instr
            .outputs
            .first()
            .map_or(self.instr.dtype, |t| t.dtype)
    }
}

type Out = Result<Vec<String>, String>;

fn one(v: String) -> Out {
    Ok(vec![v])
}

/// The ONNX nodes of one instruction.
pub(super) fn rule(b: &mut Builder, cx: &Cx) -> Out {
    let op = &cx.instr.op;
    if let Some(f) = UnaryFn::of(op) {
        return one(unary(b, f, cx.x(0), cx.dtype())?);
    }
    if let Some(f) = BinaryFn::of(op) {
        return one(binary(b, f, cx.x(0), cx.x(1), cx.types[0].dtype)?);
    }
    match op {
        Op::Identity | Op::StopGradient | Op::OnceDifferentiable { .. } => {
            one(b.op("Identity", &[cx.x(0)], vec![]))
        }
        // The body's outputs, after the call's arguments.
        Op::CustomGradient { inputs, .. } => Ok(cx.ins[(*inputs).min(cx.ins.len())..]
            .iter()
            .map(|x| b.op("Identity", &[x], vec![]))
            .collect()),
        Op::IdentityN => Ok(cx
            .ins
            .iter()
            .map(|x| b.op("Identity", &[x], vec![]))
            .collect()),
        Op::Fused { program } => one(fused(b, cx, program)?),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => one(matmul(b, cx, *transpose_a, *transpose_b, None)?),
        Op::Dense {
            transpose_a,
            transpose_b,
            activation,
        } => {
            let z = matmul(b, cx, *transpose_a, *transpose_b, Some(cx.x(2)))?;
            one(activate(b, *activation, z, cx.dtype())?)
        }
        Op::BiasAdd { data_format } => one(bias_add(b, cx.x(0), cx.x(1), cx.rank(0), *data_format)),
        Op::AddN => one(b.op("Sum", &cx.ins.iter().map(String::as_str).collect::<Vec<_>>(), vec![])),
        // An empty list of axes reduces nothing; ONNX would reduce every axis.
        Op::Sum { axes: Some(a), .. }
        | Op::Mean { axes: Some(a), .. }
        | Op::Max { axes: Some(a), .. }
        | Op::Min { axes: Some(a), .. }
        | Op::Prod { axes: Some(a), .. }
            if a.is_empty() =>
        {
            one(b.op("Identity", &[cx.x(0)], vec![]))
        }
        Op::Sum { axes, keep_dims } => {
            let mut ins = vec![cx.x(0).to_string()];
            if let Some(a) = axes {
                ins.push(b.i64s("axes", a));
            }
            let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
            one(b.op("ReduceSum", &ins, vec![int("keepdims", i64::from(*keep_dims))]))
        }
        Op::Mean { axes, keep_dims } => one(reduce(b, "ReduceMean", cx.x(0), axes, *keep_dims)),
        Op::Max { axes, keep_dims } => one(reduce(b, "ReduceMax", cx.x(0), axes, *keep_dims)),
        Op::Min { axes, keep_dims } => one(reduce(b, "ReduceMin", cx.x(0), axes, *keep_dims)),
        Op::Prod { axes, keep_dims } => one(reduce(b, "ReduceProd", cx.x(0), axes, *keep_dims)),
        Op::Reshape { shape } => {
            let s = b.i64s("shape", shape);
            // ONNX reads 0 as "copy this dimension" unless allowzero is set.
            let zero = shape.contains(&0);
            one(b.op("Reshape", &[cx.x(0), &s], if zero { vec![int("allowzero", 1)] } else { vec![] }))
        }
        Op::ReshapeLike => {
            let s = b.op("Shape", &[cx.x(1)], vec![]);
            one(b.op("Reshape", &[cx.x(0), &s], vec![]))
        }
        Op::BroadcastLike => {
            let s = b.op("Shape", &[cx.x(1)], vec![]);
            one(b.op("Expand", &[cx.x(0), &s], vec![]))
        }
        Op::Transpose { perm } => {
            let perm: Vec<i64> = match perm {
                Some(p) => p.iter().map(|&a| a as i64).collect(),
                None => (0..cx.rank(0) as i64).rev().collect(),
            };
            one(b.op("Transpose", &[cx.x(0)], vec![ints("perm", &perm)]))
        }
        Op::ExpandDims { axes } if axes.is_empty() => one(b.op("Identity", &[cx.x(0)], vec![])),
        Op::ExpandDims { axes } => {
            let a = b.i64s("axes", axes);
            one(b.op("Unsqueeze", &[cx.x(0), &a], vec![]))
        }
        Op::Squeeze { axes } => {
            if axes.is_empty() {
                return one(b.op("Identity", &[cx.x(0)], vec![]));
            }
            let a = b.i64s("axes", axes);
            one(b.op("Squeeze", &[cx.x(0), &a], vec![]))
        }
        Op::Slice { begin, size } => {
            // size -1 reads to the end of the axis.
            let ends: Vec<i64> = begin
                .iter()
                .zip(size)
                .map(|(&b0, &s)| if s < 0 { i64::MAX } else { b0 + s })
                .collect();
            let axes: Vec<i64> = (0..begin.len() as i64).collect();
            let (st, en, ax) = (b.i64s("starts", begin), b.i64s("ends", &ends), b.i64s("axes", &axes));
            one(b.op("Slice", &[cx.x(0), &st, &en, &ax], vec![]))
        }
        Op::Tile { multiples } => {
            let r = b.i64s("repeats", multiples);
            one(b.op("Tile", &[cx.x(0), &r], vec![]))
        }
        Op::Stack { axis } => {
            let a = b.i64s("axes", &[*axis]);
            let parts: Vec<String> = cx.ins.iter().map(|x| b.op("Unsqueeze", &[x, &a], vec![])).collect();
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            one(b.op("Concat", &parts, vec![int("axis", *axis)]))
        }
        Op::Concat { axis } => one(b.op(
            "Concat",
            &cx.ins.iter().map(String::as_str).collect::<Vec<_>>(),
            vec![int("axis", *axis)],
        )),
        Op::Softmax => one(b.op("Softmax", &[cx.x(0)], vec![int("axis", -1)])),
        Op::LogSoftmax => one(b.op("LogSoftmax", &[cx.x(0)], vec![int("axis", -1)])),
        Op::SoftmaxCrossEntropyWithLogits => {
            // -sum(labels * log_softmax(logits)) over the last axis.
            let ls = b.op("LogSoftmax", &[cx.x(0)], vec![int("axis", -1)]);
            let p = b.op("Mul", &[cx.x(1), &ls], vec![]);
            let a = b.i64s("axes", &[-1]);
            let s = b.op("ReduceSum", &[&p, &a], vec![int("keepdims", 0)]);
            one(b.op("Neg", &[&s], vec![]))
        }
        Op::SparseSoftmaxCrossEntropyWithLogits => {
            // -sum(one_hot(label) * log_softmax(logits)) over the last axis.
            let classes = cx.types[0].shape.0.last().and_then(|d| d.known());
            let classes = classes.ok_or("the number of classes (the logits' last axis) must be known")?;
            let ls = b.op("LogSoftmax", &[cx.x(0)], vec![int("axis", -1)]);
            let hot = one_hot(b, cx.x(1), cx.types[1], classes as i64, -1, cx.dtype(), 1.0, 0.0)?;
            let p = b.op("Mul", &[&hot, &ls], vec![]);
            let a = b.i64s("axes", &[-1]);
            let s = b.op("ReduceSum", &[&p, &a], vec![int("keepdims", 0)]);
            one(b.op("Neg", &[&s], vec![]))
        }
        Op::ArgMax { axis, output_type } | Op::ArgMin { axis, output_type } => {
            let name = if matches!(op, Op::ArgMax { .. }) { "ArgMax" } else { "ArgMin" };
            let i = b.op(name, &[cx.x(0)], vec![int("axis", *axis), int("keepdims", 0)]);
            one(cast(b, i, DType::I64, *output_type))
        }
        Op::Cast { to } => one(cast(b, cx.x(0).to_string(), cx.types[0].dtype, *to)),
        Op::Equal => one(b.op("Equal", &[cx.x(0), cx.x(1)], vec![])),
        Op::NotEqual => {
            let e = b.op("Equal", &[cx.x(0), cx.x(1)], vec![]);
            one(b.op("Not", &[&e], vec![]))
        }
        Op::Less => one(b.op("Less", &[cx.x(0), cx.x(1)], vec![])),
        Op::LessEqual => one(b.op("LessOrEqual", &[cx.x(0), cx.x(1)], vec![])),
        Op::Greater => one(b.op("Greater", &[cx.x(0), cx.x(1)], vec![])),
        Op::GreaterEqual => one(b.op("GreaterOrEqual", &[cx.x(0), cx.x(1)], vec![])),
        Op::LogicalAnd => one(b.op("And", &[cx.x(0), cx.x(1)], vec![])),
        Op::LogicalOr => one(b.op("Or", &[cx.x(0), cx.x(1)], vec![])),
        Op::LogicalNot => one(b.op("Not", &[cx.x(0)], vec![])),
        Op::IsNan => one(b.op("IsNaN", &[cx.x(0)], vec![])),
        Op::IsFinite => {
            let n = b.op("IsNaN", &[cx.x(0)], vec![]);
            let i = b.op("IsInf", &[cx.x(0)], vec![]);
            let o = b.op("Or", &[&n, &i], vec![]);
            one(b.op("Not", &[&o], vec![]))
        }
        Op::Select => {
            let c = if cx.types[0].dtype == DType::Bool {
                cx.x(0).to_string()
            } else {
                cast(b, cx.x(0).to_string(), cx.types[0].dtype, DType::Bool)
            };
            one(b.op("Where", &[&c, cx.x(1), cx.x(2)], vec![]))
        }
        Op::Gather { axis } => one(b.op("Gather", &[cx.x(0), cx.x(1)], vec![int("axis", *axis)])),
        Op::OneHot { depth, on_value, off_value, axis, dtype } => one(one_hot(
            b, cx.x(0), cx.types[0], *depth, *axis, *dtype, *on_value, *off_value,
        )?),
        Op::ZerosLike | Op::OnesLike => {
            let s = b.op("Shape", &[cx.x(0)], vec![]);
            let v = if matches!(op, Op::ZerosLike) { 0.0 } else { 1.0 };
            let value = crate::tensor::to_proto("", &Tensor::from_f64(cx.dtype(), &[1], vec![v]).map_err(|e| e.to_string())?);
            one(b.op("ConstantOfShape", &[&s], vec![crate::proto::AttributeProto {
                name: "value".into(),
                r#type: crate::proto::attribute_proto::AttributeType::Tensor as i32,
                t: Some(value),
                ..Default::default()
            }]))
        }
        Op::Fill { shape } => {
            let s = b.i64s("shape", &shape.iter().map(|&d| d as i64).collect::<Vec<_>>());
            one(b.op("Expand", &[cx.x(0), &s], vec![]))
        }
        Op::FusedBatchNorm {
            epsilon,
            data_format,
            is_training: false,
        } => {
            // Inference form: y only (the other outputs pass the statistics through).
            let nchw = to_channels_second(b, cx.x(0), cx.rank(0), *data_format);
            let y = b.op(
                "BatchNormalization",
                &[&nchw, cx.x(1), cx.x(2), cx.x(3), cx.x(4)],
                vec![float("epsilon", *epsilon)],
            );
            let y = from_channels_second(b, y, cx.rank(0), *data_format);
            Ok(vec![y, cx.x(3).into(), cx.x(4).into(), cx.x(3).into(), cx.x(4).into()])
        }
        Op::BatchNormalization {
            variance_epsilon,
            offset,
            scale,
        } => {
            // inv = rsqrt(variance + eps) * scale; y = x * inv + (offset - mean * inv)
            let dt = cx.dtype();
            let e = b.scalar(dt, *variance_epsilon);
            let v = b.op("Add", &[cx.x(2), &e], vec![]);
            let r = b.op("Sqrt", &[&v], vec![]);
            let mut inv = b.op("Reciprocal", &[&r], vec![]);
            let mut next = 3;
            let off = offset.then(|| {
                next += 1;
                cx.x(3).to_string()
            });
            if *scale {
                inv = b.op("Mul", &[&inv, cx.x(next)], vec![]);
            }
            let xi = b.op("Mul", &[cx.x(0), &inv], vec![]);
            let mi = b.op("Mul", &[cx.x(1), &inv], vec![]);
            let shift = match off {
                Some(o) => b.op("Sub", &[&o, &mi], vec![]),
                None => b.op("Neg", &[&mi], vec![]),
            };
            one(b.op("Add", &[&xi, &shift], vec![]))
        }
        Op::Conv2D { .. } | Op::FusedConv2D { .. } => conv(b, cx),
        Op::DepthwiseConv2dNative { .. } => conv(b, cx),
        Op::MaxPool { .. } | Op::AvgPool { .. } => {
            let (ksize, strides, padding, data_format) =
                op.pool_attrs().ok_or("not a pooling")?;
            let max = matches!(op, Op::MaxPool { .. });
            let [h, w] = spatial(data_format);
            let mut attrs = vec![
                ints("kernel_shape", &[ksize[h], ksize[w]]),
                ints("strides", &[strides[h], strides[w]]),
                auto_pad(padding)?,
            ];
            if !max {
                // TensorFlow averages over the window's pixels inside the input.
                attrs.push(int("count_include_pad", 0));
            }
            let x = to_channels_second(b, cx.x(0), 4, data_format);
            let y = b.op(if max { "MaxPool" } else { "AveragePool" }, &[&x], attrs);
            one(from_channels_second(b, y, 4, data_format))
        }
        Op::FusedBatchNorm { .. } => Err(
            "its training form (batch statistics) is not exported; the inference program has the \
             inference form"
                .into(),
        ),
        _ => Err(format!(
            "gradc exports {} ops and the elementwise ones; this one is not among them",
            "Dense, MatMul, BiasAdd, Conv2D, FusedConv2D, DepthwiseConv2dNative, MaxPool, AvgPool, \
             FusedBatchNorm (inference), BatchNormalization, Softmax, LogSoftmax, the cross-entropies, \
             Sum, Mean, Max, Min, Prod, Reshape, Transpose, ExpandDims, Squeeze, Concat, Stack, Slice, \
             Tile, Gather, OneHot, CustomGradient, \
             ArgMax, ArgMin, Cast, the comparisons, Select, Fused, AddN, Fill"
        )),
    }
}

/// TensorFlow's one-hot, as `Equal(index, 0..depth)`: an index outside
/// [0, depth) matches nothing and gives a row of off values, where ONNX's
/// `OneHot` would count a negative one from the end (and some runtimes do
/// not check the others). The new axis of `depth` is at `axis`.
#[allow(clippy::too_many_arguments)]
fn one_hot(
    b: &mut Builder,
    indices: &str,
    t: &TensorType,
    depth: i64,
    axis: i64,
    dtype: DType,
    on: f64,
    off: f64,
) -> Result<String, String> {
    let rank = t.shape.rank() as i64 + 1;
    let a = if axis < 0 { axis + rank } else { axis };
    if !(0..rank).contains(&a) {
        return Err(format!("axis {axis} of a result of rank {rank}"));
    }
    let n = usize::try_from(depth).map_err(|_| format!("depth {depth}"))?;
    let range = Tensor::from_f64(t.dtype, &[n], (0..n).map(|k| k as f64).collect())
        .map_err(|e| e.to_string())?;
    // 0..depth along the new axis, against the indices with that axis inserted.
    let mut shape = vec![depth];
    shape.extend(std::iter::repeat_n(1, (rank - 1 - a) as usize));
    let r = b.init("range", &range);
    let s = b.i64s("shape", &shape);
    let r = b.op("Reshape", &[&r, &s], vec![]);
    let at = b.i64s("axes", &[a]);
    let i = b.op("Unsqueeze", &[indices, &at], vec![]);
    let hit = b.op("Equal", &[&i, &r], vec![]);
    let mask = b.op("Cast", &[&hit], vec![int("to", onnx_dtype(dtype) as i64)]);
    if (on, off) == (1.0, 0.0) {
        return Ok(mask);
    }
    let scale = b.scalar(dtype, on - off);
    let scaled = b.op("Mul", &[&mask, &scale], vec![]);
    let shift = b.scalar(dtype, off);
    Ok(b.op("Add", &[&scaled, &shift], vec![]))
}

/// A reduction whose axes are an attribute at opset 17.
fn reduce(b: &mut Builder, name: &str, x: &str, axes: &Option<Vec<i64>>, keep: bool) -> String {
    let mut attrs = vec![int("keepdims", i64::from(keep))];
    if let Some(a) = axes {
        attrs.push(ints("axes", a));
    }
    b.op(name, &[x], attrs)
}

fn cast(b: &mut Builder, x: String, from: DType, to: DType) -> String {
    if from == to {
        return x;
    }
    b.op("Cast", &[&x], vec![int("to", onnx_dtype(to) as i64)])
}

/// (a or aᵀ)·(w or wᵀ) (+ bias): `Gemm` for matrices, `MatMul` (and `Add`) otherwise.
fn matmul(
    b: &mut Builder,
    cx: &Cx,
    ta: bool,
    tb: bool,
    bias: Option<&str>,
) -> Result<String, String> {
    // Gemm for f32 matrices; MatMul and Add otherwise (tract, for one,
    // mistypes Gemm's scales in f64).
    if cx.rank(0) == 2 && cx.rank(1) == 2 && cx.dtype() == DType::F32 {
        let mut ins = vec![cx.x(0), cx.x(1)];
        ins.extend(bias);
        return Ok(b.op(
            "Gemm",
            &ins,
            vec![int("transA", i64::from(ta)), int("transB", i64::from(tb))],
        ));
    }
    let t = |b: &mut Builder, x: &str, rank: usize, on: bool| {
        if !on {
            return x.to_string();
        }
        let mut perm: Vec<i64> = (0..rank as i64).collect();
        perm.swap(rank - 1, rank - 2);
        b.op("Transpose", &[x], vec![ints("perm", &perm)])
    };
    let a = t(b, cx.x(0), cx.rank(0), ta);
    let w = t(b, cx.x(1), cx.rank(1), tb);
    let p = b.op("MatMul", &[&a, &w], vec![]);
    Ok(match bias {
        Some(c) => b.op("Add", &[&p, c], vec![]),
        None => p,
    })
}

fn activate(b: &mut Builder, a: Activation, z: String, dt: DType) -> Result<String, String> {
    match a.unary() {
        Some(f) => unary(b, f, &z, dt),
        None => Ok(z),
    }
}

/// x + bias along the channel axis.
fn bias_add(b: &mut Builder, x: &str, bias: &str, rank: usize, df: DataFormat) -> String {
    if df == DataFormat::NCHW && rank >= 3 {
        let axes: Vec<i64> = (1..rank as i64 - 1).collect();
        let a = b.i64s("axes", &axes);
        let c = b.op("Unsqueeze", &[bias, &a], vec![]);
        return b.op("Add", &[x, &c], vec![]);
    }
    b.op("Add", &[x, bias], vec![])
}

/// The positions of height and width in a 4-entry attribute of the data format.
fn spatial(df: DataFormat) -> [usize; 2] {
    match df {
        DataFormat::NHWC => [1, 2],
        DataFormat::NCHW => [2, 3],
    }
}

fn to_channels_second(b: &mut Builder, x: &str, rank: usize, df: DataFormat) -> String {
    if df == DataFormat::NHWC && rank == 4 {
        return b.op("Transpose", &[x], vec![ints("perm", &[0, 3, 1, 2])]);
    }
    x.to_string()
}

fn from_channels_second(b: &mut Builder, y: String, rank: usize, df: DataFormat) -> String {
    if df == DataFormat::NHWC && rank == 4 {
        return b.op("Transpose", &[&y], vec![ints("perm", &[0, 2, 3, 1])]);
    }
    y
}

fn auto_pad(p: Padding) -> Result<crate::proto::AttributeProto, String> {
    match p {
        Padding::VALID => Ok(string("auto_pad", "VALID")),
        // TensorFlow's SAME puts the odd pixel after, as ONNX's SAME_UPPER.
        Padding::SAME => Ok(string("auto_pad", "SAME_UPPER")),
        Padding::EXPLICIT => Err("EXPLICIT padding of a pooling is not exported".into()),
    }
}

/// Conv2D, FusedConv2D (with its bias and activation) and
/// DepthwiseConv2dNative as ONNX `Conv` on channels-second data, its
/// filter [kh, kw, C, O] transposed to [O, C, kh, kw] (depthwise: [C·M, 1, kh, kw], group C).
fn conv(b: &mut Builder, cx: &Cx) -> Out {
    let Some((c, depthwise)) = cx.instr.op.conv_attrs() else {
        return Err("not a convolution".into());
    };
    let (strides, padding, explicit, dilations, df) = (
        c.strides,
        &c.padding,
        c.explicit_paddings,
        c.dilations,
        c.data_format,
    );
    let activation = match cx.instr.op {
        Op::FusedConv2D { activation, .. } => activation,
        _ => Activation::Linear,
    };
    let [h, w] = spatial(df);
    let mut attrs = vec![
        ints("strides", &[strides[h], strides[w]]),
        ints("dilations", &[dilations[h], dilations[w]]),
    ];
    match padding {
        Padding::EXPLICIT => {
            let p = explicit;
            attrs.push(ints(
                "pads",
                &[p[2 * h], p[2 * w], p[2 * h + 1], p[2 * w + 1]],
            ));
        }
        p => attrs.push(auto_pad(*p)?),
    }
    let fshape = &cx.types[1].shape;
    let known = |k: usize| fshape.0[k].known().map(|d| d as i64);
    let filter = if depthwise {
        let (Some(kh), Some(kw), Some(c), Some(m)) = (known(0), known(1), known(2), known(3))
        else {
            return Err(format!("the filter's shape {fshape} must be known"));
        };
        attrs.push(int("group", c));
        let t = b.op("Transpose", &[cx.x(1)], vec![ints("perm", &[2, 3, 0, 1])]);
        let s = b.i64s("shape", &[c * m, 1, kh, kw]);
        b.op("Reshape", &[&t, &s], vec![])
    } else {
        b.op("Transpose", &[cx.x(1)], vec![ints("perm", &[3, 2, 0, 1])])
    };
    let x = to_channels_second(b, cx.x(0), 4, df);
    let mut ins = vec![x.as_str(), filter.as_str()];
    if matches!(cx.instr.op, Op::FusedConv2D { .. }) {
        ins.push(cx.x(2));
    }
    let y = b.op("Conv", &ins, attrs);
    let y = activate(b, activation, y, cx.dtype())?;
    one(from_channels_second(b, y, 4, df))
}

/// A Fused program, step by step (each register an ONNX value).
fn fused(b: &mut Builder, cx: &Cx, program: &[FusedStep]) -> Result<String, String> {
    let dt = cx.dtype();
    let mut regs: Vec<String> = Vec::with_capacity(program.len());
    for step in program {
        let r = match step {
            FusedStep::Input(k) => cx
                .ins
                .get(*k)
                .cloned()
                .ok_or("a step reads a missing input")?,
            FusedStep::Const(c) => b.scalar(dt, *c),
            FusedStep::Unary(f, a) => unary(b, *f, &regs[*a], dt)?,
            FusedStep::Binary(f, x, y) => binary(b, *f, &regs[*x], &regs[*y], dt)?,
        };
        regs.push(r);
    }
    regs.pop().ok_or_else(|| "an empty Fused program".into())
}

/// An elementwise function of one argument.
pub(super) fn unary(b: &mut Builder, f: UnaryFn, x: &str, dt: DType) -> Result<String, String> {
    use UnaryFn as U;
    let same = |b: &mut Builder, name: &str| b.op(name, &[x], vec![]);
    Ok(match f {
        U::Neg => same(b, "Neg"),
        U::Exp => same(b, "Exp"),
        U::Log => same(b, "Log"),
        U::Sqrt => same(b, "Sqrt"),
        U::Relu => same(b, "Relu"),
        U::Sigmoid => same(b, "Sigmoid"),
        U::Tanh => same(b, "Tanh"),
        U::Abs => same(b, "Abs"),
        U::Sign => same(b, "Sign"),
        U::Sin => same(b, "Sin"),
        U::Cos => same(b, "Cos"),
        U::Tan => same(b, "Tan"),
        U::Asin => same(b, "Asin"),
        U::Acos => same(b, "Acos"),
        U::Atan => same(b, "Atan"),
        U::Sinh => same(b, "Sinh"),
        U::Cosh => same(b, "Cosh"),
        U::Atanh => same(b, "Atanh"),
        U::Reciprocal => same(b, "Reciprocal"),
        U::Erf => same(b, "Erf"),
        U::Floor => same(b, "Floor"),
        U::Ceil => same(b, "Ceil"),
        // Both round half to even.
        U::Round => same(b, "Round"),
        U::Softsign => same(b, "Softsign"),
        U::Square => b.op("Mul", &[x, x], vec![]),
        U::Rsqrt => {
            let s = same(b, "Sqrt");
            b.op("Reciprocal", &[&s], vec![])
        }
        U::Softplus => {
            // max(x, 0) + log(1 + exp(-|x|)): ONNX's Softplus, log(exp(x) + 1), overflows.
            let r = same(b, "Relu");
            let a = same(b, "Abs");
            let n = b.op("Neg", &[&a], vec![]);
            let e = b.op("Exp", &[&n], vec![]);
            let one = b.scalar(dt, 1.0);
            let s = b.op("Add", &[&e, &one], vec![]);
            let l = b.op("Log", &[&s], vec![]);
            b.op("Add", &[&r, &l], vec![])
        }
        U::Log1p => {
            let one = b.scalar(dt, 1.0);
            let s = b.op("Add", &[x, &one], vec![]);
            b.op("Log", &[&s], vec![])
        }
        U::Expm1 => {
            let one = b.scalar(dt, 1.0);
            let e = same(b, "Exp");
            b.op("Sub", &[&e, &one], vec![])
        }
        U::Erfc => {
            let one = b.scalar(dt, 1.0);
            let e = same(b, "Erf");
            b.op("Sub", &[&one, &e], vec![])
        }
        U::Gelu => {
            // x/2 · (1 + erf(x/√2))
            let k = b.scalar(dt, std::f64::consts::FRAC_1_SQRT_2);
            let s = b.op("Mul", &[x, &k], vec![]);
            let e = b.op("Erf", &[&s], vec![]);
            let one = b.scalar(dt, 1.0);
            let p = b.op("Add", &[&e, &one], vec![]);
            let half = b.scalar(dt, 0.5);
            let h = b.op("Mul", &[x, &half], vec![]);
            b.op("Mul", &[&h, &p], vec![])
        }
        U::GeluTanh => {
            // x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))
            let x2 = b.op("Mul", &[x, x], vec![]);
            let x3 = b.op("Mul", &[&x2, x], vec![]);
            let c = b.scalar(dt, 0.044715);
            let cx3 = b.op("Mul", &[&x3, &c], vec![]);
            let inner = b.op("Add", &[x, &cx3], vec![]);
            let k = b.scalar(dt, (2.0 / std::f64::consts::PI).sqrt());
            let s = b.op("Mul", &[&inner, &k], vec![]);
            let t = b.op("Tanh", &[&s], vec![]);
            let one = b.scalar(dt, 1.0);
            let p = b.op("Add", &[&t, &one], vec![]);
            let half = b.scalar(dt, 0.5);
            let h = b.op("Mul", &[x, &half], vec![]);
            b.op("Mul", &[&h, &p], vec![])
        }
        U::Elu => b.op("Elu", &[x], vec![float("alpha", 1.0)]),
        U::Selu => b.op(
            "Selu",
            &[x],
            vec![
                float("alpha", 1.673_263_242_354_377_3),
                float("gamma", 1.050_700_987_355_480_5),
            ],
        ),
        U::LeakyRelu(alpha) => b.op("LeakyRelu", &[x], vec![float("alpha", alpha)]),
        U::Pow(e) => {
            let c = b.scalar(dt, e);
            b.op("Pow", &[x, &c], vec![])
        }
    })
}

/// An elementwise function of two arguments, broadcast as NumPy does (as ONNX does).
pub(super) fn binary(
    b: &mut Builder,
    f: BinaryFn,
    x: &str,
    y: &str,
    dt: DType,
) -> Result<String, String> {
    use BinaryFn as B;
    let same = |b: &mut Builder, name: &str| b.op(name, &[x, y], vec![]);
    let mask = |b: &mut Builder, name: &str| {
        let m = b.op(name, &[x, y], vec![]);
        b.op("Cast", &[&m], vec![int("to", onnx_dtype(dt) as i64)])
    };
    Ok(match f {
        B::Add => same(b, "Add"),
        B::Sub => same(b, "Sub"),
        B::Mul => same(b, "Mul"),
        B::Div => same(b, "Div"),
        B::Maximum => same(b, "Max"),
        B::Minimum => same(b, "Min"),
        B::SquaredDifference => {
            let d = same(b, "Sub");
            b.op("Mul", &[&d, &d], vec![])
        }
        B::FloorDiv if dt.is_float() => {
            let d = same(b, "Div");
            b.op("Floor", &[&d], vec![])
        }
        // The remainder with the divisor's sign.
        B::FloorMod if dt.is_float() => {
            let d = same(b, "Div");
            let f = b.op("Floor", &[&d], vec![]);
            let m = b.op("Mul", &[&f, y], vec![]);
            b.op("Sub", &[x, &m], vec![])
        }
        B::FloorMod => b.op("Mod", &[x, y], vec![int("fmod", 0)]),
        B::FloorDiv => {
            return Err("an integer FloorDiv (ONNX's Div truncates) is not exported".into())
        }
        B::SigmoidCrossEntropyWithLogits => {
            // max(x, 0) - x·z + log(1 + exp(-|x|))
            let r = b.op("Relu", &[x], vec![]);
            let xz = same(b, "Mul");
            let a = b.op("Abs", &[x], vec![]);
            let n = b.op("Neg", &[&a], vec![]);
            let e = b.op("Exp", &[&n], vec![]);
            let one = b.scalar(dt, 1.0);
            let s = b.op("Add", &[&e, &one], vec![]);
            let l = b.op("Log", &[&s], vec![]);
            let d = b.op("Sub", &[&r, &xz], vec![]);
            b.op("Add", &[&d, &l], vec![])
        }
        B::GreaterEqualMask => mask(b, "GreaterOrEqual"),
        B::EqualMask => mask(b, "Equal"),
        B::ReluGrad => {
            // dy where x > 0
            let zero = b.scalar(dt, 0.0);
            let g = b.op("Greater", &[y, &zero], vec![]);
            b.op("Where", &[&g, x, &zero], vec![])
        }
    })
}
