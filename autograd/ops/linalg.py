"""Matrix products with numpy's rules: 1-D, 2-D and batched N-D (batch axes broadcast);
einsum; triangular parts (tril, triu) of the last two axes."""

from __future__ import annotations

import math
import string
from typing import Any

import numpy as np

from .. import grad_mode
from ..tensor import Tensor
from .elementwise import _each_others, lift, operands

_from_op = Tensor._from_op


def _matmul_nd(a: Tensor, b: Tensor, data: np.ndarray) -> Tensor:
    """`data = a.data @ b.data`, both operands of ndim >= 2; batch axes broadcast and the
    engine sums them back."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: the same products in numpy
            wrap = Tensor._from_array
            ga = wrap(g.data @ b.data.swapaxes(-1, -2)) if a.requires_grad else None
            gb = wrap(a.data.swapaxes(-1, -2) @ g.data) if b.requires_grad else None
            return ga, gb
        ga = g @ b.swapaxes(-1, -2) if a.requires_grad else None
        gb = a.swapaxes(-1, -2) @ g if b.requires_grad else None
        return ga, gb

    return _from_op(data, (a, b), "matmul", backward, saved=_each_others(a, b))


def matmul(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)  # an ndarray on either side becomes a Tensor
    a_ndim, b_ndim = a.data.ndim, b.data.ndim
    if a_ndim == 0 or b_ndim == 0:
        raise ValueError(f"matmul: 0-d operand, shapes {a.shape} and {b.shape}")
    try:
        data = np.matmul(a.data, b.data)  # numpy checks inner and batch axes
    except ValueError:
        inner_b = b.shape[-2] if b_ndim > 1 else b.shape[0]
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned "
            f"({a.shape[-1]} != {inner_b} or batch axes differ)"
        ) from None
    if a_ndim >= 2 and b_ndim >= 2:
        return _matmul_nd(a, b, data)
    # 1-D operands: promote to a row (a) or a column (b), then drop the added axis
    a2 = a.reshape(1, -1) if a_ndim == 1 else a
    b2 = b.reshape(-1, 1) if b_ndim == 1 else b
    out = _matmul_nd(a2, b2, np.matmul(a2.data, b2.data))
    if a_ndim == 1 and b_ndim == 1:
        return out.reshape(())
    return out.squeeze(-1) if b_ndim == 1 else out.squeeze(-2)


def _triangle(op: str, pick: Any, x: Tensor, k: int) -> Tensor:
    if x.ndim < 2:
        raise ValueError(f"{op}: needs at least 2 dimensions, got shape {x.shape}")
    k = int(k)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (_triangle(op, pick, g, k),)  # the same mask: a linear projection

    return _from_op(pick(x.data, k), (x,), op, backward, saved=(), k=k)


def tril(x: Tensor, k: int = 0) -> Tensor:
    """numpy's tril: zero above the k-th diagonal of the last two axes (batched over the rest)."""
    return _triangle("tril", np.tril, x, k)


def triu(x: Tensor, k: int = 0) -> Tensor:
    """numpy's triu: zero below the k-th diagonal of the last two axes (batched over the rest)."""
    return _triangle("triu", np.triu, x, k)


# Below this many terms in the sum (the product of every index's size), np.einsum's own loop
# beats `optimize=True`, whose path search costs ~15-50 us: e.g. ij,jk->ik at 8x8 3 us vs 19 us,
# at 64x64 61 us vs 27 us (BLAS); a one-operand einsum has nothing to contract.
_EINSUM_OPTIMIZE_TERMS = 1 << 16


def _einsum_parse(subscripts: str, shapes: list[tuple[int, ...]]) -> tuple[list[str], str]:
    """The input terms and the output term of numpy's subscripts, an ellipsis spelled out in
    letters that are not used otherwise (right-aligned, as numpy broadcasts it)."""
    spec = subscripts.replace(" ", "")
    where = f"einsum: subscripts {subscripts!r} for operands of shapes {shapes}"
    if spec.count("->") > 1:
        raise ValueError(f"{where}: more than one '->'")
    lhs, arrow, output = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"{where}: {len(terms)} terms for {len(shapes)} operands")
    for term in [*terms, output]:
        rest = term.replace("...", "", 1)
        if any(c not in string.ascii_letters for c in rest):
            raise ValueError(f"{where}: subscripts are letters (and one '...' per term)")
    used = set(spec) & set(string.ascii_letters)
    spare = [c for c in string.ascii_letters if c not in used]
    ranks = [
        len(shape) - (len(term) - 3) if "..." in term else 0
        for term, shape in zip(terms, shapes, strict=True)
    ]
    for term, shape, rank in zip(terms, shapes, ranks, strict=True):
        if rank < 0 or ("..." not in term and len(term) != len(shape)):
            raise ValueError(f"{where}: term {term!r} does not fit an operand of shape {shape}")
    ellipsis = "".join(spare[: max(ranks, default=0)])
    terms = [
        t.replace("...", ellipsis[len(ellipsis) - r :]) for t, r in zip(terms, ranks, strict=True)
    ]
    if arrow:
        output = output.replace("...", ellipsis)
    else:  # numpy's implicit output: the ellipsis, then the letters used once, sorted (A-Z a-z)
        joined = "".join(terms)
        once = sorted(c for c in set(joined) if joined.count(c) == 1 and c not in ellipsis)
        output = ellipsis + "".join(once)
    if len(set(output)) != len(output):
        raise ValueError(f"{where}: an output subscript appears twice")
    if any(c not in "".join(terms) for c in output):
        raise ValueError(f"{where}: an output subscript appears in no input")
    return terms, output


def _letter_sizes(terms: list[str], shapes: list[tuple[int, ...]]) -> dict[str, int]:
    """Each index's size (the broadcast one, where an operand has 1)."""
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        for c, n in zip(term, shape, strict=True):
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    return sizes


def _unique(term: str) -> str:
    return "".join(dict.fromkeys(term))


def einsum(subscripts: str, *operands: Any) -> Tensor:
    """numpy's einsum (explicit `->` or implicit output, `...` too), differentiable in every
    operand any number of times.

    The gradient of operand i is the einsum of the output gradient with the other operands,
    giving i's own indices; indices only i has (summed away) are broadcast back, and an index
    repeated in i's term (a diagonal, as in 'ii->i') is written back onto that diagonal.
    """
    like = next((t for t in operands if isinstance(t, Tensor)), None)
    tensors = [
        t if isinstance(t, Tensor) else (lift(t, like) if like is not None else Tensor(t))
        for t in operands
    ]
    if not tensors:
        raise ValueError(f"einsum: subscripts {subscripts!r} with no operands")
    floating = next((t.dtype for t in tensors if t.dtype.kind == "f"), None)
    if floating is not None:  # integers take the float dtype (numpy would make float64)
        tensors = [Tensor(t.data, dtype=floating) if t.dtype.kind in "iub" else t for t in tensors]
    shapes = [t.shape for t in tensors]
    terms, output = _einsum_parse(subscripts, shapes)
    spec = ",".join(terms) + "->" + output
    sizes = _letter_sizes(terms, shapes)
    optimize = len(tensors) > 1 and math.prod(sizes.values()) >= _EINSUM_OPTIMIZE_TERMS
    try:
        data = np.einsum(spec, *(t.data for t in tensors), optimize=optimize)
    except ValueError as error:
        raise ValueError(
            f"einsum: subscripts {subscripts!r} do not fit operands of shapes {shapes} ({error})"
        ) from None

    needs = [t.requires_grad for t in tensors]
    count = len(tensors)
    # operand j is read by the gradient of every other operand that needs one
    saved = tuple(t for j, t in enumerate(tensors) if any(needs[:j] + needs[j + 1 :]))
    others = tuple(tensors) if saved else ()  # (a one-operand einsum's closure holds no tensor)

    def backward(g: Tensor, out: Tensor) -> tuple:
        grads = []
        for i, term in enumerate(terms):
            if not needs[i]:
                grads.append(None)
                continue
            inner_terms = [output] + [terms[j] for j in range(count) if j != i]
            inner = [g] + [others[j] for j in range(count) if j != i]
            reached = set("".join(inner_terms))
            kept = "".join(c for c in _unique(term) if c in reached)
            grad = (
                g if inner_terms == [kept] else einsum(",".join(inner_terms) + "->" + kept, *inner)
            )
            if kept != term:
                grad = _einsum_expand(grad, kept, term, tuple(sizes[c] for c in term))
            grads.append(grad)
        return tuple(grads)

    return _from_op(data, tuple(tensors), "einsum", backward, saved=saved, subscripts=spec)


def _einsum_expand(values: Tensor, kept: str, term: str, shape: tuple[int, ...]) -> Tensor:
    """The array of indices `term` (letters may repeat) that is `values` (indices `kept`, a
    subsequence of term's distinct letters) where the repeated letters agree, zero elsewhere;
    constant along the letters not kept. The adjoint of einsum(f"{term}->{kept}")."""
    unique = _unique(term)
    sizes = dict(zip(term, shape, strict=True))
    spread = values.data.reshape([sizes[c] if c in kept else 1 for c in unique])
    if unique == term:  # nothing on a diagonal: a broadcast view, no copy
        data = np.broadcast_to(spread, shape)
    else:
        data = np.zeros(shape, dtype=values.dtype)
        # the diagonal as a view over the distinct letters: their strides add up
        strides = [
            sum(s for c, s in zip(term, data.strides, strict=True) if c == u) for u in unique
        ]
        diagonal = np.lib.stride_tricks.as_strided(data, [sizes[u] for u in unique], strides)
        diagonal[...] = spread

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (einsum(f"{term}->{kept}", g),)

    return _from_op(data, (values,), "einsum_expand", backward, saved=(), term=term, kept=kept)
