//! Mutators: from the seed graphs to an input, deterministically.
//!
//! Input `i` of a campaign with seed `s` is made by a ChaCha8 stream seeded
//! with `s` at stream `i`: pick a seed graph, then apply one to four
//! mutations, structural (on the parsed `GraphSpec`, printed back to RON) or
//! textual (numbers, op names, bytes). Each mutation says what it did, so a
//! crashing input carries its recipe.

use gradc::compiler::schema::{self, CustomGradientSpec, FunctionSpec, GradientSpec, GraphSpec};
use gradc::compiler::schema::{Layer, NodeOp, NodeSpec, OptimizerSpec, Schedule};
use gradc::runtime::op::{BinaryFn, UnaryFn, OP_NAMES};
use gradc::runtime::{DType, Literal, Op};
use rand::seq::{IndexedMutRandom, IndexedRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Inputs larger than this are cut (a mutation that duplicates text can grow it).
pub const MAX_INPUT_BYTES: usize = 2 << 20;

/// A graph the mutators start from.
#[derive(Clone, Debug)]
pub struct Seed {
    pub name: String,
    pub text: String,
    pub spec: Option<GraphSpec>,
}

/// The seed graphs and a pool of ops (every op of `OP_NAMES`, with attributes).
#[derive(Clone, Debug)]
pub struct Corpus {
    pub seeds: Vec<Seed>,
    ops: Vec<NodeOp>,
}

/// One generated input.
#[derive(Clone, Debug)]
pub struct Input {
    /// Its place in the campaign.
    pub index: u64,
    /// The seed graph it started from.
    pub base: String,
    /// What was done to it, in order.
    pub mutations: Vec<String>,
    pub text: String,
}

/// A graph of every op, with attributes, that the pool of ops is read from,
/// and that is a seed itself: functions (one with a custom gradient, one
/// with two outputs), layers, Fused, FusedBatchNorm, Moments.
pub const OPS_SEED: &str = r#"// Every op, for gradc-fuzz's op pool and as a seed that runs clean.
Graph(
    name: "ops",
    dtype: F64,
    functions: [
        (
            name: "Twice",
            inputs: ["a", "b"],
            outputs: ["s", "p:0"],
            nodes: [
                (name: "s", op: Add, inputs: ["a", "b"]),
                (name: "p", op: Mul, inputs: ["a", "s"]),
            ],
        ),
        (
            name: "Soft",
            inputs: ["x"],
            outputs: ["y"],
            nodes: [
                (name: "e", op: Exp, inputs: ["x"]),
                (name: "one", op: Const(1.0)),
                (name: "s", op: Add, inputs: ["one", "e"]),
                (name: "y", op: Log, inputs: ["s"]),
            ],
            gradient: (
                nodes: [
                    (name: "sig", op: Sigmoid, inputs: ["x"]),
                    (name: "g", op: Mul, inputs: ["sig", "d(y)"]),
                ],
                returns: ["g"],
            ),
            once_differentiable: true,
        ),
    ],
    nodes: [
        (name: "x", op: Placeholder(shape: [2, 4])),
        (name: "xb", op: Placeholder(shape: ["batch", 4])),
        (name: "img", op: Placeholder(shape: [2, 3, 3, 4])),
        (name: "flag", op: Placeholder(shape: [])),
        (name: "w", op: Variable(shape: [4, 4], initializer: GlorotUniform())),
        (name: "b", op: Variable(shape: [4], initializer: Zeros)),
        (name: "v", op: Variable(shape: [4], initializer: RandomNormal(stddev: 0.1, seed: 3), trainable: false)),
        (name: "acc", op: Variable(shape: [4], initializer: Constant(0.5), trainable: false)),
        (name: "c", op: Const([[1.0, -2.0, 3.0, 0.5], [0.25, 4.0, -1.0, 2.0]])),
        (name: "two", op: Const(2.0)),
        (name: "ck", op: Variable(shape: [3, 3, 4, 4], initializer: GlorotUniform())),
        (name: "xw", op: MatMul(transpose_b: true), inputs: ["x", "w"]),
        (name: "aff", op: BiasAdd(), inputs: ["xw", "b"]),
        (name: "dense", op: Dense(activation: Relu), inputs: ["xb", "w", "b"]),
        (name: "r", op: Relu, inputs: ["aff"]),
        (name: "t", op: Tanh, inputs: ["r"]),
        (name: "sg", op: Sigmoid, inputs: ["t"]),
        (name: "sq", op: Square, inputs: ["sg"]),
        (name: "sqr", op: Sqrt, inputs: ["sq"]),
        (name: "rs", op: Rsqrt, inputs: ["two"]),
        (name: "pw", op: Pow(exponent: 3.0), inputs: ["sqr"]),
        (name: "mx", op: Maximum, inputs: ["pw", "x"]),
        (name: "ge", op: GreaterEqual, inputs: ["mx", "x"]),
        (name: "gem", op: GreaterEqualMask, inputs: ["mx", "x"]),
        (name: "eq", op: EqualMask, inputs: ["gem", "x"]),
        (name: "fdv", op: FloorDiv, inputs: ["eq", "two"]),
        (name: "fmd", op: FloorMod, inputs: ["fdv", "x"]),
        (name: "sel", op: Select, inputs: ["ge", "mx", "x"]),
        (name: "sub", op: Sub, inputs: ["sel", "x"]),
        (name: "dv", op: Div, inputs: ["sub", "two"]),
        (name: "ng", op: Neg, inputs: ["dv"]),
        (name: "ex", op: Exp, inputs: ["ng"]),
        (name: "lg", op: Log, inputs: ["ex"]),
        (name: "id", op: Identity, inputs: ["lg"]),
        (name: "sgd", op: StopGradient, inputs: ["id"]),
        (name: "rg", op: ReluGrad, inputs: ["id", "x"]),
        (name: "fz", op: Fused(program: [Input(0), Input(1), Binary(Mul, 0, 1), Unary(Exp, 2), Const(0.5), Binary(Mul, 3, 4), Unary(Sigmoid, 5), Binary(Div, 6, 1)]), inputs: ["rg", "x"]),
        (name: "abg", op: ActivationBiasGrad(activation: Tanh), inputs: ["fz", "t"]),
        (name: "sm", op: Sum(axes: [1], keep_dims: true), inputs: ["fz"]),
        (name: "mn", op: Mean(axes: [0]), inputs: ["fz"]),
        (name: "rsh", op: Reshape(shape: [-1, 2]), inputs: ["fz"]),
        (name: "rl", op: ReshapeLike, inputs: ["rsh", "fz"]),
        (name: "tr", op: Transpose(perm: [1, 0]), inputs: ["rl"]),
        (name: "ed", op: ExpandDims(axes: [0]), inputs: ["tr"]),
        (name: "sz", op: Squeeze(axes: [0]), inputs: ["ed"]),
        (name: "mom", op: Moments(axes: [0], keep_dims: false), inputs: ["x"]),
        (name: "bnz", op: BatchNormalization(variance_epsilon: 0.001), inputs: ["x", "mom:0", "mom:1", "b", "v"]),
        (name: "fbn", op: FusedBatchNorm(epsilon: 0.001, data_format: NHWC, is_training: true), inputs: ["img", "b", "v", "b", "v"]),
        (name: "fbg", op: FusedBatchNormGrad(epsilon: 0.001, data_format: NHWC, is_training: true), inputs: ["fbn", "img", "b", "fbn:3", "fbn:4"]),
        (name: "bnl", op: BatchNorm(decay: 0.9, scale: true, is_training: "flag"), inputs: ["aff"]),
        (name: "am", op: ArgMax(axis: 1), inputs: ["bnl"]),
        (name: "smx", op: Softmax, inputs: ["bnl"]),
        (name: "lsm", op: LogSoftmax, inputs: ["bnl"]),
        (name: "ce", op: SoftmaxCrossEntropyWithLogits, inputs: ["bnl", "smx"]),
        (name: "l2", op: L2Loss, inputs: ["ce"]),
        (name: "cv", op: Conv2D(strides: [1, 1, 1, 1], padding: SAME), inputs: ["img", "ck"]),
        (name: "fconv", op: FusedConv2D(strides: [1, 1, 1, 1], padding: SAME, activation: Relu), inputs: ["img", "ck", "b"]),
        (name: "cvi", op: Conv2DBackpropInput(strides: [1, 1, 1, 1], padding: SAME), inputs: ["img", "ck", "cv"]),
        (name: "cvf", op: Conv2DBackpropFilter(strides: [1, 1, 1, 1], padding: SAME), inputs: ["img", "ck", "cv"]),
        (name: "dw", op: DepthwiseConv2dNative(strides: [1, 1, 1, 1], padding: SAME), inputs: ["img", "ck"]),
        (name: "dwi", op: DepthwiseConv2dNativeBackpropInput(strides: [1, 1, 1, 1], padding: SAME), inputs: ["img", "ck", "dw"]),
        (name: "dwf", op: DepthwiseConv2dNativeBackpropFilter(strides: [1, 1, 1, 1], padding: SAME), inputs: ["img", "ck", "dw"]),
        (name: "mp", op: MaxPool(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: SAME), inputs: ["cv"]),
        (name: "mpg", op: MaxPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: SAME), inputs: ["cv", "mp", "mp"]),
        (name: "mpgg", op: MaxPoolGradGrad(ksize: [1, 2, 2, 1], strides: [1, 2, 2, 1], padding: SAME), inputs: ["cv", "mp", "mpg"]),
        (name: "ap", op: AvgPool(ksize: [1, 2, 2, 1], strides: [1, 1, 1, 1], padding: VALID), inputs: ["cv"]),
        (name: "apg", op: AvgPoolGrad(ksize: [1, 2, 2, 1], strides: [1, 1, 1, 1], padding: VALID), inputs: ["cv", "ap"]),
        (name: "slc", op: Slice(begin: [0, 1, 0, 0], size: [-1, 2, 2, -1]), inputs: ["img"]),
        (name: "slg", op: SliceGrad(begin: [0, 1, 0, 0], size: [-1, 2, 2, -1]), inputs: ["img", "slc"]),
        (name: "pd", op: Pad(paddings: [[0, 0], [1, 1], [2, 0], [0, 0]], mode: REFLECT), inputs: ["img"]),
        (name: "pdg", op: PadGrad(paddings: [[0, 0], [1, 1], [2, 0], [0, 0]], mode: REFLECT), inputs: ["pd"]),
        (name: "cat", op: Concat(axis: -1), inputs: ["img", "img"]),
        (name: "rev", op: Reverse(axes: [1, 2]), inputs: ["img"]),
        (name: "stk", op: Stack(axis: 0), inputs: ["img", "rev"]),
        (name: "rmax", op: Max(axes: [1, 2]), inputs: ["img"]),
        (name: "csum", op: Cumsum(axis: 2, exclusive: true), inputs: ["img"]),
        (name: "clip", op: ClipByValue, inputs: ["img", "b", "v"]),
        (name: "rmin", op: Min(keep_dims: true), inputs: ["img"]),
        (name: "til", op: Tile(multiples: [1, 2, 1, 1]), inputs: ["img"]),
        (name: "tlg", op: TileGrad(multiples: [1, 2, 1, 1]), inputs: ["img", "til"]),
        (name: "an", op: AddN, inputs: ["ce", "ce"]),
        (name: "amn", op: ArgMin(axis: -1, output_type: I32), inputs: ["bnl"]),
        (name: "am32", op: Cast(to: I32), inputs: ["am"]),
        (name: "isum", op: Add, inputs: ["am32", "amn"]),
        (name: "three", op: Const(-3.0), dtype: I32),
        (name: "imod", op: FloorMod, inputs: ["isum", "three"]),
        (name: "idiv", op: FloorDiv, inputs: ["isum", "three"]),
        (name: "eqi", op: Equal, inputs: ["idiv", "amn"]),
        (name: "nei", op: NotEqual, inputs: ["isum", "imod"]),
        (name: "lt", op: Less, inputs: ["x", "c"]),
        (name: "le", op: LessEqual, inputs: ["x", "c"]),
        (name: "gt", op: Greater, inputs: ["c", "x"]),
        (name: "land", op: LogicalAnd, inputs: ["lt", "le"]),
        (name: "lor", op: LogicalOr, inputs: ["gt", "ge"]),
        (name: "lnot", op: LogicalNot, inputs: ["land"]),
        (name: "pick", op: Select, inputs: ["lnot", "fmd", "x"]),
        (name: "gat", op: Gather(axis: 1), inputs: ["c", "am"]),
        (name: "uss", op: UnsortedSegmentSum(num_segments: 4), inputs: ["gat", "am"]),
        (name: "oh", op: OneHot(depth: 4, dtype: F64), inputs: ["amn"]),
        (name: "sxe", op: SparseSoftmaxCrossEntropyWithLogits, inputs: ["bnl", "am"]),
        (name: "sru", op: StatelessRandomUniform, inputs: ["x", "three"]),
        (name: "drop", op: Dropout(rate: 0.5, is_training: "flag"), inputs: ["sru"]),
        (name: "spl", op: Split(axis: -1, num_split: 2), inputs: ["img"]),
        (name: "cpr", op: Cumprod(axis: 1, reverse: true), inputs: ["x"]),
        (name: "prd", op: Prod(axes: [0]), inputs: ["cpr"]),
        (name: "sts", op: StridedSlice(begin: [0, 2], end: [0, 0], strides: [1, -1], end_mask: 1, shrink_axis_mask: 0, ellipsis_mask: 0, new_axis_mask: 4), inputs: ["img"]),
        (name: "stg", op: StridedSliceGrad(begin: [0, 2], end: [0, 0], strides: [1, -1], end_mask: 1, new_axis_mask: 4), inputs: ["img", "sts"]),
        (name: "spv", op: SplitV(size_splits: [1, -1], axis: 1), inputs: ["spl:1"]),
        (name: "ust", op: Unstack(axis: 0), inputs: ["spv"]),
        (name: "ustj", op: Add, inputs: ["ust", "ust:1"]),
        (name: "isn", op: IsNan, inputs: ["lg"]),
        (name: "isf", op: IsFinite, inputs: ["lg"]),
        (name: "anyn", op: Any(axes: [1]), inputs: ["isn"]),
        (name: "allf", op: All(keep_dims: true), inputs: ["isf"]),
        (name: "shp", op: Shape, inputs: ["img"]),
        (name: "siz", op: Size, inputs: ["img"]),
        (name: "rng", op: Range(limit: 4.0)),
        (name: "shr", op: Add, inputs: ["shp", "rng"]),
        (name: "amf", op: Cast(to: F64), inputs: ["am"]),
        (name: "amx", op: Add, inputs: ["amf", "ce"]),
        (name: "zl", op: ZerosLike, inputs: ["an"]),
        (name: "ol", op: OnesLike, inputs: ["zl"]),
        (name: "fill", op: Fill(shape: [2, 3]), inputs: ["two"]),
        (name: "stl", op: SumToLike, inputs: ["fill", "two"]),
        (name: "bl", op: BroadcastLike, inputs: ["stl", "fill"]),
        (name: "rsz", op: ReducedSize(axes: [1]), inputs: ["bl"]),
        (name: "call", op: Call("Twice"), inputs: ["x", "x"]),
        (name: "soft", op: Call("Soft"), inputs: ["call:1"]),
        (name: "idn", op: IdentityN, inputs: ["soft", "call"]),
        (name: "arm", op: AllReduceMean(ranks: 1), inputs: ["soft", "call"]),
        (name: "asn", op: Assign, inputs: ["acc", "mn"]),
        (name: "asa", op: AssignAdd, inputs: ["acc", "mn"]),
        (name: "ass", op: AssignSub, inputs: ["acc", "mn"]),
        (name: "ama", op: AssignMovingAverage(decay: 0.9, zero_debias: true), inputs: ["v", "mn"]),
        (name: "agd", op: ApplyGradientDescent, inputs: ["acc", "two", "mn"]),
        (name: "apm", op: ApplyMomentum(use_nesterov: true), inputs: ["acc", "v", "two", "mn", "two"]),
        (name: "grp", op: NoOp, control_inputs: ["asn", "asa"]),
        (name: "loss", op: Mean(), inputs: ["an"]),
    ],
    outputs: ["loss", "amx", "dense", "sz", "abg:1", "rsz", "idn:1", "arm:1", "fbg:2", "eq", "rs", "ol", "sgd", "eqi", "nei", "lor", "pick", "uss", "oh", "sxe", "drop", "anyn", "allf", "siz", "shr", "ustj", "spv:1", "stg", "prd"],
    gradients: [
        (of: "loss", wrt: ["w", "b", "x"]),
        (of: "idn", wrt: ["x"], grad_ys: "idn"),
        (of: "d(loss)/d(x)", wrt: ["w"]),
    ],
)
"#;

/// Values a number is replaced with.
const SPECIAL_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "NaN",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "1e-320",
    "-0.0",
    "0.5",
    "3",
    "7",
    "100000000",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
];

/// Sizes for huge shapes.
const HUGE: &[usize] = &[
    0,
    100_000_000,
    1 << 31,
    1 << 32,
    1 << 62,
    1 << 63,
    usize::MAX,
];

/// Output indices for `x:k`.
const PORTS: &[&str] = &[
    "0",
    "1",
    "2",
    "7",
    "4294967296",
    "18446744073709551615",
    "-1",
    "",
];

impl Corpus {
    /// The seeds: every `*.ron` of `dirs` (sorted by file name, so the same
    /// files give the same inputs) and `OPS_SEED`.
    pub fn load(dirs: &[&Path]) -> std::io::Result<Corpus> {
        let mut files = Vec::new();
        for dir in dirs {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "ron") {
                    files.push(path);
                }
            }
        }
        files.sort();
        let mut texts = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path)?;
            texts.push((path.display().to_string(), text));
        }
        Ok(Corpus::from_texts(texts))
    }

    /// The seeds from (name, text) pairs, and `OPS_SEED`.
    pub fn from_texts(texts: Vec<(String, String)>) -> Corpus {
        let mut seeds: Vec<Seed> = texts
            .into_iter()
            .map(|(name, text)| Seed {
                spec: schema::parse(&text).ok(),
                name,
                text,
            })
            .collect();
        let ops_spec = schema::parse(OPS_SEED).ok();
        let mut ops: Vec<NodeOp> = ops_spec.iter().flat_map(all_ops).collect();
        // Ops only the compiler writes, by hand.
        let internal = r#"Graph(name: "internal", nodes: [
            (name: "cg", op: CustomGradient(function: "Soft", inputs: 1)),
            (name: "od", op: OnceDifferentiable(function: "Soft")),
            (name: "fz", op: Fused(program: [Input(3), Binary(Add, 0, 7), Unary(Pow(NaN), 1)])),
        ])"#;
        ops.extend(schema::parse(internal).iter().flat_map(all_ops));
        ops.push(Op::NoOp.into());
        ops.push(
            Op::Fill {
                shape: vec![100_000_000, 100_000_000],
            }
            .into(),
        );
        ops.push(Layer::Call("Missing".into()).into());
        // Every function of the elementwise table, whichever the seed names.
        ops.extend(UnaryFn::EXAMPLES.iter().map(|f| f.op().into()));
        ops.extend(BinaryFn::ALL.iter().map(|f| f.op().into()));
        seeds.push(Seed {
            name: "<ops seed>".into(),
            text: OPS_SEED.into(),
            spec: ops_spec,
        });
        Corpus { seeds, ops }
    }

    /// Input `index` of the campaign `seed`.
    pub fn generate(&self, seed: u64, index: u64) -> Input {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let Some(base) = self.seeds.choose(&mut rng) else {
            return Input {
                index,
                base: String::new(),
                mutations: Vec::new(),
                text: String::new(),
            };
        };
        let mut text = base.text.clone();
        let mut spec = base.spec.clone();
        let mut mutations = Vec::new();
        // Gentle mutations keep most graphs valid, so that inputs reach the
        // passes, lowering and runs; the others test the checks.
        let mode = rng.random_range(0..20);
        let (structural, gentle) = (spec.is_some() && mode < 15, mode < 8);
        let count = *[1, 1, 1, 2, 2, 3, 4].choose(&mut rng).unwrap_or(&1);
        for _ in 0..count {
            let done = match &mut spec {
                Some(s) if gentle => mutate_gentle(s, self, &mut rng),
                Some(s) if structural => mutate_spec(s, self, &mut rng),
                _ => {
                    if let Some(s) = spec.take() {
                        text = schema::to_ron(&s).unwrap_or(text);
                    }
                    mutate_text(&mut text, &mut rng)
                }
            };
            mutations.push(done);
        }
        if let Some(s) = spec {
            match schema::to_ron(&s) {
                Ok(t) => text = t,
                Err(e) => mutations.push(format!("(not printed: {e})")),
            }
            // Sometimes a textual mutation on top of the structural ones.
            if rng.random_bool(0.15) {
                mutations.push(mutate_text(&mut text, &mut rng));
            }
        }
        if text.len() > MAX_INPUT_BYTES {
            let mut cut = MAX_INPUT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            mutations.push(format!("cut to {cut} bytes"));
        }
        Input {
            index,
            base: base.name.clone(),
            mutations,
            text,
        }
    }
}

/// The ops of every node of a graph, its functions' included.
fn all_ops(spec: &GraphSpec) -> Vec<NodeOp> {
    let functions = spec.functions.iter().flat_map(|f| {
        f.nodes
            .iter()
            .chain(f.gradient.iter().flat_map(|g| g.nodes.iter()))
    });
    spec.nodes
        .iter()
        .chain(functions)
        .map(|n| n.op.clone())
        .collect()
}

// ---------------------------------------------------------------- text

/// Byte spans of the number tokens outside strings.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if c.is_ascii_alphabetic() || c == b'_' || (prev_ident && c.is_ascii_digit()) {
            // An identifier (its digits are not numbers).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            continue;
        }
        let starts =
            c.is_ascii_digit() || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        if starts {
            let start = i;
            i += 1;
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || b[i] == b'.'
                    || b[i] == b'e'
                    || b[i] == b'E'
                    || b[i] == b'_'
                    || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
            {
                i += 1;
            }
            spans.push((start, i));
            continue;
        }
        i += 1;
    }
    spans
}

/// Byte spans of op names: the identifier after `op:`.
fn op_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(k) = text[from..].find("op:") {
        let mut i = from + k + 3;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            spans.push((start, i));
        }
        from = from + k + 3;
    }
    spans
}

/// Byte spans of the quoted strings (without the quotes).
fn string_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if b[i] == b'"' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            spans.push((start, i.min(b.len())));
        }
        i += 1;
    }
    spans
}

/// A char boundary at or before `i`.
fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A random range of the text, on char boundaries.
fn random_range(text: &str, rng: &mut ChaCha8Rng, max_len: usize) -> (usize, usize) {
    if text.is_empty() {
        return (0, 0);
    }
    let a = floor_boundary(text, rng.random_range(0..text.len()));
    let len = rng.random_range(0..=max_len.max(1));
    let b = floor_boundary(text, a.saturating_add(len));
    (a, b.max(a))
}

/// One textual mutation; returns what it did.
pub fn mutate_text(text: &mut String, rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..10) {
        0..=2 => {
            let spans = number_spans(text);
            if let Some(&(a, b)) = spans.choose(rng) {
                let new = SPECIAL_NUMBERS.choose(rng).copied().unwrap_or("0");
                let old = text[a..b].to_string();
                text.replace_range(a..b, new);
                return format!("number {old} -> {new}");
            }
            "number (none)".into()
        }
        3..=4 => {
            let spans = op_spans(text);
            if let Some(&(a, b)) = spans.choose(rng) {
                let new = OP_NAMES.choose(rng).copied().unwrap_or("NoOp");
                let old = text[a..b].to_string();
                text.replace_range(a..b, new);
                return format!("op name {old} -> {new}");
            }
            "op name (none)".into()
        }
        5 => {
            // An output index on a reference: "x" -> "x:7".
            let spans = string_spans(text);
            if let Some(&(a, b)) = spans.choose(rng) {
                let port = PORTS.choose(rng).copied().unwrap_or("7");
                let old = text[a..b].to_string();
                text.insert_str(b, &format!(":{port}"));
                return format!("string \"{old}\" -> \"{old}:{port}\"");
            }
            "port (none)".into()
        }
        6 => {
            let (a, b) = random_range(text, rng, 64);
            text.replace_range(a..b, "");
            format!("delete bytes {a}..{b}")
        }
        7 => {
            let (a, b) = random_range(text, rng, 256);
            let copy = text[a..b].to_string();
            let at = floor_boundary(text, rng.random_range(0..=text.len()));
            text.insert_str(at, &copy);
            format!("copy bytes {a}..{b} to {at}")
        }
        8 => {
            let pieces = [
                "(", ")", "[", "]", ",", ":", "\"", "//", "/*", "\\", "\0", "é", "r#\"", "#", "Some(", "None",
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
            ];
            let piece = pieces.choose(rng).copied().unwrap_or(",");
            let at = floor_boundary(text, rng.random_range(0..=text.len()));
            text.insert_str(at, piece);
            format!("insert {piece:?} at {at}")
        }
        _ => {
            if rng.random_bool(0.5) {
                let at = floor_boundary(text, rng.random_range(0..=text.len()));
                text.truncate(at);
                format!("truncate at {at}")
            } else {
                // Swap two lines.
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() < 2 {
                    return "swap lines (none)".into();
                }
                let i = rng.random_range(0..lines.len());
                let j = rng.random_range(0..lines.len());
                lines.swap(i, j);
                let joined = lines.join("\n");
                *text = joined;
                format!("swap lines {i} and {j}")
            }
        }
    }
}

// ---------------------------------------------------------------- structure

/// Which list of nodes a structural mutation edits.
#[derive(Clone, Copy, Debug)]
enum Body {
    Main,
    Function(usize),
    Gradient(usize),
}

fn nodes_mut(spec: &mut GraphSpec, body: Body) -> Option<&mut Vec<NodeSpec>> {
    match body {
        Body::Main => Some(&mut spec.nodes),
        Body::Function(f) => spec.functions.get_mut(f).map(|f| &mut f.nodes),
        Body::Gradient(f) => spec
            .functions
            .get_mut(f)
            .and_then(|f| f.gradient.as_mut())
            .map(|g| &mut g.nodes),
    }
}

fn body_name(spec: &GraphSpec, body: Body) -> String {
    match body {
        Body::Main => "main".into(),
        Body::Function(f) => format!(
            "function {}",
            spec.functions.get(f).map_or("?", |f| f.name.as_str())
        ),
        Body::Gradient(f) => format!(
            "gradient of {}",
            spec.functions.get(f).map_or("?", |f| f.name.as_str())
        ),
    }
}

/// The main graph mostly; a function body or custom gradient sometimes.
fn pick_body(spec: &GraphSpec, rng: &mut ChaCha8Rng) -> Body {
    if spec.functions.is_empty() || rng.random_bool(0.7) {
        return Body::Main;
    }
    let f = rng.random_range(0..spec.functions.len());
    if spec.functions[f].gradient.is_some() && rng.random_bool(0.3) {
        Body::Gradient(f)
    } else {
        Body::Function(f)
    }
}

/// Every name a reference could use in `body`.
fn names_in(spec: &GraphSpec, body: Body) -> Vec<String> {
    let mut names: Vec<String> = match body {
        Body::Main => spec.nodes.iter().map(|n| n.name.clone()).collect(),
        Body::Function(f) => spec
            .functions
            .get(f)
            .map(|f| {
                f.inputs
                    .iter()
                    .cloned()
                    .chain(f.nodes.iter().map(|n| n.name.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        Body::Gradient(f) => spec
            .functions
            .get(f)
            .map(|f| {
                let mut v: Vec<String> = f.inputs.clone();
                v.extend(f.outputs.iter().cloned());
                v.extend(f.outputs.iter().map(|o| format!("d({o})")));
                if let Some(g) = &f.gradient {
                    v.extend(g.nodes.iter().map(|n| n.name.clone()));
                }
                v
            })
            .unwrap_or_default(),
    };
    if matches!(body, Body::Main) {
        for g in &spec.gradients {
            for x in &g.wrt {
                names.push(schema::gradient_name(&g.of, x));
            }
        }
    }
    names
}

/// A strange name: long, empty, with the reference syntax's characters.
fn weird_name(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..12) {
        0 => "n".repeat(10_000),
        1 => String::new(),
        2 => " ".into(),
        3 => "x:7".into(),
        4 => "d(y)/d(x)".into(),
        5 => "a/b/c".into(),
        6 => "ünïcødé✓".into(),
        7 => "\u{0}".into(),
        8 => "quote\"d".into(),
        9 => ":0".into(),
        10 => "d(".into(),
        _ => format!("n{}", rng.random_range(0..1000)),
    }
}

/// A reference from node `at` of a body: usually a name that exists.
fn random_ref(names: &[String], at: usize, rng: &mut ChaCha8Rng) -> String {
    let any = |rng: &mut ChaCha8Rng| names.choose(rng).cloned().unwrap_or_default();
    match rng.random_range(0..10) {
        0..=4 => any(rng),
        5 => names.get(at).cloned().unwrap_or_default(), // itself: a cycle
        6 => {
            // A later node: a cycle when it depends on this one.
            if at.saturating_add(1) < names.len() {
                names[rng.random_range(at + 1..names.len())].clone()
            } else {
                any(rng)
            }
        }
        7 => format!("{}:{}", any(rng), PORTS.choose(rng).copied().unwrap_or("7")),
        8 => {
            let (a, b) = (any(rng), any(rng));
            schema::gradient_name(&a, &b)
        }
        _ => weird_name(rng),
    }
}

fn plain_node(name: String, op: impl Into<NodeOp>, inputs: Vec<String>) -> NodeSpec {
    NodeSpec {
        name,
        op: op.into(),
        inputs,
        dtype: None,
        control_inputs: Vec::new(),
        collections: Vec::new(),
    }
}

fn special_f64(rng: &mut ChaCha8Rng) -> f64 {
    *[
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e308,
        -1e308,
        9.223_372_036_854_776e18,
        1e-320,
        -0.0,
    ]
    .choose(rng)
    .unwrap_or(&0.0)
}

/// One structural mutation; returns what it did.
fn mutate_spec(spec: &mut GraphSpec, corpus: &Corpus, rng: &mut ChaCha8Rng) -> String {
    let body = pick_body(spec, rng);
    let where_ = body_name(spec, body);
    let names = names_in(spec, body);
    let kind = rng.random_range(0..26);
    let Some(nodes) = nodes_mut(spec, body) else {
        return "no body".into();
    };
    let n = nodes.len();
    let pick = |rng: &mut ChaCha8Rng| (n > 0).then(|| rng.random_range(0..n));
    match kind {
        0 => {
            // Rename a node, not its uses.
            let Some(i) = pick(rng) else {
                return "rename (empty)".into();
            };
            let new = if rng.random_bool(0.5) {
                weird_name(rng)
            } else {
                names.choose(rng).cloned().unwrap_or_default()
            };
            let old = std::mem::replace(&mut nodes[i].name, new);
            format!("{where_}: rename node {old} (not its uses)")
        }
        1 => {
            // Rename a node and its uses.
            let Some(i) = pick(rng) else {
                return "rename (empty)".into();
            };
            let new = weird_name(rng);
            let old = std::mem::replace(&mut nodes[i].name, new.clone());
            rename_uses(spec, &old, &new);
            format!("{where_}: rename node {old} and its uses")
        }
        2 => {
            let Some(i) = pick(rng) else {
                return "delete (empty)".into();
            };
            let old = nodes.remove(i);
            format!("{where_}: delete node {}", old.name)
        }
        3 => {
            let Some(i) = pick(rng) else {
                return "duplicate (empty)".into();
            };
            let copy = nodes[i].clone();
            let at = rng.random_range(0..=n);
            nodes.insert(at, copy);
            format!("{where_}: duplicate node {} at {at}", nodes[at].name)
        }
        4 => {
            let (Some(i), Some(j)) = (pick(rng), pick(rng)) else {
                return "swap ops (empty)".into();
            };
            let op = nodes[i].op.clone();
            nodes[i].op = std::mem::replace(&mut nodes[j].op, op);
            format!(
                "{where_}: swap the ops of {} and {}",
                nodes[i].name, nodes[j].name
            )
        }
        5..=6 => {
            let Some(i) = pick(rng) else {
                return "replace op (empty)".into();
            };
            let op = corpus.ops.choose(rng).cloned().unwrap_or(Op::NoOp.into());
            let name = op.name();
            nodes[i].op = op;
            format!("{where_}: node {} becomes a {name}", nodes[i].name)
        }
        7..=9 => {
            // Rewire one input (a cycle, a port, a gradient, a missing name).
            let Some(i) = pick(rng) else {
                return "rewire (empty)".into();
            };
            let new = random_ref(&names, i, rng);
            let shown: String = new.chars().take(40).collect();
            if nodes[i].inputs.is_empty() || rng.random_bool(0.2) {
                nodes[i].inputs.push(new);
                format!("{where_}: node {} gets input {shown:?}", nodes[i].name)
            } else {
                let k = rng.random_range(0..nodes[i].inputs.len());
                nodes[i].inputs[k] = new;
                format!("{where_}: node {} input {k} -> {shown:?}", nodes[i].name)
            }
        }
        10 => {
            let Some(i) = pick(rng) else {
                return "drop input (empty)".into();
            };
            if nodes[i].inputs.is_empty() {
                return format!("{where_}: drop input of {} (none)", nodes[i].name);
            }
            let k = rng.random_range(0..nodes[i].inputs.len());
            nodes[i].inputs.remove(k);
            format!("{where_}: node {} loses input {k}", nodes[i].name)
        }
        11 => {
            let Some(i) = pick(rng) else {
                return "control (empty)".into();
            };
            let c = random_ref(&names, i, rng);
            nodes[i].control_inputs.push(c);
            format!("{where_}: node {} gets a control input", nodes[i].name)
        }
        12 => {
            // Insert a node of a random op with random inputs.
            let op = corpus.ops.choose(rng).cloned().unwrap_or(Op::NoOp.into());
            let arity = rng.random_range(0..=3);
            let at = rng.random_range(0..=n);
            let inputs = (0..arity).map(|_| random_ref(&names, at, rng)).collect();
            let name = format!("fz{}", rng.random_range(0..100));
            let what = format!("{where_}: insert a {} named {name} at {at}", op.name());
            nodes.insert(at, plain_node(name, op, inputs));
            what
        }
        13 => {
            let Some(i) = pick(rng) else {
                return "dtype (empty)".into();
            };
            nodes[i].dtype = *[None, Some(DType::F32), Some(DType::F64)]
                .choose(rng)
                .unwrap_or(&None);
            format!(
                "{where_}: node {} dtype {:?}",
                nodes[i].name, nodes[i].dtype
            )
        }
        14 => {
            let Some(i) = pick(rng) else {
                return "huge shape (empty)".into();
            };
            let d = *HUGE.choose(rng).unwrap_or(&0);
            let what = format!("{where_}: node {} gets a dimension {d}", nodes[i].name);
            match &mut nodes[i].op {
                NodeOp::Op(Op::Placeholder { shape } | Op::Variable { shape, .. }) => {
                    let k = rng.random_range(0..=shape.0.len());
                    shape.0.insert(k, gradc::runtime::Dim::Known(d));
                }
                NodeOp::Op(Op::Fill { shape }) => shape.push(d),
                NodeOp::Op(Op::Reshape { shape }) => {
                    shape.push(i64::try_from(d).unwrap_or(i64::MAX))
                }
                op => *op = Op::Fill { shape: vec![d, d] }.into(),
            }
            what
        }
        15 => {
            let Some(i) = pick(rng) else {
                return "constant (empty)".into();
            };
            let v = special_f64(rng);
            nodes[i].op = if rng.random_bool(0.5) {
                Op::Const(Literal::Scalar(v)).into()
            } else {
                Op::Const(Literal::List(vec![
                    Literal::Scalar(v),
                    Literal::Scalar(1.0),
                ]))
                .into()
            };
            nodes[i].inputs.clear();
            format!("{where_}: node {} becomes Const({v})", nodes[i].name)
        }
        16 => {
            // Move a node elsewhere in the list.
            let (Some(i), Some(j)) = (pick(rng), pick(rng)) else {
                return "move (empty)".into();
            };
            let node = nodes.remove(i);
            let name = node.name.clone();
            nodes.insert(j, node);
            format!("{where_}: move node {name} to {j}")
        }
        17..=18 => mutate_gradients(spec, rng),
        19 => {
            let all = names_in(spec, Body::Main);
            let k = rng.random_range(0..4);
            let outs: Vec<String> = (0..k).map(|_| random_ref(&all, usize::MAX, rng)).collect();
            let what = format!("outputs -> {:?}", trunc_list(&outs));
            spec.outputs = Some(outs);
            what
        }
        20..=21 => mutate_functions(spec, rng),
        22 => mutate_train(spec, corpus, rng),
        23 => {
            spec.dtype = if spec.dtype == DType::F32 {
                DType::F64
            } else {
                DType::F32
            };
            format!("graph dtype -> {:?}", spec.dtype)
        }
        24 => {
            // Graft a node of another seed (its inputs rewired to this graph).
            let Some(other) = corpus.seeds.choose(rng).and_then(|s| s.spec.as_ref()) else {
                return "graft (none)".into();
            };
            let Some(mut node) = other.nodes.choose(rng).cloned() else {
                return "graft (empty)".into();
            };
            let at = rng.random_range(0..=n);
            for input in &mut node.inputs {
                *input = random_ref(&names, at, rng);
            }
            let what = format!(
                "{where_}: graft node {} ({}) at {at}",
                node.name,
                node.op.name()
            );
            nodes.insert(at, node);
            what
        }
        _ => deep(spec, rng),
    }
}

/// Ops that take one input and give one output of its shape: the unary
/// functions of the elementwise table (without attributes) and these.
fn unary_names() -> Vec<&'static str> {
    let table = UnaryFn::EXAMPLES.iter().filter(|f| f.attr().is_none());
    table
        .map(|f| f.name())
        .chain([
            "Identity",
            "StopGradient",
            "Softmax",
            "LogSoftmax",
            "ZerosLike",
            "OnesLike",
        ])
        .collect()
}

/// Ops that take two inputs and broadcast them: the binary functions of the
/// elementwise table that broadcast.
fn binary_names() -> Vec<&'static str> {
    let table = BinaryFn::ALL.iter().filter(|f| f.broadcasts());
    table.map(|f| f.name()).collect()
}

/// An op of `names` by name (unit variants only).
fn unit_op(names: &[&str], rng: &mut ChaCha8Rng) -> Option<NodeOp> {
    let name = names.choose(rng)?;
    schema::parse(&format!(
        "Graph(name: \"g\", nodes: [(name: \"n\", op: {name})])"
    ))
    .ok()?
    .nodes
    .pop()
    .map(|n| n.op)
}

/// One mutation that mostly keeps the graph valid: another elementwise op of
/// the same arity, special constants, a node inserted between a node and its
/// uses, new gradient requests and outputs of existing nodes.
fn mutate_gentle(spec: &mut GraphSpec, corpus: &Corpus, rng: &mut ChaCha8Rng) -> String {
    let n = spec.nodes.len();
    if n == 0 {
        return "gentle (empty)".into();
    }
    let i = rng.random_range(0..n);
    let name = spec.nodes[i].name.clone();
    match rng.random_range(0..8) {
        0 => {
            let (unary, binary) = (unary_names(), binary_names());
            let class = if unary.contains(&spec.nodes[i].op.name()) {
                unary
            } else if binary.contains(&spec.nodes[i].op.name()) {
                binary
            } else {
                return mutate_gentle_gradient(spec, rng);
            };
            let Some(op) = unit_op(&class, rng) else {
                return "swap op (none)".into();
            };
            let what = format!("node {name}: {} -> {}", spec.nodes[i].op.name(), op.name());
            spec.nodes[i].op = op;
            what
        }
        1 => {
            // Special values in a constant (same shape).
            let NodeOp::Op(Op::Const(lit)) = &mut spec.nodes[i].op else {
                return mutate_gentle_gradient(spec, rng);
            };
            let v = special_f64(rng);
            let mut replaced = 0;
            fn walk(l: &mut Literal, v: f64, rng: &mut ChaCha8Rng, replaced: &mut usize) {
                match l {
                    Literal::Scalar(x) => {
                        if rng.random_bool(0.5) {
                            *x = v;
                            *replaced += 1;
                        }
                    }
                    Literal::List(items) => {
                        for item in items {
                            walk(item, v, rng, replaced);
                        }
                    }
                }
            }
            walk(lit, v, rng, &mut replaced);
            format!("node {name}: {replaced} values of the constant -> {v}")
        }
        2 | 3 => {
            // A unary or binary node between node i and its later uses.
            let new = format!("{name}_fz{}", rng.random_range(0..100));
            let (op, inputs) = if rng.random_bool(0.6) {
                (unit_op(&unary_names(), rng), vec![name.clone()])
            } else {
                (
                    unit_op(&binary_names(), rng),
                    vec![name.clone(), name.clone()],
                )
            };
            let Some(op) = op else {
                return "insert (none)".into();
            };
            let what = format!("a {} node {new} after {name}", op.name());
            for later in &mut spec.nodes[i + 1..] {
                for input in &mut later.inputs {
                    if *input == name {
                        *input = new.clone();
                    }
                }
            }
            spec.nodes.insert(i + 1, plain_node(new, op, inputs));
            what
        }
        4 => {
            let outs = spec.outputs.get_or_insert_with(Vec::new);
            outs.push(name.clone());
            format!("output {name} added")
        }
        5 => mutate_train(spec, corpus, rng),
        6 => {
            // A number of an op's attributes (axes, shapes, exponents) changed.
            let text = match schema::to_ron(&GraphSpec {
                nodes: vec![spec.nodes[i].clone()],
                ..spec.clone()
            }) {
                Ok(t) => t,
                Err(_) => return "attribute (not printed)".into(),
            };
            let spans = number_spans(&text);
            let Some(&(a, b)) = spans.choose(rng) else {
                return format!("node {name}: no number");
            };
            let new = ["0", "1", "-1", "2", "3", "-2", "0.5", "NaN"]
                .choose(rng)
                .copied()
                .unwrap_or("0");
            let mut t = text.clone();
            t.replace_range(a..b, new);
            match schema::parse(&t)
                .ok()
                .and_then(|s| s.nodes.into_iter().next())
            {
                Some(node) => {
                    spec.nodes[i] = node;
                    format!("node {name}: a number -> {new}")
                }
                None => format!("node {name}: a number -> {new} (did not parse)"),
            }
        }
        _ => mutate_gentle_gradient(spec, rng),
    }
}

/// A gradient request of one existing node with respect to another.
fn mutate_gentle_gradient(spec: &mut GraphSpec, rng: &mut ChaCha8Rng) -> String {
    let names = names_in(spec, Body::Main);
    let (Some(of), Some(wrt)) = (names.choose(rng).cloned(), names.choose(rng).cloned()) else {
        return "gradient (empty)".into();
    };
    let grad_ys = if rng.random_bool(0.15) {
        names.choose(rng).cloned()
    } else {
        None
    };
    let what = format!(
        "gradient of {} wrt {} (grad_ys {:?})",
        of.chars().take(40).collect::<String>(),
        wrt.chars().take(40).collect::<String>(),
        grad_ys
    );
    spec.gradients.push(GradientSpec {
        of,
        wrt: vec![wrt],
        grad_ys,
    });
    what
}

fn trunc_list(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.chars().take(40).collect()).collect()
}

/// Renames every reference to `old` (as `old`, `old:k` or inside a gradient name).
fn rename_uses(spec: &mut GraphSpec, old: &str, new: &str) {
    let fix = |s: &mut String| {
        if s == old {
            *s = new.to_string();
        } else if let Some(rest) = s.strip_prefix(old).and_then(|r| r.strip_prefix(':')) {
            *s = format!("{new}:{rest}");
        }
    };
    for n in &mut spec.nodes {
        n.inputs.iter_mut().for_each(fix);
        n.control_inputs.iter_mut().for_each(fix);
    }
    for g in &mut spec.gradients {
        fix(&mut g.of);
        g.wrt.iter_mut().for_each(fix);
        if let Some(y) = &mut g.grad_ys {
            fix(y);
        }
    }
    if let Some(outs) = &mut spec.outputs {
        outs.iter_mut().for_each(fix);
    }
    if let Some(t) = &mut spec.train {
        fix(&mut t.loss);
        t.metrics.iter_mut().for_each(fix);
        t.hooks.iter_mut().for_each(fix);
    }
}

fn mutate_gradients(spec: &mut GraphSpec, rng: &mut ChaCha8Rng) -> String {
    let names = names_in(spec, Body::Main);
    let r = |rng: &mut ChaCha8Rng| random_ref(&names, usize::MAX, rng);
    match rng.random_range(0..5) {
        0 => {
            spec.gradients.clear();
            "no gradient requests".into()
        }
        1 | 2 => {
            let k = rng.random_range(0..=3);
            let req = GradientSpec {
                of: r(rng),
                wrt: (0..k).map(|_| r(rng)).collect(),
                grad_ys: if rng.random_bool(0.3) {
                    Some(r(rng))
                } else {
                    None
                },
            };
            let what = format!(
                "add gradient request of {:?} wrt {:?} grad_ys {:?}",
                trunc_list(std::slice::from_ref(&req.of)),
                trunc_list(&req.wrt),
                req.grad_ys
                    .as_ref()
                    .map(|s| s.chars().take(40).collect::<String>())
            );
            spec.gradients.push(req);
            what
        }
        3 => {
            let Some(g) = spec.gradients.choose_mut(rng) else {
                return "change gradient request (none)".into();
            };
            g.grad_ys = Some(r(rng));
            format!("gradient request of {} gets grad_ys", g.of)
        }
        _ => {
            let Some(g) = spec.gradients.choose_mut(rng) else {
                return "change gradient request (none)".into();
            };
            if g.wrt.is_empty() || rng.random_bool(0.3) {
                g.of = r(rng);
                format!(
                    "gradient request: of -> {:?}",
                    g.of.chars().take(40).collect::<String>()
                )
            } else {
                let k = rng.random_range(0..g.wrt.len());
                g.wrt[k] = r(rng);
                format!("gradient request of {}: wrt {k} changed", g.of)
            }
        }
    }
}

fn mutate_functions(spec: &mut GraphSpec, rng: &mut ChaCha8Rng) -> String {
    if spec.functions.is_empty() || rng.random_bool(0.2) {
        // A new function, called from the main graph.
        let name = format!("F{}", spec.functions.len());
        spec.functions.push(FunctionSpec {
            name: name.clone(),
            inputs: vec!["a".into()],
            outputs: vec!["y".into()],
            nodes: vec![
                plain_node("e".into(), Op::Exp, vec!["a".into()]),
                plain_node("y".into(), Op::Mul, vec!["e".into(), "a".into()]),
            ],
            gradient: None,
            once_differentiable: false,
        });
        let arg = spec
            .nodes
            .first()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        spec.nodes.push(plain_node(
            format!("call_{name}"),
            Layer::Call(name.clone()),
            vec![arg],
        ));
        return format!("new function {name}, called");
    }
    let f = rng.random_range(0..spec.functions.len());
    let other = rng.random_range(0..spec.functions.len());
    let other_name = spec.functions[other].name.clone();
    let func = &mut spec.functions[f];
    let fname = func.name.clone();
    match rng.random_range(0..8) {
        0 | 1 => {
            // Calls itself (or another function, maybe calling back).
            let callee = if rng.random_bool(0.6) {
                fname.clone()
            } else {
                other_name
            };
            let inputs = func.inputs.clone();
            func.nodes.push(plain_node(
                "rec".into(),
                Layer::Call(callee.clone()),
                inputs,
            ));
            if rng.random_bool(0.5) {
                if let Some(o) = func.outputs.first_mut() {
                    *o = "rec".into();
                }
            }
            format!("function {fname} calls {callee}")
        }
        2 => {
            // A NoOp used as an input.
            func.nodes
                .insert(0, plain_node("nop".into(), Op::NoOp, Vec::new()));
            if let Some(n) = func.nodes.get_mut(1) {
                if let Some(i) = n.inputs.first_mut() {
                    *i = "nop".into();
                } else {
                    n.inputs.push("nop".into());
                }
            }
            format!("function {fname}: a NoOp used as an input")
        }
        3 => {
            let k = rng.random_range(0..3);
            func.outputs = (0..k)
                .map(|_| {
                    let mut names: Vec<String> =
                        func.nodes.iter().map(|n| n.name.clone()).collect();
                    names.extend(func.inputs.iter().cloned());
                    random_ref(&names, usize::MAX, rng)
                })
                .collect();
            format!("function {fname}: outputs changed")
        }
        4 => {
            let k = rng.random_range(0..3);
            func.inputs = (0..k).map(|i| format!("p{i}")).collect();
            format!("function {fname}: {k} inputs")
        }
        5 => {
            // A custom gradient that does not fit.
            let returns = match rng.random_range(0..3) {
                0 => Vec::new(),
                1 => vec![None; func.inputs.len() + 1],
                _ => vec![Some("d(y)".into()); func.inputs.len()],
            };
            func.gradient = Some(CustomGradientSpec {
                nodes: Vec::new(),
                returns,
            });
            func.once_differentiable = rng.random_bool(0.5);
            format!("function {fname}: custom gradient changed")
        }
        6 => {
            let name = func.name.clone();
            spec.functions.push(FunctionSpec {
                name: name.clone(),
                ..spec.functions[f].clone()
            });
            format!("function {name} defined twice")
        }
        _ => {
            // A call with a wrong number of arguments.
            let k = rng.random_range(0..4);
            let args = spec.nodes.iter().take(k).map(|n| n.name.clone()).collect();
            spec.nodes.push(plain_node(
                "badcall".into(),
                Layer::Call(fname.clone()),
                args,
            ));
            format!("call of {fname} with {k} arguments")
        }
    }
}

fn mutate_train(spec: &mut GraphSpec, corpus: &Corpus, rng: &mut ChaCha8Rng) -> String {
    let names = names_in(spec, Body::Main);
    let r = |rng: &mut ChaCha8Rng| random_ref(&names, usize::MAX, rng);
    let Some(train) = &mut spec.train else {
        // Borrow a train section from a seed that has one, minimizing some node.
        let Some(t) = corpus
            .seeds
            .iter()
            .filter_map(|s| s.spec.as_ref()?.train.clone())
            .collect::<Vec<_>>()
            .choose(rng)
            .cloned()
        else {
            return "train (no seed has one)".into();
        };
        let mut t = t;
        t.loss = r(rng);
        t.metrics.clear();
        t.training_flag = None;
        spec.train = Some(t);
        return "a train section added".into();
    };
    match rng.random_range(0..9) {
        0 => {
            train.loss = r(rng);
            "train: loss changed".into()
        }
        1 => {
            let k = rng.random_range(0..3);
            train.var_list = Some((0..k).map(|_| r(rng)).collect());
            "train: var_list changed".into()
        }
        2 => {
            train.training_flag = Some(r(rng));
            "train: training_flag changed".into()
        }
        3 => {
            train.hooks.push(r(rng));
            "train: a hook added".into()
        }
        4 => {
            train.metrics.push(r(rng));
            "train: a metric added".into()
        }
        5 => {
            let v = special_f64(rng);
            match &mut train.optimizer {
                OptimizerSpec::Adam { beta1, .. } => *beta1 = v,
                OptimizerSpec::Momentum { momentum, .. }
                | OptimizerSpec::RMSProp { momentum, .. } => *momentum = v,
                opt => opt.set_learning_rate(v),
            }
            format!("train: an optimizer parameter -> {v}")
        }
        6 => {
            train.weight_decay = special_f64(rng);
            train.clip_global_norm = Some(special_f64(rng));
            "train: weight decay and clipping changed".into()
        }
        7 => {
            let steps = *[0, 1, 3, u64::MAX].choose(rng).unwrap_or(&1);
            train.learning_rate_schedule = Some(match rng.random_range(0..3) {
                0 => Schedule::ExponentialDecay {
                    decay_steps: steps,
                    decay_rate: special_f64(rng),
                    staircase: rng.random_bool(0.5),
                },
                1 => Schedule::CosineDecay {
                    decay_steps: steps,
                    alpha: special_f64(rng),
                },
                _ => Schedule::PiecewiseConstant {
                    boundaries: vec![steps, 2],
                    values: vec![special_f64(rng); rng.random_range(0..4)],
                },
            });
            "train: a learning-rate schedule".into()
        }
        _ => {
            train.optimizer = match rng.random_range(0..6) {
                0 => OptimizerSpec::GradientDescent { learning_rate: 0.1 },
                1 => OptimizerSpec::Momentum {
                    learning_rate: 0.1,
                    momentum: 0.9,
                    use_nesterov: rng.random_bool(0.5),
                },
                2 => OptimizerSpec::AdamW {
                    weight_decay: 0.01,
                    learning_rate: 0.001,
                    beta1: 0.9,
                    beta2: 0.999,
                    epsilon: 1e-8,
                },
                3 => OptimizerSpec::RMSProp {
                    learning_rate: 0.01,
                    decay: 0.9,
                    momentum: 0.5,
                    epsilon: 1e-10,
                    centered: rng.random_bool(0.5),
                },
                4 => OptimizerSpec::Adagrad {
                    learning_rate: 0.1,
                    initial_accumulator_value: special_f64(rng),
                },
                _ => OptimizerSpec::Adam {
                    learning_rate: 0.001,
                    beta1: 0.9,
                    beta2: 0.999,
                    epsilon: 1e-8,
                },
            };
            "train: optimizer changed".into()
        }
    }
}

/// A deep graph: a long chain of nodes, or of function calls.
fn deep(spec: &mut GraphSpec, rng: &mut ChaCha8Rng) -> String {
    let Some(start) = spec.nodes.last().map(|n| n.name.clone()) else {
        return "deep (empty)".into();
    };
    if rng.random_bool(0.5) {
        let len = *[100, 1000, 3000].choose(rng).unwrap_or(&100);
        let mut prev = start;
        for i in 0..len {
            let name = format!("chain{i}");
            let op = if i % 2 == 0 { Op::Neg } else { Op::Identity };
            spec.nodes.push(plain_node(name.clone(), op, vec![prev]));
            prev = name;
        }
        format!("a chain of {len} nodes after the last")
    } else {
        let len = *[10, 100, 400].choose(rng).unwrap_or(&10);
        for i in 0..len {
            let body = if i + 1 == len {
                plain_node("y".into(), Op::Neg, vec!["a".into()])
            } else {
                plain_node(
                    "y".into(),
                    Layer::Call(format!("Deep{}", i + 1)),
                    vec!["a".into()],
                )
            };
            spec.functions.push(FunctionSpec {
                name: format!("Deep{i}"),
                inputs: vec!["a".into()],
                outputs: vec!["y".into()],
                nodes: vec![body],
                gradient: None,
                once_differentiable: false,
            });
        }
        spec.nodes.push(plain_node(
            "deepcall".into(),
            Layer::Call("Deep0".into()),
            vec![start],
        ));
        format!("a chain of {len} function calls")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let corpus = Corpus::from_texts(Vec::new());
        for i in 0..50 {
            let a = corpus.generate(7, i);
            let b = corpus.generate(7, i);
            assert_eq!(a.text, b.text);
            assert_eq!(a.mutations, b.mutations);
        }
        let differ = (0..20).any(|i| corpus.generate(7, i).text != corpus.generate(8, i).text);
        assert!(differ);
    }

    #[test]
    fn the_ops_seed_parses_and_has_every_op() {
        let corpus = Corpus::from_texts(Vec::new());
        let ops = &corpus.ops;
        for name in OP_NAMES.iter().chain(Layer::NAMES) {
            assert!(
                ops.iter().any(|op| op.name() == *name),
                "the ops seed lacks {name}"
            );
        }
    }

    #[test]
    fn number_spans_skip_names_and_strings() {
        let text = r#"(name: "W1", op: Const([1.5, -2e3]), shape: [3]) // 9"#;
        let spans: Vec<&str> = number_spans(text)
            .iter()
            .map(|&(a, b)| &text[a..b])
            .collect();
        assert_eq!(spans, ["1.5", "-2e3", "3"]);
    }
}
