"""The benchmark networks of `numpy_reference`, built with npgrad (`nn` layers, `F`, `optim`).

Same layers, loss, optimiser hyper-parameters and input handling as the hand-written numpy
versions; the weights are *copied* from `numpy_reference.make_model(name, seed)`, so both
start from identical parameters and (fed the same batches) follow the same trajectory to
float32 rounding.

    model = make_model("mlp", seed=0)
    loss = train_step(model, images[idx], labels[idx])   # float32 (B, 28, 28), int64 (B,)
"""

from __future__ import annotations

import numpy as np

import autograd
import nn
from nn import functional as F
from nn import optim

try:  # imported as benchmarks.npgrad_nets
    from . import numpy_reference
except ImportError:  # benchmarks/ on sys.path
    import numpy_reference  # type: ignore[no-redef]

__all__ = [
    "NpgradModel",
    "build_module",
    "make_model",
    "train_step",
    "evaluate",
    "release_buffers",
]


class NpgradModel:
    """An `nn.Module` with its optimiser, and the numpy-facing `step` / `forward`."""

    def __init__(self, name: str, module: nn.Module, optimizer: optim.Optimizer, input_shape):
        self.name = name
        self.module = module
        self.optimizer = optimizer
        self.input_shape = input_shape  # per image: (784,) or (1, 28, 28)

    def _input(self, x: np.ndarray) -> autograd.Tensor:
        """uint8 images are scaled to [0, 1] (as numpy_reference does); float32 kept as is."""
        x = np.asarray(x)
        if x.dtype == np.uint8:
            x = x.astype(np.float32)
            x *= np.float32(1 / 255)  # (in place, as numpy_reference's `_to_float`)
        return autograd.Tensor(x.reshape((len(x),) + self.input_shape))

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = F.cross_entropy(self.module(self._input(x)), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def forward(self, x: np.ndarray) -> np.ndarray:
        with autograd.no_grad():
            return self.module(self._input(x)).data

    __call__ = forward


def build_module(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The npgrad module of benchmark model `name` and the shape of one input image."""
    if name in ("mlp", "mlp_large"):
        sizes = (784, 128, 10) if name == "mlp" else (784, 512, 256, 10)
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers), (784,)
    if name == "cnn":
        module = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
        return module, (1, 28, 28)
    raise ValueError(f"unknown model {name!r}; expected one of {sorted(numpy_reference.MODELS)}")


def make_model(name: str, seed: int = 0) -> NpgradModel:
    """Benchmark model `name` with the numpy reference's initial weights for `seed`."""
    module, input_shape = build_module(name)
    reference = numpy_reference.make_model(name, seed)
    params = list(module.parameters())
    for p, value in zip(params, reference.params, strict=True):
        if p.shape != value.shape:
            raise ValueError(f"{name}: parameter shapes differ: {p.shape} vs {value.shape}")
        p.data[...] = value
    if name == "cnn":
        opt = optim.Adam(params, lr=reference.optimizer.lr)
    else:
        opt = optim.SGD(params, lr=reference.optimizer.lr, momentum=reference.optimizer.momentum)
    opt.flush_every = reference.optimizer.flush_every  # the same denormal flush schedule
    return NpgradModel(name, module, opt, input_shape)


def train_step(model: NpgradModel, x: np.ndarray, y: np.ndarray) -> float:
    """One optimisation step on a batch; the loss."""
    return model.step(x, y)


def evaluate(model: NpgradModel, images: np.ndarray, labels: np.ndarray) -> float:
    return numpy_reference.evaluate(model, images, labels)


def release_buffers() -> None:
    """Drop the work and result buffers that npgrad's convolution kernels keep for reuse,
    so that a memory measurement started afterwards sees them allocated."""
    from nn import convolution

    convolution.release_buffers()
