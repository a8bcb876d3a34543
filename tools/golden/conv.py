"""Golden values from TensorFlow for gradc's convolutions and poolings.

For every configuration in CONFIGS this script builds the op in TensorFlow
(tf.compat.v1 graph mode, float64 throughout), feeds it seeded random inputs
and writes one `.npz` into tests/golden/conv/ with the forward output, the
first-order gradients and a second-order quantity (TensorFlow's gradients of
its own backprop ops). tests/tf_golden.rs builds the same op in gradc and
compares every array to 1e-10 relative; it reads the files only, so neither
CI nor the Rust tests need Python.

It is run by hand, when a configuration is added or TensorFlow changes:

    python3 -m venv .venv-golden
    .venv-golden/bin/pip install tensorflow-cpu numpy
    .venv-golden/bin/python tools/golden/conv.py

(from the repository root; the script finds the output directory from its
own path, and rewrites every `.npz` there). The values were made with
tensorflow-cpu 2.21. A configuration added here needs its row in CONFIGS of
tests/tf_golden.rs too (file name and op text), which fails otherwise.

Arrays in each file (shapes in the configuration's data format):

    op        the gradc op, as RON text (`Conv2D(strides: [...], ...)`),
              stored as its characters' code points in a float64 array,
              because gradc's npz reader reads float arrays only
    x         the input
    filter    the filter (convolutions only)
    y         op(x, filter)
    dy        a random upstream gradient, of y's shape
    dx        tf.gradients(y, x, grad_ys=dy)
    dfilter   tf.gradients(y, filter, grad_ys=dy) (convolutions only)
    vx        a random array of x's shape
    vfilter   a random array of filter's shape (convolutions only)
    d2x       the gradient w.r.t. x of s = sum(dx * vx) + sum(dfilter * vfilter)
    d2filter  the gradient of s w.r.t. filter (convolutions only)
    d2dy      the gradient of s w.r.t. dy

Gradients that TensorFlow leaves unconnected (None) are saved as zeros, which
is what gradc returns: the gradient w.r.t. x of s through a pooling's
backprop is zero (MaxPoolGrad's routing is piecewise constant, AvgPoolGrad
reads only x's shape), and d2dy of a max pooling is TensorFlow's
MaxPoolGradGrad, which the script also checks against a NumPy version (vx at
each window's first maximum).

TensorFlow's CPU kernels take NHWC only, and its Conv2D gradient kernels
refuse dilations, so some configurations are computed another way with the
same mathematics: NCHW ones through transposes around the NHWC op, dilated
ones through `tf.nn.convolution` / `tf.nn.depthwise_conv2d` with
`dilations`, which pad and reshape with SpaceToBatchND around an undilated
op. The gradients then come from TensorFlow's gradients of those ops.
"""

import dataclasses
import io
import os
import pathlib
import zipfile
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN does not touch float64, but keep TensorFlow's own kernels regardless.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "tests" / "golden" / "conv"

CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")
POOL_OPS = ("MaxPool", "AvgPool")


@dataclasses.dataclass(frozen=True)
class Config:
    """One op with its attributes, as gradc writes them.

    `strides`, `ksize`, `dilations` have 4 entries and `explicit_paddings` 8
    (a pair per axis), all in the data format's order, as in TensorFlow's
    op attributes and in gradc's graph format.
    """

    name: str
    op: str
    x_shape: tuple
    strides: tuple
    padding: str
    filter_shape: tuple = None  # [kh, kw, C, O] (Conv2D) or [kh, kw, C, M] (depthwise)
    ksize: tuple = None  # poolings
    dilations: tuple = (1, 1, 1, 1)
    explicit_paddings: tuple = ()
    data_format: str = "NHWC"
    ties: bool = False  # round x so that pooling windows hold equal maxima

    def gradc_op(self):
        """The op as gradc's RON text; tests/tf_golden.rs holds the same text."""
        attrs = []
        if self.ksize is not None:
            attrs.append(f"ksize: {list(self.ksize)}")
        attrs.append(f"strides: {list(self.strides)}")
        attrs.append(f"padding: {self.padding}")
        if self.explicit_paddings:
            attrs.append(f"explicit_paddings: {list(self.explicit_paddings)}")
        if tuple(self.dilations) != (1, 1, 1, 1):
            attrs.append(f"dilations: {list(self.dilations)}")
        if self.data_format != "NHWC":
            attrs.append(f"data_format: {self.data_format}")
        return f"{self.op}({', '.join(attrs)})"


def conv(name, x_shape, filter_shape, strides, padding, **kw):
    return Config(name, "Conv2D", x_shape, strides, padding, filter_shape=filter_shape, **kw)


def depthwise(name, x_shape, filter_shape, strides, padding, **kw):
    return Config(
        name, "DepthwiseConv2dNative", x_shape, strides, padding, filter_shape=filter_shape, **kw
    )


def max_pool(name, x_shape, ksize, strides, padding, **kw):
    return Config(name, "MaxPool", x_shape, strides, padding, ksize=ksize, **kw)


def avg_pool(name, x_shape, ksize, strides, padding, **kw):
    return Config(name, "AvgPool", x_shape, strides, padding, ksize=ksize, **kw)


S1 = (1, 1, 1, 1)
S2 = (1, 2, 2, 1)
S2_NCHW = (1, 1, 2, 2)

CONFIGS = [
    # Conv2D, NHWC: strides 1 and 2, VALID, SAME on odd and even sizes,
    # kernels 1x1, 3x3, 5x5 and non-square, 1, 3 and 5 channels.
    conv("conv2d_valid_s1_k3_c1", (2, 5, 5, 1), (3, 3, 1, 3), S1, "VALID"),
    conv("conv2d_valid_s2_k3_c3_odd", (2, 7, 7, 3), (3, 3, 3, 5), S2, "VALID"),
    conv("conv2d_valid_s2_k3_c3_even", (2, 6, 6, 3), (3, 3, 3, 2), S2, "VALID"),
    conv("conv2d_same_s1_k3_c3", (2, 5, 5, 3), (3, 3, 3, 2), S1, "SAME"),
    conv("conv2d_same_s2_k3_odd", (2, 7, 5, 3), (3, 3, 3, 2), S2, "SAME"),
    conv("conv2d_same_s2_k3_even", (2, 6, 6, 3), (3, 3, 3, 2), S2, "SAME"),
    conv("conv2d_same_s2_k2x3_even_odd", (2, 6, 7, 2), (2, 3, 2, 4), S2, "SAME"),
    conv("conv2d_same_s1_k5_c1", (2, 6, 6, 1), (5, 5, 1, 2), S1, "SAME"),
    conv("conv2d_valid_s1_k5_c5", (2, 6, 7, 5), (5, 5, 5, 1), S1, "VALID"),
    conv("conv2d_valid_s1_k1_c5", (2, 5, 5, 5), (1, 1, 5, 3), S1, "VALID"),
    conv("conv2d_same_s2_k1_even", (2, 6, 6, 5), (1, 1, 5, 2), S2, "SAME"),
    conv("conv2d_same_s2x1_k3x2", (2, 7, 6, 3), (3, 2, 3, 2), (1, 2, 1, 1), "SAME"),
    conv("conv2d_valid_s1x2_k2x3", (2, 5, 7, 1), (2, 3, 1, 3), (1, 1, 2, 1), "VALID"),
    # Explicit padding, uneven pairs.
    conv(
        "conv2d_explicit_s2x1_k3x2",
        (2, 5, 6, 3),
        (3, 2, 3, 2),
        (1, 2, 1, 1),
        "EXPLICIT",
        explicit_paddings=(0, 0, 1, 2, 0, 1, 0, 0),
    ),
    conv(
        "conv2d_explicit_s1_k3",
        (2, 5, 5, 2),
        (3, 3, 2, 3),
        S1,
        "EXPLICIT",
        explicit_paddings=(0, 0, 2, 0, 1, 1, 0, 0),
    ),
    # Dilation 2 (stride 1: TensorFlow's dilated path refuses larger strides).
    conv("conv2d_dilated2_valid", (2, 7, 7, 2), (3, 3, 2, 3), S1, "VALID", dilations=(1, 2, 2, 1)),
    conv("conv2d_dilated2_same_even_odd", (2, 6, 7, 2), (3, 3, 2, 2), S1, "SAME", dilations=(1, 2, 2, 1)),
    conv("conv2d_dilated2x1_same_k2x3", (2, 6, 5, 3), (2, 3, 3, 2), S1, "SAME", dilations=(1, 2, 1, 1)),
    # NCHW.
    conv("conv2d_nchw_same_s1_k3", (2, 3, 5, 5), (3, 3, 3, 2), S1, "SAME", data_format="NCHW"),
    conv("conv2d_nchw_valid_s2_k2x3", (2, 3, 7, 6), (2, 3, 3, 4), S2_NCHW, "VALID", data_format="NCHW"),
    conv("conv2d_nchw_same_s2_even", (2, 5, 6, 6), (3, 3, 5, 1), S2_NCHW, "SAME", data_format="NCHW"),
    conv(
        "conv2d_nchw_explicit",
        (2, 2, 5, 6),
        (3, 3, 2, 3),
        (1, 1, 1, 2),
        "EXPLICIT",
        explicit_paddings=(0, 0, 0, 0, 1, 0, 2, 1),
        data_format="NCHW",
    ),
    conv(
        "conv2d_nchw_dilated2_same",
        (2, 3, 7, 6),
        (3, 3, 3, 2),
        S1,
        "SAME",
        dilations=(1, 1, 2, 2),
        data_format="NCHW",
    ),
    # DepthwiseConv2dNative: channel multipliers 1 and 2.
    depthwise("depthwise_same_s1_k3_m1", (2, 5, 5, 3), (3, 3, 3, 1), S1, "SAME"),
    depthwise("depthwise_valid_s2_k3_m2", (2, 7, 7, 2), (3, 3, 2, 2), S2, "VALID"),
    depthwise("depthwise_same_s2_k2x3_m2_even", (2, 6, 6, 3), (2, 3, 3, 2), S2, "SAME"),
    depthwise(
        "depthwise_explicit_s1_k3_m2",
        (2, 5, 6, 2),
        (3, 3, 2, 2),
        S1,
        "EXPLICIT",
        explicit_paddings=(0, 0, 1, 2, 2, 0, 0, 0),
    ),
    depthwise("depthwise_dilated2_valid_m2", (2, 7, 6, 2), (2, 2, 2, 2), S1, "VALID", dilations=(1, 2, 2, 1)),
    depthwise("depthwise_nchw_same_s2_m2", (2, 3, 5, 7), (3, 3, 3, 2), S2_NCHW, "SAME", data_format="NCHW"),
    # MaxPool: x rounded to halves, so that windows hold tied maxima.
    max_pool("maxpool_valid_k2_s2_ties", (2, 6, 6, 3), (1, 2, 2, 1), S2, "VALID", ties=True),
    max_pool("maxpool_valid_k3_s1_ties", (2, 5, 5, 2), (1, 3, 3, 1), S1, "VALID", ties=True),
    max_pool("maxpool_same_k3_s2_odd_ties", (2, 5, 7, 2), (1, 3, 3, 1), S2, "SAME", ties=True),
    max_pool("maxpool_same_k3_s2_even", (2, 6, 6, 3), (1, 3, 3, 1), S2, "SAME"),
    max_pool("maxpool_same_k2x3_s1_ties", (2, 5, 6, 1), (1, 2, 3, 1), S1, "SAME", ties=True),
    max_pool(
        "maxpool_nchw_same_k3_s2_ties",
        (2, 3, 5, 6),
        (1, 1, 3, 3),
        S2_NCHW,
        "SAME",
        data_format="NCHW",
        ties=True,
    ),
    max_pool(
        "maxpool_nchw_valid_k2x1_s1x2_ties",
        (2, 2, 5, 6),
        (1, 1, 2, 1),
        (1, 1, 1, 2),
        "VALID",
        data_format="NCHW",
        ties=True,
    ),
    # AvgPool: SAME divides by the count of elements inside the input.
    avg_pool("avgpool_valid_k2_s2", (2, 6, 6, 3), (1, 2, 2, 1), S2, "VALID"),
    avg_pool("avgpool_valid_k3x2_s1", (2, 5, 6, 2), (1, 3, 2, 1), S1, "VALID"),
    avg_pool("avgpool_same_k3_s2_odd", (2, 5, 7, 2), (1, 3, 3, 1), S2, "SAME"),
    avg_pool("avgpool_same_k3_s1_odd", (2, 5, 5, 1), (1, 3, 3, 1), S1, "SAME"),
    avg_pool(
        "avgpool_nchw_same_k3x2_s2x1",
        (2, 3, 7, 5),
        (1, 1, 3, 2),
        (1, 1, 2, 1),
        "SAME",
        data_format="NCHW",
    ),
]


# The layout changes between the configuration's data format and NHWC.
TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]


def nhwc(values, data_format):
    """4 per-axis values (or 4 pairs) in NHWC order."""
    return [values[i] for i in TO_NHWC] if data_format == "NCHW" else list(values)


def forward(cfg, x, f):
    """The op in TensorFlow, in NHWC inside; x in the configuration's format."""
    if cfg.data_format == "NCHW":
        x = tf.transpose(x, TO_NHWC)
    strides = nhwc(cfg.strides, cfg.data_format)
    dilations = nhwc(cfg.dilations, cfg.data_format)
    padding = cfg.padding
    if padding == "EXPLICIT":
        pairs = [cfg.explicit_paddings[2 * i : 2 * i + 2] for i in range(4)]
        padding = [list(p) for p in nhwc(pairs, cfg.data_format)]
    dilated = dilations != [1, 1, 1, 1]
    if dilated:
        assert strides == [1, 1, 1, 1] and cfg.padding != "EXPLICIT", cfg.name
    if cfg.op == "Conv2D":
        if dilated:
            y = tf.nn.convolution(x, f, padding=padding, dilations=dilations[1:3])
        else:
            y = tf.nn.conv2d(x, f, strides=strides, padding=padding)
    elif cfg.op == "DepthwiseConv2dNative":
        if dilated:
            y = tf.nn.depthwise_conv2d(x, f, strides=strides, padding=padding, dilations=dilations[1:3])
        else:
            y = tf.compat.v1.nn.depthwise_conv2d_native(x, f, strides=strides, padding=padding)
    elif cfg.op == "MaxPool":
        y = tf.nn.max_pool2d(x, nhwc(cfg.ksize, cfg.data_format), strides, padding)
    elif cfg.op == "AvgPool":
        y = tf.nn.avg_pool2d(x, nhwc(cfg.ksize, cfg.data_format), strides, padding)
    else:
        raise ValueError(cfg.op)
    if cfg.data_format == "NCHW":
        y = tf.transpose(y, TO_NCHW)
    return y


def same_pads(size, k, s):
    """TensorFlow's SAME padding (before, after) of one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def pool_windows(cfg, *arrays):
    """Each pooling window of the arrays (x's shape, the configuration's
    format), as NHWC slices [N, kh, kw, C] padded with -inf (SAME), with the
    window's output position (i, j)."""
    _, kh, kw, _ = nhwc(cfg.ksize, cfg.data_format)
    _, sh, sw, _ = nhwc(cfg.strides, cfg.data_format)
    padded = []
    for a in arrays:
        a = np.transpose(a, TO_NHWC) if cfg.data_format == "NCHW" else a
        _, h, w, _ = a.shape
        if cfg.padding == "SAME":
            pads = [(0, 0), same_pads(h, kh, sh), same_pads(w, kw, sw), (0, 0)]
        else:
            pads = [(0, 0)] * 4
        padded.append(np.pad(a, pads, constant_values=-np.inf))
    rows = range(0, padded[0].shape[1] - kh + 1, sh)
    cols = range(0, padded[0].shape[2] - kw + 1, sw)
    for oi, i in enumerate(rows):
        for oj, j in enumerate(cols):
            yield (oi, oj), [p[:, i : i + kh, j : j + kw, :] for p in padded]


def tied_windows(cfg, x):
    """How many pooling windows (per image and channel) hold their maximum
    more than once."""
    ties = 0
    for _, (window,) in pool_windows(cfg, x):
        top = window.max(axis=(1, 2), keepdims=True)
        ties += int(((window == top).sum(axis=(1, 2)) > 1).sum())
    return ties


def max_pool_grad_grad(cfg, x, g, y_shape):
    """MaxPoolGradGrad in NumPy: g at each window's first maximum in scan
    order (row by row), in the configuration's format."""
    out = np.zeros(nhwc(y_shape, cfg.data_format))
    for (oi, oj), (xw, gw) in pool_windows(cfg, x, g):
        n, kh, kw, c = xw.shape
        first = xw.reshape(n, kh * kw, c).argmax(axis=1)  # the first maximum
        out[:, oi, oj, :] = np.take_along_axis(gw.reshape(n, kh * kw, c), first[:, None, :], 1)[:, 0, :]
    return np.transpose(out, TO_NCHW) if cfg.data_format == "NCHW" else out


def golden(cfg):
    """The arrays of one configuration's file."""
    rng = np.random.default_rng(zlib.crc32(cfg.name.encode()))
    is_conv = cfg.op in CONV_OPS
    x = rng.uniform(-1.0, 1.0, cfg.x_shape)
    if cfg.ties:
        x = np.round(x * 2.0) / 2.0
        assert tied_windows(cfg, x) > 0, f"{cfg.name}: no window has tied maxima"
    feeds = {"x": x}
    if is_conv:
        feeds["filter"] = rng.uniform(-1.0, 1.0, cfg.filter_shape)

    graph = tf.Graph()
    with graph.as_default():
        ph = {k: tf.compat.v1.placeholder(tf.float64, v.shape, name=k) for k, v in feeds.items()}
        wrt = ["x", "filter"] if is_conv else ["x"]
        y = forward(cfg, ph["x"], ph.get("filter"))
        ph["dy"] = tf.compat.v1.placeholder(tf.float64, y.shape, name="dy")
        first = tf.gradients(y, [ph[k] for k in wrt], grad_ys=ph["dy"])
        # s = sum(dx * vx) + sum(dfilter * vfilter): its gradients are
        # TensorFlow's gradients of the backprop ops.
        terms = []
        for k, d in zip(wrt, first):
            ph["v" + k] = tf.compat.v1.placeholder(tf.float64, d.shape, name="v" + k)
            terms.append(tf.reduce_sum(d * ph["v" + k]))
        s = tf.add_n(terms)
        second_wrt = wrt + ["dy"]
        second = tf.gradients(
            s,
            [ph[k] for k in second_wrt],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        used = {op.type for op in graph.get_operations()}
        if cfg.dilations != (1, 1, 1, 1):
            assert "SpaceToBatchND" in used, f"{cfg.name}: not the SpaceToBatchND path"
        if cfg.op == "MaxPool":
            assert "MaxPoolGradGrad" in used, f"{cfg.name}: {sorted(used)}"

        with tf.compat.v1.Session(graph=graph) as sess:
            y_shape = sess.run(y, {ph[k]: v for k, v in feeds.items()}).shape
            feeds["dy"] = rng.uniform(-1.0, 1.0, y_shape)
            for k in wrt:
                feeds["v" + k] = rng.uniform(-1.0, 1.0, feeds[k].shape)
            fetches = {"y": y}
            fetches.update({"d" + k: d for k, d in zip(wrt, first)})
            fetches.update({"d2" + k: d for k, d in zip(second_wrt, second)})
            # TensorFlow's CPU MaxPoolGradGrad returned zeros in this graph
            # when its output has the shape of its grad input (stride 1,
            # SAME), and right values when that input is fetched too, which
            # keeps the input's buffer from being reused for the output. So
            # the inputs are fetched, and the result is checked against NumPy.
            fetches["keep"] = [
                op.inputs[2] for op in graph.get_operations() if op.type == "MaxPoolGradGrad"
            ]
            values = sess.run(fetches, {ph[k]: v for k, v in feeds.items()})
            del values["keep"]
    if cfg.op == "MaxPool":
        want = max_pool_grad_grad(cfg, feeds["x"], feeds["vx"], y_shape)
        assert np.array_equal(values["d2dy"], want), f"{cfg.name}: MaxPoolGradGrad"

    arrays = {"op": np.array([ord(c) for c in cfg.gradc_op()], dtype=np.float64)}
    arrays.update(feeds)
    arrays.update(values)
    for k, v in arrays.items():
        assert v.dtype == np.float64, (cfg.name, k, v.dtype)
    return arrays


def save_npz(path, arrays):
    """np.savez_compressed with a fixed timestamp on each member, so that an
    unchanged configuration is rewritten with the same bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            data = io.BytesIO()
            np.lib.format.write_array(data, array, allow_pickle=False)
            archive.writestr(member, data.getvalue())


def main():
    tf.compat.v1.disable_eager_execution()
    names = [c.name for c in CONFIGS]
    assert len(set(names)) == len(names), "configuration names must be unique"
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.npz"):
        stale.unlink()
    total = 0
    for cfg in CONFIGS:
        path = OUT_DIR / f"{cfg.name}.npz"
        arrays = golden(cfg)
        save_npz(path, arrays)
        total += path.stat().st_size
        ties = f" ({tied_windows(cfg, arrays['x'])} windows with tied maxima)" if cfg.ties else ""
        print(f"{path.name:40} {cfg.gradc_op()}{ties}")
    print(f"{len(CONFIGS)} files, {total} bytes, in {OUT_DIR}")


if __name__ == "__main__":
    main()
