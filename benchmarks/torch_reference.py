"""PyTorch (CPU, 2 threads) versions of the benchmark networks of ``numpy_reference``.

torch is never a dependency of npgrad: it is imported lazily; ``torch_available``
returns ``None`` and ``make_model`` / ``peak_allocated_bytes`` return ``None`` when it is
not importable.

Same networks, losses, optimisers, batch order and input scaling (uint8 /255)
as :mod:`numpy_reference`; PyTorch's own default initialisation from
``torch.manual_seed(seed)`` (so weights differ from the numpy ones unless
:func:`load_numpy_params` copies them over). ``torch.set_num_threads(2)``.

Peak memory: tracemalloc cannot see PyTorch's allocations, so
:func:`peak_allocated_bytes` reports the peak of the CPU allocator's running total as
recorded by ``torch.profiler`` (``profile_memory=True``), the counterpart of numpy's
tracemalloc peak. Timing is done by ``python -m benchmarks``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:  # imported as benchmarks.torch_reference
    from . import numpy_reference as _npref
except ImportError:  # run as a script, or benchmarks/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy_reference as _npref

__all__ = [
    "torch_available",
    "TorchModel",
    "make_model",
    "train_step",
    "loss_and_grads",
    "load_numpy_params",
    "params_numpy",
    "peak_allocated_bytes",
]

NUM_THREADS = 2
_torch = None


def torch_available():
    """The ``torch`` module (set to ``NUM_THREADS`` threads), or ``None`` if not importable."""
    global _torch
    if _torch is None:
        try:
            import torch
        except ImportError:
            return None
        torch.set_num_threads(NUM_THREADS)
        _torch = torch
    return _torch


class TorchModel:
    """A ``torch.nn.Module`` with its optimiser and the numpy-side ``step``/``forward``."""

    def __init__(self, name: str, module, optimizer, flatten_input: bool):
        self.name = name
        self.module = module
        self.optimizer = optimizer
        self.flatten_input = flatten_input
        self.loss_fn = _torch.nn.CrossEntropyLoss()

    def _input(self, x: np.ndarray):
        torch = _torch
        t = torch.from_numpy(np.ascontiguousarray(x))
        if t.dtype == torch.uint8:
            t = t.to(torch.float32).mul_(1.0 / 255.0)
        else:
            t = t.to(torch.float32)
        return t.reshape(len(x), -1) if self.flatten_input else t.reshape(len(x), 1, 28, 28)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.module(self._input(x)), _torch.from_numpy(np.asarray(y)))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def forward(self, x: np.ndarray) -> np.ndarray:
        with _torch.no_grad():
            return self.module(self._input(x)).numpy()

    __call__ = forward


def make_model(model_name: str, seed: int = 0) -> TorchModel | None:
    """``"mlp"``, ``"mlp_large"`` or ``"cnn"`` with its optimiser, or None without torch."""
    torch = torch_available()
    if torch is None:
        return None
    nn = torch.nn
    torch.manual_seed(seed)
    if model_name in ("mlp", "mlp_large"):
        sizes = (784, 128, 10) if model_name == "mlp" else (784, 512, 256, 10)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        module = nn.Sequential(*layers)
        opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
        return TorchModel(model_name, module, opt, flatten_input=True)
    if model_name == "cnn":
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
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        return TorchModel(model_name, module, opt, flatten_input=False)
    raise ValueError(f"unknown model {model_name!r}; expected one of {sorted(_npref.MODELS)}")


def train_step(model: TorchModel, x: np.ndarray, y: np.ndarray) -> float:
    """One optimisation step on a batch (uint8 or float32 images, int64 labels); the loss."""
    return model.step(x, y)


def loss_and_grads(model: TorchModel, x: np.ndarray, y: np.ndarray):
    """``(loss, [grad as numpy, ...])`` in ``module.parameters()`` order; no update."""
    model.module.zero_grad(set_to_none=True)
    loss = model.loss_fn(model.module(model._input(x)), _torch.from_numpy(np.asarray(y)))
    loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in model.module.parameters()]


def load_numpy_params(model: TorchModel, params) -> None:
    """Copy numpy parameters (``numpy_reference`` order and layouts) into the module."""
    with _torch.no_grad():
        for p, a in zip(model.module.parameters(), params, strict=True):
            p.copy_(_torch.from_numpy(np.asarray(a, dtype=np.float32)))


def params_numpy(model: TorchModel) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in model.module.parameters()]


def peak_allocated_bytes(model_name: str, images, labels, batches, seed: int = 0) -> int | None:
    """Peak bytes held by PyTorch's CPU allocator while building and training a model.

    The analogue of numpy's tracemalloc peak: ``torch.profiler`` with
    ``profile_memory=True`` records every allocation and free of the c10 CPU
    allocator; the result is the maximum of their running sum, the profiler
    started before the model is built (parameters, optimiser state, batch,
    activations and gradients count; memory that oneDNN/MKL allocate on their
    own does not). A throwaway model takes one step first, so lazy
    initialisation stays outside.
    """
    torch = torch_available()
    if torch is None:
        return None
    warm = make_model(model_name, seed)
    train_step(warm, images[batches[0]], labels[batches[0]])
    del warm
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=acts, profile_memory=True) as prof:
        model = make_model(model_name, seed)
        for idx in batches:
            train_step(model, images[idx], labels[idx])
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    return int(np.cumsum([e.nbytes() for e in events]).max()) if events else None
