#!/usr/bin/env python3
"""NumPy reference of gradc's workload W1 (`gradc bench --workload w1`).

The source text's TwoLayerNet ("Deep Learning from Scratch", ch. 5) with the
book's layers: Affine-ReLU-Affine-SoftmaxWithLoss, forward and backward, in
float32; weights 0.01 * N(0, 1), zero biases; batch 100 sampled from MNIST
(the book's np.random.choice, gathered from the training set); SGD with
learning rate 0.1. Prints the median ms per step over the timed steps after
the warm-up (batch sampling included), steps/s, examples/s, GFLOP/s and the
BLAS thread count.

Threads are NumPy's BLAS threads: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, or
--threads T, which sets both before NumPy is imported.

The book's backward pass also computes dx of the first Affine layer (the
gradient with respect to the input images, which nothing uses): a sixth
product of 100x50 by 50x784. gradc prunes it. --no-input-grad skips it for a
like-for-like comparison; FLOPs are counted for the products actually done.

Optional: no test depends on it. Needs only NumPy (`pip install numpy`).

    python3 bench/numpy_w1.py                 # threads as the environment says
    python3 bench/numpy_w1.py --threads 1
    python3 bench/numpy_w1.py --threads 2 --no-input-grad
"""

import argparse
import ctypes
import gzip
import os
import sys
import time
from pathlib import Path


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="timed steps (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed steps before them (default 200)")
    p.add_argument("--threads", type=int, help="BLAS threads (sets OMP_NUM_THREADS and OPENBLAS_NUM_THREADS)")
    p.add_argument("--no-input-grad", action="store_true",
                   help="skip the first Affine layer's dx, as gradc does")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", type=Path,
                   default=Path(__file__).resolve().parent.parent / "data" / "mnist",
                   help="the directory of the MNIST .gz files (default: data/mnist)")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


ARGS = parse_args()
if ARGS.threads is not None:
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)

try:
    import numpy as np  # noqa: E402  (after the thread variables are set)
except ImportError:
    sys.exit("numpy_w1.py needs NumPy: pip install numpy")


def blas_threads():
    """The BLAS thread count as OpenBLAS reports it, else as the environment says."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        libs = set()
    for lib in sorted(libs):
        try:
            so = ctypes.CDLL(lib)
        except OSError:
            continue
        for sym in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                    "openblas_get_num_threads"):
            fn = getattr(so, sym, None)
            if fn is not None:
                return f"{fn()} (OpenBLAS, {os.path.basename(lib)})"
    env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return f"{env} (from the environment)" if env else "unknown (BLAS default)"


def load_mnist(directory):
    """The training set: images as float32 [N, 784] in [0, 1], labels one-hot float32 [N, 10]."""
    def read(name, offset):
        path = directory / name
        if not path.exists():
            sys.exit(f"{path}: not found (pass --data DIR)")
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / np.float32(255.0)
    labels = read("train-labels-idx1-ubyte.gz", 8)
    t = np.zeros((labels.size, 10), np.float32)
    t[np.arange(labels.size), labels] = 1.0
    return x, t


# The book's layers (common/layers.py), in float32.
class Relu:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


class Affine:
    def __init__(self, W, b, input_grad=True):
        self.W, self.b, self.input_grad = W, b, input_grad

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, dout):
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return np.dot(dout, self.W.T) if self.input_grad else None


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class SoftmaxWithLoss:
    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        return -np.sum(t * np.log(self.y + np.float32(1e-7))) / x.shape[0]

    def backward(self):
        return (self.y - self.t) / np.float32(self.t.shape[0])


def main():
    rng = np.random.default_rng(ARGS.seed)
    x_train, t_train = load_mnist(ARGS.data)
    n, batch, lr = x_train.shape[0], 100, np.float32(0.1)
    params = {
        "W1": (np.float32(0.01) * rng.standard_normal((784, 50))).astype(np.float32),
        "b1": np.zeros(50, np.float32),
        "W2": (np.float32(0.01) * rng.standard_normal((50, 10))).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }
    affine1 = Affine(params["W1"], params["b1"], input_grad=not ARGS.no_input_grad)
    relu = Relu()
    affine2 = Affine(params["W2"], params["b2"])
    last = SoftmaxWithLoss()

    def step():
        mask = rng.choice(n, batch)
        x, t = x_train[mask], t_train[mask]
        loss = last.forward(affine2.forward(relu.forward(affine1.forward(x))), t)
        affine1.backward(relu.backward(affine2.backward(last.backward())))
        for layer in (affine1, affine2):
            layer.W -= lr * layer.dW
            layer.b -= lr * layer.db
        return loss

    for _ in range(ARGS.warmup):
        step()
    times = []
    for _ in range(ARGS.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    assert params["W1"].dtype == np.float32 and loss.dtype == np.float32, "float32 throughout"

    # 2*m*k*n per product: x.W1 and h.W2 forward; dW2 = h^T.dy, dh = dy.W2^T,
    # dW1 = x^T.dh backward; the book's dx = dh.W1^T unless --no-input-grad.
    products = [(batch, 784, 50), (batch, 50, 10), (50, batch, 10), (batch, 10, 50), (784, batch, 50)]
    if not ARGS.no_input_grad:
        products.append((batch, 50, 784))
    flops = sum(2 * m * k * nn for m, k, nn in products)
    median = float(np.median(times)) * 1e3
    p10, p90 = (float(np.percentile(times, q)) * 1e3 for q in (10, 90))
    print(f"numpy_w1: NumPy {np.__version__}, BLAS threads {blas_threads()}")
    print(f"  TwoLayerNet 784-50-10, batch {batch}, SGD, float32, the book's layers"
          f"{' without the input gradient' if ARGS.no_input_grad else ' (with dx of the first Affine)'}")
    print(f"  FLOPs per step: {flops / 1e6:.3f} MFLOP = {len(products)} matrix products, 2*m*k*n each")
    print(f"  {ARGS.steps} timed steps after {ARGS.warmup} warm-up (batch sampling included): "
          f"median {median:.4f} ms/step (p10 {p10:.4f}, p90 {p90:.4f}); final loss {float(loss):.4f}")
    print(f"  result numpy_w1: threads {blas_threads().split()[0]}, {median:.4f} ms/step, "
          f"{1e3 / median:.1f} steps/s, {batch * 1e3 / median:.0f} examples/s, "
          f"{flops / (median * 1e-3) / 1e9:.2f} GFLOP/s")


if __name__ == "__main__":
    main()
