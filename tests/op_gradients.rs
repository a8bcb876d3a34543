//! Every op's gradient against central finite differences, in f64, first and
//! second order, broadcasting included. One table, one checker (JAX's check_grads).

mod common;

use common::{assert_gradcheck, graph};
use gradc::runtime::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// How to draw an input's values.
#[derive(Clone, Copy)]
enum Dist {
    /// Standard normal.
    Normal,
    /// Uniform in [0.5, 2]: for Log, Sqrt, Rsqrt, fractional Pow, Div's denominator.
    Positive,
    /// Uniform in [-0.8, 0.8]: inside the domains of Asin, Acos and Atanh,
    /// away from Tan's poles.
    Small,
    /// Rows (last axis) that are probability distributions (the labels of a
    /// cross-entropy; differentiated against like any input).
    Labels,
}

struct Case {
    name: &'static str,
    /// Inputs: name, shape, distribution. Each becomes a placeholder fed with random values.
    inputs: &'static [(&'static str, &'static [usize], Dist)],
    /// The op under test as a RON node named "y".
    node: &'static str,
    /// Whether to also check second order (gradient of the gradient).
    second_order: bool,
}

use Dist::*;

const CASES: &[Case] = &[
    Case {
        name: "identity",
        inputs: &[("a", &[3], Normal)],
        node: r#"(name: "y", op: Identity, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "add",
        inputs: &[("a", &[2, 3], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: Add, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "add_broadcast_row",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "y", op: Add, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "add_broadcast_col",
        inputs: &[("a", &[2, 1], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: Add, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "sub_broadcast_scalar",
        inputs: &[("a", &[], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: Sub, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "mul_broadcast",
        inputs: &[("a", &[4, 1, 3], Normal), ("b", &[2, 1], Normal)],
        node: r#"(name: "y", op: Mul, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "div_broadcast",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Positive)],
        node: r#"(name: "y", op: Div, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "neg",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Neg, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "gather_axis0_repeated",
        inputs: &[("a", &[4, 3], Normal)],
        node: r#"(name: "i", op: Const([[3.0, 0.0], [1.0, 3.0]]), dtype: I32), (name: "y", op: Gather(), inputs: ["a", "i"])"#,
        second_order: true,
    },
    Case {
        name: "gather_axis1",
        inputs: &[("a", &[2, 4, 3], Normal)],
        node: r#"(name: "i", op: Const([2.0, 2.0, 0.0]), dtype: I64), (name: "y", op: Gather(axis: 1), inputs: ["a", "i"])"#,
        second_order: true,
    },
    Case {
        name: "unsorted_segment_sum",
        inputs: &[("a", &[5, 3], Normal)],
        node: r#"(name: "i", op: Const([2.0, 0.0, 2.0, 1.0, 2.0]), dtype: I32), (name: "y", op: UnsortedSegmentSum(num_segments: 4), inputs: ["a", "i"])"#,
        second_order: true,
    },
    Case {
        name: "sparse_softmax_cross_entropy",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "i", op: Const([1.0, 3.0, 0.0]), dtype: I64), (name: "y", op: SparseSoftmaxCrossEntropyWithLogits, inputs: ["a", "i"])"#,
        second_order: true,
    },
    Case {
        name: "one_hot_times",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "i", op: Const([2.0, 0.0]), dtype: I32), (name: "h", op: OneHot(depth: 3, on_value: 2.0, off_value: -0.5, dtype: F64), inputs: ["i"]), (name: "y", op: Mul, inputs: ["h", "a"])"#,
        second_order: true,
    },
    Case {
        name: "stateless_random_uniform",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "seed", op: Const(42.0), dtype: I64), (name: "u", op: StatelessRandomUniform, inputs: ["a", "seed"]), (name: "y", op: Mul, inputs: ["u", "a"])"#,
        second_order: true,
    },
    Case {
        name: "split_one_part_unused",
        inputs: &[("a", &[2, 6], Normal)],
        node: r#"(name: "parts", op: Split(axis: 1, num_split: 3), inputs: ["a"]), (name: "y", op: Mul, inputs: ["parts:2", "parts"])"#,
        second_order: true,
    },
    Case {
        name: "split_v_rest",
        inputs: &[("a", &[5, 2], Normal)],
        node: r#"(name: "parts", op: SplitV(size_splits: [2, -1], axis: 0), inputs: ["a"]), (name: "q", op: Slice(begin: [0, 0], size: [2, -1]), inputs: ["parts:1"]), (name: "y", op: Mul, inputs: ["parts", "q"])"#,
        second_order: true,
    },
    Case {
        name: "unstack_last_axis",
        inputs: &[("a", &[3, 2], Normal)],
        node: r#"(name: "u", op: Unstack(axis: -1), inputs: ["a"]), (name: "y", op: Mul, inputs: ["u", "u:1"])"#,
        second_order: true,
    },
    Case {
        name: "gelu_tanh",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: GeluTanh, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "strided_slice_masks",
        inputs: &[("a", &[3, 4, 5], Normal)],
        node: r#"(name: "y", op: StridedSlice(begin: [2, 0, 1], end: [0, 0, 0], strides: [-1, 2, 1], end_mask: 2, ellipsis_mask: 4, new_axis_mask: 0, shrink_axis_mask: 0), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "strided_slice_grad",
        inputs: &[("a", &[4, 3], Normal), ("g", &[2, 3], Normal)],
        node: r#"(name: "y", op: StridedSliceGrad(begin: [3], end: [0], strides: [-2]), inputs: ["a", "g"])"#,
        second_order: true,
    },
    Case {
        name: "prod_one_axis",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Prod(axes: [-1]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "prod_two_axes_kept",
        inputs: &[("a", &[2, 3, 2], Normal)],
        node: r#"(name: "y", op: Prod(axes: [0, 2], keep_dims: true), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "prod_with_a_zero",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "m", op: Const([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])), (name: "z", op: Mul, inputs: ["a", "m"]), (name: "y", op: Prod(), inputs: ["z"])"#,
        second_order: false,
    },
    Case {
        name: "cumprod_exclusive_reverse",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Cumprod(axis: 1, exclusive: true, reverse: true), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "floor_mod",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Positive)],
        node: r#"(name: "y", op: FloorMod, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "cast_between_floats",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Cast(to: F64), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "exp",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Exp, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "log",
        inputs: &[("a", &[2, 3], Positive)],
        node: r#"(name: "y", op: Log, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "square",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Square, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "pow_integer",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Pow(exponent: 3.0), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "pow_fractional",
        inputs: &[("a", &[2, 3], Positive)],
        node: r#"(name: "y", op: Pow(exponent: -1.5), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sqrt",
        inputs: &[("a", &[2, 3], Positive)],
        node: r#"(name: "y", op: Sqrt, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "rsqrt",
        inputs: &[("a", &[2, 3], Positive)],
        node: r#"(name: "y", op: Rsqrt, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "maximum_broadcast",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "y", op: Maximum, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "relu",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Relu, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sigmoid",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Sigmoid, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "tanh",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Tanh, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_same_nhwc",
        inputs: &[("a", &[2, 5, 5, 3], Normal), ("k", &[3, 3, 3, 2], Normal)],
        node: r#"(name: "y", op: Conv2D(strides: [1, 1, 1, 1], padding: SAME), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_valid_stride_2_non_square",
        inputs: &[("a", &[1, 7, 6, 2], Normal), ("k", &[3, 2, 2, 3], Normal)],
        node: r#"(name: "y", op: Conv2D(strides: [1, 2, 2, 1], padding: VALID), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_same_even_stride_2_nchw",
        inputs: &[("a", &[2, 3, 6, 5], Normal), ("k", &[2, 3, 3, 4], Normal)],
        node: r#"(name: "y", op: Conv2D(strides: [1, 1, 2, 2], padding: SAME, data_format: NCHW), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_dilated",
        inputs: &[("a", &[1, 7, 7, 1], Normal), ("k", &[3, 3, 1, 2], Normal)],
        node: r#"(name: "y", op: Conv2D(strides: [1, 1, 1, 1], padding: SAME, dilations: [1, 2, 2, 1]), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_explicit_padding",
        inputs: &[("a", &[1, 4, 5, 2], Normal), ("k", &[2, 2, 2, 1], Normal)],
        node: r#"(name: "y", op: Conv2D(strides: [1, 2, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, 1, 2, 0, 1, 0, 0]), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "fused_conv2d_tanh_nhwc",
        inputs: &[
            ("a", &[2, 5, 4, 3], Normal),
            ("k", &[3, 3, 3, 2], Normal),
            ("b", &[2], Normal),
        ],
        node: r#"(name: "y", op: FusedConv2D(strides: [1, 2, 1, 1], padding: SAME, activation: Tanh), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "fused_conv2d_sigmoid_nchw",
        inputs: &[
            ("a", &[2, 3, 5, 5], Normal),
            ("k", &[2, 2, 3, 4], Normal),
            ("b", &[4], Normal),
        ],
        node: r#"(name: "y", op: FusedConv2D(strides: [1, 1, 1, 1], padding: VALID, data_format: NCHW, activation: Sigmoid), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "fused_conv2d_relu_pointwise",
        inputs: &[
            ("a", &[1, 4, 4, 2], Normal),
            ("k", &[1, 1, 2, 3], Normal),
            ("b", &[3], Normal),
        ],
        node: r#"(name: "y", op: FusedConv2D(strides: [1, 1, 1, 1], padding: VALID, activation: Relu), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_backprop_input",
        inputs: &[
            ("a", &[1, 5, 5, 2], Normal),
            ("k", &[3, 3, 2, 2], Normal),
            ("g", &[1, 3, 3, 2], Normal),
        ],
        node: r#"(name: "y", op: Conv2DBackpropInput(strides: [1, 2, 2, 1], padding: SAME), inputs: ["a", "k", "g"])"#,
        second_order: true,
    },
    Case {
        name: "conv2d_backprop_filter",
        inputs: &[
            ("a", &[1, 5, 5, 2], Normal),
            ("k", &[3, 3, 2, 3], Normal),
            ("g", &[1, 3, 3, 3], Normal),
        ],
        node: r#"(name: "y", op: Conv2DBackpropFilter(strides: [1, 1, 1, 1], padding: VALID), inputs: ["a", "k", "g"])"#,
        second_order: true,
    },
    Case {
        name: "depthwise_conv2d_same_multiplier_2",
        inputs: &[("a", &[2, 5, 4, 3], Normal), ("k", &[3, 2, 3, 2], Normal)],
        node: r#"(name: "y", op: DepthwiseConv2dNative(strides: [1, 2, 1, 1], padding: SAME), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "depthwise_conv2d_valid_dilated_nchw",
        inputs: &[("a", &[1, 2, 6, 6], Normal), ("k", &[2, 2, 2, 1], Normal)],
        node: r#"(name: "y", op: DepthwiseConv2dNative(strides: [1, 1, 1, 1], padding: VALID, dilations: [1, 1, 2, 2], data_format: NCHW), inputs: ["a", "k"])"#,
        second_order: true,
    },
    Case {
        name: "depthwise_conv2d_backprop_input",
        inputs: &[
            ("a", &[1, 4, 4, 2], Normal),
            ("k", &[2, 2, 2, 2], Normal),
            ("g", &[1, 4, 4, 4], Normal),
        ],
        node: r#"(name: "y", op: DepthwiseConv2dNativeBackpropInput(strides: [1, 1, 1, 1], padding: SAME), inputs: ["a", "k", "g"])"#,
        second_order: true,
    },
    Case {
        name: "depthwise_conv2d_backprop_filter",
        inputs: &[
            ("a", &[1, 5, 5, 2], Normal),
            ("k", &[3, 3, 2, 2], Normal),
            ("g", &[1, 2, 2, 4], Normal),
        ],
        node: r#"(name: "y", op: DepthwiseConv2dNativeBackpropFilter(strides: [1, 2, 2, 1], padding: VALID), inputs: ["a", "k", "g"])"#,
        second_order: true,
    },
    Case {
        name: "max_pool_same_stride_2",
        inputs: &[("a", &[2, 5, 5, 3], Normal)],
        node: r#"(name: "y", op: MaxPool(ksize: [1, 3, 3, 1], strides: [1, 2, 2, 1], padding: SAME), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "max_pool_valid_nchw",
        inputs: &[("a", &[1, 2, 4, 5], Normal)],
        node: r#"(name: "y", op: MaxPool(ksize: [1, 1, 2, 2], strides: [1, 1, 2, 1], padding: VALID, data_format: NCHW), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "max_pool_grad",
        inputs: &[
            ("a", &[1, 4, 4, 2], Normal),
            ("o", &[1, 2, 2, 2], Normal),
            ("g", &[1, 2, 2, 2], Normal),
        ],
        node: r#"(name: "y", op: MaxPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: VALID), inputs: ["a", "o", "g"])"#,
        second_order: true,
    },
    Case {
        name: "max_pool_grad_grad",
        inputs: &[
            ("a", &[1, 4, 4, 2], Normal),
            ("o", &[1, 2, 2, 2], Normal),
            ("g", &[1, 4, 4, 2], Normal),
        ],
        node: r#"(name: "y", op: MaxPoolGradGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: VALID), inputs: ["a", "o", "g"])"#,
        second_order: true,
    },
    Case {
        name: "avg_pool_same_odd",
        inputs: &[("a", &[2, 5, 4, 2], Normal)],
        node: r#"(name: "y", op: AvgPool(ksize: [1, 3, 2, 1], strides: [1, 2, 1, 1], padding: SAME), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "avg_pool_grad",
        inputs: &[("a", &[1, 5, 5, 1], Normal), ("g", &[1, 3, 3, 1], Normal)],
        node: r#"(name: "y", op: AvgPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: SAME), inputs: ["a", "g"])"#,
        second_order: true,
    },
    Case {
        name: "l2_loss",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: L2Loss, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "softplus",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Softplus, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "abs",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Abs, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sin",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Sin, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "cos",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Cos, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "tan",
        inputs: &[("a", &[3, 4], Small)],
        node: r#"(name: "y", op: Tan, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "asin",
        inputs: &[("a", &[3, 4], Small)],
        node: r#"(name: "y", op: Asin, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "acos",
        inputs: &[("a", &[3, 4], Small)],
        node: r#"(name: "y", op: Acos, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "atan",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Atan, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sinh",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Sinh, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "cosh",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Cosh, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "atanh",
        inputs: &[("a", &[3, 4], Small)],
        node: r#"(name: "y", op: Atanh, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "log1p",
        inputs: &[("a", &[3, 4], Positive)],
        node: r#"(name: "y", op: Log1p, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "expm1",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Expm1, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "reciprocal",
        inputs: &[("a", &[3, 4], Positive)],
        node: r#"(name: "y", op: Reciprocal, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "erf",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Erf, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "softsign",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Softsign, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "elu",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Elu, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "selu",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Selu, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "leaky_relu",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: LeakyRelu(alpha: 0.2), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "minimum",
        inputs: &[("a", &[3, 4], Normal), ("b", &[4], Normal)],
        node: r#"(name: "y", op: Minimum, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "squared_difference",
        inputs: &[("a", &[3, 4], Normal), ("b", &[4], Normal)],
        node: r#"(name: "y", op: SquaredDifference, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "sigmoid_cross_entropy",
        inputs: &[("a", &[3, 4], Normal), ("b", &[3, 4], Positive)],
        node: r#"(name: "y", op: SigmoidCrossEntropyWithLogits, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "slice",
        inputs: &[("a", &[3, 4, 5], Normal)],
        node: r#"(name: "y", op: Slice(begin: [1, 0, 2], size: [2, -1, 2]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "slice_grad",
        inputs: &[("a", &[3, 4], Normal), ("b", &[2, 2], Normal)],
        node: r#"(name: "y", op: SliceGrad(begin: [1, 1], size: [2, 2]), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "pad_constant",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Pad(paddings: [[1, 0], [2, 1]], constant_values: 0.5), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "pad_reflect",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Pad(paddings: [[2, 1], [1, 3]], mode: REFLECT), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "pad_symmetric",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Pad(paddings: [[3, 1], [0, 4]], mode: SYMMETRIC), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "pad_grad_reflect",
        inputs: &[("a", &[6, 8], Normal)],
        node: r#"(name: "y", op: PadGrad(paddings: [[2, 1], [1, 3]], mode: REFLECT), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "concat",
        inputs: &[
            ("a", &[2, 3], Normal),
            ("b", &[2, 2], Normal),
            ("c", &[2, 1], Normal),
        ],
        node: r#"(name: "y", op: Concat(axis: -1), inputs: ["a", "b", "c"])"#,
        second_order: true,
    },
    Case {
        name: "reverse",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "y", op: Reverse(axes: [2, 0]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "tile",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Tile(multiples: [2, 3]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "tile_grad",
        inputs: &[("a", &[2, 3], Normal), ("b", &[4, 3], Normal)],
        node: r#"(name: "y", op: TileGrad(multiples: [2, 1]), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "erfc",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Erfc, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "gelu",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Gelu, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "stack",
        inputs: &[
            ("a", &[2, 3], Normal),
            ("b", &[2, 3], Normal),
            ("c", &[2, 3], Normal),
        ],
        node: r#"(name: "y", op: Stack(axis: 1), inputs: ["a", "b", "c"])"#,
        second_order: true,
    },
    Case {
        name: "max_axis",
        inputs: &[("a", &[3, 4, 2], Normal)],
        node: r#"(name: "y", op: Max(axes: [1]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "min_keep_all",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Min(keep_dims: true), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "cumsum",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Cumsum(axis: 0), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "cumsum_exclusive_reverse",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "y", op: Cumsum(axis: -1, exclusive: true, reverse: true), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "clip_by_value",
        inputs: &[
            ("a", &[3, 4], Normal),
            ("b", &[], Small),
            ("c", &[4], Positive),
        ],
        node: r#"(name: "y", op: ClipByValue, inputs: ["a", "b", "c"])"#,
        second_order: true,
    },
    Case {
        name: "matmul",
        inputs: &[("a", &[3, 4], Normal), ("b", &[4, 2], Normal)],
        node: r#"(name: "y", op: MatMul(), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "matmul_ta",
        inputs: &[("a", &[4, 3], Normal), ("b", &[4, 2], Normal)],
        node: r#"(name: "y", op: MatMul(transpose_a: true), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "matmul_tb",
        inputs: &[("a", &[3, 4], Normal), ("b", &[2, 4], Normal)],
        node: r#"(name: "y", op: MatMul(transpose_b: true), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "matmul_ta_tb",
        inputs: &[("a", &[4, 3], Normal), ("b", &[2, 4], Normal)],
        node: r#"(name: "y", op: MatMul(transpose_a: true, transpose_b: true), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "matmul_batched",
        inputs: &[("a", &[2, 3, 4], Normal), ("b", &[2, 4, 2], Normal)],
        node: r#"(name: "y", op: MatMul(), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "bias_add",
        inputs: &[("a", &[2, 3, 4], Normal), ("b", &[4], Normal)],
        node: r#"(name: "y", op: BiasAdd(), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "bias_add_nchw",
        inputs: &[("a", &[2, 3, 2, 2], Normal), ("b", &[3], Normal)],
        node: r#"(name: "y", op: BiasAdd(data_format: NCHW), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "sum_all",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Sum(), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sum_axis_keep",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "y", op: Sum(axes: [1], keep_dims: true), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sum_negative_axes",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "y", op: Sum(axes: [-1, 0]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "mean_all",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Mean(), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "mean_axis",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "y", op: Mean(axes: [-2]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "mean_keep_dims",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Mean(axes: [0], keep_dims: true), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "reshape",
        inputs: &[("a", &[2, 3, 2], Normal)],
        node: r#"(name: "y", op: Reshape(shape: [3, -1]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "transpose_default",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Transpose(), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "transpose_perm",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "y", op: Transpose(perm: [1, 2, 0]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "expand_dims",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: ExpandDims(axes: [0, -1]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "squeeze",
        inputs: &[("a", &[2, 1, 3], Normal)],
        node: r#"(name: "y", op: Squeeze(axes: [1]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "softmax",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: Softmax, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "softmax_cross_entropy",
        inputs: &[("a", &[3, 4], Normal), ("b", &[3, 4], Labels)],
        node: r#"(name: "y", op: SoftmaxCrossEntropyWithLogits, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        // Labels that are not distributions: the logits gradient stays exact.
        name: "softmax_cross_entropy_any_labels",
        inputs: &[("a", &[3, 4], Normal), ("b", &[3, 4], Normal)],
        node: r#"(name: "y", op: SoftmaxCrossEntropyWithLogits, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "log_softmax",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "y", op: LogSoftmax, inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "add_n",
        inputs: &[
            ("a", &[2, 3], Normal),
            ("b", &[2, 3], Normal),
            ("c", &[2, 3], Normal),
        ],
        node: r#"(name: "y", op: AddN, inputs: ["a", "b", "c", "a"])"#,
        second_order: true,
    },
    Case {
        name: "fill",
        inputs: &[("a", &[], Normal)],
        node: r#"(name: "y", op: Fill(shape: [2, 3]), inputs: ["a"])"#,
        second_order: true,
    },
    Case {
        name: "sum_to_like",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "y", op: SumToLike, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "broadcast_like",
        inputs: &[("a", &[3], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: BroadcastLike, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "reshape_like",
        inputs: &[("a", &[6], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: ReshapeLike, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "relu_grad",
        inputs: &[("a", &[2, 3], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: ReluGrad, inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "moments_both_outputs",
        inputs: &[("a", &[4, 3], Normal)],
        node: r#"(name: "m", op: Moments(axes: [0]), inputs: ["a"]), (name: "y", op: Add, inputs: ["m", "m:1"])"#,
        second_order: true,
    },
    Case {
        name: "moments_variance_keep_dims",
        inputs: &[("a", &[2, 3, 4], Normal)],
        node: r#"(name: "m", op: Moments(axes: [0, 2], keep_dims: true), inputs: ["a"]), (name: "y", op: Identity, inputs: ["m:1"])"#,
        second_order: true,
    },
    Case {
        name: "batch_normalization",
        inputs: &[
            ("a", &[4, 3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
            ("o", &[3], Normal),
            ("s", &[3], Normal),
        ],
        node: r#"(name: "y", op: BatchNormalization(variance_epsilon: 0.001), inputs: ["a", "m", "v", "o", "s"])"#,
        second_order: true,
    },
    Case {
        name: "batch_normalization_nchw_no_offset_no_scale",
        inputs: &[
            ("a", &[2, 3, 2, 2], Normal),
            ("m", &[1, 3, 1, 1], Normal),
            ("v", &[1, 3, 1, 1], Positive),
        ],
        node: r#"(name: "y", op: BatchNormalization(variance_epsilon: 0.01, offset: false, scale: false), inputs: ["a", "m", "v"])"#,
        second_order: true,
    },
    Case {
        name: "moments_into_batch_normalization",
        inputs: &[
            ("a", &[5, 3], Normal),
            ("o", &[3], Normal),
            ("s", &[3], Normal),
        ],
        node: r#"(name: "mv", op: Moments(axes: [0]), inputs: ["a"]), (name: "y", op: BatchNormalization(variance_epsilon: 0.001), inputs: ["a", "mv", "mv:1", "o", "s"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_train_rank2",
        inputs: &[
            ("a", &[6, 3], Normal),
            ("s", &[3], Normal),
            ("o", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "y", op: FusedBatchNorm(epsilon: 0.001, data_format: NHWC, is_training: true), inputs: ["a", "s", "o", "m", "v"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_train_nhwc",
        inputs: &[
            ("a", &[2, 2, 2, 3], Normal),
            ("s", &[3], Normal),
            ("o", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "y", op: FusedBatchNorm(epsilon: 0.001, data_format: NHWC, is_training: true), inputs: ["a", "s", "o", "m", "v"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_train_nchw",
        inputs: &[
            ("a", &[2, 3, 2, 2], Normal),
            ("s", &[3], Normal),
            ("o", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "y", op: FusedBatchNorm(epsilon: 0.001, data_format: NCHW, is_training: true), inputs: ["a", "s", "o", "m", "v"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_inference_nchw",
        inputs: &[
            ("a", &[2, 3, 2, 2], Normal),
            ("s", &[3], Normal),
            ("o", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "y", op: FusedBatchNorm(epsilon: 0.001, data_format: NCHW, is_training: false), inputs: ["a", "s", "o", "m", "v"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_grad",
        inputs: &[
            ("d", &[4, 3], Normal),
            ("a", &[4, 3], Normal),
            ("s", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "g", op: FusedBatchNormGrad(), inputs: ["d", "a", "s", "m", "v"]), (name: "y", op: AddN, inputs: ["g", "g", "g"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_grad_all_outputs",
        inputs: &[
            ("d", &[2, 3, 2, 2], Normal),
            ("a", &[2, 3, 2, 2], Normal),
            ("s", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "g", op: FusedBatchNormGrad(data_format: NCHW), inputs: ["d", "a", "s", "m", "v"]), (name: "gs", op: Mul, inputs: ["g:1", "g:2"]), (name: "s0", op: Sum(), inputs: ["g"]), (name: "s1", op: Sum(), inputs: ["gs"]), (name: "y", op: Add, inputs: ["s0", "s1"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_statistics_train",
        inputs: &[
            ("a", &[2, 3, 2, 2], Normal),
            ("s", &[3], Normal),
            ("o", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "f", op: FusedBatchNorm(data_format: NCHW, is_training: true), inputs: ["a", "s", "o", "m", "v"]), (name: "fa", op: Mul, inputs: ["f", "a"]), (name: "s0", op: Mean(), inputs: ["fa"]), (name: "s1", op: Mean(), inputs: ["f:1"]), (name: "s2", op: Mean(), inputs: ["f:2"]), (name: "s4", op: Mean(), inputs: ["f:4"]), (name: "y", op: AddN, inputs: ["s0", "s1", "s2", "s4"])"#,
        second_order: true,
    },
    Case {
        name: "fused_batch_norm_statistics_inference",
        inputs: &[
            ("a", &[4, 3], Normal),
            ("s", &[3], Normal),
            ("o", &[3], Normal),
            ("m", &[3], Normal),
            ("v", &[3], Positive),
        ],
        node: r#"(name: "f", op: FusedBatchNorm(data_format: NHWC, is_training: false), inputs: ["a", "s", "o", "m", "v"]), (name: "fa", op: Mul, inputs: ["f", "a"]), (name: "s0", op: Mean(), inputs: ["fa"]), (name: "s1", op: Mean(), inputs: ["f:1"]), (name: "s2", op: Mean(), inputs: ["f:2"]), (name: "s4", op: Mean(), inputs: ["f:4"]), (name: "y", op: AddN, inputs: ["s0", "s1", "s2", "s4"])"#,
        second_order: true,
    },
    Case {
        name: "select_broadcast",
        inputs: &[
            ("c", &[3], Positive),
            ("a", &[2, 3], Normal),
            ("b", &[3], Normal),
        ],
        node: r#"(name: "half", op: Const(1.2)), (name: "cond", op: GreaterEqual, inputs: ["c", "half"]), (name: "y", op: Select, inputs: ["cond", "a", "b"])"#,
        second_order: true,
    },
    Case {
        // One rank: each input is its own average (a data-parallel run is tests/mpi.rs).
        name: "all_reduce_mean",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "r", op: AllReduceMean(ranks: 1), inputs: ["a", "b"]), (name: "y", op: Mul, inputs: ["r", "r:1"])"#,
        second_order: true,
    },
    Case {
        name: "identity_n",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "i", op: IdentityN, inputs: ["a", "b"]), (name: "y", op: Mul, inputs: ["i", "i:1"])"#,
        second_order: true,
    },
    Case {
        name: "dense_linear",
        inputs: &[
            ("a", &[3, 4], Normal),
            ("k", &[2, 4], Normal),
            ("b", &[2], Normal),
        ],
        node: r#"(name: "y", op: Dense(transpose_b: true, activation: Linear), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "dense_relu",
        inputs: &[
            ("a", &[3, 4], Normal),
            ("k", &[2, 4], Normal),
            ("b", &[2], Normal),
        ],
        node: r#"(name: "y", op: Dense(transpose_b: true, activation: Relu), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "dense_sigmoid",
        inputs: &[
            ("a", &[3, 4], Normal),
            ("k", &[2, 4], Normal),
            ("b", &[2], Normal),
        ],
        node: r#"(name: "y", op: Dense(transpose_b: true, activation: Sigmoid), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "dense_tanh",
        inputs: &[
            ("a", &[3, 4], Normal),
            ("k", &[2, 4], Normal),
            ("b", &[2], Normal),
        ],
        node: r#"(name: "y", op: Dense(transpose_b: true, activation: Tanh), inputs: ["a", "k", "b"])"#,
        second_order: true,
    },
    Case {
        name: "activation_bias_grad_relu",
        inputs: &[("d", &[3, 4], Normal), ("a", &[3, 4], Normal)],
        // both outputs, the bias gradient squared
        node: r#"(name: "g", op: ActivationBiasGrad(activation: Relu), inputs: ["d", "a"]), (name: "gs", op: Mul, inputs: ["g:1", "g:1"]), (name: "s0", op: Sum(), inputs: ["g"]), (name: "s1", op: Sum(), inputs: ["gs"]), (name: "y", op: Add, inputs: ["s0", "s1"])"#,
        second_order: true,
    },
    Case {
        name: "activation_bias_grad_sigmoid",
        inputs: &[("d", &[2, 3, 2], Normal), ("a", &[2, 3, 2], Normal)],
        // both outputs, the bias gradient squared
        node: r#"(name: "g", op: ActivationBiasGrad(activation: Sigmoid), inputs: ["d", "a"]), (name: "gs", op: Mul, inputs: ["g:1", "g:1"]), (name: "s0", op: Sum(), inputs: ["g"]), (name: "s1", op: Sum(), inputs: ["gs"]), (name: "y", op: Add, inputs: ["s0", "s1"])"#,
        second_order: true,
    },
    Case {
        name: "activation_bias_grad_tanh",
        inputs: &[("d", &[3, 4], Normal), ("a", &[3, 4], Normal)],
        // both outputs, the bias gradient squared
        node: r#"(name: "g", op: ActivationBiasGrad(activation: Tanh), inputs: ["d", "a"]), (name: "gs", op: Mul, inputs: ["g:1", "g:1"]), (name: "s0", op: Sum(), inputs: ["g"]), (name: "s1", op: Sum(), inputs: ["gs"]), (name: "y", op: Add, inputs: ["s0", "s1"])"#,
        second_order: true,
    },
    Case {
        name: "activation_bias_grad_linear",
        inputs: &[("d", &[3, 4], Normal), ("a", &[3, 4], Normal)],
        // both outputs, the bias gradient squared
        node: r#"(name: "g", op: ActivationBiasGrad(activation: Linear), inputs: ["d", "a"]), (name: "gs", op: Mul, inputs: ["g:1", "g:1"]), (name: "s0", op: Sum(), inputs: ["g"]), (name: "s1", op: Sum(), inputs: ["gs"]), (name: "y", op: Add, inputs: ["s0", "s1"])"#,
        second_order: true,
    },
    Case {
        name: "fused_program",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Positive)],
        // r2 = a * b; r3 = exp(r2); r4 = 0.5; r5 = r3 * r4; r6 = sigmoid(r5); r7 = r6 / b
        node: r#"(name: "y", op: Fused(program: [Input(0), Input(1), Binary(Mul, 0, 1), Unary(Exp, 2), Const(0.5), Binary(Mul, 3, 4), Unary(Sigmoid, 5), Binary(Div, 6, 1)]), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "fused_smooth_functions",
        inputs: &[("a", &[2, 3], Positive), ("b", &[3], Normal)],
        // neg, log, square, sqrt, rsqrt, tanh, pow of a, summed with add and sub, times b
        node: r#"(name: "y", op: Fused(program: [Input(0), Input(1), Unary(Neg, 0), Unary(Log, 0), Unary(Square, 0), Unary(Sqrt, 0), Unary(Rsqrt, 0), Unary(Tanh, 1), Unary(Pow(2.5), 0), Binary(Add, 2, 3), Binary(Sub, 4, 5), Binary(Add, 9, 10), Binary(Sub, 6, 7), Binary(Add, 11, 12), Binary(Add, 13, 8), Binary(Mul, 14, 1)]), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        name: "fused_piecewise_functions",
        inputs: &[("a", &[2, 3], Normal), ("b", &[2, 3], Normal)],
        // relu(a) + max(a, b) * [a >= b] + [a == b] + ReluGrad(b, a), times a
        node: r#"(name: "y", op: Fused(program: [Input(0), Input(1), Unary(Relu, 0), Binary(Maximum, 0, 1), Binary(GreaterEqualMask, 0, 1), Binary(EqualMask, 0, 1), Binary(ReluGrad, 1, 0), Binary(Mul, 3, 4), Binary(Add, 2, 7), Binary(Add, 8, 5), Binary(Add, 9, 6), Binary(Mul, 10, 0)]), inputs: ["a", "b"])"#,
        second_order: true,
    },
    Case {
        // Ties: TensorFlow's rule sends dy to the first input where a >= b, so
        // max(a, a) has slope 1, as finite differences see it.
        name: "maximum_ties",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Maximum, inputs: ["a", "a"])"#,
        second_order: true,
    },
];

/// Ops whose inputs get no gradient: piecewise-constant ops (where finite
/// differences agree) and StopGradient (where they must not: it blocks by definition).
const ZERO_GRADIENT_CASES: &[Case] = &[
    Case {
        name: "sign",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Sign, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "floor",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Floor, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "ceil",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Ceil, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "round",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: Round, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "stop_gradient",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: StopGradient, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "zeros_like",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: ZerosLike, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "ones_like",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: OnesLike, inputs: ["a"])"#,
        second_order: false,
    },
    Case {
        name: "greater_equal_mask",
        inputs: &[("a", &[2, 3], Normal), ("b", &[2, 3], Normal)],
        node: r#"(name: "y", op: GreaterEqualMask, inputs: ["a", "b"])"#,
        second_order: false,
    },
    Case {
        name: "equal_mask",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "y", op: EqualMask, inputs: ["a", "b"])"#,
        second_order: false,
    },
    // Bool and integer results: constant almost everywhere, so no gradient
    // flows back through them; each is cast back to f64 for the loss.
    Case {
        name: "equal",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "r", op: Round, inputs: ["a"]), (name: "c", op: Equal, inputs: ["r", "b"]), (name: "y", op: Cast(to: F64), inputs: ["c"])"#,
        second_order: false,
    },
    Case {
        name: "not_equal",
        inputs: &[("a", &[2, 3], Normal), ("b", &[2, 1], Normal)],
        node: r#"(name: "c", op: NotEqual, inputs: ["a", "b"]), (name: "y", op: Cast(to: F64), inputs: ["c"])"#,
        second_order: false,
    },
    Case {
        name: "less_and_greater",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Normal)],
        node: r#"(name: "lt", op: Less, inputs: ["a", "b"]), (name: "gt", op: Greater, inputs: ["a", "b"]), (name: "c", op: LogicalOr, inputs: ["lt", "gt"]), (name: "y", op: Cast(to: F64), inputs: ["c"])"#,
        second_order: false,
    },
    Case {
        name: "less_equal_and_greater_equal",
        inputs: &[("a", &[2, 3], Normal), ("b", &[], Normal)],
        node: r#"(name: "le", op: LessEqual, inputs: ["a", "b"]), (name: "ge", op: GreaterEqual, inputs: ["a", "b"]), (name: "both", op: LogicalAnd, inputs: ["le", "ge"]), (name: "c", op: LogicalNot, inputs: ["both"]), (name: "y", op: Cast(to: F64), inputs: ["c"])"#,
        second_order: false,
    },
    Case {
        name: "arg_max_and_arg_min",
        inputs: &[("a", &[3, 4], Normal)],
        node: r#"(name: "hi", op: ArgMax(axis: 1), inputs: ["a"]), (name: "lo", op: ArgMin(axis: -1, output_type: I32), inputs: ["a"]), (name: "lo64", op: Cast(to: I64), inputs: ["lo"]), (name: "d", op: Sub, inputs: ["hi", "lo64"]), (name: "y", op: Cast(to: F64), inputs: ["d"])"#,
        second_order: false,
    },
    Case {
        name: "cast_to_integer",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "s", op: Mul, inputs: ["a", "ten"]), (name: "ten", op: Const(10.0)), (name: "i", op: Cast(to: I32), inputs: ["s"]), (name: "y", op: Cast(to: F64), inputs: ["i"])"#,
        second_order: false,
    },
    Case {
        name: "predicates_and_bool_reductions",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "l", op: Log, inputs: ["a"]), (name: "nan", op: IsNan, inputs: ["l"]), (name: "fin", op: IsFinite, inputs: ["l"]), (name: "any", op: Any(axes: [1], keep_dims: true), inputs: ["nan"]), (name: "all", op: All(axes: [1], keep_dims: true), inputs: ["fin"]), (name: "both", op: LogicalOr, inputs: ["any", "all"]), (name: "y", op: Cast(to: F64), inputs: ["both"])"#,
        second_order: false,
    },
    Case {
        name: "shape_size_range",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "sh", op: Shape, inputs: ["a"]), (name: "sz", op: Size, inputs: ["a"]), (name: "r", op: Range(limit: 2.0), inputs: []), (name: "s", op: Add, inputs: ["sh", "r"]), (name: "t", op: Mul, inputs: ["s", "sz"]), (name: "y", op: Cast(to: F64), inputs: ["t"])"#,
        second_order: false,
    },
    Case {
        name: "floor_div",
        inputs: &[("a", &[2, 3], Normal), ("b", &[3], Positive)],
        node: r#"(name: "y", op: FloorDiv, inputs: ["a", "b"])"#,
        second_order: false,
    },
    Case {
        name: "reduced_size",
        inputs: &[("a", &[2, 3], Normal)],
        node: r#"(name: "y", op: ReducedSize(axes: [1]), inputs: ["a"])"#,
        second_order: false,
    },
];

/// The graph for a case: the op, then loss = sum(1.37 y^3 - 2 y^2), so every
/// output element gets a different incoming gradient, of either sign
/// (4.11 y^2 - 4 y is negative for y in (0, 0.97)), and no composition is
/// linear; gradients of the loss w.r.t. every input, and of those w.r.t.
/// every input again.
fn case_graph(case: &Case) -> String {
    let mut nodes = String::new();
    for (name, shape, _) in case.inputs {
        nodes += &format!("(name: \"{name}\", op: Placeholder(shape: {shape:?})),\n");
    }
    nodes += case.node;
    nodes += ",\n(name: \"y3\", op: Pow(exponent: 3.0), inputs: [\"y\"]),\n";
    nodes += "(name: \"w\", op: Const(1.37)),\n(name: \"yw\", op: Mul, inputs: [\"y3\", \"w\"]),\n";
    nodes += "(name: \"y2\", op: Square, inputs: [\"y\"]),\n(name: \"two\", op: Const(2.0)),\n";
    nodes += "(name: \"y2w\", op: Mul, inputs: [\"y2\", \"two\"]),\n";
    nodes += "(name: \"p\", op: Sub, inputs: [\"yw\", \"y2w\"]),\n";
    nodes += "(name: \"loss\", op: Sum(), inputs: [\"p\"]),\n";
    let wrt: Vec<String> = case
        .inputs
        .iter()
        .map(|(n, _, _)| format!("\"{n}\""))
        .collect();
    let mut grads = format!("(of: \"loss\", wrt: [{}]),\n", wrt.join(", "));
    if case.second_order {
        for (n, _, _) in case.inputs {
            grads += &format!("(of: \"d(loss)/d({n})\", wrt: [{}]),\n", wrt.join(", "));
        }
    }
    format!("Graph(name: \"{}\", dtype: F64, nodes: [\n{nodes}], outputs: [\"loss\"], gradients: [\n{grads}])", case.name)
}

fn feeds(case: &Case, rng: &mut ChaCha8Rng) -> HashMap<String, Tensor> {
    case.inputs
        .iter()
        .map(|(name, shape, dist)| {
            let n: usize = shape.iter().product();
            let mut data: Vec<f64> = (0..n)
                .map(|_| match dist {
                    Normal => {
                        // Box-Muller: deterministic, no extra dependency.
                        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                    }
                    Positive | Labels => rng.random_range(0.5..2.0),
                    Small => rng.random_range(-0.8..0.8),
                })
                .collect();
            if let (Labels, Some(&classes)) = (dist, shape.last()) {
                for row in data.chunks_mut(classes) {
                    let total: f64 = row.iter().sum();
                    row.iter_mut().for_each(|v| *v /= total);
                }
            }
            (
                name.to_string(),
                Tensor::from_f64(DType::F64, shape, data).expect("shape fits"),
            )
        })
        .collect()
}

/// Each case's own random inputs, from its name: a case added or moved
/// leaves the others' inputs as they were.
fn case_rng(case: &Case) -> ChaCha8Rng {
    // FNV-1a, stable across Rust versions (unlike `DefaultHasher`).
    let seed = case.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(seed)
}

#[test]
fn every_op_gradient_matches_finite_differences() {
    let mut checked = 0;
    for case in CASES {
        let text = case_graph(case);
        let g = graph(&text);
        let f = feeds(case, &mut case_rng(case));
        // Largest errors seen over the cases (fourth-order differences,
        // h = 1e-3): 5.1e-10 at first order (a fractional power), 5.9e-8 at
        // second (batch normalization of moments, whose higher derivatives are large).
        for c in assert_gradcheck(case.name, &g, &f, None) {
            let tol = if c.name.starts_with("d(d(") {
                2e-7
            } else {
                2e-9
            };
            assert!(c.max_rel <= tol, "{}: {c:?} over {tol:e}", case.name);
            checked += 1;
        }
    }
    assert!(checked >= CASES.len() * 2, "checked {checked} gradients");
}

#[test]
fn ops_without_gradient_give_exact_zeros() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in ZERO_GRADIENT_CASES {
        let g = graph(&case_graph(case));
        let f = feeds(case, &mut rng);
        let fetches: Vec<String> = g.gradients.iter().map(|r| r.name.clone()).collect();
        let refs: Vec<&str> = fetches.iter().map(String::as_str).collect();
        for (name, v) in fetches.iter().zip(common::run(&g, &f, &refs)) {
            assert!(v.iter().all(|&x| x == 0.0), "{}: {name} = {v:?}", case.name);
        }
        let checks = gradc::gradcheck::gradcheck(&g, &f, None).expect("gradcheck runs");
        let numeric_agrees = checks.iter().all(|c| c.passed());
        // StopGradient's forward is the identity, so finite differences see a slope it blocks.
        assert_eq!(
            numeric_agrees,
            case.name != "stop_gradient",
            "{}: {checks:?}",
            case.name
        );
    }
}

#[test]
fn every_op_in_the_op_set_has_a_case() {
    // The cases name ops through their RON text; each op of the foundation set must appear.
    let all: String = CASES
        .iter()
        .chain(ZERO_GRADIENT_CASES)
        .map(|c| c.node)
        .collect();
    for op in gradc::runtime::op::OP_NAMES {
        // Every case uses the sources. The assignments have no gradient
        // (tests/errors.rs); variables and NoOp are state (tests/optimizers.rs);
        // function boundaries are tested in tests/functions.rs. (Layers are not
        // ops: they are expanded into the ops above, tests/batch_norm.rs.)
        if matches!(
            *op,
            "Placeholder"
                | "Const"
                | "Variable"
                | "Assign"
                | "AssignAdd"
                | "AssignSub"
                | "ApplyGradientDescent"
                | "ApplyMomentum"
                | "NoOp"
                | "CustomGradient"
                | "OnceDifferentiable"
        ) {
            continue;
        }
        // The whole name: `op: Sum` does not count for `op: SumToLike`.
        let needle = format!("op: {op}");
        let named = all.match_indices(&needle).any(|(i, _)| {
            !all[i + needle.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
        assert!(named, "no gradient case for {op}");
    }
}
