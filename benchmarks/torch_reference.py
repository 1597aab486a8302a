"""PyTorch (CPU, 2 threads) versions of the benchmark networks of ``numpy_reference``.

torch is never a dependency of npgrad: it is imported lazily, and every public
function returns ``None`` (``run``) or says so (``torch_available``) when it is
not importable.

Same networks, losses, optimisers, batch order and input scaling (uint8 /255)
as :mod:`numpy_reference`; PyTorch's own default initialisation from
``torch.manual_seed(seed)`` (so weights differ from the numpy ones unless
:func:`load_numpy_params` copies them over). ``torch.set_num_threads(2)``.

Peak memory: tracemalloc cannot see PyTorch's allocations, so ``run`` reports
the peak of the CPU allocator's running total as recorded by ``torch.profiler``
(``profile_memory=True``), the counterpart of numpy's tracemalloc peak; with
``measure_rss_too=True`` both files also report the peak resident-set growth
of the same training in a fresh process (``numpy_reference.measure_rss``).

    python benchmarks/torch_reference.py bench   # timings, as numpy_reference's bench
"""

from __future__ import annotations

import os
import sys
import time
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
    "evaluate",
    "peak_allocated_bytes",
    "run",
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


def evaluate(model: TorchModel, images, labels, batch_size: int = 1000) -> float:
    return _npref.evaluate(model, images, labels, batch_size)


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


def run(
    model_name: str,
    images: np.ndarray,
    labels: np.ndarray,
    n_images: int,
    batch_size: int = 128,
    seed: int = 0,
    *,
    warmup_steps: int = 1,
    memory_steps: int | None = 20,
    measure_rss_too: bool = False,
) -> dict | None:
    """As ``numpy_reference.run``, for PyTorch; ``None`` when torch is not importable.

    Memory: ``peak_memory_bytes`` from :func:`peak_allocated_bytes` (allocator
    events, a separate run of the first ``memory_steps`` batches); with
    ``measure_rss_too``, also the peak RSS growth in a fresh process.
    """
    torch = torch_available()
    if torch is None:
        return None
    batches = _npref.batch_order(len(images), n_images, batch_size, seed)
    model = make_model(model_name, seed)
    for _ in range(warmup_steps):
        train_step(model, images[batches[0]], labels[batches[0]])
    losses = []
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with _npref.ContentionMeter() as meter:
        c0, t0 = time.process_time(), time.perf_counter()
        for idx in batches:
            losses.append(train_step(model, images[idx], labels[idx]))
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0
    del model

    mem_batches = batches if memory_steps is None else batches[:memory_steps]
    peak = peak_allocated_bytes(model_name, images, labels, mem_batches, seed)
    result = {
        "impl": "torch",
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "model": model_name,
        "description": _npref.MODELS[model_name][0],
        "n_images": n_images,
        "batch_size": batch_size,
        "steps": len(batches),
        "seed": seed,
        "seconds": seconds,
        "seconds_per_10k_images": seconds * 10_000 / n_images,
        "cpu_seconds": cpu_seconds,
        "loadavg_1min_before": load_before,
        "other_cpu_fraction": meter.other_cpu_fraction,
        "peak_memory_bytes": peak,
        "peak_memory_mib": None if peak is None else peak / 2**20,
        "memory_steps": len(mem_batches),
        "first_loss": losses[0],
        "final_loss": losses[-1],
    }
    if measure_rss_too:
        rss = _npref.measure_rss(model_name, batch_size, len(mem_batches), seed, impl="torch")
        result["rss_peak_delta_mib"] = None if rss is None else rss / 2**20
    return result


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="PyTorch reference timings")
    parser.add_argument("cmd", choices=["bench", "check"])
    parser.add_argument("--dataset", default=str(_npref.DEFAULT_MNIST))
    parser.add_argument("--models", nargs="+", default=list(_npref.MODELS))
    parser.add_argument("--n-images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss", action="store_true", help="also peak RSS growth (subprocess)")
    parser.add_argument("--max-other", type=float, default=0.05, help="noisy-run threshold")
    parser.add_argument("--quiet-timeout", type=float, default=300.0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch = torch_available()
    if torch is None:
        print("torch is not importable: nothing to measure")
        return
    xtr, ytr = _npref.load_mnist(args.dataset, "train")
    if args.cmd == "check":  # 1 epoch accuracy, as numpy_reference's check
        xte, yte = _npref.load_mnist(args.dataset, "test")
        for name in args.models:
            model = make_model(name, 0)
            for idx in _npref.batch_order(len(xtr), len(xtr), args.batch_size, 0):
                train_step(model, xtr[idx], ytr[idx])
            print(f"torch {name:10s} test accuracy {evaluate(model, xte, yte):.4f}")
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    _npref.bench(run, "torch", args, xtr, ytr)


if __name__ == "__main__":
    main()
