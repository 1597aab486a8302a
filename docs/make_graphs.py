"""Render the graph drawings in docs/: one training step of an MLP and of a small CNN.

    python docs/make_graphs.py            # writes docs/mlp_graph.svg, docs/cnn_graph.svg,
                                          # docs/cnn_graph_collapsed.svg
    python docs/make_graphs.py --png DIR  # also writes PNG copies into DIR (to look at)

Each drawing is one forward and backward pass on a batch of 32 MNIST digits (the small real
subset in tests/data/mnist; random pixels if it cannot be read), built inside
`autograd.retain_grads()` so that every node, not only the parameters, shows its gradient.
Needs Graphviz's `dot` program.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, installed or not

import autograd  # noqa: E402
import nn  # noqa: E402
from autograd import Tensor  # noqa: E402
from nn import functional as F  # noqa: E402

BATCH = 32


class CNN(nn.Module):
    """Two conv blocks and a linear classifier: (N, 1, 28, 28) -> logits (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def mnist_batch() -> tuple[np.ndarray, np.ndarray]:
    """32 digits scaled to [0, 1] (N, 28, 28) and their labels."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        images, labels = nn.data.load_mnist(ROOT / "tests" / "data" / "mnist", split="train")
        return images[:BATCH].astype(np.float32) / 255, labels[:BATCH]
    except Exception as error:  # noqa: BLE001 (any failure: fall back, say so)
        print(f"MNIST subset not readable ({error}); drawing with random pixels")
        rng = np.random.default_rng(0)
        return rng.random((BATCH, 28, 28), dtype=np.float32), rng.integers(0, 10, BATCH)


def training_step(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> Tensor:
    """Forward and backward of one batch; returns the loss, its graph holding the grads."""
    with autograd.retain_grads():
        loss = F.cross_entropy(model(Tensor(images, name="images")), labels)
    loss.name = "loss"
    loss.backward()
    return loss


def render(loss: Tensor, model: nn.Module, path: Path, png_dir: Path | None, **options) -> None:
    start = time.perf_counter()
    graph = autograd.draw_graph(loss, params=model, **options)
    drawn = time.perf_counter() - start
    autograd.save_graph(loss, path, params=model, **options)
    total = time.perf_counter() - start
    ids = re.findall(r"^\s*(\w+) \[", graph.source, flags=re.M)
    count = {kind: sum(bool(re.fullmatch(kind + r"\d+", i)) for i in ids) for kind in "tom"}
    edges = sum("->" in line and "invis" not in line for line in graph.source.splitlines())
    print(
        f"{path.name}: {sum(count.values())} nodes ({count['t']} tensors, {count['o']} ops, "
        f"{count['m']} modules), {edges} edges; draw_graph {drawn * 1000:.0f} ms, "
        f"draw + render SVG {total * 1000:.0f} ms"
    )
    if png_dir is not None:
        autograd.save_graph(loss, png_dir / path.with_suffix(".png").name, params=model, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--png", type=Path, default=None, help="also write PNGs here")
    args = parser.parse_args()
    images, labels = mnist_batch()
    autograd.draw_graph(Tensor(0.0))  # import graphviz now, not inside the first timing

    autograd.manual_seed(0)
    mlp = nn.MLP(784, [128], 10)
    loss = training_step(mlp, images.reshape(BATCH, 784), labels)
    render(loss, mlp, args.out / "mlp_graph.svg", args.png)

    autograd.manual_seed(0)
    cnn = CNN()
    loss = training_step(cnn, images.reshape(BATCH, 1, 28, 28), labels)
    render(loss, cnn, args.out / "cnn_graph.svg", args.png)
    render(loss, cnn, args.out / "cnn_graph_collapsed.svg", args.png, collapse=True)


if __name__ == "__main__":
    main()
