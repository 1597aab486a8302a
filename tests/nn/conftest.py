"""Fixtures for the nn kernels that split their work over `autograd.parallel`'s threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np
import pytest

import autograd

Pieces = list[list[tuple[int, int]]]


@pytest.fixture
def threads() -> Iterator[Callable[[int], None]]:
    """`autograd.set_num_threads`, with the count restored afterwards."""
    before = autograd.get_num_threads()
    yield autograd.set_num_threads
    autograd.set_num_threads(before)


@pytest.fixture
def spy_parallel_for(monkeypatch: pytest.MonkeyPatch) -> Callable[[ModuleType], Pieces]:
    """`spy(module)`: from then on, the pieces that each `parallel_for` call of `module` hands
    out, call by call (the calls still run)."""

    def spy(module: ModuleType) -> Pieces:
        calls: Pieces = []
        real = module.parallel_for

        def recording(fn: Callable[[int, int], None], n: int, grain: int = 1) -> None:
            pieces: list[tuple[int, int]] = []
            calls.append(pieces)

            def recorded(lo: int, hi: int) -> None:
                pieces.append((lo, hi))
                fn(lo, hi)

            real(recorded, n, grain)

        monkeypatch.setattr(module, "parallel_for", recording)
        return calls

    return spy


@pytest.fixture
def same_results() -> Callable[..., None]:
    """`same(one, two, dtype=None)`: the arrays of a one-thread and a two-thread run are
    bit-identical, pair by pair (and of `dtype`, when given)."""

    def same(one: list[np.ndarray], two: list[np.ndarray], dtype: type | None = None) -> None:
        assert len(one) == len(two)
        for a, b in zip(one, two, strict=True):
            if dtype is not None:
                assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)

    return same
