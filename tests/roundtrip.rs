//! RON round trip: parse -> print -> parse gives the same graph.

mod common;

use gradc::compiler::schema;
use gradc::runtime::op::{BinaryFn, UnaryFn};

/// TensorFlow's name of the broadcasting Select reads as Select.
#[test]
fn select_v2_reads_as_select() {
    let text = |op: &str| {
        format!(
            r#"Graph(name: "s", nodes: [(name: "c", op: Placeholder(shape: [2]), dtype: Bool), (name: "a", op: Placeholder(shape: [2])), (name: "y", op: {op}, inputs: ["c", "a", "a"])])"#
        )
    };
    assert_eq!(
        schema::parse(&text("SelectV2")).expect("parses"),
        schema::parse(&text("Select")).expect("parses")
    );
}

#[test]
fn every_example_round_trips() {
    let dir = common::repo_path("graphs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("graphs/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "ron") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let spec = schema::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let printed = schema::to_ron(&spec).expect("prints");
            let again = schema::parse(&printed)
                .unwrap_or_else(|e| panic!("reparse {}: {e}\n{printed}", path.display()));
            assert_eq!(spec, again, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 5, "found {n} examples");
}

#[test]
fn every_op_round_trips() {
    // One node of every op, each attribute away from its default where it
    // has one (the round trip is of the text: the graph need not build).
    // The elementwise ops come from their table, one node each.
    let elementwise: String = UnaryFn::EXAMPLES
        .iter()
        .map(|f| {
            let attr = f.attr().map(|(a, v)| format!("({a}: {v:?})"));
            let op = format!("{}{}", f.name(), attr.unwrap_or_default());
            format!(r#"(name: "u{}", op: {op}, inputs: ["p"]),"#, f.name())
        })
        .chain(
            BinaryFn::ALL
                .iter()
                .map(|f| format!(r#"(name: "b{0}", op: {0}, inputs: ["p", "c"]),"#, f.name())),
        )
        .collect();
    let text = r#"Graph(name: "all", dtype: F32, nodes: [
        (name: "p", op: Placeholder(shape: ["batch", 3])),
        (name: "v", op: Variable(shape: [3], initializer: TruncatedNormal(mean: 0.5, stddev: 2.0, seed: 7), trainable: false)),
        (name: "v2", op: Variable(shape: [3], initializer: GlorotUniform(seed: 3))),
        (name: "v3", op: Variable(shape: [2, 3], initializer: Orthogonal(gain: 2.0))),
        (name: "v4", op: Variable(shape: [2], initializer: Value([1.5, -2.0]))),
        (name: "v5", op: Variable(shape: [3, 3], initializer: HeNormal(seed: 1))),
        (name: "v3", op: Variable(shape: [3], initializer: RandomNormal(stddev: 0.1))),
        (name: "v4", op: Variable(shape: [3], initializer: Constant(2.5))),
        (name: "as", op: Assign, inputs: ["v", "p"]),
        (name: "aa", op: AssignAdd, inputs: ["v", "p"]),
        (name: "asb", op: AssignSub, inputs: ["v", "p"]),
        (name: "gd", op: ApplyGradientDescent, inputs: ["v", "p", "p"]),
        (name: "mo", op: ApplyMomentum(use_nesterov: true), inputs: ["v", "v2", "p", "p", "p"]),
        (name: "no", op: NoOp, control_inputs: ["gd"]),
        (name: "c", op: Const([[1.0, 2.0, 3.0]]), dtype: F32),
        (name: "id", op: Identity, inputs: ["p"]),
        (name: "sg", op: StopGradient, inputs: ["p"]),
        ELEMENTWISE
        (name: "mm", op: MatMul(transpose_a: true, transpose_b: true), inputs: ["p", "c"]),
        (name: "ba", op: BiasAdd(), inputs: ["p", "v"]),
        (name: "fu", op: Fused(program: [Input(0), Const(0.5), Unary(Pow(3.0), 0), Binary(ReluGrad, 1, 2)]), inputs: ["p"]),
        (name: "de", op: Dense(transpose_a: true, transpose_b: true, activation: Tanh), inputs: ["p", "c", "v"]),
        (name: "abg", op: ActivationBiasGrad(activation: Sigmoid), inputs: ["p", "p"]),
        (name: "s", op: Sum(axes: [-1], keep_dims: true), inputs: ["p"]),
        (name: "m", op: Mean(), inputs: ["p"]),
        (name: "r", op: Reshape(shape: [-1]), inputs: ["p"]),
        (name: "rl", op: ReshapeLike, inputs: ["p", "c"]),
        (name: "t", op: Transpose(perm: [1, 0]), inputs: ["p"]),
        (name: "ed", op: ExpandDims(axes: [0, -1]), inputs: ["p"]),
        (name: "sqz", op: Squeeze(axes: [0]), inputs: ["ed"]),
        (name: "mom", op: Moments(axes: [0], keep_dims: true), inputs: ["p"]),
        (name: "bnz", op: BatchNormalization(variance_epsilon: 0.01, offset: false, scale: false), inputs: ["p", "mom", "mom:1"]),
        (name: "fbn", op: FusedBatchNorm(epsilon: 0.01, data_format: NCHW, is_training: false), inputs: ["p", "v", "v", "v", "v"]),
        (name: "fbg", op: FusedBatchNormGrad(epsilon: 0.01, data_format: NCHW, is_training: false), inputs: ["p", "p", "v", "v", "v"]),
        (name: "sel", op: Select, inputs: ["p", "p", "c"]),
        (name: "ama", op: AssignMovingAverage(decay: 0.9, zero_debias: true), inputs: ["v", "p"]),
        (name: "bnl", op: BatchNorm(decay: 0.99, center: false, scale: true, epsilon: 0.01, data_format: NCHW, fused: true, is_training: "training", zero_debias_moving_mean: true), inputs: ["p"]),
        (name: "call", op: Call("F"), inputs: ["p"]),
        (name: "idn", op: IdentityN, inputs: ["p", "c"]),
        (name: "arm", op: AllReduceMean(ranks: 2), inputs: ["p", "c"]),
        (name: "cg", op: CustomGradient(function: "F", inputs: 1), inputs: ["p", "call"]),
        (name: "od", op: OnceDifferentiable(function: "F"), inputs: ["p"]),
        (name: "a", op: ArgMax(axis: 1), inputs: ["p"]),
        (name: "amn", op: ArgMin(axis: -1, output_type: I32), inputs: ["p"]),
        (name: "cst", op: Cast(to: I64), inputs: ["p"], dtype: I64),
        (name: "eq", op: Equal, inputs: ["a", "cst"]),
        (name: "ne", op: NotEqual, inputs: ["p", "c"]),
        (name: "lt", op: Less, inputs: ["p", "c"]),
        (name: "le", op: LessEqual, inputs: ["p", "c"]),
        (name: "gt", op: Greater, inputs: ["p", "c"]),
        (name: "ge", op: GreaterEqual, inputs: ["p", "c"]),
        (name: "and", op: LogicalAnd, inputs: ["lt", "le"]),
        (name: "or", op: LogicalOr, inputs: ["gt", "ge"]),
        (name: "not", op: LogicalNot, inputs: ["ne"]),
        (name: "gat", op: Gather(axis: 1), inputs: ["p", "a"]),
        (name: "uss", op: UnsortedSegmentSum(num_segments: 3), inputs: ["p", "a"]),
        (name: "oh", op: OneHot(depth: 5, on_value: 2.0, off_value: -1.0, axis: 0, dtype: F64), inputs: ["a"]),
        (name: "sxe", op: SparseSoftmaxCrossEntropyWithLogits, inputs: ["p", "a"]),
        (name: "sru", op: StatelessRandomUniform, inputs: ["p", "a"]),
        (name: "isn", op: IsNan, inputs: ["p"]),
        (name: "spl", op: Split(axis: -1, num_split: 2), inputs: ["p"]),
        (name: "cpr", op: Cumprod(axis: 0, exclusive: true, reverse: true), inputs: ["p"]),
        (name: "prd", op: Prod(axes: [1], keep_dims: true), inputs: ["p"]),
        (name: "sts", op: StridedSlice(begin: [0, -1], end: [2, 0], strides: [1, -1], begin_mask: 1, end_mask: 2, ellipsis_mask: 0, new_axis_mask: 0, shrink_axis_mask: 1), inputs: ["p"]),
        (name: "stg", op: StridedSliceGrad(begin: [1], end: [3], strides: [2], new_axis_mask: 0), inputs: ["p", "sts"]),
        (name: "spv", op: SplitV(size_splits: [1, -1], axis: 1), inputs: ["p"]),
        (name: "ust", op: Unstack(axis: 1), inputs: ["p"]),
        (name: "isf", op: IsFinite, inputs: ["p"]),
        (name: "any", op: Any(axes: [0], keep_dims: true), inputs: ["isn"]),
        (name: "all", op: All(), inputs: ["isf"]),
        (name: "shp", op: Shape, inputs: ["p"]),
        (name: "siz", op: Size, inputs: ["p"]),
        (name: "rng", op: Range(start: 1.0, limit: 7.0, delta: 2.0, dtype: I64)),
        (name: "drp", op: Dropout(rate: 0.25, is_training: "training"), inputs: ["p"]),
        (name: "sv", op: Variable(shape: [], initializer: Seed, trainable: false), dtype: I64),
        (name: "nv", op: Variable(shape: [2, 3], initializer: Npy("weights/w.npy"))),
        (name: "stv", op: Variable(shape: [2, 3], initializer: Safetensors("model.safetensors"))),
        (name: "sm", op: Softmax, inputs: ["p"]),
        (name: "lsm", op: LogSoftmax, inputs: ["p"]),
        (name: "xe", op: SoftmaxCrossEntropyWithLogits, inputs: ["p", "c"]),
        (name: "l2", op: L2Loss, inputs: ["p"]),
        (name: "dw", op: DepthwiseConv2dNative(strides: [1, 2, 2, 1], padding: SAME, dilations: [1, 1, 1, 1], data_format: NHWC), inputs: ["p", "c"]),
        (name: "dwi", op: DepthwiseConv2dNativeBackpropInput(strides: [1, 1, 1, 1], padding: EXPLICIT, explicit_paddings: [0, 0, 1, 1, 1, 1, 0, 0]), inputs: ["p", "c", "p"]),
        (name: "dwf", op: DepthwiseConv2dNativeBackpropFilter(strides: [1, 1, 1, 1], padding: VALID, data_format: NCHW), inputs: ["p", "c", "p"]),
        (name: "mp", op: MaxPool(ksize: [1, 1, 2, 2], strides: [1, 1, 2, 2], padding: SAME, data_format: NCHW), inputs: ["p"]),
        (name: "mpg", op: MaxPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 1, 1, 1], padding: VALID), inputs: ["p", "p", "p"]),
        (name: "mpgg", op: MaxPoolGradGrad(ksize: [1, 2, 2, 1], strides: [1, 1, 1, 1], padding: VALID), inputs: ["p", "p", "p"]),
        (name: "ap", op: AvgPool(ksize: [1, 3, 3, 1], strides: [1, 2, 2, 1], padding: VALID), inputs: ["p"]),
        (name: "apg", op: AvgPoolGrad(ksize: [1, 3, 3, 1], strides: [1, 2, 2, 1], padding: SAME), inputs: ["p", "p"]),
        (name: "cv", op: Conv2D(strides: [1, 1, 2, 2], padding: EXPLICIT, explicit_paddings: [0, 0, 0, 0, 1, 1, 2, 0], dilations: [1, 1, 2, 1], data_format: NCHW), inputs: ["p", "c"]),
        (name: "fcv", op: FusedConv2D(strides: [1, 1, 1, 1], padding: VALID, data_format: NCHW, activation: Tanh), inputs: ["p", "c", "c"]),
        (name: "cvi", op: Conv2DBackpropInput(strides: [1, 2, 2, 1], padding: SAME), inputs: ["p", "c", "p"]),
        (name: "cvf", op: Conv2DBackpropFilter(strides: [1, 1, 1, 1], padding: VALID, dilations: [1, 2, 2, 1]), inputs: ["p", "c", "p"]),
        (name: "slc", op: Slice(begin: [0, 1], size: [-1, 2]), inputs: ["p"]),
        (name: "slg", op: SliceGrad(begin: [0, 1], size: [-1, 2]), inputs: ["p", "slc"]),
        (name: "pd", op: Pad(paddings: [[1, 0], [0, 2]], mode: SYMMETRIC, constant_values: 0.0), inputs: ["p"]),
        (name: "pdg", op: PadGrad(paddings: [[1, 0], [0, 2]], mode: SYMMETRIC), inputs: ["pd"]),
        (name: "cat", op: Concat(axis: 0), inputs: ["p", "p"]),
        (name: "rev", op: Reverse(axes: [-1]), inputs: ["p"]),
        (name: "stk", op: Stack(axis: -1), inputs: ["p", "rev"]),
        (name: "rmax", op: Max(axes: [0]), inputs: ["p"]),
        (name: "csum", op: Cumsum(axis: -1, reverse: true), inputs: ["p"]),
        (name: "clip", op: ClipByValue, inputs: ["p", "c", "p"]),
        (name: "rmin", op: Min(keep_dims: true), inputs: ["p"]),
        (name: "til", op: Tile(multiples: [2, 1]), inputs: ["p"]),
        (name: "tlg", op: TileGrad(multiples: [2, 1]), inputs: ["p", "til"]),
        (name: "an", op: AddN, inputs: ["p", "c", "p"]),
        (name: "zl", op: ZerosLike, inputs: ["p"]),
        (name: "ol", op: OnesLike, inputs: ["p"]),
        (name: "fill", op: Fill(shape: [2, 3]), inputs: ["c"]),
        (name: "stl", op: SumToLike, inputs: ["p", "c"]),
        (name: "bl", op: BroadcastLike, inputs: ["c", "p"]),
        (name: "rs", op: ReducedSize(axes: [0]), inputs: ["p"]),
    ], outputs: ["mm", "s"], gradients: [(of: "m", wrt: ["p"], grad_ys: "m")])"#
        .replace("ELEMENTWISE", &elementwise);
    let spec = schema::parse(&text).expect("parses");
    let again = schema::parse(&schema::to_ron(&spec).expect("prints")).expect("reparses");
    assert_eq!(spec, again);
    // Every op is in the text above, by its whole name.
    let layers = gradc::compiler::schema::Layer::NAMES;
    for op in gradc::runtime::op::OP_NAMES.iter().chain(layers) {
        let needle = format!("op: {op}");
        let found = text.match_indices(&needle).any(|(i, _)| {
            !text[i + needle.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
        assert!(found, "no node of {op} in the round trip");
    }
}
