//! gradc's ops against golden values from TensorFlow: the convolutions and
//! poolings (`tests/golden/conv/*.npz`, made by `tools/golden/conv.py`, whose
//! docstring lists the arrays) and the elementwise math functions
//! (`tests/golden/elementwise/*.npz`, `tools/golden/elementwise.py`, a
//! binary function's second operand `b` in the place of a filter), and the
//! slicing, padding, joining and tiling ops (`tests/golden/shaping/*.npz`,
//! `tools/golden/shaping.py`, Concat's and Stack's second input `b`), and
//! Gather, UnsortedSegmentSum and SparseSoftmaxCrossEntropyWithLogits
//! (`tests/golden/indexing/*.npz`, `tools/golden/indexing.py`, their integer
//! indices `i` fed but not differentiated). For each
//! file, gradc builds the op with the same attributes in an f64 graph, fed
//! the file's inputs, and must match TensorFlow to 1e-10 relative on the
//! forward output, the first-order gradients with the file's upstream
//! gradient `dy`, and the gradients of `s = sum(dx·vx) + sum(dfilter·vfilter)`
//! w.r.t. x, filter and dy (TensorFlow's gradients of its backprop ops,
//! MaxPoolGradGrad included).
//!
//! The integer and bool ops (`tests/golden/dtypes/*.npz`,
//! `tools/golden/dtypes.py`) have forward values only: inputs `x`, `b`, `c`
//! of their own dtypes and TensorFlow's output `y`, matched in dtype and
//! shape, exactly on integers and bools.
//!
//! Every file must be in `CONFIGS` (or `FORWARD`) and every entry must have
//! its file, with exactly the arrays its op needs: nothing is skipped.

use gradc::compiler::{self, Compiler, RunNames};
use gradc::io::dataset::load_npz;
use gradc::runtime::{Session, Tensor};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// |got − want| ≤ TOLERANCE · max(1, |want|) for every element.
const TOLERANCE: f64 = 1e-10;

/// Every golden file (without `.npz`) and the gradc op it holds values for;
/// the file's `op` array holds the same text, which the test checks.
const CONFIGS: &[(&str, &str)] = &[
    (
        "conv/conv2d_valid_s1_k3_c1",
        "Conv2D(strides: [1, 1, 1, 1], padding: VALID)",
    ),
    (
        "conv/conv2d_valid_s2_k3_c3_odd",
        "Conv2D(strides: [1, 2, 2, 1], padding: VALID)",
    ),
    (
        "conv/conv2d_valid_s2_k3_c3_even",
        "Conv2D(strides: [1, 2, 2, 1], padding: VALID)",
    ),
    (
        "conv/conv2d_same_s1_k3_c3",
        "Conv2D(strides: [1, 1, 1, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_same_s2_k3_odd",
        "Conv2D(strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_same_s2_k3_even",
        "Conv2D(strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_same_s2_k2x3_even_odd",
        "Conv2D(strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_same_s1_k5_c1",
        "Conv2D(strides: [1, 1, 1, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_valid_s1_k5_c5",
        "Conv2D(strides: [1, 1, 1, 1], padding: VALID)",
    ),
    (
        "conv/conv2d_valid_s1_k1_c5",
        "Conv2D(strides: [1, 1, 1, 1], padding: VALID)",
    ),
    (
        "conv/conv2d_same_s2_k1_even",
        "Conv2D(strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_same_s2x1_k3x2",
        "Conv2D(strides: [1, 2, 1, 1], padding: SAME)",
    ),
    (
        "conv/conv2d_valid_s1x2_k2x3",
        "Conv2D(strides: [1, 1, 2, 1], padding: VALID)",
    ),
    (
        "conv/conv2d_explicit_s2x1_k3x2",
        "Conv2D(strides: [1, 2, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, 1, 2, 0, 1, 0, 0])",
    ),
    (
        "conv/conv2d_explicit_s1_k3",
        "Conv2D(strides: [1, 1, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, 2, 0, 1, 1, 0, 0])",
    ),
    (
        "conv/conv2d_dilated2_valid",
        "Conv2D(strides: [1, 1, 1, 1], padding: VALID, dilations: [1, 2, 2, 1])",
    ),
    (
        "conv/conv2d_dilated2_same_even_odd",
        "Conv2D(strides: [1, 1, 1, 1], padding: SAME, dilations: [1, 2, 2, 1])",
    ),
    (
        "conv/conv2d_dilated2x1_same_k2x3",
        "Conv2D(strides: [1, 1, 1, 1], padding: SAME, dilations: [1, 2, 1, 1])",
    ),
    (
        "conv/conv2d_nchw_same_s1_k3",
        "Conv2D(strides: [1, 1, 1, 1], padding: SAME, data_format: NCHW)",
    ),
    (
        "conv/conv2d_nchw_valid_s2_k2x3",
        "Conv2D(strides: [1, 1, 2, 2], padding: VALID, data_format: NCHW)",
    ),
    (
        "conv/conv2d_nchw_same_s2_even",
        "Conv2D(strides: [1, 1, 2, 2], padding: SAME, data_format: NCHW)",
    ),
    (
        "conv/conv2d_nchw_explicit",
        "Conv2D(strides: [1, 1, 1, 2], padding: EXPLICIT, explicit_paddings: [0, 0, 0, 0, 1, 0, 2, 1], data_format: NCHW)",
    ),
    (
        "conv/conv2d_nchw_dilated2_same",
        "Conv2D(strides: [1, 1, 1, 1], padding: SAME, dilations: [1, 1, 2, 2], data_format: NCHW)",
    ),
    (
        "conv/depthwise_same_s1_k3_m1",
        "DepthwiseConv2dNative(strides: [1, 1, 1, 1], padding: SAME)",
    ),
    (
        "conv/depthwise_valid_s2_k3_m2",
        "DepthwiseConv2dNative(strides: [1, 2, 2, 1], padding: VALID)",
    ),
    (
        "conv/depthwise_same_s2_k2x3_m2_even",
        "DepthwiseConv2dNative(strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/depthwise_explicit_s1_k3_m2",
        "DepthwiseConv2dNative(strides: [1, 1, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, 1, 2, 2, 0, 0, 0])",
    ),
    (
        "conv/depthwise_dilated2_valid_m2",
        "DepthwiseConv2dNative(strides: [1, 1, 1, 1], padding: VALID, dilations: [1, 2, 2, 1])",
    ),
    (
        "conv/depthwise_nchw_same_s2_m2",
        "DepthwiseConv2dNative(strides: [1, 1, 2, 2], padding: SAME, data_format: NCHW)",
    ),
    (
        "conv/maxpool_valid_k2_s2_ties",
        "MaxPool(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: VALID)",
    ),
    (
        "conv/maxpool_valid_k3_s1_ties",
        "MaxPool(ksize: [1, 3, 3, 1], strides: [1, 1, 1, 1], padding: VALID)",
    ),
    (
        "conv/maxpool_same_k3_s2_odd_ties",
        "MaxPool(ksize: [1, 3, 3, 1], strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/maxpool_same_k3_s2_even",
        "MaxPool(ksize: [1, 3, 3, 1], strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/maxpool_same_k2x3_s1_ties",
        "MaxPool(ksize: [1, 2, 3, 1], strides: [1, 1, 1, 1], padding: SAME)",
    ),
    (
        "conv/maxpool_nchw_same_k3_s2_ties",
        "MaxPool(ksize: [1, 1, 3, 3], strides: [1, 1, 2, 2], padding: SAME, data_format: NCHW)",
    ),
    (
        "conv/maxpool_nchw_valid_k2x1_s1x2_ties",
        "MaxPool(ksize: [1, 1, 2, 1], strides: [1, 1, 1, 2], padding: VALID, data_format: NCHW)",
    ),
    (
        "conv/avgpool_valid_k2_s2",
        "AvgPool(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: VALID)",
    ),
    (
        "conv/avgpool_valid_k3x2_s1",
        "AvgPool(ksize: [1, 3, 2, 1], strides: [1, 1, 1, 1], padding: VALID)",
    ),
    (
        "conv/avgpool_same_k3_s2_odd",
        "AvgPool(ksize: [1, 3, 3, 1], strides: [1, 2, 2, 1], padding: SAME)",
    ),
    (
        "conv/avgpool_same_k3_s1_odd",
        "AvgPool(ksize: [1, 3, 3, 1], strides: [1, 1, 1, 1], padding: SAME)",
    ),
    (
        "conv/avgpool_nchw_same_k3x2_s2x1",
        "AvgPool(ksize: [1, 1, 3, 2], strides: [1, 1, 2, 1], padding: SAME, data_format: NCHW)",
    ),
    ("elementwise/abs", "Abs"),
    ("elementwise/sign", "Sign"),
    ("elementwise/sin", "Sin"),
    ("elementwise/cos", "Cos"),
    ("elementwise/tan", "Tan"),
    ("elementwise/asin", "Asin"),
    ("elementwise/acos", "Acos"),
    ("elementwise/atan", "Atan"),
    ("elementwise/sinh", "Sinh"),
    ("elementwise/cosh", "Cosh"),
    ("elementwise/atanh", "Atanh"),
    ("elementwise/log1p", "Log1p"),
    ("elementwise/expm1", "Expm1"),
    ("elementwise/reciprocal", "Reciprocal"),
    ("elementwise/erf", "Erf"),
    ("elementwise/floor", "Floor"),
    ("elementwise/ceil", "Ceil"),
    ("elementwise/round", "Round"),
    ("elementwise/softsign", "Softsign"),
    ("elementwise/elu", "Elu"),
    ("elementwise/selu", "Selu"),
    ("elementwise/leaky_relu", "LeakyRelu(alpha: 0.2)"),
    ("elementwise/minimum", "Minimum"),
    ("elementwise/squared_difference", "SquaredDifference"),
    (
        "elementwise/sigmoid_cross_entropy",
        "SigmoidCrossEntropyWithLogits",
    ),
    (
        "shaping/slice",
        "Slice(begin: [1, 0, 2], size: [2, -1, 2])",
    ),
    (
        "shaping/pad_constant",
        "Pad(paddings: [[1, 2], [0, 1], [2, 1]], constant_values: 1.5)",
    ),
    (
        "shaping/pad_reflect",
        "Pad(paddings: [[1, 2], [0, 1], [2, 1]], mode: REFLECT)",
    ),
    (
        "shaping/pad_symmetric",
        "Pad(paddings: [[1, 2], [0, 1], [2, 1]], mode: SYMMETRIC)",
    ),
    (
        "shaping/concat_last",
        "Concat(axis: -1)",
    ),
    (
        "shaping/concat_first",
        "Concat(axis: 0)",
    ),
    (
        "shaping/reverse",
        "Reverse(axes: [0, -1])",
    ),
    (
        "shaping/tile",
        "Tile(multiples: [2, 1, 3])",
    ),
    ("elementwise/gelu", "Gelu"),
    ("elementwise/erfc", "Erfc"),
    ("shaping/stack", "Stack(axis: 1)"),
    ("shaping/stack_last", "Stack(axis: -1)"),
    ("shaping/max_axis", "Max(axes: [1])"),
    ("shaping/min_keep", "Min(axes: [0, 2], keep_dims: true)"),
    ("shaping/max_all", "Max()"),
    ("shaping/cumsum", "Cumsum(axis: 1)"),
    (
        "shaping/cumsum_exclusive_reverse",
        "Cumsum(axis: -1, exclusive: true, reverse: true)",
    ),
    ("shaping/clip_by_value", "ClipByValue"),
    ("elementwise/floor_mod", "FloorMod"),
    ("elementwise/gelu_tanh", "GeluTanh"),
    ("shaping/split", "Split(axis: 1, num_split: 3)"),
    ("shaping/split_v", "SplitV(size_splits: [-1, 2], axis: -1)"),
    ("shaping/unstack", "Unstack(axis: 1)"),
    ("shaping/prod_axis", "Prod(axes: [1])"),
    (
        "shaping/prod_two_axes_keep",
        "Prod(axes: [0, 2], keep_dims: true)",
    ),
    ("shaping/prod_all", "Prod()"),
    (
        "shaping/cumprod_exclusive_reverse",
        "Cumprod(axis: -1, exclusive: true, reverse: true)",
    ),
    (
        "shaping/strided_slice_shrink",
        "StridedSlice(begin: [1, 0, -1], end: [3, 0, 0], strides: [1, 2, 1], begin_mask: 2, end_mask: 2, shrink_axis_mask: 4)",
    ),
    (
        "shaping/strided_slice_negative",
        "StridedSlice(begin: [0, 3], end: [0, 0], strides: [-1, -2], begin_mask: 1, end_mask: 1)",
    ),
    (
        "shaping/strided_slice_ellipsis_new_axis",
        "StridedSlice(begin: [0, 0, 1], end: [0, 0, 0], strides: [1, 1, 1], end_mask: 4, ellipsis_mask: 1, new_axis_mask: 2)",
    ),
    (
        "shaping/strided_slice_clamped",
        "StridedSlice(begin: [-10, 1], end: [10, 2], strides: [1, 1], shrink_axis_mask: 2)",
    ),
    ("indexing/gather_axis0", "Gather()"),
    ("indexing/gather_axis1", "Gather(axis: 1)"),
    ("indexing/gather_scalar_index_last_axis", "Gather(axis: -1)"),
    (
        "indexing/unsorted_segment_sum",
        "UnsortedSegmentSum(num_segments: 4)",
    ),
    (
        "indexing/unsorted_segment_sum_2d_ids",
        "UnsortedSegmentSum(num_segments: 3)",
    ),
    (
        "indexing/sparse_softmax_cross_entropy",
        "SparseSoftmaxCrossEntropyWithLogits",
    ),
];

/// The files of ops compared on their forward values only, and the gradc op
/// each holds values for (`tools/golden/dtypes.py`).
const FORWARD: &[(&str, &str)] = &[
    ("cast_f64_to_i32", "Cast(to: I32)"),
    ("cast_f64_to_i64", "Cast(to: I64)"),
    ("cast_f64_to_bool", "Cast(to: Bool)"),
    ("cast_bool_to_f64", "Cast(to: F64)"),
    ("cast_i64_to_i32", "Cast(to: I32)"),
    ("cast_i64_to_f32", "Cast(to: F32)"),
    ("cast_f64_to_f32", "Cast(to: F32)"),
    ("equal_f64", "Equal"),
    ("not_equal_f64", "NotEqual"),
    ("less_f64", "Less"),
    ("less_equal_f64", "LessEqual"),
    ("greater_f64", "Greater"),
    ("greater_equal_f64", "GreaterEqual"),
    ("equal_i64", "Equal"),
    ("less_i32", "Less"),
    ("equal_bool", "Equal"),
    ("logical_and", "LogicalAnd"),
    ("logical_or", "LogicalOr"),
    ("logical_not", "LogicalNot"),
    ("select_bool", "Select"),
    ("arg_max", "ArgMax(axis: 1)"),
    ("arg_min_i32", "ArgMin(axis: 0, output_type: I32)"),
    ("arg_max_i64_input", "ArgMax(axis: -1)"),
    ("add_i64", "Add"),
    ("sub_i32_wraps", "Sub"),
    ("mul_i32_wraps", "Mul"),
    ("maximum_i64", "Maximum"),
    ("minimum_i32", "Minimum"),
    ("squared_difference_i64", "SquaredDifference"),
    ("neg_i64", "Neg"),
    ("abs_i32", "Abs"),
    ("sign_i64", "Sign"),
    ("square_i32", "Square"),
    ("floor_div_i64", "FloorDiv"),
    ("floor_mod_i32", "FloorMod"),
    ("floor_div_f64", "FloorDiv"),
    ("floor_mod_f64", "FloorMod"),
    (
        "one_hot",
        "OneHot(depth: 4, on_value: 2.5, off_value: -1.0, dtype: F64)",
    ),
    ("one_hot_axis0_f32", "OneHot(depth: 3, axis: 0)"),
    ("is_nan", "IsNan"),
    ("is_finite", "IsFinite"),
    ("any_axis1", "Any(axes: [1])"),
    ("all_keep", "All(axes: [0], keep_dims: true)"),
    ("any_all_axes", "Any()"),
    ("shape", "Shape"),
    ("size", "Size"),
    ("range_i32", "Range(start: 3.0, limit: -4.0, delta: -2.0)"),
    (
        "range_f64",
        "Range(start: 0.5, limit: 2.0, delta: 0.25, dtype: F64)",
    ),
];

/// The directory of `FORWARD`'s files.
const FORWARD_SCRIPT: &str = "dtypes";

/// The golden files' directory; each subdirectory holds one script's files.
fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The subdirectories, one for each script of `tools/golden/`.
const SCRIPTS: &[&str] = &["conv", "elementwise", "shaping", "indexing"];

/// Inputs fed but not differentiated: the integer indices `i` of the ops
/// that take them (after the differentiated operands).
fn constants(op: &str) -> &'static [&'static str] {
    let takes_indices = op.starts_with("Gather(")
        || op.starts_with("UnsortedSegmentSum(")
        || op == "SparseSoftmaxCrossEntropyWithLogits";
    if takes_indices {
        &["i"]
    } else {
        &[]
    }
}

/// What gradc differentiates: x and, for a convolution, the filter, for a
/// binary function its second operand b.
fn operands(op: &str) -> &'static [&'static str] {
    if op.starts_with("Conv2D(") || op.starts_with("DepthwiseConv2dNative(") {
        &["x", "filter"]
    } else if op == "ClipByValue" {
        &["x", "b", "c"]
    } else if [
        "Minimum",
        "SquaredDifference",
        "SigmoidCrossEntropyWithLogits",
        "FloorMod",
    ]
    .contains(&op)
        || op.starts_with("Concat(")
        || op.starts_with("Stack(")
    {
        &["x", "b"]
    } else {
        &["x"]
    }
}

/// The arrays a file must hold: fed (inputs) and compared (outputs, with the
/// tensor of the gradc graph that is compared with each).
fn arrays(wrt: &[&str], fixed: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
    let mut fed: Vec<String> = wrt.iter().chain(fixed).map(|w| w.to_string()).collect();
    fed.push("dy".into());
    fed.extend(wrt.iter().map(|w| format!("v{w}")));
    let mut compared = vec![("y".to_string(), "y".to_string())];
    compared.extend(
        wrt.iter()
            .map(|w| (format!("d{w}"), format!("d(y)/d({w})"))),
    );
    compared.extend(
        wrt.iter()
            .chain(&["dy"])
            .map(|w| (format!("d2{w}"), format!("d(s)/d({w})"))),
    );
    (fed, compared)
}

/// The gradc graph of one file: placeholders for the fed arrays, the op,
/// its gradients with `dy` as grad_ys, and the gradients of s.
fn graph_text(op: &str, wrt: &[&str], feeds: &HashMap<String, Tensor>) -> String {
    let fixed = constants(op);
    let mut nodes = String::new();
    for name in arrays(wrt, fixed).0 {
        let t = &feeds[&name];
        writeln!(
            nodes,
            "    (name: {name:?}, op: Placeholder(shape: {:?}), dtype: {:?}),",
            t.shape(),
            t.dtype()
        )
        .expect("a String takes it");
    }
    let inputs: Vec<String> = wrt.iter().map(|w| format!("{w:?}")).collect();
    let args: Vec<String> = wrt.iter().chain(fixed).map(|w| format!("{w:?}")).collect();
    writeln!(
        nodes,
        "    (name: \"y\", op: {op}, inputs: [{}]),",
        args.join(", ")
    )
    .expect("a String takes it");
    let mut terms = Vec::new();
    for w in wrt {
        writeln!(
            nodes,
            "    (name: \"d{w}_v{w}\", op: Mul, inputs: [\"d(y)/d({w})\", \"v{w}\"]),\n    \
             (name: \"s_{w}\", op: Sum(), inputs: [\"d{w}_v{w}\"]),"
        )
        .expect("a String takes it");
        terms.push(format!("\"s_{w}\""));
    }
    writeln!(
        nodes,
        "    (name: \"s\", op: AddN, inputs: [{}]),",
        terms.join(", ")
    )
    .expect("a String takes it");
    let second: Vec<String> = wrt
        .iter()
        .chain(&["dy"])
        .map(|w| format!("{w:?}"))
        .collect();
    format!(
        "Graph(name: \"tf_golden\", dtype: F64, nodes: [\n{nodes}], outputs: [\"y\"], gradients: [\n    \
         (of: \"y\", wrt: [{}], grad_ys: \"dy\"),\n    (of: \"s\", wrt: [{}]),\n])",
        inputs.join(", "),
        second.join(", ")
    )
}

/// The largest relative error, |got − want| / max(1, |want|), and the first
/// few elements off by more than the tolerance (`Err`).
fn compare(got: &Tensor, want: &Tensor) -> Result<f64, String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?}, TensorFlow's {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let (got, want) = (got.to_f64_vec(), want.to_f64_vec());
    let err = |i: usize| (got[i] - want[i]).abs() / want[i].abs().max(1.0);
    let worst = (0..want.len()).map(err).fold(0.0, f64::max);
    let bad: Vec<usize> = (0..want.len())
        .filter(|&i| err(i).is_nan() || err(i) > TOLERANCE)
        .collect();
    if bad.is_empty() {
        return Ok(worst);
    }
    let shown: Vec<String> = bad
        .iter()
        .take(5)
        .map(|&i| format!("[{i}] got {:e}, want {:e}", got[i], want[i]))
        .collect();
    Err(format!(
        "{} of {} elements off (largest relative error {worst:e}): {}",
        bad.len(),
        want.len(),
        shown.join("; ")
    ))
}

/// The text a file's `op` array holds (a NumPy string, one code point per element).
fn op_text(t: &Tensor) -> String {
    t.to_f64_vec()
        .iter()
        .map(|&c| char::from_u32(c as u32).unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// Checks one file of `FORWARD`: gradc's output for the file's inputs has
/// TensorFlow's dtype, shape and values.
fn check_forward(file: &str, op: &str) -> Result<(), String> {
    let path = golden_dir()
        .join(FORWARD_SCRIPT)
        .join(format!("{file}.npz"));
    let mut npz: BTreeMap<String, Tensor> = load_npz(&path)
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let text = npz.remove("op").map(|t| op_text(&t));
    if text.as_deref() != Some(op) {
        return Err(format!("the file was made for {text:?}, the test has {op}"));
    }
    let want = npz.remove("y").ok_or("array \"y\" is missing")?;
    let inputs: Vec<&str> = ["x", "b", "c"]
        .into_iter()
        .filter(|n| npz.contains_key(*n))
        .collect();
    if inputs.len() != npz.len() {
        return Err(format!(
            "arrays {:?}: only x, b and c are inputs",
            npz.keys()
        ));
    }
    let mut nodes = String::new();
    for n in &inputs {
        let t = &npz[*n];
        let dtype = format!("{:?}", t.dtype());
        writeln!(
            nodes,
            "    (name: {n:?}, op: Placeholder(shape: {:?}), dtype: {dtype}),",
            t.shape()
        )
        .expect("a String takes it");
    }
    let args: Vec<String> = inputs.iter().map(|n| format!("{n:?}")).collect();
    let text = format!(
        "Graph(name: \"tf_golden\", dtype: F64, nodes: [\n{nodes}    (name: \"y\", op: {op}, inputs: [{}]),\n], outputs: [\"y\"])",
        args.join(", ")
    );
    let g = compiler::graph_from_str(&text, "tf_golden.ron").map_err(|e| format!("{e}\n{text}"))?;
    let program = Compiler::new(g)
        .compile()
        .map_err(|e| e.to_string())?
        .program;
    let mut session = Session::new(program).map_err(|e| e.to_string())?;
    let y = session.resolve("y").map_err(|e| e.to_string())?;
    let feeds: HashMap<String, Tensor> = npz.into_iter().collect();
    let got = session.run(&feeds, &[y]).map_err(|e| e.to_string())?;
    let got = &got[0];
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {}, TensorFlow's {}",
            got.dtype(),
            want.dtype()
        ));
    }
    if !want.dtype().is_float() && got != &want {
        return Err(format!("got {got:?}, TensorFlow's {want:?}"));
    }
    compare(got, &want).map(|_| ())
}

/// Checks one file; every problem is a line naming the file and array.
fn check(file: &str, op: &str) -> Vec<String> {
    let path = golden_dir().join(format!("{file}.npz"));
    let loaded = match load_npz(&path) {
        Ok(a) => a,
        Err(e) => return vec![format!("{file}: {e}")],
    };
    let mut npz: BTreeMap<String, Tensor> = loaded.into_iter().collect();
    let wrt = operands(op);
    let (fed, compared) = arrays(wrt, constants(op));

    let mut problems = Vec::new();
    let expected: BTreeSet<&str> = fed
        .iter()
        .map(String::as_str)
        .chain(compared.iter().map(|(a, _)| a.as_str()))
        .chain(["op"])
        .collect();
    for name in &expected {
        if !npz.contains_key(*name) {
            problems.push(format!("{file}: array {name:?} is missing"));
        }
    }
    for name in npz.keys() {
        if !expected.contains(name.as_str()) {
            problems.push(format!("{file}: array {name:?} is not one this test knows"));
        }
    }
    if !problems.is_empty() {
        return problems;
    }

    let text = op_text(&npz["op"]);
    if text != op {
        return vec![format!(
            "{file}: the file was made for {text}, the test has {op}"
        )];
    }

    let feeds: HashMap<String, Tensor> = fed
        .iter()
        .map(|n| (n.clone(), npz.remove(n).expect("checked above")))
        .collect();
    let text = graph_text(op, wrt, &feeds);
    let g = match compiler::graph_from_str(&text, "tf_golden.ron") {
        Ok(g) => g,
        Err(e) => return vec![format!("{file}: the graph does not build: {e}\n{text}")],
    };
    let fetches: Vec<&str> = compared.iter().map(|(_, t)| t.as_str()).collect();
    let names = RunNames {
        fetches: &fetches,
        feeds: &[],
    };
    let program = match Compiler::new(g).run_names(names).compile() {
        Ok(out) => out.program,
        Err(e) => return vec![format!("{file}: the graph does not compile: {e}")],
    };
    let got = Session::new(program)
        .map_err(|e| e.to_string())
        .and_then(|mut s| {
            let refs = fetches
                .iter()
                .map(|f| s.resolve(f))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            s.run(&feeds, &refs).map_err(|e| e.to_string())
        });
    let got = match got {
        Ok(v) => v,
        Err(e) => return vec![format!("{file}: the graph does not run: {e}")],
    };
    let mut worst = 0.0f64;
    for ((array, tensor), got) in compared.iter().zip(&got) {
        match compare(got, &npz[array]) {
            Ok(e) => worst = worst.max(e),
            Err(m) => problems.push(format!("{file} ({op}): {array} ({tensor}): {m}")),
        }
    }
    println!("{file}: largest relative error {worst:e}");
    problems
}

/// Checks every configuration of the op and panics with all problems found.
fn check_op(op_name: &str) {
    let configs: Vec<_> = CONFIGS
        .iter()
        .filter(|(file, op)| {
            op.starts_with(&format!("{op_name}("))
                || (SCRIPTS.contains(&op_name) && file.starts_with(&format!("{op_name}/")))
        })
        .collect();
    assert!(!configs.is_empty(), "no configuration of {op_name}");
    let problems: Vec<Vec<String>> = configs
        .iter()
        .map(|(file, op)| check(file, op))
        .filter(|p| !p.is_empty())
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} {op_name} files disagree with TensorFlow:\n{}",
        problems.len(),
        configs.len(),
        problems.concat().join("\n")
    );
}

#[test]
fn conv2d_matches_tensorflow() {
    check_op("Conv2D");
}

#[test]
fn depthwise_conv2d_matches_tensorflow() {
    check_op("DepthwiseConv2dNative");
}

#[test]
fn max_pool_matches_tensorflow() {
    check_op("MaxPool");
}

#[test]
fn avg_pool_matches_tensorflow() {
    check_op("AvgPool");
}

/// Gather (axes 0, 1 and the last; repeated indices), UnsortedSegmentSum
/// (an empty segment; ids of rank 2) and SparseSoftmaxCrossEntropyWithLogits
/// (`tools/golden/indexing.py`).
#[test]
fn indexing_ops_match_tensorflow() {
    check_op("indexing");
}

/// Slice, Pad (each mode), Concat, Stack, Reverse, Tile, Max and Min with
/// ties, Cumsum and ClipByValue (`tools/golden/shaping.py`).
#[test]
fn shaping_ops_match_tensorflow() {
    check_op("shaping");
}

/// The elementwise math functions (`tools/golden/elementwise.py`): values,
/// gradients and second order, rounding and sign on halves, ±0 and
/// integers, Minimum's ties.
#[test]
fn elementwise_functions_match_tensorflow() {
    check_op("elementwise");
}

/// Cast, the comparisons and logical ops, Select on a bool, ArgMax and
/// ArgMin, integer arithmetic (wrapping as TensorFlow's), FloorDiv and
/// FloorMod of both signs (`tools/golden/dtypes.py`).
#[test]
fn integer_and_bool_ops_match_tensorflow() {
    let problems: Vec<String> = FORWARD
        .iter()
        .filter_map(|(file, op)| {
            check_forward(file, op)
                .err()
                .map(|e| format!("{file} ({op}): {e}"))
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} files disagree with TensorFlow:\n{}",
        problems.len(),
        FORWARD.len(),
        problems.join("\n")
    );
    // The directory holds exactly the listed files.
    let dir = golden_dir().join(FORWARD_SCRIPT);
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let listed: BTreeSet<String> = FORWARD.iter().map(|(f, _)| format!("{f}.npz")).collect();
    assert_eq!(
        listed.len(),
        FORWARD.len(),
        "a file is listed twice in FORWARD"
    );
    assert_eq!(
        on_disk,
        listed,
        "{} and FORWARD list other files",
        dir.display()
    );
}

/// The directory and the table list the same files, so no file goes untested.
#[test]
fn every_golden_file_is_tested() {
    let dir = golden_dir();
    let mut on_disk = BTreeSet::new();
    for script in SCRIPTS {
        let sub = dir.join(script);
        let entries = std::fs::read_dir(&sub)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", sub.display()));
        for e in entries {
            let name = e.expect("a directory entry").file_name();
            on_disk.insert(format!(
                "{script}/{}",
                name.into_string().expect("a UTF-8 file name")
            ));
        }
    }
    let listed: BTreeSet<String> = CONFIGS.iter().map(|(f, _)| format!("{f}.npz")).collect();
    assert_eq!(
        listed.len(),
        CONFIGS.len(),
        "a file is listed twice in CONFIGS"
    );
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    let untested: Vec<_> = on_disk.difference(&listed).collect();
    assert!(
        missing.is_empty() && untested.is_empty(),
        "in CONFIGS but not in {}: {missing:?}; there but not in CONFIGS: {untested:?}",
        dir.display()
    );
}
