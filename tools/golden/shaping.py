"""Golden values from TensorFlow for gradc's slicing, padding, joining,
reversing and tiling ops, the Max and Min reductions, Cumsum,
ClipByValue (its bounds named b and c), Split, SplitV and Unstack (their
first output), StridedSlice with its masks, Prod and Cumprod.

Same arrays as tools/golden/elementwise.py (op, x, [b], y, dy, dx, [db], vx,
[vb], d2x, [d2b], d2dy), written into tests/golden/shaping/; Concat's second
input is `b`. TensorFlow's Slice, Pad, MirrorPad, Concat, Reverse and Tile
Max and Min (tf.reduce_max, tf.reduce_min; their gradients shared among
ties) with their registered gradients, in tf.compat.v1 graph mode, float64.
tests/tf_golden.rs compares gradc to 1e-10 relative; it reads the files only.

Run by hand, when an entry is added or TensorFlow changes (from the
repository root, in the virtualenv of tools/golden/conv.py):

    .venv-golden/bin/python tools/golden/shaping.py

The values were made with tensorflow-cpu 2.21. An entry added here needs its
row in CONFIGS of tests/tf_golden.rs too, which fails otherwise.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from elementwise import golden, tf, np  # noqa: E402
from conv import save_npz  # noqa: E402

OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "shaping"

PAD = [[1, 2], [0, 1], [2, 1]]

# (file name, gradc op, TensorFlow function, operand shapes)
ENTRIES = [
    ("slice", "Slice(begin: [1, 0, 2], size: [2, -1, 2])", lambda x: tf.slice(x, [1, 0, 2], [2, -1, 2]), [(3, 4, 5)]),
    ("pad_constant", f"Pad(paddings: {PAD}, constant_values: 1.5)", lambda x: tf.pad(x, PAD, constant_values=1.5), [(3, 4, 5)]),
    ("pad_reflect", f"Pad(paddings: {PAD}, mode: REFLECT)", lambda x: tf.pad(x, PAD, mode="REFLECT"), [(3, 4, 5)]),
    ("pad_symmetric", f"Pad(paddings: {PAD}, mode: SYMMETRIC)", lambda x: tf.pad(x, PAD, mode="SYMMETRIC"), [(3, 4, 5)]),
    ("concat_last", "Concat(axis: -1)", lambda x, b: tf.concat([x, b], -1), [(3, 4), (3, 2)]),
    ("concat_first", "Concat(axis: 0)", lambda x, b: tf.concat([x, b], 0), [(2, 3, 2), (1, 3, 2)]),
    ("reverse", "Reverse(axes: [0, -1])", lambda x: tf.reverse(x, [0, -1]), [(3, 4, 2)]),
    ("tile", "Tile(multiples: [2, 1, 3])", lambda x: tf.tile(x, [2, 1, 3]), [(2, 3, 2)]),
    ("stack", "Stack(axis: 1)", lambda x, b: tf.stack([x, b], axis=1), [(3, 4), (3, 4)]),
    ("stack_last", "Stack(axis: -1)", lambda x, b: tf.stack([x, b], axis=-1), [(2, 3), (2, 3)]),
    # x rounded to halves (TIES below): many ties, whose gradient is shared.
    ("max_axis", "Max(axes: [1])", lambda x: tf.reduce_max(x, axis=[1]), [(3, 4, 5)]),
    (
        "min_keep",
        "Min(axes: [0, 2], keep_dims: true)",
        lambda x: tf.reduce_min(x, axis=[0, 2], keepdims=True),
        [(3, 4, 5)],
    ),
    ("max_all", "Max()", tf.reduce_max, [(2, 3)]),
    ("cumsum", "Cumsum(axis: 1)", lambda x: tf.cumsum(x, axis=1), [(3, 4, 2)]),
    (
        "cumsum_exclusive_reverse",
        "Cumsum(axis: -1, exclusive: true, reverse: true)",
        lambda x: tf.cumsum(x, axis=-1, exclusive=True, reverse=True),
        [(3, 5)],
    ),
    ("clip_by_value", "ClipByValue", tf.clip_by_value, None),
    # The first output of each (gradc's y is output 0): the others' gradients are zeros.
    ("split", "Split(axis: 1, num_split: 3)", lambda x: tf.split(x, 3, axis=1)[0], [(2, 6, 2)]),
    ("split_v", "SplitV(size_splits: [-1, 2], axis: -1)", lambda x: tf.split(x, [-1, 2], axis=-1)[0], [(3, 5)]),
    ("unstack", "Unstack(axis: 1)", lambda x: tf.unstack(x, axis=1)[0], [(2, 3, 4)]),
    ("prod_axis", "Prod(axes: [1])", lambda x: tf.reduce_prod(x, axis=[1]), [(3, 4, 2)]),
    (
        "prod_two_axes_keep",
        "Prod(axes: [0, 2], keep_dims: true)",
        lambda x: tf.reduce_prod(x, axis=[0, 2], keepdims=True),
        [(2, 3, 2)],
    ),
    ("prod_all", "Prod()", tf.reduce_prod, [(2, 3)]),
    (
        "cumprod_exclusive_reverse",
        "Cumprod(axis: -1, exclusive: true, reverse: true)",
        lambda x: tf.math.cumprod(x, axis=-1, exclusive=True, reverse=True),
        [(3, 4)],
    ),
    # x[1:3, ::2, -1]
    (
        "strided_slice_shrink",
        "StridedSlice(begin: [1, 0, -1], end: [3, 0, 0], strides: [1, 2, 1], begin_mask: 2, end_mask: 2, shrink_axis_mask: 4)",
        lambda x: tf.strided_slice(x, [1, 0, -1], [3, 0, 0], [1, 2, 1], begin_mask=2, end_mask=2, shrink_axis_mask=4),
        [(4, 5, 6)],
    ),
    # x[::-1, 3:0:-2]
    (
        "strided_slice_negative",
        "StridedSlice(begin: [0, 3], end: [0, 0], strides: [-1, -2], begin_mask: 1, end_mask: 1)",
        lambda x: tf.strided_slice(x, [0, 3], [0, 0], [-1, -2], begin_mask=1, end_mask=1),
        [(4, 5)],
    ),
    # x[..., tf.newaxis, 1:]
    (
        "strided_slice_ellipsis_new_axis",
        "StridedSlice(begin: [0, 0, 1], end: [0, 0, 0], strides: [1, 1, 1], end_mask: 4, ellipsis_mask: 1, new_axis_mask: 2)",
        lambda x: tf.strided_slice(x, [0, 0, 1], [0, 0, 0], [1, 1, 1], end_mask=4, ellipsis_mask=1, new_axis_mask=2),
        [(2, 3, 4)],
    ),
    # x[-10:10, 1] (clamped to the axis)
    (
        "strided_slice_clamped",
        "StridedSlice(begin: [-10, 1], end: [10, 2], strides: [1, 1], shrink_axis_mask: 2)",
        lambda x: tf.strided_slice(x, [-10, 1], [10, 2], [1, 1], shrink_axis_mask=2),
        [(3, 4)],
    ),
]

# Entries whose x is rounded to halves, for ties.
TIES = ("max_axis", "min_keep")


def clip_operands(rng):
    """t with values on both bounds (ties go to t), a scalar lower bound and
    an upper bound per column."""
    t = rng.standard_normal((3, 4))
    t[0, 0], t[0, 1] = -0.5, 0.8
    return [("x", t), ("b", np.array(-0.5)), ("c", np.array([0.3, 0.8, 1.2, 0.1]))]


# Entries with operands of their own.
OPERANDS = {"clip_by_value": clip_operands}


def main():
    tf.compat.v1.disable_eager_execution()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.npz"):
        stale.unlink()
    total = 0
    for k, (name, op, f, shapes) in enumerate(ENTRIES):
        rng = np.random.default_rng(200 + k)
        if name in OPERANDS:
            operands = OPERANDS[name](rng)
        else:
            operands = [(n, rng.standard_normal(s)) for n, s in zip(["x", "b"], shapes)]
        if name in TIES:
            operands[0] = ("x", np.round(operands[0][1] * 2) / 2)
        path = OUT_DIR / f"{name}.npz"
        save_npz(path, golden(k, op, f, operands))
        total += path.stat().st_size
        print(f"{path.name:20} {op}")
    print(f"{len(ENTRIES)} files, {total} bytes, in {OUT_DIR}")


if __name__ == "__main__":
    main()
