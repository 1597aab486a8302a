"""Creation helpers: a shape as separate ints or one tuple, plus `dtype=` and `requires_grad=`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .grad_mode import get_default_dtype
from .ops.shape import shape_arg
from .tensor import Tensor

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator behind `randn` and `rand` (and nn's init and dropout)."""
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    """The generator that `manual_seed` seeds."""
    return _rng


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None):
    """Same as `Tensor(...)`."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)


def _float(dtype: Any) -> np.dtype:
    return np.dtype(dtype) if dtype is not None else get_default_dtype()


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(shape_arg(shape), _float(dtype)), requires_grad, _float(dtype))


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(shape_arg(shape), _float(dtype)), requires_grad, _float(dtype))


def full(shape: Any, fill_value: float, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    shape = shape_arg((shape,) if isinstance(shape, int) else tuple(shape))
    if dtype is None:
        dtype = np.asarray(fill_value).dtype
        dtype = get_default_dtype() if dtype.kind == "f" else dtype
    return Tensor(np.full(shape, fill_value, dtype=dtype), requires_grad, dtype)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    dtype = dtype or np.asarray(t).dtype
    return Tensor(np.zeros(np.shape(t), dtype), requires_grad, dtype)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    dtype = dtype or np.asarray(t).dtype
    return Tensor(np.ones(np.shape(t), dtype), requires_grad, dtype)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples."""
    data = _rng.standard_normal(shape_arg(shape), dtype=np.float64).astype(_float(dtype))
    return Tensor(data, requires_grad, _float(dtype))


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    data = _rng.random(shape_arg(shape)).astype(_float(dtype))
    return Tensor(data, requires_grad, _float(dtype))


def arange(
    start: float,
    stop: float | None = None,
    step: float = 1,
    dtype: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """numpy's arange; integer arguments keep an integer (int64) dtype."""
    data = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is None:
        dtype = np.int64 if data.dtype.kind in "iu" else get_default_dtype()
    return Tensor(data, requires_grad, dtype)


def eye(n: int, m: int | None = None, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.eye(n, m, dtype=_float(dtype)), requires_grad, _float(dtype))
