"""Golden values from TensorFlow for gradc's elementwise math functions.

For every entry of CONFIGS this script builds the TensorFlow function
(tf.compat.v1 graph mode, float64), feeds it seeded inputs in the function's
domain and writes one `.npz` into tests/golden/elementwise/ with the same arrays as
tools/golden/conv.py (its docstring lists them), the second operand of a
binary function named `b` where a convolution's is `filter`:

    op, x, [b], y, dy, dx, [db], vx, [vb], d2x, [d2b], d2dy

with d2* the gradients of s = sum(dx·vx) [+ sum(db·vb)]. Gradients that
TensorFlow leaves unconnected (None: Floor, Ceil, Round) are saved as zeros,
which is what gradc returns. tests/tf_golden.rs compares gradc to 1e-10
relative; it reads the files only.

Run by hand, when an entry is added or TensorFlow changes (from the
repository root, in the virtualenv of tools/golden/conv.py):

    .venv-golden/bin/python tools/golden/elementwise.py

The values were made with tensorflow-cpu 2.21. An entry added here needs its
row in CONFIGS of tests/tf_golden.rs too, which fails otherwise.
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

OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "elementwise"

SHAPE = (3, 4)


def normal(rng):
    return rng.standard_normal(SHAPE)


def small(rng):
    """Inside the domains of asin, acos and atanh, away from tan's poles."""
    return rng.uniform(-0.8, 0.8, SHAPE)


def positive(rng):
    return rng.uniform(0.5, 2.0, SHAPE)


def edges(rng):
    """Halves (both ways of rounding them), integers, ±0 and normal values."""
    x = rng.standard_normal(SHAPE) * 3
    x.flat[:8] = [0.5, 1.5, 2.5, -0.5, -2.5, 0.0, -0.0, 3.0]
    return x


# (file name, gradc op, TensorFlow function, domain of x); a binary function
# takes a second operand b of shape [4], broadcast to x's rows.
UNARY = [
    ("abs", "Abs", tf.abs, normal),
    ("sign", "Sign", tf.sign, edges),
    ("sin", "Sin", tf.sin, normal),
    ("cos", "Cos", tf.cos, normal),
    ("tan", "Tan", tf.tan, small),
    ("asin", "Asin", tf.asin, small),
    ("acos", "Acos", tf.acos, small),
    ("atan", "Atan", tf.atan, normal),
    ("sinh", "Sinh", tf.sinh, normal),
    ("cosh", "Cosh", tf.cosh, normal),
    ("atanh", "Atanh", tf.atanh, small),
    ("log1p", "Log1p", tf.math.log1p, positive),
    ("expm1", "Expm1", tf.math.expm1, normal),
    ("reciprocal", "Reciprocal", tf.math.reciprocal, positive),
    ("erf", "Erf", tf.math.erf, normal),
    ("floor", "Floor", tf.floor, edges),
    ("ceil", "Ceil", tf.math.ceil, edges),
    ("round", "Round", tf.round, edges),
    # TensorFlow's SoftsignGrad has no gradient of its own: the same function
    # from primitives, so that the second order exists.
    ("softsign", "Softsign", lambda x: x / (1 + tf.abs(x)), normal),
    ("elu", "Elu", tf.nn.elu, normal),
    ("selu", "Selu", tf.nn.selu, normal),
    ("leaky_relu", "LeakyRelu(alpha: 0.2)", lambda x: tf.nn.leaky_relu(x, alpha=0.2), normal),
    # tf.nn.gelu(approximate=False) is 0.5·x·erfc(−x·c) with c = 1/√2 cast
    # from a Python float, which makes a float32 constant first: for float64
    # inputs it is off by 5e-9 relative. The same expression with c in
    # float64 is what gradc computes.
    (
        "gelu",
        "Gelu",
        lambda x: 0.5 * x * tf.math.erfc(-x * tf.constant(0.7071067811865476, tf.float64)),
        normal,
    ),
    ("erfc", "Erfc", tf.math.erfc, normal),
    # tf.nn.gelu(approximate=True) casts its 0.044715 from a float32 constant
    # (off by 1e-9 relative for float64); the same expression in float64.
    (
        "gelu_tanh",
        "GeluTanh",
        lambda x: 0.5 * x * (1.0 + tf.tanh(tf.constant(0.7978845608028654, tf.float64) * (x + tf.constant(0.044715, tf.float64) * x * x * x))),
        normal,
    ),
]

BINARY = [
    ("minimum", "Minimum", tf.minimum),
    ("squared_difference", "SquaredDifference", tf.math.squared_difference),
    (
        "sigmoid_cross_entropy",
        "SigmoidCrossEntropyWithLogits",
        lambda x, b: tf.nn.sigmoid_cross_entropy_with_logits(labels=b, logits=x),
    ),
    ("floor_mod", "FloorMod", tf.math.floormod),
]


def zeros_for_none(grads, like):
    return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, like)]


def golden(k, op, f, operands):
    """The arrays of one file: operands is [(name, value)]."""
    rng = np.random.default_rng(1000 + k)
    graph = tf.Graph()
    with graph.as_default():
        ph = {n: tf.compat.v1.placeholder(tf.float64, v.shape, name=n) for n, v in operands}
        ins = [ph[n] for n, _ in operands]
        y = f(*ins)
        dy = tf.compat.v1.placeholder(tf.float64, y.shape, name="dy")
        firsts = zeros_for_none(tf.gradients(y, ins, grad_ys=dy), ins)
        vs = {n: tf.compat.v1.placeholder(tf.float64, v.shape, name=f"v{n}") for n, v in operands}
        s = tf.add_n([tf.reduce_sum(d * vs[n]) for d, (n, _) in zip(firsts, operands)])
        seconds = zeros_for_none(tf.gradients(s, ins + [dy]), ins + [dy])
        feeds = dict(operands)
        feeds["dy"] = rng.standard_normal(tuple(y.shape))
        for n, v in operands:
            feeds[f"v{n}"] = rng.standard_normal(v.shape)
        with tf.compat.v1.Session(graph=graph) as sess:
            fd = {graph.get_tensor_by_name(f"{n}:0"): v for n, v in feeds.items()}
            out = sess.run([y] + firsts + seconds, feed_dict=fd)
    names = ["y"] + [f"d{n}" for n, _ in operands] + [f"d2{n}" for n, _ in operands] + ["d2dy"]
    arrays = {"op": np.array([ord(c) for c in op], dtype=np.float64)}
    arrays.update({n: np.asarray(v, dtype=np.float64) for n, v in feeds.items()})
    arrays.update({n: np.asarray(v, dtype=np.float64) for n, v in zip(names, out)})
    return arrays


def main():
    tf.compat.v1.disable_eager_execution()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.npz"):
        stale.unlink()
    entries = []
    for k, (name, op, f, domain) in enumerate(UNARY):
        rng = np.random.default_rng(k)
        entries.append((name, op, f, [("x", domain(rng))]))
    for k, (name, op, f) in enumerate(BINARY):
        rng = np.random.default_rng(100 + k)
        x = rng.standard_normal(SHAPE)
        if name == "sigmoid_cross_entropy":
            # Logits far out on both sides, and labels in [0, 1] of x's shape.
            x = x * 10
            b = rng.uniform(0.0, 1.0, SHAPE)
        else:
            b = rng.standard_normal(SHAPE[-1:])
            x[0] = b  # a row of ties
        entries.append((name, op, f, [("x", x), ("b", b)]))
    total = 0
    for k, (name, op, f, operands) in enumerate(entries):
        path = OUT_DIR / f"{name}.npz"
        save_npz(path, golden(k, op, f, operands))
        total += path.stat().st_size
        print(f"{path.name:28} {op}")
    print(f"{len(entries)} files, {total} bytes, in {OUT_DIR}")


if __name__ == "__main__":
    main()
