"""Grad mode (`no_grad`, `enable_grad`), anomaly mode, the default float dtype, and the
scope stack.

These are the engine's pieces of global state, kept in one place so that a reader sees all
of them at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator

import numpy as np

_grad_enabled: bool = True
_default_dtype: np.dtype = np.dtype(np.float32)
# Innermost last. `nn.Module.__call__` pushes `(dotted_name, class_name)` here so that every
# op created during the call remembers the modules it ran in (the graph drawing clusters them).
_scope: tuple[Hashable, ...] = ()
# Anomaly mode: ops remember the user's line that made them, and backward checks every
# gradient for NaN (see `detect_anomaly`).
_anomaly: bool = False
# Inside `retain_grads()`, results of ops keep their `.grad` after backward (for drawing).
_retain_all: bool = False


def is_grad_enabled() -> bool:
    """True when new ops record the graph (the default)."""
    return _grad_enabled


def set_grad_enabled(mode: bool) -> None:
    global _grad_enabled
    _grad_enabled = bool(mode)


class _GradMode(contextlib.ContextDecorator):
    """Context manager and decorator that sets grad mode and restores it on exit."""

    mode: bool

    def __enter__(self) -> None:
        self._previous = is_grad_enabled()
        set_grad_enabled(self.mode)

    def __exit__(self, *exc: object) -> None:
        set_grad_enabled(self._previous)


class no_grad(_GradMode):  # noqa: N801 (PyTorch's name)
    """`with no_grad():` or `@no_grad()`: ops record nothing, results don't require grad."""

    mode = False


class enable_grad(_GradMode):  # noqa: N801 (PyTorch's name)
    """Re-enables recording inside a `no_grad` block."""

    mode = True


def get_default_dtype() -> np.dtype:
    """The dtype that floating data (Python floats included) becomes: float32 unless set."""
    return _default_dtype


def set_default_dtype(dtype: np.dtype | type) -> None:
    """Set the default float dtype (float32 or float64)."""
    global _default_dtype
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype}")
    _default_dtype = dtype


def current_scope() -> tuple[Hashable, ...]:
    """The scope entries (outermost first) that ops created now are recorded under."""
    return _scope


@contextlib.contextmanager
def scope(entry: Hashable) -> Iterator[None]:
    """Record ops created inside the block under `entry` (nested blocks nest)."""
    global _scope
    previous = _scope
    _scope = previous + (entry,)
    try:
        yield
    finally:
        _scope = previous


@contextlib.contextmanager
def retain_grads() -> Iterator[None]:
    """Tensors made inside the block keep `.grad` after backward, as if `retain_grad()`."""
    global _retain_all
    previous = _retain_all
    _retain_all = True
    try:
        yield
    finally:
        _retain_all = previous


def is_anomaly_enabled() -> bool:
    return _anomaly


def set_detect_anomaly(mode: bool) -> None:
    """Turn anomaly mode on or off (see `detect_anomaly`)."""
    global _anomaly
    _anomaly = bool(mode)


class detect_anomaly(contextlib.ContextDecorator):  # noqa: N801 (PyTorch's name)
    """`with detect_anomaly():` (or as a decorator): every op made inside records the file and
    line of the user's code that created it, and a backward pass raises `RuntimeError` at the
    first op whose backward produces a NaN gradient, naming the op and that line. Outside it
    nothing is recorded or checked.
    """

    def __init__(self, mode: bool = True) -> None:
        self.mode = mode

    def __enter__(self) -> None:
        self._previous = _anomaly
        set_detect_anomaly(self.mode)

    def __exit__(self, *exc: object) -> None:
        set_detect_anomaly(self._previous)
