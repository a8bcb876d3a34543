//! The ONNX ops gradc imports: one row each, the op's name and the function
//! that writes it as gradc nodes. Data layouts stay ONNX's (NCHW images);
//! gradc's ops take the data format as an attribute.

use super::{Importer, Val};
use crate::attr::Attrs;
use crate::proto::NodeProto;
use crate::tensor::gradc_dtype;
use gradc_runtime::op::{DataFormat, Padding};
use gradc_runtime::{DType, Dim, Op, Tensor};
use ndarray::IxDyn;

/// Writes one ONNX node (named `name` in the gradc graph); its outputs' values.
pub(crate) type Handler = fn(&mut Importer, &NodeProto, &str) -> Result<Vec<Val>, String>;

/// Every op but the elementwise ones (`elementwise_op`).
const OPS: &[(&str, Handler)] = &[
    ("Identity", identity),
    ("Dropout", identity),
    ("Gemm", gemm),
    ("MatMul", matmul),
    ("Conv", conv),
    ("MaxPool", pool),
    ("AveragePool", pool),
    ("GlobalAveragePool", global_average_pool),
    ("BatchNormalization", batch_normalization),
    ("Flatten", flatten),
    ("Reshape", reshape),
    ("Transpose", transpose),
    ("Squeeze", squeeze),
    ("Unsqueeze", unsqueeze),
    ("Concat", concat),
    ("Slice", slice),
    ("Tile", tile),
    ("Softmax", softmax),
    ("LogSoftmax", softmax),
    ("ReduceMean", reduce),
    ("ReduceSum", reduce),
    ("ReduceMax", reduce),
    ("ReduceMin", reduce),
    ("ArgMax", arg_max),
    ("ArgMin", arg_max),
    ("Cast", cast),
    ("Constant", constant),
    ("Gather", gather),
    ("OneHot", one_hot),
    ("Where", select),
    ("Sum", sum),
    ("Pow", pow),
    ("LeakyRelu", leaky_relu),
    ("Elu", elu),
    ("Selu", selu),
];

/// The elementwise ops that are a gradc op of the same arguments.
fn elementwise_op(op_type: &str) -> Option<Op> {
    Some(match op_type {
        "Relu" => Op::Relu,
        "Sigmoid" => Op::Sigmoid,
        "Tanh" => Op::Tanh,
        "Exp" => Op::Exp,
        "Log" => Op::Log,
        "Neg" => Op::Neg,
        "Abs" => Op::Abs,
        "Sqrt" => Op::Sqrt,
        "Reciprocal" => Op::Reciprocal,
        "Erf" => Op::Erf,
        "Floor" => Op::Floor,
        "Ceil" => Op::Ceil,
        "Round" => Op::Round,
        "Sign" => Op::Sign,
        "Sin" => Op::Sin,
        "Cos" => Op::Cos,
        "Tan" => Op::Tan,
        "Asin" => Op::Asin,
        "Acos" => Op::Acos,
        "Atan" => Op::Atan,
        "Sinh" => Op::Sinh,
        "Cosh" => Op::Cosh,
        "Atanh" => Op::Atanh,
        "Softsign" => Op::Softsign,
        "Softplus" => Op::Softplus,
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        "Div" => Op::Div,
        "Max" => Op::Maximum,
        "Min" => Op::Minimum,
        "Equal" => Op::Equal,
        "Less" => Op::Less,
        "LessOrEqual" => Op::LessEqual,
        "Greater" => Op::Greater,
        "GreaterOrEqual" => Op::GreaterEqual,
        "Not" => Op::LogicalNot,
        "And" => Op::LogicalAnd,
        "Or" => Op::LogicalOr,
        _ => return None,
    })
}

const ELEMENTWISE: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Erf",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Atanh",
    "Softsign",
    "Softplus",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
];

/// The function that writes an ONNX op, if gradc imports it.
pub(crate) fn handler(op_type: &str) -> Option<Handler> {
    if elementwise_op(op_type).is_some() {
        return Some(elementwise);
    }
    OPS.iter().find(|(n, _)| *n == op_type).map(|(_, h)| *h)
}

/// The names of the ops gradc imports, sorted.
pub fn supported_ops() -> Vec<&'static str> {
    let mut v: Vec<&str> = OPS
        .iter()
        .map(|(n, _)| *n)
        .chain(ELEMENTWISE.iter().copied())
        .collect();
    v.sort_unstable();
    v
}

type Out = Result<Vec<Val>, String>;

/// The node's input `k`, which must be given.
fn input(im: &mut Importer, n: &NodeProto, k: usize) -> Result<Val, String> {
    match n.input.get(k).map(String::as_str) {
        Some("") | None => Err(format!("input {k} is missing")),
        Some(name) => im.value(name),
    }
}

/// Whether optional input `k` is given.
fn has_input(n: &NodeProto, k: usize) -> bool {
    n.input.get(k).is_some_and(|s| !s.is_empty())
}

/// Input `k` as integers read when importing (an initializer or a `Constant`'s).
fn const_ints(im: &Importer, n: &NodeProto, k: usize, what: &str) -> Result<Vec<i64>, String> {
    let name = n.input.get(k).map(String::as_str).unwrap_or("");
    let t = im
        .constant(name)
        .ok_or_else(|| format!("its {what} (input {k}, '{name}') must be a constant: an initializer or a Constant's output"))?;
    match t {
        Tensor::I64(a) => Ok(a.iter().copied().collect()),
        Tensor::I32(a) => Ok(a.iter().map(|&v| i64::from(v)).collect()),
        _ => Err(format!(
            "its {what} '{name}' must be integers, got {}",
            t.dtype()
        )),
    }
}

/// Axes given as an attribute (older opsets) or as input `k` (newer).
fn axes(im: &Importer, n: &NodeProto, k: usize) -> Result<Option<Vec<i64>>, String> {
    if has_input(n, k) {
        return const_ints(im, n, k, "axes").map(Some);
    }
    Attrs(&n.attribute).ints("axes")
}

fn one(v: Val) -> Out {
    Ok(vec![v])
}

fn identity(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    if n.op_type == "Dropout" && has_input(n, 2) {
        let training = match im.constant(&n.input[2]) {
            Some(t) => t.to_f64_vec().first().is_some_and(|&v| v != 0.0),
            None => true,
        };
        if training {
            return Err(
                "its training_mode is set or computed: gradc imports Dropout at \
                        inference, the identity"
                    .into(),
            );
        }
    }
    let x = input(im, n, 0)?;
    one(im.add1(name, Op::Identity, &[&x])?)
}

fn elementwise(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let op = elementwise_op(&n.op_type).ok_or("not an elementwise op")?;
    let arity = match op.arity() {
        gradc_runtime::Arity::Exactly(k) => k,
        gradc_runtime::Arity::AtLeast(k) => k,
    };
    if n.input.len() != arity {
        return Err(format!(
            "gradc's {} takes {arity} inputs, the node has {}",
            op.name(),
            n.input.len()
        ));
    }
    let ins: Vec<Val> = (0..arity)
        .map(|k| input(im, n, k))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Val> = ins.iter().collect();
    one(im.add1(name, op, &refs)?)
}

fn leaky_relu(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let alpha = Attrs(&n.attribute).float("alpha", 0.01)?;
    let x = input(im, n, 0)?;
    one(im.add1(name, Op::LeakyRelu { alpha }, &[&x])?)
}

fn elu(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let alpha = Attrs(&n.attribute).float("alpha", 1.0)?;
    if alpha != 1.0 {
        return Err(format!("alpha is {alpha}; gradc's Elu has alpha 1"));
    }
    let x = input(im, n, 0)?;
    one(im.add1(name, Op::Elu, &[&x])?)
}

fn selu(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let a = Attrs(&n.attribute);
    let (alpha, gamma) = (a.float("alpha", 1.673_263_2)?, a.float("gamma", 1.050_701)?);
    if (alpha - 1.673_263_242_354_377_3).abs() > 1e-6
        || (gamma - 1.050_700_987_355_480_5).abs() > 1e-6
    {
        return Err(format!(
            "alpha {alpha} and gamma {gamma}; gradc's Selu has the standard constants"
        ));
    }
    let x = input(im, n, 0)?;
    one(im.add1(name, Op::Selu, &[&x])?)
}

fn pow(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let e = n
        .input
        .get(1)
        .and_then(|e| im.constant(e))
        .filter(|t| t.len() == 1);
    let Some(exponent) = e.and_then(|t| t.first_f64()) else {
        return Err(
            "its exponent must be a constant scalar (gradc's Pow has the exponent as an attribute)"
                .into(),
        );
    };
    let x = input(im, n, 0)?;
    one(im.add1(name, Op::Pow { exponent }, &[&x])?)
}

fn sum(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let ins: Vec<Val> = (0..n.input.len())
        .map(|k| input(im, n, k))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Val> = ins.iter().collect();
    let op = if refs.len() == 1 {
        Op::Identity
    } else {
        Op::AddN
    };
    one(im.add1(name, op, &refs)?)
}

/// alpha·A'·B' + beta·C: a MatMul, the scales as Muls where not 1, C as a
/// BiasAdd when it is a vector.
fn gemm(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let at = Attrs(&n.attribute);
    let (alpha, beta) = (at.float("alpha", 1.0)?, at.float("beta", 1.0)?);
    let op = Op::MatMul {
        transpose_a: at.int("transA", 0)? != 0,
        transpose_b: at.int("transB", 0)? != 0,
    };
    let a = input(im, n, 0)?;
    let b = input(im, n, 1)?;
    let has_c = has_input(n, 2);
    let last = |later: bool| {
        if later {
            format!("{name}/MatMul")
        } else {
            name.to_string()
        }
    };
    let mut y = im.add1(&last(has_c || alpha != 1.0), op, &[&a, &b])?;
    if alpha != 1.0 {
        let s = im.add1(
            &format!("{name}/alpha"),
            Op::Const(gradc_runtime::Literal::Scalar(alpha)),
            &[],
        )?;
        y = im.add1(&last(has_c), Op::Mul, &[&y, &s])?;
    }
    if has_c {
        let mut c = input(im, n, 2)?;
        if beta != 1.0 {
            let s = im.add1(
                &format!("{name}/beta"),
                Op::Const(gradc_runtime::Literal::Scalar(beta)),
                &[],
            )?;
            c = im.add1(&format!("{name}/beta_c"), Op::Mul, &[&c, &s])?;
        }
        let op = if c.t.shape.rank() == 1 {
            Op::BiasAdd {
                data_format: DataFormat::NHWC,
            }
        } else {
            Op::Add
        };
        y = im.add1(name, op, &[&y, &c])?;
    }
    one(y)
}

fn matmul(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let a = input(im, n, 0)?;
    let b = input(im, n, 1)?;
    one(im.add1(
        name,
        Op::MatMul {
            transpose_a: false,
            transpose_b: false,
        },
        &[&a, &b],
    )?)
}

/// A tensor's axes permuted (an initializer rearranged into gradc's layout).
fn permuted(t: &Tensor, perm: &[usize]) -> Tensor {
    gradc_runtime::each!(t, a => a.clone().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned().into())
}

fn reshaped(t: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    Ok(gradc_runtime::each!(t, a => a
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| e.to_string())?
        .into()))
}

/// The spatial attributes of a 2-D convolution or pooling, as gradc's.
struct Window {
    strides: [i64; 2],
    dilations: [i64; 2],
    padding: Padding,
    /// gradc's `explicit_paddings` (8 entries, NCHW order) for EXPLICIT.
    explicit: Vec<i64>,
}

/// TensorFlow's SAME padding (before, after) of an axis of `size` for a
/// window of `kernel` at `stride`: the odd pixel after. None on overflow.
fn same_pads(size: usize, stride: i64, kernel: i64) -> Option<[i64; 2]> {
    let size = i64::try_from(size).ok()?;
    let out = size.checked_add(stride - 1)? / stride;
    let total = (out - 1)
        .checked_mul(stride)?
        .checked_add(kernel)?
        .checked_sub(size)?
        .max(0);
    Some([total / 2, total - total / 2])
}

/// A convolution's or pooling's window from ONNX's attributes.
fn window(at: &Attrs, x: &Val, kernel: [i64; 2], pool: bool) -> Result<Window, String> {
    let two = |name: &str| -> Result<[i64; 2], String> {
        match at.ints(name)? {
            None => Ok([1, 1]),
            Some(v) if v.len() == 2 && v.iter().all(|&s| s >= 1) => Ok([v[0], v[1]]),
            Some(v) => Err(format!("{name} {v:?}: gradc reads 2-D windows")),
        }
    };
    let strides = two("strides")?;
    let dilations = two("dilations")?;
    let auto_pad = at.string("auto_pad", "NOTSET")?;
    let pads = at.ints("pads")?.unwrap_or_else(|| vec![0; 4]);
    if pads.len() != 4 || pads.iter().any(|&p| p < 0) {
        return Err(format!("pads {pads:?}: gradc reads 2-D windows"));
    }
    let (padding, explicit) = match auto_pad.as_str() {
        "VALID" => (Padding::VALID, vec![]),
        "SAME_UPPER" => (Padding::SAME, vec![]),
        "NOTSET" if pads.iter().all(|&p| p == 0) => (Padding::VALID, vec![]),
        "NOTSET" if !pool => (
            Padding::EXPLICIT,
            vec![0, 0, 0, 0, pads[0], pads[2], pads[1], pads[3]],
        ),
        "NOTSET" => {
            // A pooling's explicit pads are read when they are TensorFlow's SAME.
            let [_, _, h, w] = [0, 1, 2, 3].map(|k| x.t.shape.0.get(k).and_then(Dim::known));
            let same = |size: Option<usize>, k: usize| same_pads(size?, strides[k], kernel[k]);
            match (same(h, 0), same(w, 1)) {
                (Some(a), Some(b)) if [a[0], b[0], a[1], b[1]] == pads[..] => {
                    (Padding::SAME, vec![])
                }
                _ => {
                    return Err(format!(
                        "pads {pads:?}: gradc pools with no padding or TensorFlow's SAME"
                    ))
                }
            }
        }
        other => {
            return Err(format!(
                "auto_pad {other} is not read (VALID, SAME_UPPER or explicit pads)"
            ))
        }
    };
    Ok(Window {
        strides,
        dilations,
        padding,
        explicit,
    })
}

fn conv(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let at = Attrs(&n.attribute);
    let x = input(im, n, 0)?;
    let wname = n.input.get(1).cloned().unwrap_or_default();
    let w = im.constant(&wname).cloned();
    let group = at.int("group", 1)?;
    let dims: Vec<usize> = match &w {
        Some(t) => t.shape().to_vec(),
        None => input(im, n, 1)?
            .t
            .shape
            .concrete()
            .ok_or("the filter's shape must be known")?,
    };
    if dims.len() != 4 || x.t.shape.rank() != 4 {
        return Err(format!("gradc imports 2-D convolutions (input rank 4, filter rank 4), got input {} and filter {dims:?}", x.t));
    }
    let kernel = [dims[2] as i64, dims[3] as i64];
    let Window {
        strides: s,
        dilations: d,
        padding,
        explicit: explicit_paddings,
    } = window(&at, &x, kernel, false)?;
    let strides = vec![1, 1, s[0], s[1]];
    let dilations = vec![1, 1, d[0], d[1]];
    let data_format = DataFormat::NCHW;
    let channels = x.t.shape.0[1]
        .known()
        .ok_or("the input's channels must be known")? as i64;
    let later = has_input(n, 2);
    let conv_name = if later {
        format!("{name}/Conv")
    } else {
        name.to_string()
    };
    let y = if group == 1 {
        // [O, C, kh, kw] -> [kh, kw, C, O]
        let filter = match w {
            Some(t) => im.variable(&wname, permuted(&t, &[2, 3, 1, 0]), true),
            None => {
                let f = input(im, n, 1)?;
                im.add1(
                    &format!("{name}/filter"),
                    Op::Transpose {
                        perm: Some(vec![2, 3, 1, 0]),
                    },
                    &[&f],
                )?
            }
        };
        let op = Op::Conv2D {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        };
        im.add1(&conv_name, op, &[&x, &filter])?
    } else if group == channels && dims[1] == 1 {
        // Depthwise: [C·M, 1, kh, kw] -> [C, M, kh, kw] -> [kh, kw, C, M]
        let Some(t) = w else {
            return Err("a depthwise convolution's filter must be an initializer".into());
        };
        let c = channels as usize;
        if c == 0 || !dims[0].is_multiple_of(c) {
            return Err(format!(
                "a depthwise filter {dims:?} for {} channels ({})",
                channels, x.t
            ));
        }
        let m = dims[0] / c;
        let t = reshaped(&t, &[c, m, dims[2], dims[3]])?;
        let filter = im.variable(&wname, permuted(&t, &[2, 3, 0, 1]), true);
        let op = Op::DepthwiseConv2dNative {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        };
        im.add1(&conv_name, op, &[&x, &filter])?
    } else {
        return Err(format!(
            "group {group}: gradc has convolutions of one group and depthwise ones"
        ));
    };
    if !later {
        return one(y);
    }
    let b = input(im, n, 2)?;
    one(im.add1(name, Op::BiasAdd { data_format }, &[&y, &b])?)
}

fn pool(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let at = Attrs(&n.attribute);
    let x = input(im, n, 0)?;
    let kernel = match at.ints("kernel_shape")? {
        Some(k) if k.len() == 2 => [k[0], k[1]],
        k => return Err(format!("kernel_shape {k:?}: gradc pools 2-D windows")),
    };
    if at.int("ceil_mode", 0)? != 0 {
        return Err("ceil_mode 1 is not read (TensorFlow's sizes round down)".into());
    }
    if n.output.len() > 1 && n.output.get(1).is_some_and(|o| !o.is_empty()) {
        return Err("the indices output is not read".into());
    }
    let Window {
        strides: s,
        dilations: d,
        padding,
        ..
    } = window(&at, &x, kernel, true)?;
    if d != [1, 1] {
        return Err(format!("dilations {d:?}: gradc pools without dilation"));
    }
    let max = n.op_type == "MaxPool";
    // Counting the padding differs from TensorFlow only where there is some.
    let padded = || {
        let [_, _, h, w] = [0, 1, 2, 3].map(|k| x.t.shape.0.get(k).and_then(Dim::known));
        let pads =
            [(h, 0), (w, 1)].map(|(size, k)| size.and_then(|n| same_pads(n, s[k], kernel[k])));
        !pads.iter().all(|p| *p == Some([0, 0]))
    };
    if !max && padding == Padding::SAME && at.int("count_include_pad", 0)? != 0 && padded() {
        return Err("count_include_pad 1 with padding: gradc averages over the pixels inside, as TensorFlow".into());
    }
    let ksize = vec![1, 1, kernel[0], kernel[1]];
    let strides = vec![1, 1, s[0], s[1]];
    let data_format = DataFormat::NCHW;
    let op = if max {
        Op::MaxPool {
            ksize,
            strides,
            padding,
            data_format,
        }
    } else {
        Op::AvgPool {
            ksize,
            strides,
            padding,
            data_format,
        }
    };
    one(im.add1(name, op, &[&x])?)
}

fn global_average_pool(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let axes: Vec<i64> = (2..x.t.shape.rank() as i64).collect();
    one(im.add1(
        name,
        Op::Mean {
            axes: Some(axes),
            keep_dims: true,
        },
        &[&x],
    )?)
}

fn batch_normalization(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let at = Attrs(&n.attribute);
    if at.int("training_mode", 0)? != 0 {
        return Err("training_mode 1: gradc imports batch normalization at inference".into());
    }
    for k in [3, 4] {
        if let Some(stat) = n.input.get(k) {
            im.freeze(stat);
        }
    }
    let ins: Vec<Val> = (0..5).map(|k| input(im, n, k)).collect::<Result<_, _>>()?;
    let op = Op::FusedBatchNorm {
        epsilon: at.float("epsilon", 1e-5)?,
        data_format: DataFormat::NCHW,
        is_training: false,
    };
    let refs: Vec<&Val> = ins.iter().collect();
    let outs = im.add(name, op, &refs)?;
    Ok(outs.into_iter().take(1).collect())
}

fn flatten(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let rank = x.t.shape.rank() as i64;
    let mut axis = Attrs(&n.attribute).int("axis", 1)?;
    if axis < 0 {
        axis += rank;
    }
    if !(0..=rank).contains(&axis) {
        return Err(format!("axis {axis} of an input of rank {rank}"));
    }
    let product = |dims: &[Dim]| {
        dims.iter()
            .try_fold(1i64, |p, d| p.checked_mul(i64::try_from(d.known()?).ok()?))
    };
    let (head, tail) = x.t.shape.0.split_at(axis as usize);
    let shape = match (product(head), product(tail)) {
        (Some(h), Some(t)) => vec![h, t],
        (None, Some(t)) => vec![-1, t],
        (Some(h), None) => vec![h, -1],
        (None, None) => return Err(format!("flattening {} needs one side's sizes known", x.t)),
    };
    one(im.add1(name, Op::Reshape { shape }, &[&x])?)
}

fn reshape(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let mut shape = const_ints(im, n, 1, "shape")?;
    if Attrs(&n.attribute).int("allowzero", 0)? == 0 {
        // 0 copies the input's dimension.
        for (k, s) in shape.iter_mut().enumerate() {
            if *s == 0 {
                *s = match x.t.shape.0.get(k) {
                    Some(Dim::Known(d)) => *d as i64,
                    Some(Dim::Sym(_)) => -1,
                    None => {
                        return Err(format!(
                            "shape entry {k} copies a dimension the input of rank {} lacks",
                            x.t.shape.rank()
                        ))
                    }
                };
            }
        }
    }
    if shape.iter().filter(|&&s| s == -1).count() > 1 {
        return Err(format!(
            "shape {shape:?} leaves more than one dimension to infer"
        ));
    }
    one(im.add1(name, Op::Reshape { shape }, &[&x])?)
}

fn transpose(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let perm = match Attrs(&n.attribute).ints("perm")? {
        Some(p) => Some(
            p.iter()
                .map(|&a| usize::try_from(a).map_err(|_| format!("perm {p:?}")))
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    one(im.add1(name, Op::Transpose { perm }, &[&x])?)
}

fn squeeze(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let axes = match axes(im, n, 1)? {
        Some(a) => a,
        None if x.t.shape.0.iter().any(|d| d.known().is_none()) => {
            return Err(format!(
            "without axes it removes the dimensions of size 1 at run time; {} has symbolic ones",
            x.t
        ))
        }
        None => {
            x.t.shape
                .0
                .iter()
                .enumerate()
                .filter(|(_, d)| d.known() == Some(1))
                .map(|(k, _)| k as i64)
                .collect()
        }
    };
    one(im.add1(name, Op::Squeeze { axes }, &[&x])?)
}

fn unsqueeze(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let axes = axes(im, n, 1)?.ok_or("its axes are missing")?;
    one(im.add1(name, Op::ExpandDims { axes }, &[&x])?)
}

fn concat(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let axis = Attrs(&n.attribute).int("axis", 0)?;
    let ins: Vec<Val> = (0..n.input.len())
        .map(|k| input(im, n, k))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Val> = ins.iter().collect();
    one(im.add1(name, Op::Concat { axis }, &refs)?)
}

/// ONNX's Slice of constant starts, ends and axes, steps 1, as gradc's
/// `Slice(begin, size)` (a size of -1 to the end): negative positions count
/// from the end of axes of known size, ends are clamped.
fn slice(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let rank = x.t.shape.rank();
    let starts = const_ints(im, n, 1, "starts")?;
    let ends = const_ints(im, n, 2, "ends")?;
    let axes = if has_input(n, 3) {
        const_ints(im, n, 3, "axes")?
    } else {
        (0..starts.len() as i64).collect()
    };
    if has_input(n, 4) && const_ints(im, n, 4, "steps")?.iter().any(|&s| s != 1) {
        return Err("steps other than 1 are not read".into());
    }
    if starts.len() != ends.len() || starts.len() != axes.len() {
        return Err(format!(
            "starts {starts:?}, ends {ends:?} and axes {axes:?} differ in length"
        ));
    }
    let mut begin = vec![0i64; rank];
    let mut size = vec![-1i64; rank];
    for ((&s, &e), &a) in starts.iter().zip(&ends).zip(&axes) {
        let axis = usize::try_from(if a < 0 { a + rank as i64 } else { a })
            .ok()
            .filter(|&a| a < rank)
            .ok_or_else(|| format!("axis {a} of {}", x.t))?;
        let dim = x.t.shape.0[axis].known().map(|d| d as i64);
        let at = |v: i64, what: &str| -> Result<i64, String> {
            match (v < 0, dim) {
                (false, Some(d)) => Ok(v.min(d)),
                (false, None) => Ok(v),
                (true, Some(d)) => Ok((v + d).max(0)),
                (true, None) => Err(format!(
                    "a negative {what} on axis {axis} of unknown size ({})",
                    x.t
                )),
            }
        };
        let b0 = at(s, "start")?;
        begin[axis] = b0;
        size[axis] = match dim {
            None if e >= i64::MAX / 2 => -1,
            Some(d) if e >= d => -1,
            _ => (at(e, "end")? - b0).max(0),
        };
    }
    one(im.add1(name, Op::Slice { begin, size }, &[&x])?)
}

fn tile(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let multiples = const_ints(im, n, 1, "repeats")?;
    one(im.add1(name, Op::Tile { multiples }, &[&x])?)
}

fn softmax(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let x = input(im, n, 0)?;
    let rank = x.t.shape.rank() as i64;
    let axis = Attrs(&n.attribute).int("axis", -1)?;
    if axis != -1 && axis != rank - 1 {
        return Err(format!(
            "axis {axis}: gradc's {} is over the last axis",
            n.op_type
        ));
    }
    let op = if n.op_type == "Softmax" {
        Op::Softmax
    } else {
        Op::LogSoftmax
    };
    one(im.add1(name, op, &[&x])?)
}

fn reduce(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let at = Attrs(&n.attribute);
    let x = input(im, n, 0)?;
    let keep_dims = at.int("keepdims", 1)? != 0;
    let axes = axes(im, n, 1)?.filter(|a| !a.is_empty());
    if axes.is_none() && at.int("noop_with_empty_axes", 0)? != 0 {
        return one(im.add1(name, Op::Identity, &[&x])?);
    }
    let op = match n.op_type.as_str() {
        "ReduceMean" => Op::Mean { axes, keep_dims },
        "ReduceSum" => Op::Sum { axes, keep_dims },
        "ReduceMax" => Op::Max { axes, keep_dims },
        _ => Op::Min { axes, keep_dims },
    };
    one(im.add1(name, op, &[&x])?)
}

fn arg_max(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let at = Attrs(&n.attribute);
    if at.int("select_last_index", 0)? != 0 {
        return Err("select_last_index 1: gradc takes the first of equal values".into());
    }
    let x = input(im, n, 0)?;
    let axis = at.int("axis", 0)?;
    let keep = at.int("keepdims", 1)? != 0;
    let output_type = DType::I64;
    let op = if n.op_type == "ArgMax" {
        Op::ArgMax { axis, output_type }
    } else {
        Op::ArgMin { axis, output_type }
    };
    if !keep {
        return one(im.add1(name, op, &[&x])?);
    }
    let i = im.add1(&format!("{name}/{}", n.op_type), op, &[&x])?;
    let a = if axis < 0 {
        axis + x.t.shape.rank() as i64
    } else {
        axis
    };
    one(im.add1(name, Op::ExpandDims { axes: vec![a] }, &[&i])?)
}

fn cast(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let to = Attrs(&n.attribute).int("to", 0)?;
    let to = gradc_dtype(to as i32).ok_or_else(|| {
        format!(
            "to {}: not a dtype gradc has",
            crate::tensor::onnx_dtype_name(to as i32)
        )
    })?;
    let x = input(im, n, 0)?;
    one(im.add1(name, Op::Cast { to }, &[&x])?)
}

fn constant(im: &mut Importer, n: &NodeProto, _name: &str) -> Out {
    let at = Attrs(&n.attribute);
    let vec_of = |v: Vec<f64>, dtype: DType| {
        Tensor::from_f64(dtype, &[v.len()], v).map_err(|e| e.to_string())
    };
    let value = if let Some(t) = at.tensor("value")? {
        crate::tensor::from_proto(t)?
    } else if let Some(a) = n.attribute.iter().find(|a| a.name == "value_float") {
        Tensor::scalar(DType::F32, f64::from(a.f))
    } else if let Some(a) = n.attribute.iter().find(|a| a.name == "value_int") {
        Tensor::scalar(DType::I64, a.i as f64)
    } else if let Some(a) = n.attribute.iter().find(|a| a.name == "value_floats") {
        vec_of(a.floats.iter().map(|&f| f64::from(f)).collect(), DType::F32)?
    } else if let Some(a) = n.attribute.iter().find(|a| a.name == "value_ints") {
        Tensor::I64(
            ndarray::ArrayD::from_shape_vec(IxDyn(&[a.ints.len()]), a.ints.clone())
                .map_err(|e| e.to_string())?,
        )
    } else {
        let names: Vec<&str> = at.names().collect();
        return Err(format!(
            "its value is given as {names:?}; gradc reads value, value_float(s) and value_int(s)"
        ));
    };
    let out = n.output.first().ok_or("no output")?;
    im.add_constant(out, value);
    Ok(vec![])
}

/// Indices with the negative ones counted from the end of an axis of
/// `size`, as ONNX's Gather and OneHot read them (gradc's, as TensorFlow's,
/// take them as they are): `Select(i < 0, i + size, i)`, unless the indices
/// are constants none of which is negative.
fn from_the_end(
    im: &mut Importer,
    n: &NodeProto,
    k: usize,
    name: &str,
    size: i64,
) -> Result<Val, String> {
    let i = input(im, n, k)?;
    let constant = n.input.get(k).and_then(|c| im.constant(c));
    if constant.is_some_and(|t| t.to_f64_vec().iter().all(|&v| v >= 0.0)) {
        return Ok(i);
    }
    let dtype = i.t.dtype;
    let zero = im.scalar(&format!("{name}/zero"), 0.0, dtype);
    let size = im.scalar(&format!("{name}/size"), size as f64, dtype);
    let negative = im.add1(&format!("{name}/negative"), Op::Less, &[&i, &zero])?;
    let wrapped = im.add1(&format!("{name}/from_end"), Op::Add, &[&i, &size])?;
    im.add1(
        &format!("{name}/indices"),
        Op::Select,
        &[&negative, &wrapped, &i],
    )
}

fn gather(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let axis = Attrs(&n.attribute).int("axis", 0)?;
    let x = input(im, n, 0)?;
    let rank = x.t.shape.rank() as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    let size = usize::try_from(a)
        .ok()
        .and_then(|a| x.t.shape.0.get(a))
        .and_then(Dim::known)
        .ok_or_else(|| format!("axis {axis} of {} must be of known size", x.t))?;
    let i = from_the_end(im, n, 1, name, size as i64)?;
    one(im.add1(name, Op::Gather { axis }, &[&x, &i])?)
}

fn one_hot(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let axis = Attrs(&n.attribute).int("axis", -1)?;
    let depth = n
        .input
        .get(1)
        .and_then(|d| im.constant(d))
        .and_then(|t| t.first_f64());
    let depth = depth.ok_or("its depth must be a constant")? as i64;
    let values = n
        .input
        .get(2)
        .and_then(|v| im.constant(v))
        .cloned()
        .ok_or("its values must be a constant")?;
    let v = values.to_f64_vec();
    let [off_value, on_value] = v[..] else {
        return Err(format!("values must be [off, on], got {} of them", v.len()));
    };
    let op = Op::OneHot {
        depth,
        on_value,
        off_value,
        axis,
        dtype: values.dtype(),
    };
    let i = from_the_end(im, n, 0, name, depth)?;
    one(im.add1(name, op, &[&i])?)
}

fn select(im: &mut Importer, n: &NodeProto, name: &str) -> Out {
    let ins: Vec<Val> = (0..3).map(|k| input(im, n, k)).collect::<Result<_, _>>()?;
    one(im.add1(name, Op::Select, &[&ins[0], &ins[1], &ins[2]])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_op_has_one_handler() {
        let ops = supported_ops();
        let mut dedup = ops.clone();
        dedup.dedup();
        assert_eq!(ops, dedup, "an op is listed twice");
        for op in ops {
            assert!(handler(op).is_some(), "{op}");
        }
        for e in ELEMENTWISE {
            assert!(elementwise_op(e).is_some(), "{e}");
        }
    }
}
