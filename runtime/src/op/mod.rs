//! The op set: attributes and shape rules. One enum, shared by the compiler's
//! IR and by compiled programs, so a program needs nothing from the compiler.
//! Kernels live in `kernels/`, gradient rules in the compiler's `grad/`.

mod compare;
mod conv;
mod conv_gemm;
mod elementwise;
mod index;
mod pool;

pub use conv::{Conv, ConvKind, PoolKind};
pub use elementwise::{
    grad, grads, Activation, BinaryFn, Derivative, FusedStep, Grad, Rec, Sym, UnaryFn,
};
pub(crate) use elementwise::{Map1, Map2};
pub use index::PadMode;

use crate::shape::{broadcast, normalize_axes, Dim, Shape, ShapeError};
use crate::{binary_ops, elementwise_table, unary_ops};
use crate::{DType, TensorType};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A constant literal as written in a graph file: a number or nested lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Scalar(f64),
    List(Vec<Literal>),
}

impl Literal {
    /// Shape and row-major values; an error for ragged lists.
    pub fn to_flat(&self) -> Result<(Vec<usize>, Vec<f64>), ShapeError> {
        match self {
            Literal::Scalar(v) => Ok((vec![], vec![*v])),
            Literal::List(items) => {
                let mut shape: Option<Vec<usize>> = None;
                let mut data = Vec::new();
                for item in items {
                    let (s, d) = item.to_flat()?;
                    match &shape {
                        None => shape = Some(s),
                        Some(prev) if *prev != s => {
                            return Err(ShapeError(format!(
                                "ragged constant: an element of shape {prev:?} next to one of shape {s:?}"
                            )))
                        }
                        Some(_) => {}
                    }
                    data.extend(d);
                }
                let mut full = vec![items.len()];
                full.extend(shape.unwrap_or_default());
                Ok((full, data))
            }
        }
    }

    /// Builds the nested literal for a shape and row-major values; None if they do not fit.
    pub fn from_flat(shape: &[usize], data: &[f64]) -> Option<Literal> {
        match shape.split_first() {
            None => (data.len() == 1).then(|| Literal::Scalar(data[0])),
            Some((&n, rest)) => {
                let step = rest.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
                if step.checked_mul(n)? != data.len() {
                    return None;
                }
                (0..n)
                    .map(|i| Literal::from_flat(rest, &data[i * step..(i + 1) * step]))
                    .collect::<Option<_>>()
                    .map(Literal::List)
            }
        }
    }
}

/// Every operation gradc knows: the variants below, then one per row of the
/// elementwise table (`elementwise.rs`). Attribute fields are what a graph
/// file writes, e.g. `Sum(axes: [1], keep_dims: true)` or `MatMul(transpose_b: true)`.
macro_rules! op_enum {
    (
        {
            { $( $(#[$m:meta])* $v:ident $({ $($fields:tt)* })? $(( $($tuple:tt)* ))? ),* $(,)? }
            modules { $( $(#[$mm:meta])* $mo:ident $({ $($mf:tt)* })? => $module:ident, )* }
        }
        unary { $(
            $(#[$um:meta])* $u:ident $({ $ua:ident })? [$($uf:ident),*]
            |$x:ident| $f:expr => |$udy:ident, $ux:ident, $uy:ident| $ud:expr;
        )* }
        binary { $(
            $(#[$bm:meta])* $b:ident [$($bf:ident),*]
            |$ba:ident, $bb:ident| $g:expr => |$bdy:ident, $bxa:ident, $bxb:ident, $by:ident| $bd:expr;
        )* }
    ) => {
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub enum Op {
            $( $(#[$m])* $v $({ $($fields)* })? $(( $($tuple)* ))?, )*
            $( $(#[$mm])* $mo $({ $($mf)* })?, )*
            $( $(#[$um])* $u $({ $ua: f64 })?, )*
            $( $(#[$bm])* $b, )*
        }

        /// Every op name, for "did you mean" suggestions.
        pub const OP_NAMES: &[&str] = &[
            $( stringify!($v), )* $( stringify!($mo), )* $( stringify!($u), )* $( stringify!($b), )*
        ];

        $( pub(crate) mod $module; )*

        impl Op {
            pub fn name(&self) -> &'static str {
                match self {
                    $( Op::$v { .. } => stringify!($v), )*
                    $( Op::$mo { .. } => stringify!($mo), )*
                    $( Op::$u { .. } => stringify!($u), )*
                    $( Op::$b => stringify!($b), )*
                }
            }

            /// A module op's arity: its module's `ARITY`.
            fn module_arity(&self) -> Arity {
                match self {
                    $( Op::$mo { .. } => $module::ARITY, )*
                    _ => unreachable!("{} is not an op of a module", self.name()),
                }
            }

            /// A module op's attributes in the canonical text: its module's `attrs_text`.
            fn module_attrs_text(&self) -> String {
                match self {
                    $( Op::$mo { .. } => $module::attrs_text(self), )*
                    _ => String::new(),
                }
            }

            /// A module op's shape rule: its module's `infer`.
            fn module_infer(&self, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
                match self {
                    $( Op::$mo { .. } => $module::infer(self, dt, ins), )*
                    _ => Err(format!("{} is not an op of a module", self.name())),
                }
            }

            /// A module op's dtype rule: its module's `TAKES`.
            fn module_takes(&self) -> Takes {
                match self {
                    $( Op::$mo { .. } => $module::TAKES, )*
                    _ => Takes::Uniform(In::Float),
                }
            }
        }

        /// A module op's kernel: its module's `run`, which dispatches on the
        /// dtypes and writes each output into its buffer.
        pub(crate) fn module_run(
            op: &Op,
            ins: &dyn crate::kernels::Inputs,
            outs: &mut [crate::Tensor],
        ) -> Result<(), String> {
            match op {
                $( Op::$mo { .. } => $module::run(op, ins, outs), )*
                _ => Err(format!("{} is not an op of a module", op.name())),
            }
        }
    };
}

/// The output buffer of an op with one output.
pub(crate) fn single(outs: &mut [crate::Tensor]) -> Result<&mut crate::Tensor, String> {
    match outs {
        [out] => Ok(out),
        _ => Err(format!(
            "one output, but {} output buffers were given",
            outs.len()
        )),
    }
}

/// A module's `TAKES` and `run` for a `kernel` generic over the float
/// types (`T: Elem`): inputs of one float dtype.
macro_rules! float_kernel {
    () => {
        pub(super) const TAKES: super::Takes = super::Takes::Uniform(super::In::Float);

        pub(super) fn run(
            op: &Op,
            ins: &dyn crate::kernels::Inputs,
            outs: &mut [crate::Tensor],
        ) -> Result<(), String> {
            match super::single(outs)? {
                crate::Tensor::F32(y) => kernel::<f32>(op, &|k| crate::kernels::input(ins, k), y),
                crate::Tensor::F64(y) => kernel::<f64>(op, &|k| crate::kernels::input(ins, k), y),
                y => Err(format!("{} has no {} kernel", op.name(), y.dtype())),
            }
        }
    };
}

/// A module's `TAKES` and `run` for a `kernel` generic over every element
/// type (`T: Value`): inputs of one dtype, any.
macro_rules! value_kernel {
    () => {
        pub(super) const TAKES: super::Takes = super::Takes::Uniform(super::In::Any);

        pub(super) fn run(
            op: &Op,
            ins: &dyn crate::kernels::Inputs,
            outs: &mut [crate::Tensor],
        ) -> Result<(), String> {
            crate::each!(super::single(outs)?, y => kernel(op, &|k| crate::kernels::input(ins, k), y))
        }
    };
}

/// Forwards the module ops' rows to the elementwise table, for `op_enum`.
macro_rules! with_modules {
    ({ $($ops:tt)* } modules { $($rows:tt)* }) => {
        elementwise_table!((op_enum) { { $($ops)* } modules { $($rows)* } });
    };
}

/// The ops that live in a module of their own: one row each, the variant
/// (its doc comment and attributes, as the other variants have them) and the
/// module, `runtime/src/op/<module>.rs`, which holds its `ARITY`, `TAKES`
/// (the dtype rule), `infer` (the shape rule) and `run` (the kernel, most
/// often through `float_kernel!` or `value_kernel!`). The compiler finds its gradient in
/// `compiler/src/grad/<module>.rs`, a module of the same name.
/// `module_ops_table!((callback) { extra })` calls
/// `callback! { { extra } modules { rows } }`.
#[doc(hidden)]
#[macro_export]
macro_rules! module_ops_table {
    (($($callback:tt)+) { $($extra:tt)* }) => {
        $($callback)+! {
            { $($extra)* }
            modules {
                /// sum(x²) / 2 over every element, a scalar (TensorFlow's `tf.nn.l2_loss`).
                L2Loss => l2_loss,
                /// Each input averaged over the `ranks` processes of a
                /// data-parallel run, all inputs as one buffer (Horovod's
                /// averaging `allreduce`); the compiler puts it on a train
                /// step's gradients when it compiles the step for several ranks.
                AllReduceMean {
                    ranks: usize,
                } => all_reduce_mean,
                /// 2-D convolution (TensorFlow's `tf.nn.conv2d`): input
                /// [N, H, W, C] (NHWC) or [N, C, H, W] (NCHW), filter
                /// [kh, kw, C, O]; `strides` and `dilations` have 4 entries
                /// in the data format's order, 1 on the batch and channels.
                Conv2D {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                } => conv2d,
                /// Fused `activation(Conv2D(input, filter) + bias)`: inputs
                /// (input, filter, bias), Conv2D's attributes and an
                /// activation (as Dense's). Made by the optimizer's fusion
                /// pass from Conv2D, BiasAdd and an activation; computes
                /// exactly what they compute.
                FusedConv2D {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                    #[serde(default)]
                    activation: Activation,
                } => fused_conv2d,
                /// The gradient of Conv2D's input: inputs (input, filter,
                /// out_backprop), of which input gives its shape only
                /// (TensorFlow's `input_sizes`); attributes as Conv2D's.
                Conv2DBackpropInput {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                } => conv2d_backprop_input,
                /// The gradient of Conv2D's filter: inputs (input, filter,
                /// out_backprop), of which filter gives its shape only
                /// (TensorFlow's `filter_sizes`); attributes as Conv2D's.
                Conv2DBackpropFilter {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                } => conv2d_backprop_filter,
                /// Depthwise 2-D convolution (TensorFlow's `tf.nn.depthwise_conv2d_native`):
                /// filter [kh, kw, C, M], each input channel c convolved with its M filters
                /// into output channels c·M + m; attributes as Conv2D's.
                DepthwiseConv2dNative {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                } => depthwise_conv2d,
                /// The gradient of DepthwiseConv2dNative's input: inputs (input, its shape
                /// only, filter, out_backprop); attributes as Conv2D's.
                DepthwiseConv2dNativeBackpropInput {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                } => depthwise_conv2d_backprop_input,
                /// The gradient of DepthwiseConv2dNative's filter: inputs (input, filter,
                /// its shape only, out_backprop); attributes as Conv2D's.
                DepthwiseConv2dNativeBackpropFilter {
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    explicit_paddings: Vec<i64>,
                    #[serde(default = "ones4")]
                    dilations: Vec<i64>,
                    #[serde(default)]
                    data_format: DataFormat,
                } => depthwise_conv2d_backprop_filter,
                /// `size[i]` values from `begin[i]` on each axis, -1 for the rest
                /// of the axis (TensorFlow's `tf.slice`, begin and size as attributes).
                Slice {
                    begin: Vec<i64>,
                    size: Vec<i64>,
                } => slice,
                /// The gradient of Slice: inputs (x, its shape only, dy); zeros
                /// of x's shape with dy where the slice was.
                SliceGrad {
                    begin: Vec<i64>,
                    size: Vec<i64>,
                } => slice_grad,
                /// NumPy's `x[b:e:s, ...]` (TensorFlow's `tf.strided_slice`): `begin`,
                /// `end`, `strides` (all 1 when absent) and the five masks, bit i
                /// for entry i: `begin_mask`/`end_mask` (the widest range),
                /// `ellipsis_mask` (the unnamed axes), `new_axis_mask` (an axis of
                /// size 1), `shrink_axis_mask` (one index, the axis removed).
                StridedSlice {
                    begin: Vec<i64>,
                    end: Vec<i64>,
                    #[serde(default)]
                    strides: Vec<i64>,
                    #[serde(default)]
                    begin_mask: i64,
                    #[serde(default)]
                    end_mask: i64,
                    #[serde(default)]
                    ellipsis_mask: i64,
                    #[serde(default)]
                    new_axis_mask: i64,
                    #[serde(default)]
                    shrink_axis_mask: i64,
                } => strided_slice,
                /// The gradient of StridedSlice: inputs (x, its shape only, dy);
                /// zeros of x's shape with dy added where the slice read.
                StridedSliceGrad {
                    begin: Vec<i64>,
                    end: Vec<i64>,
                    #[serde(default)]
                    strides: Vec<i64>,
                    #[serde(default)]
                    begin_mask: i64,
                    #[serde(default)]
                    end_mask: i64,
                    #[serde(default)]
                    ellipsis_mask: i64,
                    #[serde(default)]
                    new_axis_mask: i64,
                    #[serde(default)]
                    shrink_axis_mask: i64,
                } => strided_slice_grad,
                /// A (before, after) pair per axis of border (TensorFlow's `tf.pad`):
                /// `constant_values`, or the values mirrored (REFLECT, SYMMETRIC).
                Pad {
                    paddings: Vec<Vec<i64>>,
                    #[serde(default)]
                    mode: PadMode,
                    #[serde(default)]
                    constant_values: f64,
                } => pad,
                /// The gradient of Pad: input dy; the sums of dy over the
                /// positions that read each value (TensorFlow's `MirrorPadGrad`).
                PadGrad {
                    paddings: Vec<Vec<i64>>,
                    #[serde(default)]
                    mode: PadMode,
                } => pad_grad,
                /// Inputs joined along `axis`, negative from the end (TensorFlow's `tf.concat`).
                Concat {
                    axis: i64,
                } => concat,
                /// The largest element over `axes` (all when absent), NaN if any
                /// is (TensorFlow's `tf.reduce_max`); the gradient shared among ties.
                Max {
                    #[serde(default)]
                    axes: Option<Vec<i64>>,
                    #[serde(default)]
                    keep_dims: bool,
                } => max,
                /// The smallest element over `axes`, as Max (TensorFlow's `tf.reduce_min`).
                Min {
                    #[serde(default)]
                    axes: Option<Vec<i64>>,
                    #[serde(default)]
                    keep_dims: bool,
                } => min,
                /// Running sums along `axis` (TensorFlow's `tf.cumsum`), of the
                /// values before each one only with `exclusive`, from the end with `reverse`.
                Cumsum {
                    axis: i64,
                    #[serde(default)]
                    exclusive: bool,
                    #[serde(default)]
                    reverse: bool,
                } => cumsum,
                /// Running products along `axis`, `exclusive` and `reverse` as
                /// Cumsum's (TensorFlow's `tf.math.cumprod`).
                Cumprod {
                    axis: i64,
                    #[serde(default)]
                    exclusive: bool,
                    #[serde(default)]
                    reverse: bool,
                } => cumprod,
                /// The product over `axes` (all when absent), TensorFlow's `tf.reduce_prod`.
                Prod {
                    #[serde(default)]
                    axes: Option<Vec<i64>>,
                    #[serde(default)]
                    keep_dims: bool,
                } => prod,
                /// Inputs (t, clip_value_min, clip_value_max), the bounds broadcast
                /// to t: min(max(t, lo), hi) (TensorFlow's `tf.clip_by_value`).
                ClipByValue => clip_by_value,
                /// The index of the largest element along `axis`, the first on
                /// ties (TensorFlow's `tf.math.argmax`), as `output_type` (I64 or I32).
                ArgMax {
                    axis: i64,
                    #[serde(default = "i64_dtype")]
                    output_type: DType,
                } => arg_max,
                /// The index of the smallest element along `axis`, as ArgMax.
                ArgMin {
                    axis: i64,
                    #[serde(default = "i64_dtype")]
                    output_type: DType,
                } => arg_min,
                /// The values converted to `to` (TensorFlow's `tf.cast`): floats
                /// to integers truncate toward zero, anything to Bool is `!= 0`.
                Cast {
                    to: DType,
                } => cast,
                /// Bool a == b, broadcast (TensorFlow's `tf.equal`).
                Equal => equal,
                /// Bool a != b, broadcast.
                NotEqual => not_equal,
                /// Bool a < b, broadcast (numbers only).
                Less => less,
                /// Bool a <= b, broadcast.
                LessEqual => less_equal,
                /// Bool a > b, broadcast.
                Greater => greater,
                /// Bool a >= b, broadcast.
                GreaterEqual => greater_equal,
                /// The slices of params along `axis` at indices (TensorFlow's
                /// `tf.gather`, batch_dims 0): inputs (params, indices of I32 or I64).
                Gather {
                    #[serde(default)]
                    axis: i64,
                } => gather,
                /// Inputs (data, segment_ids): the sums of data's slices by id
                /// into `num_segments` segments (`tf.math.unsorted_segment_sum`).
                UnsortedSegmentSum {
                    num_segments: i64,
                } => unsorted_segment_sum,
                /// A new axis of `depth` at `axis` (-1: last), `on_value` at each
                /// index and `off_value` elsewhere, as `dtype` (`tf.one_hot`).
                OneHot {
                    depth: i64,
                    #[serde(default = "one")]
                    on_value: f64,
                    #[serde(default)]
                    off_value: f64,
                    #[serde(default = "minus_one")]
                    axis: i64,
                    #[serde(default = "f32_dtype")]
                    dtype: DType,
                } => one_hot,
                /// Inputs (logits [..., classes], labels [...] of class indices):
                /// per example logsumexp(logits) − logits[label]
                /// (`tf.nn.sparse_softmax_cross_entropy_with_logits`).
                SparseSoftmaxCrossEntropyWithLogits => sparse_softmax_cross_entropy_with_logits,
                /// Inputs (like, seed): uniform values in [0, 1) of like's shape and
                /// float dtype, from the integer scalar seed alone (TensorFlow's
                /// `tf.random.stateless_uniform`; gradc's ChaCha8 stream).
                StatelessRandomUniform => stateless_random_uniform,
                /// Bool: where x is NaN (`tf.math.is_nan`).
                IsNan => is_nan,
                /// Bool: where x is neither infinite nor NaN (`tf.math.is_finite`).
                IsFinite => is_finite,
                /// Whether any element over `axes` (all when absent) is true (`tf.reduce_any`).
                Any {
                    #[serde(default)]
                    axes: Option<Vec<i64>>,
                    #[serde(default)]
                    keep_dims: bool,
                } => any,
                /// Whether every element over `axes` is true (`tf.reduce_all`).
                All {
                    #[serde(default)]
                    axes: Option<Vec<i64>>,
                    #[serde(default)]
                    keep_dims: bool,
                } => all,
                /// The input's dimensions, an I32 vector (`tf.shape`).
                Shape => shape_of,
                /// The input's element count, an I32 scalar (`tf.size`).
                Size => size,
                /// start, start + delta, … below limit, as `dtype` (`tf.range`).
                Range {
                    #[serde(default)]
                    start: f64,
                    limit: f64,
                    #[serde(default = "one")]
                    delta: f64,
                    #[serde(default = "i32_dtype")]
                    dtype: DType,
                } => range,
                /// a && b of Bool tensors, broadcast.
                LogicalAnd => logical_and,
                /// a || b of Bool tensors, broadcast.
                LogicalOr => logical_or,
                /// !a of a Bool tensor.
                LogicalNot => logical_not,
                /// The input cut along `axis` into `num_split` equal parts, one
                /// output each (TensorFlow's `tf.split` with a number).
                Split {
                    #[serde(default)]
                    axis: i64,
                    num_split: i64,
                } => split,
                /// The input cut along `axis` into parts of `size_splits` (one
                /// may be -1: the rest), one output each (`tf.split` with sizes).
                SplitV {
                    size_splits: Vec<i64>,
                    #[serde(default)]
                    axis: i64,
                } => split_v,
                /// One output per index along `axis`, each without that axis
                /// (TensorFlow's `tf.unstack`).
                Unstack {
                    #[serde(default)]
                    axis: i64,
                } => unstack,
                /// Inputs of one shape joined along a new `axis` (TensorFlow's `tf.stack`).
                Stack {
                    axis: i64,
                } => stack,
                /// The values along each of `axes` in reverse order (TensorFlow's `tf.reverse`).
                Reverse {
                    axes: Vec<i64>,
                } => reverse,
                /// The input repeated `multiples[i]` times along each axis (TensorFlow's `tf.tile`).
                Tile {
                    multiples: Vec<i64>,
                } => tile,
                /// The gradient of Tile: inputs (x, its shape only, dy); each
                /// value the sum of its copies' gradients.
                TileGrad {
                    multiples: Vec<i64>,
                } => tile_grad,
                /// The largest element of each window (TensorFlow's `tf.nn.max_pool2d`):
                /// `ksize` and `strides` have 4 entries in the data format's order, 1 on
                /// the batch and channels; SAME padding is never the maximum.
                MaxPool {
                    ksize: Vec<i64>,
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    data_format: DataFormat,
                } => max_pool,
                /// The gradient of MaxPool: inputs (orig_input, orig_output, grad); each
                /// window's gradient goes to its first maximum in scan order.
                MaxPoolGrad {
                    ksize: Vec<i64>,
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    data_format: DataFormat,
                } => max_pool_grad,
                /// The gradient of MaxPoolGrad's grad: inputs (orig_input, orig_output,
                /// grad of the input's shape); each output takes grad at its window's first maximum.
                MaxPoolGradGrad {
                    ksize: Vec<i64>,
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    data_format: DataFormat,
                } => max_pool_grad_grad,
                /// The mean of each window (TensorFlow's `tf.nn.avg_pool2d`); with SAME,
                /// over the window's elements inside the input only.
                AvgPool {
                    ksize: Vec<i64>,
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    data_format: DataFormat,
                } => avg_pool,
                /// The gradient of AvgPool: inputs (orig_input, its shape only, and grad);
                /// each window's gradient spread evenly over its elements inside the input.
                AvgPoolGrad {
                    ksize: Vec<i64>,
                    strides: Vec<i64>,
                    padding: Padding,
                    #[serde(default)]
                    data_format: DataFormat,
                } => avg_pool_grad,
            }
        }
    };
}

/// `Op::L2Loss { .. } | …`: every op of a module, as a pattern.
#[macro_export]
macro_rules! module_ops {
    () => {
        $crate::module_ops_table!(($crate::__module_pattern) {})
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __module_pattern {
    ({} modules { $( $(#[$m:meta])* $name:ident $({ $($f:tt)* })? => $module:ident, )* }) => {
        $( $crate::Op::$name { .. } )|*
    };
}

module_ops_table!((with_modules) {
    /// A value fed at run time.
    Placeholder {
        shape: Shape,
    },
    /// State kept by the session across runs. Reading it gives its value at the
    /// start of the run; `Assign`s change it for later runs.
    Variable {
        shape: Shape,
        /// Boxed: the largest attribute of any op, and only variables carry it.
        initializer: Box<Initializer>,
        #[serde(default = "yes")]
        trainable: bool,
    },
    /// Inputs (variable, value): sets the variable; outputs the new value.
    Assign,
    /// Inputs (variable, delta): adds to the variable's current value; outputs the new value.
    AssignAdd,
    /// Inputs (variable, delta): subtracts from the variable's current value; outputs the new value.
    AssignSub,
    /// Inputs (variable, alpha, delta), alpha a scalar: `var -= alpha * delta`
    /// in one pass (TensorFlow's `ApplyGradientDescent`); outputs the new value.
    ApplyGradientDescent,
    /// Inputs (variable, accum, lr, grad, momentum), lr and momentum scalars,
    /// accum a variable of var's shape: `accum = accum * momentum + grad`, then
    /// `var -= lr * accum`, or with `use_nesterov`
    /// `var -= lr * (grad + momentum * accum)` (TensorFlow's `ApplyMomentum`),
    /// in one pass; outputs var's new value.
    ApplyMomentum {
        #[serde(default)]
        use_nesterov: bool,
    },
    /// Does nothing; groups other nodes through control inputs (`tf.group`).
    NoOp,
    /// A literal: `Const(2.0)` or `Const([[1.0, 2.0], [3.0, 4.0]])`.
    Const(Literal),
    Identity,
    /// Identity forward; blocks gradients.
    StopGradient,
    MatMul {
        #[serde(default)]
        transpose_a: bool,
        #[serde(default)]
        transpose_b: bool,
    },
    /// x + b with b of rank 1 added along the channel axis: the last
    /// (`NHWC`, the default), or axis 1 of a tensor of rank 3 or more (`NCHW`).
    BiasAdd {
        #[serde(default)]
        data_format: DataFormat,
    },
    /// Connected elementwise ops fused into one pass over the output: the
    /// program computes each output element from the inputs' elements (each
    /// input broadcast to the output). Made by the optimizer's elementwise fusion.
    Fused {
        program: Vec<FusedStep>,
    },
    /// Fused `activation(MatMul(a, w) + bias)`: one pass over the output after
    /// the product. Made by the optimizer's fusion pass from MatMul, BiasAdd
    /// and an activation; computes exactly what they compute.
    Dense {
        #[serde(default)]
        transpose_a: bool,
        #[serde(default)]
        transpose_b: bool,
        #[serde(default)]
        activation: Activation,
    },
    /// Dense's backward epilogue in one pass: inputs dy and y (the output of
    /// `activation`); outputs dz = activation'(y)·dy, as the activation's
    /// gradient rule computes it (Relu: dy where y > 0; Sigmoid:
    /// dy·(y·(1 − y)); Tanh: dy·(1 − y·y); Linear: dy), and db, the sum of dz
    /// over every axis but the last, row after row (BiasAdd's gradient).
    /// Made by the optimizer's fusion pass; computes exactly what those ops
    /// compute.
    ActivationBiasGrad {
        #[serde(default)]
        activation: Activation,
    },
    Sum {
        #[serde(default)]
        axes: Option<Vec<i64>>,
        #[serde(default)]
        keep_dims: bool,
    },
    Mean {
        #[serde(default)]
        axes: Option<Vec<i64>>,
        #[serde(default)]
        keep_dims: bool,
    },
    /// New shape; one entry may be -1.
    Reshape {
        shape: Vec<i64>,
    },
    /// Reshape input 0 to the shape of input 1.
    ReshapeLike,
    /// Permutation of the axes; reverses them when absent (TensorFlow's default).
    Transpose {
        #[serde(default)]
        perm: Option<Vec<usize>>,
    },
    /// Inserts axes of size 1 at the given positions of the result.
    ExpandDims {
        axes: Vec<i64>,
    },
    /// Removes the listed axes, each of which must have size 1 (unlike
    /// TensorFlow, an empty list removes nothing: the axes are always explicit).
    Squeeze {
        axes: Vec<i64>,
    },
    /// Mean and population variance over `axes` (TensorFlow's `tf.nn.moments`):
    /// two outputs, each shaped like `Mean`'s.
    Moments {
        axes: Vec<i64>,
        #[serde(default)]
        keep_dims: bool,
    },
    /// TensorFlow's `tf.nn.batch_normalization`: inputs x, mean, variance, then
    /// offset if `offset`, then scale if `scale` (each broadcast against x);
    /// `inv = rsqrt(variance + variance_epsilon) * scale`, `y = x * inv + (offset - mean * inv)`.
    BatchNormalization {
        variance_epsilon: f64,
        #[serde(default = "yes")]
        offset: bool,
        #[serde(default = "yes")]
        scale: bool,
    },
    /// TensorFlow's `FusedBatchNorm`: inputs x (rank 2 or 4), scale, offset,
    /// mean, variance (each [C]). Outputs y, batch_mean, batch_variance,
    /// saved_mean, saved_variance. In training form the statistics are the
    /// batch's: y is normalized with the population variance (saved_variance),
    /// and batch_variance, meant for the moving average, is Bessel-corrected
    /// (n / (n - 1)), as TensorFlow's fused kernel does. In inference form the
    /// mean and variance inputs are used and passed through.
    FusedBatchNorm {
        #[serde(default = "bn_epsilon")]
        epsilon: f64,
        #[serde(default)]
        data_format: DataFormat,
        #[serde(default = "yes")]
        is_training: bool,
    },
    /// Gradient of FusedBatchNorm: inputs dy, x, scale, saved_mean,
    /// saved_variance; outputs dx, dscale, doffset.
    FusedBatchNormGrad {
        #[serde(default = "bn_epsilon")]
        epsilon: f64,
        #[serde(default)]
        data_format: DataFormat,
        #[serde(default = "yes")]
        is_training: bool,
    },
    /// Inputs (cond, a, b), broadcast: a where cond (a Bool, or nonzero of
    /// a's dtype), else b. Also read as `SelectV2`, TensorFlow's name for
    /// the broadcasting form.
    #[serde(alias = "SelectV2")]
    Select,
    /// n inputs, n outputs, each output its input (TensorFlow's `IdentityN`):
    /// the outputs of an inlined function call.
    IdentityN,
    /// The outputs of a call of `function`, which has a custom gradient.
    /// Inputs: the call's `inputs` arguments, then the body's outputs; outputs:
    /// the body's outputs. Autodiff uses the function's gradient graph here
    /// instead of differentiating the body.
    CustomGradient {
        function: String,
        inputs: usize,
    },
    /// Identity on a gradient computed by a `once_differentiable` function's
    /// gradient graph: differentiating it again is an error naming `function`.
    OnceDifferentiable {
        function: String,
    },
    /// Softmax over the last axis.
    Softmax,
    /// log(softmax(x)) over the last axis, computed stably (`x - logsumexp(x)`).
    LogSoftmax,
    /// Inputs (logits, labels) of shape [..., classes]; per-example loss of shape [...].
    SoftmaxCrossEntropyWithLogits,
    AddN,
    ZerosLike,
    OnesLike,
    /// A tensor of the given shape filled with the scalar input.
    Fill {
        shape: Vec<usize>,
    },
    /// Sums input 0 down to the shape of input 1 (the reverse of broadcasting).
    SumToLike,
    /// Broadcasts input 0 to the shape of input 1.
    BroadcastLike,
    /// The number of elements over `axes` of the input (all when absent), as a scalar.
    ReducedSize {
        #[serde(default)]
        axes: Option<Vec<i64>>,
    },
});

fn yes() -> bool {
    true
}

fn i64_dtype() -> DType {
    DType::I64
}

fn i32_dtype() -> DType {
    DType::I32
}

fn f32_dtype() -> DType {
    DType::F32
}

fn minus_one() -> i64 {
    -1
}

fn bn_epsilon() -> f64 {
    0.001
}

/// How a convolution pads its input (TensorFlow's `padding`): not at all
/// (`VALID`), so the output has the input's size over the stride (`SAME`),
/// or by `explicit_paddings` (`EXPLICIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Padding {
    VALID,
    SAME,
    EXPLICIT,
}

fn ones4() -> Vec<i64> {
    vec![1; 4]
}

/// Where the channels are: last (`NHWC`, TensorFlow's default) or second (`NCHW`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataFormat {
    #[default]
    NHWC,
    NCHW,
}

impl DataFormat {
    /// The channel axis of a tensor of `rank` (rank 2 has its channels last either way).
    pub fn channel_axis(self, rank: usize) -> usize {
        match self {
            DataFormat::NCHW if rank > 2 => 1,
            _ => rank.saturating_sub(1),
        }
    }
}

/// How a variable gets its first value. Random initializers draw from a
/// ChaCha8 stream seeded by the run's seed and the variable (see `init`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f64),
    /// Normal(mean, stddev): the book's `0.01 * np.random.randn`.
    RandomNormal {
        #[serde(default)]
        mean: f64,
        #[serde(default = "one")]
        stddev: f64,
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Normal(mean, stddev) redrawn until within two stddevs of the mean (TensorFlow's).
    TruncatedNormal {
        #[serde(default)]
        mean: f64,
        #[serde(default = "one")]
        stddev: f64,
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Uniform(-l, l) with l = sqrt(6 / (fan_in + fan_out)) (Keras' and TensorFlow's).
    GlorotUniform {
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) / 0.8796
    /// (TensorFlow's `glorot_normal_initializer`, a variance-scaling one).
    GlorotNormal {
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Truncated normal with stddev sqrt(2 / fan_in) / 0.8796 (`he_normal`).
    HeNormal {
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Uniform(-l, l) with l = sqrt(6 / fan_in) (`he_uniform`).
    HeUniform {
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Truncated normal with stddev sqrt(1 / fan_in) / 0.8796 (`lecun_normal`).
    LecunNormal {
        #[serde(default)]
        seed: Option<u64>,
    },
    /// Uniform(-l, l) with l = sqrt(3 / fan_in) (`lecun_uniform`).
    LecunUniform {
        #[serde(default)]
        seed: Option<u64>,
    },
    /// `gain` times a matrix with orthonormal columns (or rows, if fewer) of
    /// [product of the leading axes, last axis], from the QR factors of a
    /// normal one with R's diagonal made positive (TensorFlow's `Orthogonal`).
    Orthogonal {
        #[serde(default = "one")]
        gain: f64,
        #[serde(default)]
        seed: Option<u64>,
    },
    /// The given values, a nested list of the variable's shape:
    /// `Value([[1.0, 2.0], [3.0, 4.0]])`.
    Value(Literal),
    /// The values of a `.npy` file (a path relative to the graph file), of
    /// the variable's shape, converted to its dtype as `Cast` converts:
    /// `Npy("embeddings.npy")`.
    Npy(String),
    /// The tensor named as the variable in a safetensors file (a path
    /// relative to the graph file), of the variable's shape, converted to
    /// its dtype as `Cast` converts: `Safetensors("model.safetensors")`.
    /// `gradc import` writes an ONNX model's initializers so, and a
    /// checkpoint `gradc train` wrote is such a file too.
    Safetensors(String),
    /// Random integers in [0, 2^53) drawn from the run's seed and the
    /// variable: the seed of a `Dropout` layer's masks, which its update
    /// advances by one each step.
    Seed,
}

fn one() -> f64 {
    1.0
}

impl Initializer {
    pub fn text(&self) -> String {
        let seed = |s: &Option<u64>| s.map(|s| format!(", seed: {s}")).unwrap_or_default();
        match self {
            Initializer::Zeros => "Zeros".into(),
            Initializer::Seed => "Seed".into(),
            Initializer::Npy(path) => format!("Npy({path:?})"),
            Initializer::Safetensors(path) => format!("Safetensors({path:?})"),
            Initializer::Ones => "Ones".into(),
            Initializer::Constant(v) => format!("Constant({})", fmt_f64(*v)),
            Initializer::RandomNormal {
                mean,
                stddev,
                seed: s,
            } => {
                format!(
                    "RandomNormal(mean: {}, stddev: {}{})",
                    fmt_f64(*mean),
                    fmt_f64(*stddev),
                    seed(s)
                )
            }
            Initializer::TruncatedNormal {
                mean,
                stddev,
                seed: s,
            } => {
                format!(
                    "TruncatedNormal(mean: {}, stddev: {}{})",
                    fmt_f64(*mean),
                    fmt_f64(*stddev),
                    seed(s)
                )
            }
            Initializer::GlorotUniform { seed: s }
            | Initializer::GlorotNormal { seed: s }
            | Initializer::HeNormal { seed: s }
            | Initializer::HeUniform { seed: s }
            | Initializer::LecunNormal { seed: s }
            | Initializer::LecunUniform { seed: s } => {
                // The variant's name: what `Debug` writes before its fields.
                let debug = format!("{self:?}");
                let name = debug.split(' ').next().unwrap_or_default();
                format!("{name}({})", seed(s).trim_start_matches(", "))
            }
            Initializer::Orthogonal { gain, seed: s } => {
                format!("Orthogonal(gain: {}{})", fmt_f64(*gain), seed(s))
            }
            Initializer::Value(literal) => match literal.to_flat() {
                Ok((shape, values)) if values.len() <= 8 => {
                    let v: Vec<String> = values.iter().map(|v| fmt_f64(*v)).collect();
                    format!("Value(shape: {shape:?}, [{}])", v.join(", "))
                }
                Ok((shape, values)) => format!("Value(shape: {shape:?}, {} values)", values.len()),
                Err(e) => format!("Value({e})"),
            },
        }
    }
}

/// Limits of a `Fused` program (the kernel keeps its inputs and registers on the stack).
pub const FUSED_MAX_INPUTS: usize = 8;
pub const FUSED_MAX_STEPS: usize = 32;

/// Checks a `Fused` program against its number of inputs.
pub fn check_fused(program: &[FusedStep], inputs: usize) -> Result<(), ShapeError> {
    if program.is_empty() || program.len() > FUSED_MAX_STEPS || inputs > FUSED_MAX_INPUTS {
        return Err(ShapeError(format!(
            "a Fused program has 1 to {FUSED_MAX_STEPS} steps and at most {FUSED_MAX_INPUTS} inputs, got {} and {inputs}",
            program.len()
        )));
    }
    for (k, step) in program.iter().enumerate() {
        let ok = match *step {
            FusedStep::Input(i) => i < inputs,
            FusedStep::Const(_) => true,
            FusedStep::Unary(_, a) => a < k,
            FusedStep::Binary(_, a, b) => a < k && b < k,
        };
        if !ok {
            return Err(ShapeError(format!(
                "step {k} of a Fused program reads a later register or a missing input"
            )));
        }
    }
    Ok(())
}

/// How many inputs an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arity::Exactly(n) => write!(f, "{n}"),
            Arity::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

/// The dtypes one input of an op may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    /// F32 or F64.
    Float,
    /// I32 or I64.
    Int,
    Bool,
    /// A float or an integer.
    Numeric,
    Any,
    /// The dtype of input `k`.
    Same(usize),
    /// Bool, or the dtype of input `k` (a condition as a mask of zeros and ones).
    BoolOr(usize),
}

impl In {
    /// Whether an input of `dtype` fits, given the inputs' dtypes.
    fn admits(self, dtype: DType, ins: &[&TensorType]) -> bool {
        let of = |k: usize| ins.get(k).map(|t| t.dtype);
        match self {
            In::Float => dtype.is_float(),
            In::Int => dtype.is_int(),
            In::Bool => dtype == DType::Bool,
            In::Numeric => dtype != DType::Bool,
            In::Any => true,
            In::Same(k) => of(k) == Some(dtype),
            In::BoolOr(k) => dtype == DType::Bool || of(k) == Some(dtype),
        }
    }
}

impl fmt::Display for In {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            In::Float => f.write_str("a float (f32 or f64)"),
            In::Int => f.write_str("an integer (i32 or i64)"),
            In::Bool => f.write_str("a bool"),
            In::Numeric => f.write_str("a number (float or integer)"),
            In::Any => f.write_str("any"),
            In::Same(k) => write!(f, "input {k}'s"),
            In::BoolOr(k) => write!(f, "a bool or input {k}'s"),
        }
    }
}

/// An op's dtype rule: which dtypes its inputs may have. Its shape rule
/// then gives the output dtypes (most often the inputs').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takes {
    /// Every input of one dtype, which the first input's must fit.
    Uniform(In),
    /// Input k's dtype must fit entry k (for ops of a fixed arity).
    Each(&'static [In]),
}

impl Op {
    pub fn arity(&self) -> Arity {
        use Op::*;
        match self {
            Placeholder { .. } | Const(_) | Variable { .. } | NoOp => Arity::Exactly(0),
            Assign | AssignAdd | AssignSub => Arity::Exactly(2),
            ApplyGradientDescent => Arity::Exactly(3),
            ApplyMomentum { .. } => Arity::Exactly(5),
            Select => Arity::Exactly(3),
            binary_ops!()
            | MatMul { .. }
            | BiasAdd { .. }
            | ReshapeLike
            | SoftmaxCrossEntropyWithLogits
            | SumToLike
            | BroadcastLike
            | ActivationBiasGrad { .. } => Arity::Exactly(2),
            AddN | IdentityN | Fused { .. } => Arity::AtLeast(1),
            Dense { .. } => Arity::Exactly(3),
            CustomGradient { inputs, .. } => Arity::AtLeast(inputs + 1),
            FusedBatchNorm { .. } | FusedBatchNormGrad { .. } => Arity::Exactly(5),
            BatchNormalization { offset, scale, .. } => {
                Arity::Exactly(3 + usize::from(*offset) + usize::from(*scale))
            }
            unary_ops!()
            | Identity
            | StopGradient
            | Sum { .. }
            | Mean { .. }
            | Reshape { .. }
            | Transpose { .. }
            | ExpandDims { .. }
            | Squeeze { .. }
            | Moments { .. }
            | OnceDifferentiable { .. }
            | Softmax
            | LogSoftmax
            | ZerosLike
            | OnesLike
            | Fill { .. }
            | ReducedSize { .. } => Arity::Exactly(1),
            module_ops!() => self.module_arity(),
        }
    }

    /// The dtype rule: which dtypes the inputs may have (see `Takes`).
    pub fn takes(&self) -> Takes {
        use Op::*;
        let numeric_if = |int: bool| Takes::Uniform(if int { In::Numeric } else { In::Float });
        match self {
            unary_ops!() => numeric_if(UnaryFn::of(self).is_some_and(|f| f.int().is_some())),
            binary_ops!() => numeric_if(BinaryFn::of(self).is_some_and(|f| f.int().is_some())),
            Placeholder { .. }
            | Variable { .. }
            | Const(_)
            | NoOp
            | Assign
            | Identity
            | StopGradient
            | Reshape { .. }
            | Transpose { .. }
            | ExpandDims { .. }
            | Squeeze { .. }
            | IdentityN
            | CustomGradient { .. }
            | OnceDifferentiable { .. }
            | ZerosLike
            | OnesLike
            | Fill { .. } => Takes::Uniform(In::Any),
            // The second input gives its shape only.
            ReshapeLike | BroadcastLike => Takes::Each(&[In::Any, In::Any]),
            Select => Takes::Each(&[In::BoolOr(1), In::Any, In::Same(1)]),
            module_ops!() => self.module_takes(),
            AssignAdd | AssignSub => Takes::Uniform(In::Numeric),
            ApplyGradientDescent
            | ApplyMomentum { .. }
            | MatMul { .. }
            | BiasAdd { .. }
            | Fused { .. }
            | Dense { .. }
            | ActivationBiasGrad { .. }
            | Sum { .. }
            | Mean { .. }
            | Moments { .. }
            | BatchNormalization { .. }
            | FusedBatchNorm { .. }
            | FusedBatchNormGrad { .. }
            | Softmax
            | LogSoftmax
            | SoftmaxCrossEntropyWithLogits
            | AddN
            | SumToLike
            | ReducedSize { .. } => Takes::Uniform(In::Float),
        }
    }

    /// Ok if the op takes `n` inputs; the error says how many it takes.
    pub fn check_arity(&self, n: usize) -> Result<(), OpError> {
        let fits = match self.arity() {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        };
        if fits {
            return Ok(());
        }
        Err(OpError::Arity {
            op: self.name(),
            expected: self.arity(),
            got: n,
        })
    }

    /// Whether it exchanges values with the other processes of a run: never
    /// evaluated at compile time or merged with another (every rank makes
    /// the same exchanges, since every rank runs the same program).
    pub fn is_collective(&self) -> bool {
        matches!(self, Op::AllReduceMean { .. })
    }

    /// Ops that change session state; never removed or merged by passes.
    /// Their first input is the variable they update (see `updated_inputs`).
    pub fn is_stateful(&self) -> bool {
        matches!(
            self,
            Op::Assign
                | Op::AssignAdd
                | Op::AssignSub
                | Op::ApplyGradientDescent
                | Op::ApplyMomentum { .. }
        )
    }

    /// How many leading inputs of a stateful op are variables it updates
    /// (ApplyMomentum: var and accum); 0 for other ops.
    pub fn updated_inputs(&self) -> usize {
        match self {
            Op::ApplyMomentum { .. } => 2,
            op if op.is_stateful() => 1,
            _ => 0,
        }
    }

    /// Elementwise ops: output element i depends only on input elements i (after broadcasting).
    pub fn is_elementwise(&self) -> bool {
        use Op::*;
        matches!(
            self,
            unary_ops!() | binary_ops!() | Identity | StopGradient | AddN | Fused { .. }
        )
    }

    /// Attributes in the canonical text form, e.g. `{axes: [1], keep_dims: true}`; empty when none.
    pub fn attrs_text(&self) -> String {
        use Op::*;
        let axes = |a: &Option<Vec<i64>>| match a {
            Some(a) => format!("{a:?}"),
            None => "all".to_string(),
        };
        match self {
            Placeholder { shape } => format!("{{shape: {shape}}}"),
            Variable {
                shape,
                initializer,
                trainable,
            } => format!(
                "{{shape: {shape}, initializer: {}{}}}",
                initializer.text(),
                if *trainable { "" } else { ", trainable: false" }
            ),
            Const(lit) => match lit.to_flat() {
                Ok((s, d)) if s.is_empty() => format!("{{{}}}", fmt_f64(d[0])),
                Ok((s, d)) if d.len() <= 8 => {
                    let vals: Vec<String> = d.iter().map(|v| fmt_f64(*v)).collect();
                    format!("{{shape: {s:?}, values: [{}]}}", vals.join(", "))
                }
                Ok((s, d)) => format!("{{shape: {s:?}, {} values}}", d.len()),
                Err(e) => format!("{{invalid: {e}}}"),
            },
            unary_ops!() => match UnaryFn::of(self).and_then(UnaryFn::attr) {
                Some((name, v)) => format!("{{{name}: {}}}", fmt_f64(v)),
                None => String::new(),
            },
            MatMul {
                transpose_a,
                transpose_b,
            } => match (transpose_a, transpose_b) {
                (false, false) => String::new(),
                _ => format!("{{transpose_a: {transpose_a}, transpose_b: {transpose_b}}}"),
            },
            Sum { axes: a, keep_dims } | Mean { axes: a, keep_dims } => {
                format!("{{axes: {}, keep_dims: {keep_dims}}}", axes(a))
            }
            ReducedSize { axes: a } => format!("{{axes: {}}}", axes(a)),
            Reshape { shape } => format!("{{shape: {shape:?}}}"),
            Transpose { perm: Some(p) } => format!("{{perm: {p:?}}}"),
            ExpandDims { axes } | Squeeze { axes } => format!("{{axes: {axes:?}}}"),
            Fused { program } => {
                let steps: Vec<String> = program
                    .iter()
                    .enumerate()
                    .map(|(k, step)| match step {
                        FusedStep::Input(i) => format!("r{k} = x{i}"),
                        FusedStep::Const(v) => format!("r{k} = {}", fmt_f64(*v)),
                        FusedStep::Unary(f, a) => format!("r{k} = {}(r{a})", f.name()),
                        FusedStep::Binary(f, a, b) => format!("r{k} = {}(r{a}, r{b})", f.name()),
                    })
                    .collect();
                format!("{{{}}}", steps.join("; "))
            }
            Dense { transpose_a, transpose_b, activation } => format!(
                "{{transpose_a: {transpose_a}, transpose_b: {transpose_b}, activation: {activation:?}}}"
            ),
            ActivationBiasGrad { activation } => format!("{{activation: {activation:?}}}"),
            BiasAdd { data_format } => format!("{{data_format: {data_format:?}}}"),
            CustomGradient { function, inputs } => {
                format!("{{function: {function:?}, inputs: {inputs}}}")
            }
            OnceDifferentiable { function } => format!("{{function: {function:?}}}"),
            FusedBatchNorm {
                epsilon,
                data_format,
                is_training,
            }
            | FusedBatchNormGrad {
                epsilon,
                data_format,
                is_training,
            } => format!(
                "{{epsilon: {}, data_format: {data_format:?}, is_training: {is_training}}}",
                fmt_f64(*epsilon)
            ),
            Moments { axes, keep_dims } => format!("{{axes: {axes:?}, keep_dims: {keep_dims}}}"),
            BatchNormalization {
                variance_epsilon,
                offset,
                scale,
            } => format!(
                "{{variance_epsilon: {}, offset: {offset}, scale: {scale}}}",
                fmt_f64(*variance_epsilon)
            ),
            Fill { shape } => format!("{{shape: {shape:?}}}"),
            module_ops!() => self.module_attrs_text(),
            _ => String::new(),
        }
    }

    /// The shape rule. `dtype` is the node's declared type, used by source ops.
    /// (Ops of their own module: their module's `infer`.)
    /// Works on symbolic shapes at compile time and on concrete ones at run time.
    pub fn infer(&self, dtype: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, OpError> {
        self.check_arity(ins.len())?;
        let rule = |k: usize| match self.takes() {
            Takes::Uniform(first) if k == 0 => first,
            Takes::Uniform(_) => In::Same(0),
            Takes::Each(each) => each.get(k).copied().unwrap_or(In::Same(0)),
        };
        for (k, t) in ins.iter().enumerate() {
            match rule(k) {
                In::Same(j) if !In::Same(j).admits(t.dtype, ins) => {
                    return Err(OpError::DType(ins[j].dtype, t.dtype));
                }
                want if !want.admits(t.dtype, ins) => {
                    return Err(OpError::Takes {
                        op: self.name(),
                        input: k,
                        want,
                        got: t.dtype,
                    });
                }
                _ => {}
            }
        }
        // The inputs' dtype (the first's), or the declared one for sources.
        let dt = ins.first().map_or(dtype, |t| t.dtype);
        self.shape_rule(dt, ins)
            .map_err(|e| OpError::Shape(ShapeError(e)))
    }

    /// `infer` once the arity and dtypes are checked: `dt` is the inputs' dtype.
    fn shape_rule(&self, dt: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        use crate::shape::Shape;
        use Op::*;
        let one = |shape: Shape| Ok(vec![TensorType { dtype: dt, shape }]);
        let s = |i: usize| &ins[i].shape;
        match self {
            Placeholder { shape } => one(shape.clone()),
            Variable {
                shape, initializer, ..
            } => {
                let Some(dims) = shape.concrete() else {
                    return Err(format!(
                        "a variable's shape must be fully known, got {shape}"
                    ));
                };
                if let Initializer::Value(literal) = &**initializer {
                    let (got, _) = literal
                        .to_flat()
                        .map_err(|e| format!("the initial value: {}", e.0))?;
                    if got != dims {
                        return Err(format!(
                            "the initial value has shape {got:?}, the variable {shape}"
                        ));
                    }
                }
                one(shape.clone())
            }
            NoOp => Ok(Vec::new()),
            Assign | AssignAdd | AssignSub => {
                let shape = same_shape(s(0), s(1)).map_err(|_| {
                    format!(
                        "cannot assign a value of shape {} to a variable of shape {}",
                        s(1),
                        s(0)
                    )
                })?;
                one(shape)
            }
            ApplyGradientDescent | ApplyMomentum { .. } => {
                // (var, alpha, delta) or (var, accum, lr, grad, momentum).
                let (tensors, scalars): (&[usize], &[usize]) = match self {
                    ApplyGradientDescent => (&[0, 2], &[1]),
                    _ => (&[0, 1, 3], &[2, 4]),
                };
                for &k in &tensors[1..] {
                    if same_shape(s(0), s(k)).is_err() {
                        return Err(format!(
                            "input {k} has shape {}, the variable {}",
                            s(k),
                            s(0)
                        ));
                    }
                }
                if let Some(&k) = scalars.iter().find(|&&k| s(k).rank() != 0) {
                    return Err(format!("input {k} must be a scalar, got shape {}", s(k)));
                }
                one(s(0).clone())
            }
            Const(lit) => one(Shape::known(&lit.to_flat()?.0)),
            unary_ops!() | Identity | StopGradient | ZerosLike | OnesLike => one(s(0).clone()),
            Softmax | LogSoftmax => {
                if s(0).rank() == 0 {
                    return Err(format!("{} needs rank >= 1, got a scalar", self.name()));
                }
                one(s(0).clone())
            }
            binary_ops!() => match BinaryFn::of(self) {
                Some(f) if !f.broadcasts() => one(same_shape(s(0), s(1))?),
                _ => one(broadcast(s(0), s(1))?),
            },
            AddN => {
                let mut out = s(0).clone();
                for t in &ins[1..] {
                    out = same_shape(&out, &t.shape)?;
                }
                one(out)
            }
            MatMul {
                transpose_a,
                transpose_b,
            } => one(matmul_shape(s(0), s(1), *transpose_a, *transpose_b)?),
            Dense {
                transpose_a,
                transpose_b,
                ..
            } => {
                let y = matmul_shape(s(0), s(1), *transpose_a, *transpose_b)?;
                let b = s(2);
                match (b.0.as_slice(), y.0.last()) {
                    ([d], Some(last)) if unify(d, last).is_ok() => one(y),
                    _ => Err(format!(
                        "Dense: bias {b} does not match the last axis of {y}"
                    )),
                }
            }
            ActivationBiasGrad { .. } => {
                let y = same_shape(s(0), s(1))?;
                let Some(last) = y.0.last() else {
                    return Err(
                        "ActivationBiasGrad: dy and y must have rank >= 1, got scalars".into(),
                    );
                };
                let db = Shape(vec![last.clone()]);
                Ok(vec![
                    TensorType {
                        dtype: dt,
                        shape: y,
                    },
                    TensorType {
                        dtype: dt,
                        shape: db,
                    },
                ])
            }
            Fused { program } => {
                check_fused(program, ins.len())?;
                let mut shape = s(0).clone();
                for t in &ins[1..] {
                    shape = broadcast(&shape, &t.shape)?;
                }
                one(shape)
            }
            BiasAdd { data_format } => {
                let (x, b) = (s(0), s(1));
                if b.rank() != 1 {
                    return Err(format!("BiasAdd bias must have rank 1, got {b}"));
                }
                if x.rank() == 0 {
                    return Err("BiasAdd input must have rank >= 1, got a scalar".into());
                }
                let axis = data_format.channel_axis(x.rank());
                unify(&x.0[axis], &b.0[0]).map_err(|_| {
                    format!("BiasAdd: the channels (axis {axis}, {data_format:?}) of {x} do not match bias {b}")
                })?;
                one(x.clone())
            }
            Sum { axes, keep_dims } | Mean { axes, keep_dims } => {
                one(reduced_shape(axes, *keep_dims, s(0))?)
            }
            ReducedSize { axes } => {
                reduce_axes(axes, s(0).rank())?;
                one(Shape::scalar())
            }
            Reshape { shape } => one(reshape_shape(s(0), shape)?),
            ReshapeLike => {
                if let (Some(a), Some(b)) = (s(0).size(), s(1).size()) {
                    if a != b {
                        return Err(format!("cannot reshape {} to {}", s(0), s(1)));
                    }
                }
                one(s(1).clone())
            }
            Transpose { perm } => {
                let r = s(0).rank();
                let p: Vec<usize> = perm.clone().unwrap_or_else(|| (0..r).rev().collect());
                let mut seen = vec![false; r];
                if p.len() != r
                    || p.iter()
                        .any(|&a| a >= r || std::mem::replace(&mut seen[a], true))
                {
                    return Err(format!(
                        "perm {p:?} is not a permutation of the {r} axes of {}",
                        s(0)
                    ));
                }
                one(Shape(p.iter().map(|&a| s(0).0[a].clone()).collect()))
            }
            ExpandDims { axes } => {
                let r = s(0).rank() + axes.len();
                let ax = normalize_axes(axes, r)?;
                let mut src = s(0).0.iter();
                let dims = (0..r).map(|i| {
                    if ax.contains(&i) {
                        Dim::Known(1)
                    } else {
                        src.next().cloned().unwrap_or(Dim::Known(1))
                    }
                });
                one(Shape(dims.collect()))
            }
            Squeeze { axes } => {
                let ax = normalize_axes(axes, s(0).rank())?;
                for &a in &ax {
                    if s(0).0[a] != Dim::Known(1) {
                        return Err(format!(
                            "cannot squeeze axis {a} of {}: its size is not 1",
                            s(0)
                        ));
                    }
                }
                let dims = s(0)
                    .0
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !ax.contains(i))
                    .map(|(_, d)| d.clone());
                one(Shape(dims.collect()))
            }
            FusedBatchNorm {
                epsilon,
                data_format,
                ..
            }
            | FusedBatchNormGrad {
                epsilon,
                data_format,
                ..
            } => {
                if !(epsilon.is_finite() && *epsilon >= 0.0) {
                    return Err(format!("epsilon must be finite and >= 0, got {epsilon}"));
                }
                let grad = matches!(self, FusedBatchNormGrad { .. });
                let x = if grad { s(1) } else { s(0) };
                if x.rank() != 2 && x.rank() != 4 {
                    return Err(format!(
                        "{} takes an input of rank 2 or 4, got {x}",
                        self.name()
                    ));
                }
                if grad && same_shape(s(0), x).is_err() {
                    return Err(format!("dy {} and x {x} differ", s(0)));
                }
                let c = &x.0[data_format.channel_axis(x.rank())];
                let mut channels = c.clone();
                for t in &ins[if grad { 2 } else { 1 }..] {
                    match t.shape.0.as_slice() {
                        [d] => channels = unify(&channels, d).map_err(|_| {
                            format!("a parameter of shape {} does not match {c} channels of {x} ({data_format:?})", t.shape)
                        })?,
                        _ => return Err(format!("parameters must have rank 1, got {}", t.shape)),
                    }
                }
                let param = TensorType {
                    dtype: dt,
                    shape: Shape(vec![channels]),
                };
                let y = TensorType {
                    dtype: dt,
                    shape: x.clone(),
                };
                Ok(if grad {
                    vec![y, param.clone(), param]
                } else {
                    vec![y, param.clone(), param.clone(), param.clone(), param]
                })
            }
            Select => {
                let out = broadcast(&broadcast(s(0), s(1))?, s(2))?;
                Ok(vec![TensorType {
                    dtype: ins[1].dtype,
                    shape: out,
                }])
            }
            IdentityN => Ok(ins.iter().map(|&t| t.clone()).collect()),
            CustomGradient { inputs, .. } => {
                Ok(ins[*inputs..].iter().map(|&t| t.clone()).collect())
            }
            OnceDifferentiable { .. } => one(s(0).clone()),
            Moments { axes, keep_dims } => {
                let reduced = Mean {
                    axes: Some(axes.clone()),
                    keep_dims: *keep_dims,
                }
                .shape_rule(dt, ins)?;
                Ok(vec![reduced[0].clone(), reduced[0].clone()])
            }
            BatchNormalization {
                variance_epsilon, ..
            } => {
                if !(variance_epsilon.is_finite() && *variance_epsilon >= 0.0) {
                    return Err(format!(
                        "variance_epsilon must be finite and >= 0, got {variance_epsilon}"
                    ));
                }
                for t in &ins[1..] {
                    let b = broadcast(s(0), &t.shape)?;
                    if same_shape(&b, s(0)).is_err() {
                        return Err(format!(
                            "a parameter of shape {} does not broadcast to the input {}",
                            t.shape,
                            s(0)
                        ));
                    }
                }
                one(s(0).clone())
            }
            module_ops!() => self.module_infer(dt, ins),
            SoftmaxCrossEntropyWithLogits => {
                let shape = same_shape(s(0), s(1)).map_err(|_| {
                    format!(
                        "logits {} and labels {} must have the same shape",
                        s(0),
                        s(1)
                    )
                })?;
                if shape.rank() == 0 {
                    return Err("logits must have rank >= 1, got a scalar".into());
                }
                one(Shape(shape.0[..shape.rank() - 1].to_vec()))
            }
            Fill { shape } => {
                if s(0).rank() != 0 {
                    return Err(format!("Fill takes a scalar value, got shape {}", s(0)));
                }
                if checked_product(shape.iter().copied())
                    .is_none_or(|n| n > isize::MAX as usize / 8)
                {
                    return Err(format!("Fill shape {shape:?} is too large"));
                }
                one(Shape::known(shape))
            }
            SumToLike => {
                let b = broadcast(s(0), s(1))?;
                if same_shape(&b, s(0)).is_err() {
                    return Err(format!("cannot sum {} down to {}", s(0), s(1)));
                }
                one(s(1).clone())
            }
            BroadcastLike => {
                let b = broadcast(s(0), s(1))?;
                if same_shape(&b, s(1)).is_err() {
                    return Err(format!("cannot broadcast {} to {}", s(0), s(1)));
                }
                one(s(1).clone())
            }
        }
    }
}

/// The product of sizes, or None on overflow.
pub fn checked_product(dims: impl IntoIterator<Item = usize>) -> Option<usize> {
    dims.into_iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(d))
}

/// Formats a float so that it reads back exactly and integers keep a `.0`.
pub fn fmt_f64(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Two dims that must be equal: the known one wins over a symbol (checked again at run time).
pub fn unify(a: &Dim, b: &Dim) -> Result<Dim, ShapeError> {
    match (a, b) {
        (x, y) if x == y => Ok(x.clone()),
        (Dim::Known(n), Dim::Sym(_)) | (Dim::Sym(_), Dim::Known(n)) => Ok(Dim::Known(*n)),
        _ => Err(ShapeError(format!("dimensions {a} and {b} differ"))),
    }
}

/// Why an op does not accept its inputs (`Op::infer`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The wrong number of inputs.
    #[error("{op} takes {expected} inputs, got {got}")]
    Arity {
        op: &'static str,
        expected: Arity,
        got: usize,
    },
    /// Inputs of different dtypes.
    #[error("inputs have different dtypes: {0} and {1}")]
    DType(DType, DType),
    /// An input of a dtype the op does not take.
    #[error("input {input} of {op} must be {want} dtype, got {got}")]
    Takes {
        op: &'static str,
        input: usize,
        want: In,
        got: DType,
    },
    /// Shapes or attributes that do not fit the op.
    #[error(transparent)]
    Shape(ShapeError),
}

impl From<OpError> for String {
    fn from(e: OpError) -> String {
        e.to_string()
    }
}

pub(super) fn same_shape(a: &Shape, b: &Shape) -> Result<Shape, String> {
    if a.rank() != b.rank() {
        return Err(format!("shapes {a} and {b} differ"));
    }
    let dims: Result<Vec<Dim>, ShapeError> =
        a.0.iter().zip(&b.0).map(|(x, y)| unify(x, y)).collect();
    dims.map(Shape)
        .map_err(|_| format!("shapes {a} and {b} differ"))
}

/// The shape of `x` reduced over `axes` (all when None), each kept as 1
/// with `keep_dims`: Sum's, Mean's, Max's and Min's shape rule.
pub(super) fn reduced_shape(
    axes: &Option<Vec<i64>>,
    keep_dims: bool,
    x: &Shape,
) -> Result<Shape, String> {
    let ax = reduce_axes(axes, x.rank())?;
    let dims = x.0.iter().enumerate().filter_map(|(i, d)| {
        if !ax.contains(&i) {
            Some(d.clone())
        } else if keep_dims {
            Some(Dim::Known(1))
        } else {
            None
        }
    });
    Ok(Shape(dims.collect()))
}

pub(super) fn reduce_axes(axes: &Option<Vec<i64>>, rank: usize) -> Result<Vec<usize>, String> {
    match axes {
        Some(a) => Ok(normalize_axes(a, rank)?),
        None => Ok((0..rank).collect()),
    }
}

fn matmul_shape(a: &Shape, b: &Shape, ta: bool, tb: bool) -> Result<Shape, String> {
    let r = a.rank();
    if r < 2 || b.rank() != r {
        return Err(format!(
            "MatMul needs two inputs of the same rank >= 2, got {a} and {b}"
        ));
    }
    let mut out = Vec::with_capacity(r);
    for i in 0..r - 2 {
        out.push(
            unify(&a.0[i], &b.0[i])
                .map_err(|_| format!("MatMul batch dims of {a} and {b} differ"))?,
        );
    }
    let (m, ka) = if ta {
        (&a.0[r - 1], &a.0[r - 2])
    } else {
        (&a.0[r - 2], &a.0[r - 1])
    };
    let (kb, n) = if tb {
        (&b.0[r - 1], &b.0[r - 2])
    } else {
        (&b.0[r - 2], &b.0[r - 1])
    };
    unify(ka, kb).map_err(|_| {
        format!("MatMul inner dimensions differ: {a} x {b} (transpose_a: {ta}, transpose_b: {tb})")
    })?;
    out.push(m.clone());
    out.push(n.clone());
    Ok(Shape(out))
}

fn reshape_shape(x: &Shape, target: &[i64]) -> Result<Shape, String> {
    if target.iter().any(|&d| d < -1) || target.iter().filter(|&&d| d == -1).count() > 1 {
        return Err(format!(
            "reshape target {target:?} may hold sizes and at most one -1"
        ));
    }
    let bad = || format!("cannot reshape {x} to {target:?}");
    let known_in = checked_product(x.0.iter().filter_map(Dim::known)).ok_or_else(bad)?;
    let syms: Vec<&Dim> = x.0.iter().filter(|d| d.known().is_none()).collect();
    let known_out =
        checked_product(target.iter().filter(|&&d| d >= 0).map(|&d| d as usize)).ok_or_else(bad)?;
    let wild = if !target.contains(&-1) {
        if !syms.is_empty() || known_in != known_out {
            return Err(bad());
        }
        None
    } else if known_out == 0 || !known_in.is_multiple_of(known_out) {
        return Err(bad());
    } else {
        let k = known_in / known_out;
        Some(match syms.as_slice() {
            [] => Dim::Known(k),
            [s] if k == 1 => (*s).clone(),
            _ => {
                return Err(format!(
                    "cannot infer the -1 in reshape of {x} to {target:?}"
                ))
            }
        })
    };
    Ok(Shape(
        target
            .iter()
            .map(|&d| {
                if d == -1 {
                    wild.clone().unwrap_or(Dim::Known(0))
                } else {
                    Dim::Known(d as usize)
                }
            })
            .collect(),
    ))
}
