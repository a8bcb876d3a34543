#!/usr/bin/env python3
"""PyTorch and JAX references of gradc's workloads W1 and W2 (`gradc bench --workload w1|w2`).

- W1, graphs/two_layer_net.ron: 784-50-10, Affine-ReLU-Affine, softmax
  cross-entropy, weights 0.01 * N(0, 1), zero biases, SGD with learning
  rate 0.1, batch 100.
- W2, graphs/bn_mlp_512.ron: 784-512-512-10, each hidden layer a product
  without bias, batch norm in training mode (TensorFlow's batch_norm
  defaults: an offset, no scale; decay 0.99, epsilon 1e-3, the moving
  averages updated every step) and ReLU; Glorot-uniform weights; momentum
  0.9, learning rate 0.05, batch 128.

No gradient with respect to the images, float32. A timed step is what a
training loop does: gather a batch of the next indices of a seeded
permutation and run the step, waiting for its result. Prints the median ms
per step over the timed steps after the warm-up, steps/s, examples/s and
GFLOP/s (2*m*k*n per matrix product, as gradc counts them).

- `--framework torch`: PyTorch eager (torch.nn.Linear, BatchNorm1d,
  torch.optim.SGD).
- `--framework jax`: one jax.jit-compiled step (value_and_grad, the moving
  averages and the update).

Threads: --threads T sets PyTorch's intra-op threads (torch.set_num_threads)
or XLA's CPU threads (--xla_cpu_multi_thread_eigen and
intra_op_parallelism_threads, with the process pinned to T cores by
os.sched_setaffinity), before the framework is imported; without it, the
framework's default (every core).

Optional, outside CI: no test depends on it. Set up once with

    python3 -m venv .venv-peers && .venv-peers/bin/pip install numpy torch jax

then, in the same run as gradc (alternate them: A B A B):

    .venv-peers/bin/python bench/mlp_peers.py --workload w2 --framework torch --threads 2
    .venv-peers/bin/python bench/mlp_peers.py --workload w2 --framework jax --threads 2
    gradc bench --workload w2 --threads 2 --no-peak
"""

import os
import sys

import peers

ARGS = peers.parse(
    __doc__.split("\n\n")[0],
    add=lambda p: (p.add_argument("--workload", choices=["w1", "w2"], required=True),
                   p.add_argument("--framework", choices=["torch", "jax"], required=True)),
    defaults=lambda a: (2000, 200) if a.workload == "w1" else (300, 30),
)
peers.set_threads(ARGS.threads, ARGS.framework)
np = peers.numpy()

W1 = ARGS.workload == "w1"
BATCH = 100 if W1 else 128
LR = 0.1 if W1 else 0.05
MOMENTUM = 0.9
DECAY, EPSILON = 0.99, 1e-3
# (fan_in, fan_out) of each product of the net.
LAYERS = [(784, 50), (50, 10)] if W1 else [(784, 512), (512, 512), (512, 10)]


def flops():
    """Forward x·W per layer, backward dW = xᵀ·dy per layer and dx = dy·Wᵀ for all but the first."""
    total = 0
    for i, (k, n) in enumerate(LAYERS):
        total += 2 * BATCH * k * n * (2 if i == 0 else 3)
    return total


def torch_step(x_train, t_train):
    try:
        import torch
    except ImportError:
        sys.exit("--framework torch needs PyTorch: pip install torch")
    if ARGS.threads is not None:
        torch.set_num_threads(ARGS.threads)
    torch.manual_seed(ARGS.seed)
    if W1:
        net = torch.nn.Sequential(torch.nn.Linear(784, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
        with torch.no_grad():
            for layer in (net[0], net[2]):
                layer.weight.normal_(0.0, 0.01)
                layer.bias.zero_()
        opt = torch.optim.SGD(net.parameters(), lr=LR)
    else:
        def bn():
            # TensorFlow's batch_norm: an offset (beta), no scale; torch's momentum is 1 - decay.
            b = torch.nn.BatchNorm1d(512, eps=EPSILON, momentum=1 - DECAY)
            b.weight.requires_grad_(False)
            return b
        net = torch.nn.Sequential(
            torch.nn.Linear(784, 512, bias=False), bn(), torch.nn.ReLU(),
            torch.nn.Linear(512, 512, bias=False), bn(), torch.nn.ReLU(),
            torch.nn.Linear(512, 10),
        )
        for m in net:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)
    net.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    x_all = torch.from_numpy(x_train)
    t_all = torch.from_numpy(t_train)
    version = f"PyTorch {torch.__version__} eager, {torch.get_num_threads()} intra-op threads"

    def step(idx):
        idx = torch.from_numpy(idx)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x_all[idx]), t_all[idx])
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
    keys = jax.random.split(jax.random.PRNGKey(ARGS.seed), len(LAYERS))

    def glorot(k, fan_in, fan_out):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(k, (fan_in, fan_out), jnp.float32, -lim, lim)

    if W1:
        params = {
            "W1": 0.01 * jax.random.normal(keys[0], (784, 50), jnp.float32),
            "b1": jnp.zeros(50, jnp.float32),
            "W2": 0.01 * jax.random.normal(keys[1], (50, 10), jnp.float32),
            "b2": jnp.zeros(10, jnp.float32),
        }
        stats = {}
    else:
        params = {
            "W1": glorot(keys[0], 784, 512), "beta1": jnp.zeros(512, jnp.float32),
            "W2": glorot(keys[1], 512, 512), "beta2": jnp.zeros(512, jnp.float32),
            "W3": glorot(keys[2], 512, 10), "b3": jnp.zeros(10, jnp.float32),
        }
        stats = {f"{s}{i}": (jnp.zeros if s == "mean" else jnp.ones)(512, jnp.float32)
                 for s in ("mean", "var") for i in (1, 2)}

    def cross_entropy(logits, t):
        return -jnp.mean(jnp.sum(jax.nn.one_hot(t, 10) * jax.nn.log_softmax(logits), axis=-1))

    def batch_norm(h, beta):
        mean = jnp.mean(h, axis=0)
        var = jnp.mean(jnp.square(h - mean), axis=0)
        return (h - mean) * jax.lax.rsqrt(var + EPSILON) + beta, (mean, var)

    def loss_fn(p, x, t):
        if W1:
            h = jax.nn.relu(x @ p["W1"] + p["b1"])
            return cross_entropy(h @ p["W2"] + p["b2"], t), ()
        h, m1 = batch_norm(x @ p["W1"], p["beta1"])
        h, m2 = batch_norm(jax.nn.relu(h) @ p["W2"], p["beta2"])
        return cross_entropy(jax.nn.relu(h) @ p["W3"] + p["b3"], t), (m1, m2)

    @jax.jit
    def train(p, v, s, x, t):
        (loss, moments), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, t)
        if W1:
            p = jax.tree_util.tree_map(lambda p, g: p - LR * g, p, g)
            return p, v, s, loss
        v = jax.tree_util.tree_map(lambda v, g: MOMENTUM * v + g, v, g)
        p = jax.tree_util.tree_map(lambda p, v: p - LR * v, p, v)
        for i, (mean, var) in enumerate(moments, 1):
            s[f"mean{i}"] = s[f"mean{i}"] - (s[f"mean{i}"] - mean) * (1 - DECAY)
            s[f"var{i}"] = s[f"var{i}"] - (s[f"var{i}"] - var) * (1 - DECAY)
        return p, v, s, loss

    state = [params, jax.tree_util.tree_map(jnp.zeros_like, params), stats]
    version = f"JAX {jax.__version__} jit, XLA_FLAGS={os.environ.get('XLA_FLAGS', '').strip() or 'default'}"

    def step(idx):
        state[0], state[1], state[2], loss = train(*state, jnp.asarray(x_train[idx]),
                                                   jnp.asarray(t_train[idx]))
        return float(loss)

    return step, version


def main():
    x_train, t_train = peers.load_mnist(ARGS.data)
    make = torch_step if ARGS.framework == "torch" else jax_step
    step, version = make(x_train, t_train)
    peers.time_steps(f"{ARGS.framework}_{ARGS.workload}", version, step, x_train.shape[0],
                     ARGS, BATCH, flops())


if __name__ == "__main__":
    main()
