"""Shape ops: views where numpy gives views (reshape, transpose, broadcast, the pieces of
split and chunk), copies only where the result needs new memory (pad, cat, stack)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from .. import grad_mode
from ..tensor import GradPiece, Tensor

_from_op = Tensor._from_op


def shape_arg(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """`f(2, 3)` and `f((2, 3))` both mean the shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(n) for n in shape)


def reshape(x: Tensor, *shape: Any, op: str = "reshape") -> Tensor:
    new_shape = shape_arg(shape)
    try:
        data = x.data.reshape(new_shape)
    except ValueError:
        raise ValueError(f"{op}: cannot reshape shape {x.shape} into {new_shape}") from None

    in_shape = x.shape  # (not `x`: closures that save nothing must hold no tensor)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g.reshape(in_shape),)

    return _from_op(data, (x,), op, backward, saved=(), shape=data.shape)


def flatten(x: Tensor, start_axis: int = 0) -> Tensor:
    """Merge axes `start_axis..` into one: (N, C, H, W).flatten(1) is (N, C*H*W)."""
    if x.ndim == 0:
        return reshape(x, 1, op="flatten")
    if not -x.ndim <= start_axis < x.ndim:
        raise ValueError(f"flatten: start_axis {start_axis} out of range for shape {x.shape}")
    start = start_axis % x.ndim
    return reshape(x, *x.shape[:start], -1, op="flatten")


def transpose(x: Tensor, *axes: Any) -> Tensor:
    """numpy's permutation of axes; no axes reverses them."""
    ndim = x.ndim
    requested = shape_arg(axes) if axes else tuple(reversed(range(ndim)))
    perm = tuple(a % ndim for a in requested if -ndim <= a < ndim)
    if sorted(perm) != list(range(ndim)) or len(perm) != len(requested):
        raise ValueError(f"transpose: axes {requested} are not a permutation for shape {x.shape}")
    inverse = tuple(sorted(range(ndim), key=perm.__getitem__))  # argsort of the permutation

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g.transpose(inverse),)

    data = np.transpose(x.data, perm)
    return _from_op(data, (x,), "transpose", backward, saved=(), axes=perm)


def swapaxes(x: Tensor, a: int, b: int) -> Tensor:
    perm = list(range(x.ndim))
    try:
        perm[a], perm[b] = perm[b], perm[a]
    except IndexError:
        raise ValueError(f"swapaxes: axes ({a}, {b}) out of range for shape {x.shape}") from None
    return transpose(x, *perm)


def squeeze(x: Tensor, axis: int | tuple[int, ...] | None = None) -> Tensor:
    try:
        target = np.squeeze(x.data, axis=axis).shape
    except ValueError:
        raise ValueError(f"squeeze: cannot squeeze axis {axis} of shape {x.shape}") from None
    return reshape(x, target, op="squeeze")


def unsqueeze(x: Tensor, axis: int) -> Tensor:
    try:
        target = np.expand_dims(x.data, axis).shape
    except np.exceptions.AxisError:
        raise ValueError(f"unsqueeze: axis {axis} out of range for shape {x.shape}") from None
    return reshape(x, target, op="unsqueeze")


def broadcast_to(x: Tensor, *shape: Any) -> Tensor:
    """A read-only broadcast view; `-1` keeps an axis (PyTorch's `expand`)."""
    target = shape_arg(shape)
    offset = len(target) - x.ndim
    target = tuple(
        x.shape[i - offset] if n == -1 and i >= offset else n for i, n in enumerate(target)
    )
    try:
        data = np.broadcast_to(x.data, target)
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {target}") from None

    in_shape = x.shape

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (sum_to(g, in_shape),)

    return _from_op(data, (x,), "broadcast_to", backward, saved=(), shape=target)


def sum_to(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a broadcast result back to `shape` (the engine's unbroadcast)."""
    lead = x.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"sum_to: cannot sum shape {x.shape} to {shape}")
    stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    if any(n != 1 and n != x.shape[lead + i] for i, n in enumerate(shape)):
        raise ValueError(f"sum_to: cannot sum shape {x.shape} to {shape}")
    data = np.sum(x.data, axis=tuple(range(lead)) + stretched, keepdims=True)
    data = data.reshape(shape)

    in_shape = x.shape

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (broadcast_to(g, in_shape),)

    return _from_op(data, (x,), "sum_to", backward, saved=(), shape=shape)


def pad(x: Tensor, pad_width: Any, value: float = 0) -> Tensor:
    """Constant padding with numpy's `pad_width` (((before, after), ...) per axis)."""
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise ValueError(f"pad: pad_width {pad_width} does not fit shape {x.shape}") from None
    if (widths < 0).any():
        raise ValueError(f"pad: negative pad_width {pad_width}")
    inner = tuple(slice(int(b), int(b) + n) for (b, _), n in zip(widths, x.shape, strict=True))

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g[inner],)

    data = np.pad(x.data, widths, mode="constant", constant_values=value)
    return _from_op(data, (x,), "pad", backward, saved=(), pad_width=widths.tolist(), value=value)


def cat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join along an existing axis."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("cat: expected at least one tensor")
    try:
        data = np.concatenate([t.data for t in tensors], axis=axis)
    except (ValueError, np.exceptions.AxisError):
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"cat: cannot join shapes {shapes} along axis {axis}") from None
    a = axis % data.ndim
    bounds = np.cumsum([0] + [t.shape[a] for t in tensors]).tolist()

    def backward(g: Tensor, out: Tensor) -> tuple:
        lead = (slice(None),) * a
        return tuple(
            g[lead + (slice(lo, hi),)] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        )

    return _from_op(data, tensors, "cat", backward, saved=(), axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join along a new axis."""
    tensors = tuple(tensors)
    if not tensors:
        raise ValueError("stack: expected at least one tensor")
    try:
        data = np.stack([t.data for t in tensors], axis=axis)
    except (ValueError, np.exceptions.AxisError):
        shapes = ", ".join(str(t.shape) for t in tensors)
        raise ValueError(f"stack: cannot stack shapes {shapes} along axis {axis}") from None
    a = axis % data.ndim

    count = len(tensors)

    def backward(g: Tensor, out: Tensor) -> tuple:
        lead = (slice(None),) * a
        return tuple(g[lead + (i,)] for i in range(count))

    return _from_op(data, tensors, "stack", backward, saved=(), axis=axis)


def _axis(op: str, x: Tensor, axis: int) -> int:
    if not -x.ndim <= axis < x.ndim:
        # numpy's AxisError is both a ValueError (numpy) and an IndexError (PyTorch's type)
        raise np.exceptions.AxisError(f"{op}: axis {axis} is out of range for shape {x.shape}")
    return axis % x.ndim


def _add_at(index: Any, part: np.ndarray, target: np.ndarray) -> None:
    target[index] += part


def _piece(x: Tensor, axis: int, lo: int, hi: int, op: str) -> Tensor:
    """`x[..., lo:hi, ...]` along `axis`: a view, whose gradient is padded back to x's shape."""
    index = (slice(None),) * axis + (slice(lo, hi),)
    in_shape = x.shape
    widths = tuple((lo, in_shape[axis] - hi) if i == axis else (0, 0) for i in range(x.ndim))

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: the engine adds g where it lands
            return (GradPiece(in_shape, g.dtype, partial(_add_at, index, g.data)),)
        return (pad(g, widths),)

    return _from_op(x.data[index], (x,), op, backward, saved=(), axis=axis, start=lo, stop=hi)


def split(x: Tensor, split_size_or_sections: int | Sequence[int], axis: int = 0) -> tuple:
    """PyTorch's split: pieces of `split_size` along `axis` (the last one smaller when it does
    not divide the length), or of the sizes listed, which must sum to the length. Each piece
    is a view of x."""
    a = _axis("split", x, axis)
    n = x.shape[a]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size < 0 or (size == 0 and n != 0):
            raise ValueError(
                f"split: split_size must be positive, got {size} for axis {axis} of shape {x.shape}"
            )
        if n == 0:
            sizes = [0]  # (as PyTorch: one empty piece)
        else:
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ValueError(
                f"split: sections {sizes} must be non-negative and sum to {n}, the length of "
                f"axis {axis} of shape {x.shape}"
            )
    bounds = np.cumsum([0, *sizes]).tolist()
    pairs = zip(bounds[:-1], bounds[1:], strict=True)
    return tuple(_piece(x, a, lo, hi, "split") for lo, hi in pairs)


def chunk(x: Tensor, chunks: int, axis: int = 0) -> tuple:
    """PyTorch's chunk: pieces of ceil(n / chunks) along `axis`, so possibly fewer than
    `chunks` (a 5-long axis in 4 chunks gives 2, 2, 1)."""
    a = _axis("chunk", x, axis)
    chunks = int(chunks)
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks} for shape {x.shape}")
    n = x.shape[a]
    if n == 0:  # (as PyTorch: `chunks` empty pieces)
        return tuple(_piece(x, a, 0, 0, "chunk") for _ in range(chunks))
    size = -(-n // chunks)
    return tuple(_piece(x, a, lo, min(lo + size, n), "chunk") for lo in range(0, n, size))
