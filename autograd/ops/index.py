"""Indexing: `x[index]` and its adjoint, scatter-add (repeated indices accumulate)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .. import grad_mode
from ..tensor import GradPiece, Tensor

_from_op = Tensor._from_op


def normalize_index(index: Any) -> Any:
    """Tensors and lists in an index become arrays; the rest is numpy's own index."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        array = np.asarray(index)
        return array.astype(np.intp) if array.size == 0 else array  # `[]` selects nothing
    if isinstance(index, tuple):
        return tuple(normalize_index(i) for i in index)
    return index


def _repeats_possible(index: Any) -> bool:
    """Only integer arrays can name an element twice (basic slices and masks cannot)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, np.ndarray) and p.dtype.kind in "iu" for p in parts)


def _saved_arrays(index: Any) -> tuple[np.ndarray, ...]:
    """The index arrays a backward keeps (basic slices and ints are no saved data)."""
    parts = index if isinstance(index, tuple) else (index,)
    return tuple(p for p in parts if isinstance(p, np.ndarray))


def getitem(x: Tensor, index: Any) -> Tensor:
    index = normalize_index(index)
    try:
        data = x.data[index]
    except IndexError as error:
        raise IndexError(f"getitem: {error} (tensor of shape {x.shape})") from None

    in_shape = x.shape

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: the engine adds g where it lands
            return (GradPiece(in_shape, g.dtype, partial(_scatter_add, index, g.data)),)
        return (index_add(g, index, in_shape),)

    return _from_op(np.asarray(data), (x,), "getitem", backward, saved=_saved_arrays(index))


def _add_rows(data: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """`data[rows] += values` with repeated rows adding up: sorted by row, each run summed by
    one `np.add.reduceat` (~8x faster than `np.add.at` on an embedding's backward)."""
    flat = rows.reshape(-1)
    if flat.size == 0:
        return
    flat = np.where(flat < 0, flat + data.shape[0], flat)  # (negative indices, as numpy's)
    block = values.reshape(flat.size, -1)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sums = np.add.reduceat(block[order], starts, axis=0)
    data.reshape(data.shape[0], -1)[ordered[starts]] += sums


def _scatter_add(index: Any, values: np.ndarray, data: np.ndarray) -> None:
    """`data[index] += values`, repeated indices adding up."""
    if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and index.size >= 256:
        # many rows picked by one integer array (embeddings): sorting pays off; below that its
        # fixed cost (~35 µs) is more than np.add.at's
        _add_rows(data, index, values)
    elif _repeats_possible(index):
        np.add.at(data, index, values)
    else:
        data[index] += values


def index_add(values: Tensor, index: Any, shape: tuple[int, ...]) -> Tensor:
    """zeros(shape) with `values` added at `index`; repeated indices add up."""
    data = np.zeros(shape, dtype=values.dtype)
    _scatter_add(index, values.data, data)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g[index],)

    return _from_op(data, (values,), "index_add", backward, saved=_saved_arrays(index))
