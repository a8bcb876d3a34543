"""Golden values from TensorFlow for gradc's ops that take integer indices:
Gather, UnsortedSegmentSum and SparseSoftmaxCrossEntropyWithLogits.

The arrays of tools/golden/elementwise.py (op, x, y, dy, dx, vx, d2x, d2dy),
and `i`, the integer indices (of the dtype TensorFlow gets), which are fed but
not differentiated. tf.compat.v1 graph mode, float64, TensorFlow's registered
gradients (Gather's densified: TensorFlow's IndexedSlices summed).
tests/tf_golden.rs compares gradc to 1e-10 relative; it reads the files only.

Run by hand, when an entry is added or TensorFlow changes (from the
repository root, in the virtualenv of tools/golden/conv.py):

    .venv-golden/bin/python tools/golden/indexing.py

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

OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "indexing"

# (file name, gradc op, TensorFlow function of (x, i), x's shape, i)
ENTRIES = [
    ("gather_axis0", "Gather()", tf.gather, (5, 3), np.array([[4, 0], [1, 4]], np.int32)),
    (
        "gather_axis1",
        "Gather(axis: 1)",
        lambda x, i: tf.gather(x, i, axis=1),
        (2, 4, 3),
        np.array([3, 0, 3], np.int64),
    ),
    (
        "gather_scalar_index_last_axis",
        "Gather(axis: -1)",
        lambda x, i: tf.gather(x, i, axis=-1),
        (3, 4),
        np.array(2, np.int32),
    ),
    (
        "unsorted_segment_sum",
        "UnsortedSegmentSum(num_segments: 4)",
        lambda x, i: tf.math.unsorted_segment_sum(x, i, 4),
        (5, 3),
        np.array([2, 0, 2, 1, 2], np.int32),
    ),
    (
        "unsorted_segment_sum_2d_ids",
        "UnsortedSegmentSum(num_segments: 3)",
        lambda x, i: tf.math.unsorted_segment_sum(x, i, 3),
        (2, 3, 2),
        np.array([[0, 1, 0], [2, 0, 1]], np.int64),
    ),
    (
        "sparse_softmax_cross_entropy",
        "SparseSoftmaxCrossEntropyWithLogits",
        lambda x, i: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i, logits=x),
        (4, 5),
        np.array([1, 4, 0, 4], np.int64),
    ),
]

INT = {np.dtype(np.int32): tf.int32, np.dtype(np.int64): tf.int64}


def dense(g):
    """A gradient as a dense tensor (Gather's is IndexedSlices); zeros for None."""
    return tf.convert_to_tensor(g) if g is not None else None


def golden(k, op, f, shape, i):
    rng = np.random.default_rng(300 + k)
    x_value = rng.standard_normal(shape)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float64, shape, name="x")
        ind = tf.compat.v1.placeholder(INT[i.dtype], i.shape, name="i")
        y = f(x, ind)
        dy = tf.compat.v1.placeholder(tf.float64, y.shape, name="dy")
        (dx,) = tf.gradients(y, [x], grad_ys=dy)
        dx = dense(dx)
        vx = tf.compat.v1.placeholder(tf.float64, shape, name="vx")
        s = tf.reduce_sum(dx * vx)
        d2x, d2dy = (dense(g) for g in tf.gradients(s, [x, dy]))
        d2x = tf.zeros_like(x) if d2x is None else d2x
        feeds = {"x": x_value, "i": i, "dy": rng.standard_normal(tuple(y.shape)), "vx": rng.standard_normal(shape)}
        with tf.compat.v1.Session(graph=graph) as sess:
            fd = {graph.get_tensor_by_name(f"{n}:0"): v for n, v in feeds.items()}
            out = sess.run([y, dx, d2x, d2dy], feed_dict=fd)
    arrays = {"op": np.array([ord(c) for c in op], dtype=np.float64)}
    arrays.update(feeds)
    arrays.update({n: np.asarray(v, dtype=np.float64) for n, v in zip(["y", "dx", "d2x", "d2dy"], out)})
    return arrays


def main():
    tf.compat.v1.disable_eager_execution()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.npz"):
        stale.unlink()
    for k, (name, op, f, shape, i) in enumerate(ENTRIES):
        path = OUT_DIR / f"{name}.npz"
        save_npz(path, golden(k, op, f, shape, i))
        print(f"{path.name:36} {op}")


if __name__ == "__main__":
    main()
