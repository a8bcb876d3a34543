"""Checks gradc's ONNX export with ONNX Runtime: every MNIST example is
exported (`gradc export`), run by onnxruntime on the first 256 MNIST test
images, and compared with gradc's own inference program on the same images
(`gradc run --inference --npy-dir`), to 1e-5 of the largest magnitude for
the logits and exactly for the predicted classes. The Rust tests
(tests/onnx.rs) make the same comparison with tract; this script is the
check with the runtime most models are served with. It is run by hand,
outside CI, from the repository root, after `cargo build --release`:

    python3 -m venv .venv-onnx
    .venv-onnx/bin/pip install onnxruntime numpy
    .venv-onnx/bin/python tools/onnx/check_ort.py [--gradc target/release/gradc]

Each example is exported with the variables of a short training run
(`gradc train --steps 50`), so that batch norms' moving statistics are not
their initial zeros and ones. Exits 1 if any comparison fails.
"""

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["two_layer_net", "mlp", "bn_mlp", "bn_mlp_512", "two_layer_net_dropout",
            "lenet5", "cnn", "cnn_bn"]
N = 256


def mnist_test_images(n: int) -> np.ndarray:
    with gzip.open(ROOT / "data/mnist/t10k-images-idx3-ubyte.gz") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return (data.reshape(-1, 784)[:n] / 255.0).astype(np.float32)


def gradc(exe: str, *args: str) -> None:
    subprocess.run([exe, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--gradc", default=str(ROOT / "target/release/gradc"))
    exe = p.parse_args().gradc
    x = mnist_test_images(N)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", x)
        for name in EXAMPLES:
            graph = f"graphs/{name}.ron"
            work = tmp / name
            gradc(exe, "train", graph, "--steps", "50", "--quiet",
                  "--checkpoint", str(work / "ckpt"), "--out", str(work / "run"))
            gradc(exe, "export", graph, "--onnx", str(work / "m.onnx"),
                  "--checkpoint", str(work / "ckpt"), "--output", "logits", "--output", "y")
            gradc(exe, "run", graph, "--inference", "--checkpoint", str(work / "ckpt"),
                  "--feed", f"x={tmp / 'x.npy'}", "--fetch", "logits", "--fetch", "y",
                  "--npy-dir", str(work / "gradc"))
            session = ort.InferenceSession(str(work / "m.onnx"), providers=["CPUExecutionProvider"])
            logits, y = session.run(["logits", "y"], {"x": x})
            want_logits = np.load(work / "gradc/logits.npy")
            want_y = np.load(work / "gradc/y.npy")
            err = np.abs(logits - want_logits).max() / np.abs(want_logits).max()
            same = np.array_equal(y, want_y)
            ok = err <= 1e-5 and same
            failed |= not ok
            print(f"{name:24s} logits relative error {err:.2e}, classes "
                  f"{'equal' if same else 'DIFFER'}: {'ok' if ok else 'FAIL'}")
    print(f"onnxruntime {ort.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
