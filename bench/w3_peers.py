#!/usr/bin/env python3
"""PyTorch and JAX references of gradc's workload W3 (`gradc bench --workload w3`).

The net of graphs/cnn.ron: conv 3x3x1x32 SAME + ReLU, max-pool 2x2/2,
conv 3x3x32x64 SAME + ReLU, max-pool 2x2/2, dense 3136-128 + ReLU, dense
128-10, softmax cross-entropy; batch 128 sampled from MNIST, float32,
momentum 0.9, learning rate 0.01, no gradient with respect to the images
(about 3.2 GFLOP a step, counted as gradc counts it).

- `--framework torch`: PyTorch eager, torch.nn.Conv2d / MaxPool2d / Linear,
  torch.optim.SGD(momentum=0.9); `--channels-last` keeps activations in NHWC
  (torch.channels_last), as gradc and TensorFlow do.
- `--framework jax`: one jax.jit-compiled step (value_and_grad and the
  momentum update), jax.lax.conv_general_dilated in NHWC/HWIO and
  jax.lax.reduce_window for pooling.

A timed step is what a training loop does: gather a batch of the next
indices of a seeded permutation and run the step, waiting for its result.
Prints the median ms per step over the timed steps after the warm-up,
steps/s, examples/s and GFLOP/s. Threads: --threads T sets PyTorch's
intra-op threads (torch.set_num_threads) or XLA's CPU threads
(--xla_cpu_multi_thread_eigen and intra_op_parallelism_threads, with the
process pinned to T cores by os.sched_setaffinity), before the framework is
imported.

Optional, outside CI: no test depends on it. Set up once with

    python3 -m venv .venv-peers && .venv-peers/bin/pip install numpy torch jax

then, in the same run as gradc (alternate them: A B A B):

    .venv-peers/bin/python bench/w3_peers.py --framework torch --threads 2
    .venv-peers/bin/python bench/w3_peers.py --framework torch --threads 2 --channels-last
    .venv-peers/bin/python bench/w3_peers.py --framework jax --threads 2
    gradc bench --workload w3 --threads 2 --no-peak
"""

import os
import sys

import peers

ARGS = peers.parse(
    __doc__.split("\n\n")[0],
    add=lambda p: (p.add_argument("--framework", choices=["torch", "jax"], required=True),
                   p.add_argument("--channels-last", action="store_true",
                                  help="PyTorch: NHWC activations")),
    defaults=(40, 5),
)
peers.set_threads(ARGS.threads, ARGS.framework)
np = peers.numpy()

BATCH, LR, MOMENTUM = 128, 0.01, 0.9


def flops():
    """2*m*k*n per product, the convolutions as their im2col products (as gradc counts)."""
    b = BATCH
    products = [
        (b * 784, 9, 32),            # conv1
        (b * 196, 288, 64),          # conv2
        (b, 3136, 128), (b, 128, 10),
        (128, b, 10), (b, 10, 128),  # dense 2: dW, dx
        (3136, b, 128), (b, 128, 3136),  # dense 1: dW, dx
        (b * 196, 64, 288),          # conv2 input gradient
        (288, b * 196, 64),          # conv2 filter gradient
        (9, b * 784, 32),            # conv1 filter gradient
    ]
    return sum(2 * m * k * n for m, k, n in products)


def torch_step(x_train, t_train):
    try:
        import torch
    except ImportError:
        sys.exit("--framework torch needs PyTorch: pip install torch")
    if ARGS.threads is not None:
        torch.set_num_threads(ARGS.threads)
    torch.manual_seed(ARGS.seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding="same"), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    )
    fmt = torch.channels_last if ARGS.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_all = torch.from_numpy(x_train).reshape(-1, 1, 28, 28)
    t_all = torch.from_numpy(t_train)
    version = f"PyTorch {torch.__version__}, {torch.get_num_threads()} intra-op threads" + (
        ", channels-last" if ARGS.channels_last else "")

    def step(idx):
        idx = torch.from_numpy(idx)
        x = x_all[idx].contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), t_all[idx])
        loss.backward()
        opt.step()
        return loss.item()

    return step, version


def jax_step(x_train, t_train):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        sys.exit("--framework jax needs JAX: pip install jax")
    key = jax.random.PRNGKey(ARGS.seed)
    k1, k2, k3, k4 = jax.random.split(key, 4)

    def glorot(k, shape, fan_in, fan_out):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(k, shape, jnp.float32, -lim, lim)

    params = {
        "k1": glorot(k1, (3, 3, 1, 32), 9, 288), "c1": jnp.zeros(32, jnp.float32),
        "k2": glorot(k2, (3, 3, 32, 64), 288, 576), "c2": jnp.zeros(64, jnp.float32),
        "W3": glorot(k3, (3136, 128), 3136, 128), "b3": jnp.zeros(128, jnp.float32),
        "W4": glorot(k4, (128, 10), 128, 10), "b4": jnp.zeros(10, jnp.float32),
    }
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)
    dims = ("NHWC", "HWIO", "NHWC")

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def loss_fn(p, x, t):
        h = x.reshape(-1, 28, 28, 1)
        h = pool(jax.nn.relu(jax.lax.conv_general_dilated(h, p["k1"], (1, 1), "SAME",
                                                          dimension_numbers=dims) + p["c1"]))
        h = pool(jax.nn.relu(jax.lax.conv_general_dilated(h, p["k2"], (1, 1), "SAME",
                                                          dimension_numbers=dims) + p["c2"]))
        h = jax.nn.relu(h.reshape(-1, 3136) @ p["W3"] + p["b3"])
        logits = h @ p["W4"] + p["b4"]
        return -jnp.mean(jnp.sum(jax.nn.one_hot(t, 10) * jax.nn.log_softmax(logits), axis=-1))

    @jax.jit
    def train(p, v, x, t):
        loss, g = jax.value_and_grad(loss_fn)(p, x, t)
        v = jax.tree_util.tree_map(lambda v, g: MOMENTUM * v + g, v, g)
        p = jax.tree_util.tree_map(lambda p, v: p - LR * v, p, v)
        return p, v, loss

    state = [params, velocity]
    version = f"JAX {jax.__version__} jit, XLA_FLAGS={os.environ.get('XLA_FLAGS', '').strip() or 'default'}"

    def step(idx):
        state[0], state[1], loss = train(state[0], state[1], jnp.asarray(x_train[idx]),
                                         jnp.asarray(t_train[idx]))
        return float(loss)

    return step, version


def main():
    x_train, t_train = peers.load_mnist(ARGS.data)
    make = torch_step if ARGS.framework == "torch" else jax_step
    step, version = make(x_train, t_train)
    name = f"{ARGS.framework}_w3" + ("_channels_last" if ARGS.channels_last else "")
    peers.time_steps(name, version, step, x_train.shape[0], ARGS, BATCH, flops())


if __name__ == "__main__":
    main()
