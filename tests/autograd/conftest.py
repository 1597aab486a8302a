"""Shared fixtures of the engine tests: a seeded generator, float64 leaves, clean global state."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

import autograd
from autograd import Tensor


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """Grad mode and default dtype are global: a failing test must not leak them."""
    dtype, enabled = autograd.get_default_dtype(), autograd.is_grad_enabled()
    yield
    autograd.set_default_dtype(dtype)
    autograd.set_grad_enabled(enabled)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def leaf(rng: np.random.Generator) -> Callable[..., Tensor]:
    """`leaf(2, 3)`: a float64 standard-normal tensor that requires grad (gradcheck's dtype).

    `low=`/`high=` draw uniformly instead, for ops with a restricted domain (log, sqrt).
    """

    def make(*shape: int, low: float | None = None, high: float | None = None) -> Tensor:
        if low is None:
            data = rng.standard_normal(shape)
        else:
            data = rng.uniform(low, high, shape)
        return Tensor(data, requires_grad=True, dtype=np.float64)

    return make
