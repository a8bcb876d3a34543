"""Golden values from TensorFlow for gradc's integer and bool ops: Cast,
comparisons, logical ops, Select with a bool condition, ArgMax and ArgMin,
integer arithmetic, FloorDiv and FloorMod, OneHot, IsNan and IsFinite, Any
and All, Shape, Size and Range.

Each entry writes one `.npz` into tests/golden/dtypes/ with the arrays

    op, x, [b], [c], y

(`op` the gradc op's text, the inputs x, b, c of their own dtypes, y
TensorFlow's output of its own dtype), forward values only: these ops have no
gradient, or (FloorMod on floats) have theirs in tools/golden/elementwise.py.
tf.compat.v1 graph mode on the CPU. tests/tf_golden.rs compares gradc
exactly on integers and bools and to 1e-10 relative on floats; it reads the
files only.

Run by hand, when an entry is added or TensorFlow changes (from the
repository root, in the virtualenv of tools/golden/conv.py):

    .venv-golden/bin/python tools/golden/dtypes.py

The values were made with tensorflow-cpu 2.21. An entry added here needs its
row in FORWARD of tests/tf_golden.rs too, which fails otherwise.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from conv import save_npz  # noqa: E402

OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "dtypes"

RNG = np.random.default_rng(20261205)

# Floats with ties, signed zeros, halves and a NaN.
F = np.array([[-2.5, -0.5, 0.0, 0.5, 2.5, 1.0], [-0.0, 3.75, -1.25, np.nan, 1.0, -7.0]])
G = np.array([1.0, -0.5, 0.0, 0.5, 2.0, -7.0])
# Integers of both signs, for floor division and modulo by divisors of both signs.
I = np.array([[-7, -6, -1, 0, 1, 6, 7], [9, -9, 13, -13, 2, -2, 5]])
D = np.array([3, -3, 2, -2, 5, 1, -1])
BIG = np.array([2**31 + 5, -(2**31) - 7, 123, -(2**40) + 3], dtype=np.int64)


def fractions():
    x = RNG.standard_normal((3, 5)) * 4
    x.flat[:6] = [-2.7, -0.5, 0.5, 2.7, -3.0, 1e3]
    return x


def ties():
    """Rows with repeated maxima and minima: the first one's index wins."""
    return np.array([[1.0, 3.0, 3.0, -2.0], [-1.0, -1.0, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0]])


# (file, gradc op, TensorFlow function, inputs as (name, array))
ENTRIES = [
    ("cast_f64_to_i32", "Cast(to: I32)", lambda x: tf.cast(x, tf.int32), [("x", fractions())]),
    ("cast_f64_to_i64", "Cast(to: I64)", lambda x: tf.cast(x, tf.int64), [("x", fractions())]),
    ("cast_f64_to_bool", "Cast(to: Bool)", lambda x: tf.cast(x, tf.bool), [("x", F)]),
    ("cast_bool_to_f64", "Cast(to: F64)", lambda x: tf.cast(x, tf.float64), [("x", F > 0)]),
    ("cast_i64_to_i32", "Cast(to: I32)", lambda x: tf.cast(x, tf.int32), [("x", BIG)]),
    ("cast_i64_to_f32", "Cast(to: F32)", lambda x: tf.cast(x, tf.float32), [("x", BIG)]),
    ("cast_f64_to_f32", "Cast(to: F32)", lambda x: tf.cast(x, tf.float32), [("x", fractions() / 3)]),
    ("equal_f64", "Equal", tf.equal, [("x", F), ("b", G)]),
    ("not_equal_f64", "NotEqual", tf.not_equal, [("x", F), ("b", G)]),
    ("less_f64", "Less", tf.less, [("x", F), ("b", G)]),
    ("less_equal_f64", "LessEqual", tf.less_equal, [("x", F), ("b", G)]),
    ("greater_f64", "Greater", tf.greater, [("x", F), ("b", G)]),
    ("greater_equal_f64", "GreaterEqual", tf.greater_equal, [("x", F), ("b", G)]),
    ("equal_i64", "Equal", tf.equal, [("x", I), ("b", D)]),
    ("less_i32", "Less", tf.less, [("x", I.astype(np.int32)), ("b", D.astype(np.int32))]),
    ("equal_bool", "Equal", tf.equal, [("x", F > 0), ("b", G > 0)]),
    ("logical_and", "LogicalAnd", tf.logical_and, [("x", F > 0), ("b", G >= 0)]),
    ("logical_or", "LogicalOr", tf.logical_or, [("x", F > 0), ("b", G >= 0)]),
    ("logical_not", "LogicalNot", tf.logical_not, [("x", F > 0)]),
    (
        "select_bool",
        "Select",
        tf.compat.v1.where,
        [("x", F > 0), ("b", RNG.standard_normal((2, 6))), ("c", RNG.standard_normal((2, 6)))],
    ),
    ("arg_max", "ArgMax(axis: 1)", lambda x: tf.argmax(x, axis=1), [("x", ties())]),
    (
        "arg_min_i32",
        "ArgMin(axis: 0, output_type: I32)",
        lambda x: tf.argmin(x, axis=0, output_type=tf.int32),
        [("x", ties())],
    ),
    ("arg_max_i64_input", "ArgMax(axis: -1)", lambda x: tf.argmax(x, axis=-1), [("x", I)]),
    ("add_i64", "Add", tf.add, [("x", I), ("b", D)]),
    ("sub_i32_wraps", "Sub", tf.subtract, [("x", np.array([-(2**31), 5], np.int32)), ("b", np.array([1, 7], np.int32))]),
    ("mul_i32_wraps", "Mul", tf.multiply, [("x", np.array([2**30, -3], np.int32)), ("b", np.array([4, 5], np.int32))]),
    ("maximum_i64", "Maximum", tf.maximum, [("x", I), ("b", D)]),
    ("minimum_i32", "Minimum", tf.minimum, [("x", I.astype(np.int32)), ("b", D.astype(np.int32))]),
    ("squared_difference_i64", "SquaredDifference", tf.math.squared_difference, [("x", I), ("b", D)]),
    ("neg_i64", "Neg", tf.negative, [("x", I)]),
    ("abs_i32", "Abs", tf.abs, [("x", I.astype(np.int32))]),
    ("sign_i64", "Sign", tf.sign, [("x", I)]),
    ("square_i32", "Square", tf.square, [("x", I.astype(np.int32))]),
    ("floor_div_i64", "FloorDiv", tf.math.floordiv, [("x", I), ("b", D)]),
    ("floor_mod_i32", "FloorMod", tf.math.floormod, [("x", I.astype(np.int32)), ("b", D.astype(np.int32))]),
    ("floor_div_f64", "FloorDiv", tf.math.floordiv, [("x", I * 0.75), ("b", D * 0.5)]),
    ("floor_mod_f64", "FloorMod", tf.math.floormod, [("x", I * 0.75), ("b", D * 0.5)]),
    ("is_nan", "IsNan", tf.math.is_nan, [("x", np.array([1.0, np.nan, -np.inf, 0.0, np.inf]))]),
    ("is_finite", "IsFinite", tf.math.is_finite, [("x", np.array([1.0, np.nan, -np.inf, 0.0, np.inf]))]),
    ("any_axis1", "Any(axes: [1])", lambda x: tf.reduce_any(x, axis=1), [("x", F > 2)]),
    ("all_keep", "All(axes: [0], keep_dims: true)", lambda x: tf.reduce_all(x, axis=0, keepdims=True), [("x", F > -1)]),
    ("any_all_axes", "Any()", tf.reduce_any, [("x", F > 3)]),
    ("shape", "Shape", tf.shape, [("x", fractions())]),
    ("size", "Size", tf.size, [("x", fractions())]),
    ("range_i32", "Range(start: 3.0, limit: -4.0, delta: -2.0)", lambda: tf.range(3, -4, -2), []),
    (
        "range_f64",
        "Range(start: 0.5, limit: 2.0, delta: 0.25, dtype: F64)",
        lambda: tf.range(0.5, 2.0, 0.25, dtype=tf.float64),
        [],
    ),
    # Indices outside [0, depth) give a row of off_value.
    (
        "one_hot",
        "OneHot(depth: 4, on_value: 2.5, off_value: -1.0, dtype: F64)",
        lambda x: tf.one_hot(x, 4, on_value=2.5, off_value=-1.0, dtype=tf.float64),
        [("x", np.array([[0, 3, -1], [4, 1, 1]], np.int64))],
    ),
    (
        "one_hot_axis0_f32",
        "OneHot(depth: 3, axis: 0)",
        lambda x: tf.one_hot(x, 3, axis=0),
        [("x", np.array([2, 0, 1, 2], np.int32))],
    ),
]

DTYPES = {
    np.dtype(np.float64): tf.float64,
    np.dtype(np.float32): tf.float32,
    np.dtype(np.int32): tf.int32,
    np.dtype(np.int64): tf.int64,
    np.dtype(np.bool_): tf.bool,
}


def main():
    tf.compat.v1.disable_eager_execution()
    names = [e[0] for e in ENTRIES]
    assert len(set(names)) == len(names), "entry names must be unique"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.npz"):
        stale.unlink()
    for name, op, fn, inputs in ENTRIES:
        graph = tf.Graph()
        with graph.as_default():
            holders = [tf.compat.v1.placeholder(DTYPES[a.dtype], a.shape, n) for n, a in inputs]
            y = fn(*holders)
            with tf.compat.v1.Session(graph=graph) as sess:
                value = sess.run(y, {h: a for h, (_, a) in zip(holders, inputs)})
        arrays = {"op": np.array([ord(ch) for ch in op], dtype=np.float64)}
        arrays.update({n: a for n, a in inputs})
        arrays["y"] = np.asarray(value)
        save_npz(OUT_DIR / f"{name}.npz", arrays)
        print(f"{name}: {op} -> {arrays['y'].dtype}{list(arrays['y'].shape)}")


if __name__ == "__main__":
    main()
