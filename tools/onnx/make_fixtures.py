"""Export small PyTorch models to ONNX as test fixtures for gradc's ONNX importer.

Run by hand, from the repository root, when a fixture is added or changed:

    python3 -m venv .venv-onnx
    .venv-onnx/bin/pip install torch onnx onnxruntime numpy
    .venv-onnx/bin/python tools/onnx/make_fixtures.py

The committed files were made with torch 2.15.0 (the legacy TorchScript
exporter, `dynamo=False`) and are byte-for-byte the same on a rerun.

For each model <name> this writes:
    tests/onnx/<name>.onnx  -- the model (opset 17, input `x`, output `logits`,
                               batch axis dynamic and named `batch`)
    tests/onnx/<name>.npz   -- `x` (5 rows of float32 in [0, 1)) and `logits`
                               (PyTorch's float32 outputs for that `x`)

The Rust tests read these files and need no PyTorch.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

OUT_DIR = Path(__file__).resolve().parents[2] / "tests" / "onnx"
OPSET = 17
BATCH = 5


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def make_cnn() -> nn.Module:
    bn = nn.BatchNorm2d(4)
    # Non-trivial BN statistics and affine parameters so BN is not an identity.
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(4) * 0.5)
        bn.running_var.copy_(torch.rand(4) * 1.5 + 0.5)  # in [0.5, 2)
        bn.weight.copy_(torch.rand(4) + 0.5)  # in [0.5, 1.5)
        bn.bias.copy_(torch.randn(4) * 0.5)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # [b,1,28,28] -> [b,4,28,28]
        bn,
        nn.ReLU(),
        nn.MaxPool2d(2),  # -> [b,4,14,14]
        nn.Conv2d(4, 8, 3),  # -> [b,8,12,12]
        nn.ReLU(),
        nn.AvgPool2d(2),  # -> [b,8,6,6]
        nn.Flatten(),  # -> [b,288]
        nn.Linear(8 * 6 * 6, 10),
    )


def export(name: str, model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(x)
    onnx_path = OUT_DIR / f"{name}.onnx"
    torch.onnx.export(
        model,
        (x,),
        str(onnx_path),
        dynamo=False,  # legacy TorchScript exporter: plain standard op sets
        opset_version=OPSET,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        # Keep BatchNormalization as its own node instead of folding it into the conv.
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.EVAL,
    )
    np.savez(
        OUT_DIR / f"{name}.npz",
        x=x.numpy().astype(np.float32),
        logits=logits.numpy().astype(np.float32),
    )
    print(f"wrote {onnx_path} and {name}.npz")


def main() -> None:
    torch.manual_seed(0)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # Models and inputs are drawn in a fixed order from the seeded generator.
    mlp = make_mlp()
    mlp_x = torch.rand(BATCH, 784)
    cnn = make_cnn()
    cnn_x = torch.rand(BATCH, 1, 28, 28)
    export("torch_mlp", mlp, mlp_x)
    export("torch_cnn", cnn, cnn_x)


if __name__ == "__main__":
    main()
