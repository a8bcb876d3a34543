"""What the peer scripts (`w3_peers.py`, `mlp_peers.py`) share: the command
line, the framework's threads, MNIST, the batch order, and the timed loop.

Import `parse`'s result first and call `set_threads` before importing NumPy
or a framework, so that their thread settings take effect.
"""

import argparse
import gzip
import os
import sys
import time
from pathlib import Path


def parse(description, add=None, defaults=(40, 5)):
    """The common options (--steps, --warmup, --threads, --seed, --data), and
    those `add(parser)` adds; `defaults` are the steps and warm-up when not
    given (a callable of the parsed options for per-workload defaults)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, help="timed steps")
    p.add_argument("--warmup", type=int, help="untimed steps before them")
    p.add_argument("--threads", type=int, help="the framework's threads (default: its own)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", type=Path,
                   default=Path(__file__).resolve().parent.parent / "data" / "mnist",
                   help="the directory of the MNIST .gz files (default: data/mnist)")
    if add is not None:
        add(p)
    args = p.parse_args()
    steps, warmup = defaults(args) if callable(defaults) else defaults
    args.steps = steps if args.steps is None else args.steps
    args.warmup = warmup if args.warmup is None else args.warmup
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must not be negative")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def set_threads(threads, framework):
    """The framework's threads, before it (or NumPy) is imported: PyTorch's
    OMP/MKL threads, or XLA's CPU threads with the process pinned to as many
    cores."""
    if threads is None:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if framework == "jax":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=true"
                                   f" intra_op_parallelism_threads={threads}")
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])


def numpy():
    try:
        import numpy as np
    except ImportError:
        sys.exit("the peer scripts need NumPy: pip install numpy")
    return np


def load_mnist(directory):
    """The training set: images as float32 [N, 784] in [0, 1], labels as int64 [N]."""
    np = numpy()

    def read(name, offset):
        path = directory / name
        if not path.exists():
            sys.exit(f"{path}: not found (pass --data DIR)")
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / np.float32(255.0)
    return x, read("train-labels-idx1-ubyte.gz", 8).astype(np.int64)


def batches(n, batch, seed):
    """Batches of the next indices of a seeded permutation, reshuffled per epoch."""
    rng = numpy().random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            yield order[i:i + batch]


def time_steps(name, version, step, rows, args, batch, flops):
    """Runs `step(indices)` on batches of the `rows` examples for the
    warm-up, then times `args.steps` steps (batch gathering included) and
    prints the median and the rates."""
    np = numpy()
    order = batches(rows, batch, args.seed)
    for _ in range(args.warmup):
        step(next(order))
    times = []
    loss = float("nan")
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step(next(order))
        times.append(time.perf_counter() - t0)
    median = float(np.median(times)) * 1e3
    p10, p90 = (float(np.percentile(times, q)) * 1e3 for q in (10, 90))
    print(f"{name}: {version}")
    print(f"  {args.steps} timed steps after {args.warmup} warm-up (batch gathering included): "
          f"median {median:.3f} ms/step (p10 {p10:.3f}, p90 {p90:.3f}); final loss {loss:.4f}")
    print(f"  result {name}: threads {args.threads or 'default'}, {median:.3f} ms/step, "
          f"{1e3 / median:.1f} steps/s, {batch * 1e3 / median:.0f} examples/s, "
          f"{flops / (median * 1e-3) / 1e9:.2f} GFLOP/s")
