"""Reductions over axes (numpy's `axis`/`keepdims`), and softmax / log-softmax."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import grad_mode
from ..tensor import Tensor

_from_op = Tensor._from_op
Axis = int | tuple[int, ...] | None


def normalize_axes(op: str, axis: Axis, ndim: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """`axis` as a sorted tuple of non-negative axes; names the op and shape when out of range."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if any(not -ndim <= a < ndim for a in axes):
        # numpy's AxisError is both a ValueError (numpy) and an IndexError (PyTorch's type)
        raise np.exceptions.AxisError(f"{op}: axis {axis} is out of range for shape {shape}")
    result = tuple(sorted(int(a) % ndim for a in axes))
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: repeated axis in {axis} for shape {shape}")
    return result


def _kept_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def expand_reduced(g: Tensor, shape: tuple[int, ...], axes: tuple[int, ...]) -> Tensor:
    """Broadcast a reduction's gradient (keepdims or not) back over the input's `shape`."""
    kept = _kept_shape(shape, axes)
    if not grad_mode._grad_enabled:  # plain backward: the same read-only view, no graph
        return Tensor._from_array(np.broadcast_to(g.data.reshape(kept), shape))
    if g.shape != kept:
        g = g.reshape(kept)
    return g.broadcast_to(shape)


def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    axes = normalize_axes("sum", axis, x.ndim, x.shape)

    in_shape = x.shape

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (expand_reduced(g, in_shape, axes),)

    data = np.sum(x.data, axis=axes, keepdims=keepdims)
    return _from_op(data, (x,), "sum", backward, saved=(), axis=axis, keepdims=keepdims)


def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    axes = normalize_axes("mean", axis, x.ndim, x.shape)
    count = math.prod(x.shape[a] for a in axes)
    in_shape = x.shape

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (expand_reduced(g, in_shape, axes) * (1.0 / (count or 1)),)

    data = (
        np.mean(x.data, axis=axes, keepdims=keepdims)
        if x.size
        else np.full(np.sum(x.data, axis=axes, keepdims=keepdims).shape, np.nan, dtype=x.dtype)
    )
    return _from_op(data, (x,), "mean", backward, saved=(), axis=axis, keepdims=keepdims)


def _extremum(op: str, pick: Any, x: Tensor, axis: Axis, keepdims: bool) -> Tensor:
    axes = normalize_axes(op, axis, x.ndim, x.shape)
    if x.size == 0:
        raise ValueError(f"{op}: reduction of an empty tensor of shape {x.shape}")
    kept = pick(x.data, axis=axes, keepdims=True)
    hits = x.data == kept
    # ties split the gradient evenly; the weights are saved until backward releases them
    weights = (hits / np.sum(hits, axis=axes, keepdims=True)).astype(x.dtype)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (expand_reduced(g, x.shape, axes) * weights,)

    data = kept if keepdims else kept.reshape(np.sum(hits, axis=axes).shape)
    return _from_op(data, (x,), op, backward, saved=(x,), axis=axis, keepdims=keepdims)


def max(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _extremum("max", np.max, x, axis, keepdims)


def min(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return _extremum("min", np.min, x, axis, keepdims)


def var(x: Tensor, axis: Axis = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    axes = normalize_axes("var", axis, x.ndim, x.shape)
    count = math.prod(x.shape[a] for a in axes)

    def backward(g: Tensor, out: Tensor) -> tuple:
        centred = x - x.mean(axis=axes, keepdims=True)
        return (expand_reduced(g, x.shape, axes) * centred * (2.0 / (count - ddof)),)

    data = np.var(x.data, axis=axes, keepdims=keepdims, ddof=ddof)
    return _from_op(
        data, (x,), "var", backward, saved=(x,), axis=axis, keepdims=keepdims, ddof=ddof
    )


def std(x: Tensor, axis: Axis = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    return var(x, axis=axis, keepdims=keepdims, ddof=ddof).sqrt()


def logsumexp(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) without overflow: the max is taken out first."""
    axes = normalize_axes("logsumexp", axis, x.ndim, x.shape)
    peak = np.max(x.data, axis=axes, keepdims=True, initial=-np.inf)  # empty axis: -inf
    peak = np.where(np.isfinite(peak), peak, 0)
    kept = np.log(np.sum(np.exp(x.data - peak), axis=axes, keepdims=True)) + peak

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (expand_reduced(g, x.shape, axes) * (x - expand_reduced(out, x.shape, axes)).exp(),)

    data = kept if keepdims else kept.reshape(np.sum(kept, axis=axes).shape)
    return _from_op(
        data,
        (x,),
        "logsumexp",
        backward,
        saved=(x,),
        saves_output=True,
        axis=axis,
        keepdims=keepdims,
    )


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, shifted by the max so large logits don't overflow.
    A 0-d x is one element along axis 0 or -1 (PyTorch's rule): softmax 1."""
    if x.ndim == 0 and axis in (0, -1):
        return softmax(x.reshape(1), 0).reshape(())
    (a,) = normalize_axes("softmax", axis, x.ndim, x.shape)
    e = np.exp(x.data - np.max(x.data, axis=a, keepdims=True, initial=-np.inf))
    data = e / np.sum(e, axis=a, keepdims=True)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (out * (g - (g * out).sum(axis=a, keepdims=True)),)

    return _from_op(data, (x,), "softmax", backward, saved=(), saves_output=True, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`: never takes the log of an underflowed softmax (a 0-d x
    as one element, as in `softmax`)."""
    if x.ndim == 0 and axis in (0, -1):
        return log_softmax(x.reshape(1), 0).reshape(())
    (a,) = normalize_axes("log_softmax", axis, x.ndim, x.shape)
    shifted = x.data - np.max(x.data, axis=a, keepdims=True, initial=-np.inf)
    data = shifted - np.log(np.sum(np.exp(shifted), axis=a, keepdims=True))

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g - out.exp() * g.sum(axis=a, keepdims=True),)

    return _from_op(data, (x,), "log_softmax", backward, saved=(), saves_output=True, axis=axis)


def cumsum(x: Tensor, axis: int) -> Tensor:
    """Running sums along `axis` (numpy's cumsum; the axis is required, as PyTorch's dim)."""
    (a,) = normalize_axes("cumsum", axis, x.ndim, x.shape)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (_reverse_cumsum(g, a),)  # out[i] = sum_{j <= i} x[j]: dx[j] = sum_{i >= j} g[i]

    return _from_op(np.cumsum(x.data, axis=a), (x,), "cumsum", backward, saved=(), axis=axis)


def _reverse_cumsum(x: Tensor, axis: int) -> Tensor:
    """Running sums from the end of `axis` backwards: cumsum's adjoint (and cumsum is its)."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (cumsum(g, axis),)

    data = np.flip(np.cumsum(np.flip(x.data, axis), axis=axis), axis)
    return _from_op(data, (x,), "reverse_cumsum", backward, saved=(), axis=axis)


def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    if axis is not None:
        normalize_axes("argmax", axis, x.ndim, x.shape)
    return Tensor(np.argmax(x.data, axis=axis, keepdims=keepdims))


def argmin(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    if axis is not None:
        normalize_axes("argmin", axis, x.ndim, x.shape)
    return Tensor(np.argmin(x.data, axis=axis, keepdims=keepdims))
