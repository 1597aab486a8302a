"""Finite-difference checks of the engine's gradients (float64 central differences)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import grad_mode
from .tensor import Tensor, grad


def _as_float64(inputs: Sequence[Any]) -> list[Any]:
    out = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            out.append(
                Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad, dtype=np.float64)
            )
        else:
            out.append(x)
    return out


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> bool:
    """Compare the analytic gradient of `fn(*inputs).sum()` with central differences.

    Float inputs are copied to float64 (and the default dtype is float64 meanwhile); inputs
    that require grad are checked element by element. Returns True, or raises
    `AssertionError` naming the input, the index and both values.
    """
    previous = grad_mode.get_default_dtype()
    grad_mode.set_default_dtype(np.float64)
    try:
        xs = _as_float64(inputs)
        checked = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
        if not checked:
            raise ValueError("gradcheck: no input requires grad")
        with grad_mode.enable_grad():
            out = fn(*xs)
            total = out.sum()
            # an output that recorded no graph has zero gradient (e.g. the derivative of a
            # constant relu mask); the numeric side then has to be zero too
            analytic = (
                grad(total, [xs[i] for i in checked], allow_unused=True)
                if total.requires_grad
                else (None,) * len(checked)
            )
        for i, g in zip(checked, analytic, strict=True):
            x = xs[i]
            g = np.zeros_like(x.data) if g is None else g.data
            if g.shape != x.shape:
                raise AssertionError(f"gradcheck: input {i}: grad shape {g.shape} != {x.shape}")
            data = x.data  # perturbed in place by index (reshape(-1) of a transposed input
            for index in np.ndindex(data.shape):  # would be a copy, perturbing nothing)
                original = data[index]
                # evaluated with grad on: `fn` may itself differentiate (gradgradcheck)
                data[index] = original + eps
                plus = float(fn(*xs).data.sum())
                data[index] = original - eps
                minus = float(fn(*xs).data.sum())
                data[index] = original
                numeric = (plus - minus) / (2 * eps)
                value = g[index]
                if not abs(value - numeric) <= atol + rtol * abs(numeric):
                    raise AssertionError(
                        f"gradcheck: input {i} at index {tuple(int(j) for j in index)}: "
                        f"analytic {value:.8g} vs numeric {numeric:.8g}"
                    )
        return True
    finally:
        grad_mode.set_default_dtype(previous)


def gradgradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Check second derivatives: gradcheck of (first gradients . fixed random weights)."""
    rng = np.random.default_rng(seed)
    xs = _as_float64(inputs)
    checked = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
    weights = [rng.standard_normal(xs[i].shape) for i in checked]

    def first_gradients(*args: Any) -> Tensor:
        grads = grad(
            fn(*args).sum(), [args[i] for i in checked], create_graph=True, allow_unused=True
        )
        total = Tensor(0.0, dtype=np.float64)
        for g, w in zip(grads, weights, strict=True):
            if g is not None:
                total = total + (g * w).sum()
        return total

    return gradcheck(first_gradients, xs, eps=eps, atol=atol, rtol=rtol)
