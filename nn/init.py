"""Weight initialisation, as `torch.nn.init`: every function fills `tensor.data` in place.

The array keeps its identity and dtype (float32 stays float32), so optimisers that already
hold the parameter see the new values. Random draws come from `rng=` when given, else from
`autograd.generator()` (seeded by `autograd.manual_seed`).

Fans follow PyTorch: for a weight of shape `(out, in, *kernel)`, `fan_in = in * prod(kernel)`
and `fan_out = out * prod(kernel)`; so a Linear weight `(out, in)` has `fan_in = in`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import autograd
from autograd import Tensor

__all__ = [
    "calculate_gain",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "zeros_",
    "ones_",
    "constant_",
    "normal_",
    "uniform_",
]


def _array(tensor: Tensor | np.ndarray) -> np.ndarray:
    return tensor.data if isinstance(tensor, Tensor) else tensor


def _fill(tensor: Tensor | np.ndarray, values: Any) -> Tensor | np.ndarray:
    _array(tensor)[...] = values  # in place: casts to the tensor's dtype
    if isinstance(tensor, Tensor):
        tensor._bump_version()
    return tensor


def _generator(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else autograd.generator()


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain that keeps activations' variance steady through `nonlinearity`, as PyTorch."""
    if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith("conv"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor: Tensor | np.ndarray) -> tuple[int, int]:
    """`(fan_in, fan_out)` of a weight shaped `(out, in, *kernel)`; needs 2 or more axes."""
    shape = _array(tensor).shape
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a tensor with at least 2 axes, got shape {shape}"
        )
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(tensor: Tensor | np.ndarray, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(
    tensor: Tensor | np.ndarray,
    a: float = 0.0,
    b: float = 1.0,
    *,
    rng: np.random.Generator | None = None,
) -> Tensor | np.ndarray:
    """Fill with samples of U(a, b)."""
    return _fill(tensor, _generator(rng).uniform(a, b, size=_array(tensor).shape))


def normal_(
    tensor: Tensor | np.ndarray,
    mean: float = 0.0,
    std: float = 1.0,
    *,
    rng: np.random.Generator | None = None,
) -> Tensor | np.ndarray:
    """Fill with samples of N(mean, std**2)."""
    return _fill(tensor, _generator(rng).normal(mean, std, size=_array(tensor).shape))


def constant_(tensor: Tensor | np.ndarray, value: float) -> Tensor | np.ndarray:
    return _fill(tensor, value)


def zeros_(tensor: Tensor | np.ndarray) -> Tensor | np.ndarray:
    return _fill(tensor, 0)


def ones_(tensor: Tensor | np.ndarray) -> Tensor | np.ndarray:
    return _fill(tensor, 1)


def kaiming_uniform_(
    tensor: Tensor | np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    rng: np.random.Generator | None = None,
) -> Tensor | np.ndarray:
    """He init: U(-bound, bound) with bound = gain * sqrt(3 / fan).

    `a` is the negative slope of leaky_relu. PyTorch's Linear and Conv use `a=sqrt(5)`,
    which gives bound = 1 / sqrt(fan_in).
    """
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, rng=rng)


def kaiming_normal_(
    tensor: Tensor | np.ndarray,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    *,
    rng: np.random.Generator | None = None,
) -> Tensor | np.ndarray:
    """He init: N(0, std**2) with std = gain / sqrt(fan)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std, rng=rng)


def xavier_uniform_(
    tensor: Tensor | np.ndarray, gain: float = 1.0, *, rng: np.random.Generator | None = None
) -> Tensor | np.ndarray:
    """Glorot init: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, rng=rng)


def xavier_normal_(
    tensor: Tensor | np.ndarray, gain: float = 1.0, *, rng: np.random.Generator | None = None
) -> Tensor | np.ndarray:
    """Glorot init: N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return normal_(tensor, 0.0, std, rng=rng)
