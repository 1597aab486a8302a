"""Attention: `scaled_dot_product_attention` (one fused op) and `MultiheadAttention`.

`scaled_dot_product_attention(q, k, v)` = softmax(q @ k^T * scale + mask) @ v, as PyTorch's
`torch.nn.functional.scaled_dot_product_attention`:

- a bool `attn_mask` marks the positions that TAKE PART (True = attend); a float mask is
  added to the scores; `is_causal=True` uses the top-left-aligned lower triangle of ones
  (L, S) (query i sees keys 0..i), and cannot be combined with `attn_mask`;
- rows whose scores are all -inf (every key masked out) give zero attention weights, so a
  zero output row and zero gradients, as PyTorch 2.x's math path does (its `_safe_softmax`;
  measured on PyTorch 2.13 for a bool mask with an all-False row and for a float mask with
  an all -inf row alike). `MultiheadAttention` with `need_weights=True` computes a plain
  softmax as PyTorch does there, so a fully masked row gives NaN weights and outputs, as in
  PyTorch.

The op is fused: a numpy forward (scores, softmax, dropout, weighted sum) and a numpy
backward (dV = P^T g, dP = g V^T, dS = P * (dP - rowsum(dP * P)), dQ = dS K * scale,
dK = dS^T Q * scale). Under `autograd.grad(..., create_graph=True)` the backward
differentiates the same function composed of Tensor ops, so it stays twice differentiable.
Speed on a GPT block's shapes (q, k, v (B, H, T, d) views of one (B, T, 3C) projection): the
softmax's row sums are matrix-vector products, without a mask (or causal) it is shifted by
the key-0 score rather than the row max, the output comes in q's memory layout and the
gradients of q, k, v in one buffer laid out like theirs (see `_grads_in_layout`), so the
heads' transpose / reshape / split around the op need no copies either way.

Forward and backward are split over `autograd.get_num_threads()` threads along the first
batch axis, in pieces of at least `_MIN_PIECE_SCORES` scores (the benchmark's (16, 4, 64, 64)
scores: two pieces of 8 batch entries), when OpenBLAS's idle threads do not spin (see
`_blas_workers_sleep`: set OPENBLAS_THREAD_TIMEOUT=4 before numpy loads); each piece runs the
same numpy calls on its own entries, so the results are bit-identical for any number of
threads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import autograd
from autograd import Tensor
from autograd.parallel import blas_workers_sleep, parallel_for

from . import init
from .functional import _recorded_backward, dropout, linear
from .layers import Linear
from .module import Module, Parameter

__all__ = ["scaled_dot_product_attention", "MultiheadAttention"]


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


@functools.lru_cache(maxsize=16)
def _causal(length: int, source: int) -> np.ndarray:
    """(L, S) bool, True on and below the diagonal that starts at the top left (read-only:
    it is shared)."""
    mask = np.tri(length, source, dtype=bool)
    mask.flags.writeable = False
    return mask


def _sdpa_composed(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    keep_mask: np.ndarray | None,
    dead: np.ndarray | None,
    scale: float,
    bool_mask: np.ndarray | None,
) -> Tensor:
    """The fused op with Tensor ops (its twice-differentiable twin); same constants."""
    scores = (q @ k.swapaxes(-1, -2)) * scale
    if bool_mask is not None:
        scores = autograd.where(bool_mask, scores, -np.inf)
    if mask is not None:
        scores = scores + mask
    if dead is not None:  # rows with every score -inf: finite stand-ins, zero weights
        scores = autograd.where(dead, 0.0, scores)
    weights = scores.softmax(axis=-1)
    if dead is not None:
        weights = autograd.where(dead, 0.0, weights)
    if keep_mask is not None:
        weights = weights * keep_mask
    return weights @ v


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value, PyTorch's semantics (see the module doc).

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev); leading axes
    broadcast. attn_mask: bool (True = attend) or float (added), broadcastable to
    (..., L, S); a float mask Tensor that requires grad gets its gradient. scale defaults to
    1/sqrt(E). dropout_p > 0 zeroes attention weights with that probability (and scales the
    rest by 1/(1 - p)), drawn from `autograd.generator()`: pass 0.0 in evaluation.
    """
    q, k, v = _tensor(query), _tensor(key), _tensor(value)
    op = "scaled_dot_product_attention"
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(
            f"{op}: query, key and value need at least 2 axes (..., L, E), got shapes "
            f"{q.shape}, {k.shape} and {v.shape}"
        )
    length, source = q.shape[-2], k.shape[-2]
    if q.shape[-1] != k.shape[-1] or v.shape[-2] != source:
        raise ValueError(
            f"{op}: query {q.shape}, key {k.shape} and value {v.shape} do not fit "
            "(expected (..., L, E), (..., S, E) and (..., S, Ev))"
        )
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must lie in [0, 1], got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    bool_mask: np.ndarray | None = None
    float_mask: Tensor | None = None
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
        bool_mask = _causal(length, source)
    elif attn_mask is not None:
        m = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
        if m.dtype == bool:
            bool_mask = m
        else:
            float_mask = attn_mask if isinstance(attn_mask, Tensor) else Tensor(m, dtype=q.dtype)
    if attn_mask is not None:  # (the causal mask is (L, S): it always fits)
        m = bool_mask if float_mask is None else float_mask.data
        scores_shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (length, source)
        try:
            np.broadcast_shapes(m.shape, scores_shape)
        except ValueError:
            raise ValueError(
                f"{op}: attn_mask of shape {m.shape} does not broadcast to the scores' "
                f"shape {scores_shape} (query {q.shape}, key {k.shape})"
            ) from None

    dtype = q.dtype
    qd, kd, vd = q.data, k.data, v.data
    mask_data = None if float_mask is None else float_mask.data
    # Leading (batch) axes: those of the scores (q, k and the mask), and of the output (v's too)
    masks = [m for m in (None if is_causal else bool_mask, mask_data) if m is not None]
    scores_batch = np.broadcast_shapes(qd.shape[:-2], kd.shape[:-2], *(m.shape[:-2] for m in masks))
    out_batch = np.broadcast_shapes(scores_batch, vd.shape[:-2])
    # The work is split over threads along the first batch axis (see `_pieces`): each piece
    # computes its own batch entries from start to end into its slices of arrays allocated
    # whole here, by the same numpy calls (a batched matmul runs one product per entry) as a
    # single piece would, so that the result does not depend on the number of threads.
    split = _SPLIT_OVER_THREADS and len(scores_batch) > 0 and out_batch == scores_batch
    units = scores_batch[0] if split else 1
    grain = _grain(math.prod(scores_batch[1:]) * length * source) if split else 1
    part, cut = _pieces(split, len(scores_batch))
    score_dtype = np.result_type(qd.dtype, kd.dtype, *(() if mask_data is None else (mask_data,)))
    p = np.empty(scores_batch + (length, source), score_dtype)
    scale_q = np.asarray(scale, dtype=dtype)
    # a causal mask alone leaves key 0 to every query: no row is ever fully masked
    may_die = float_mask is not None or (bool_mask is not None and not is_causal)
    dead_rows = np.zeros(scores_batch + (length, 1), bool) if may_die else None

    def scores_into(s: np.ndarray, lo: int, hi: int) -> None:  # s: p's entries lo:hi
        # the scale goes on q, (..., L, E), not on the larger scores (..., L, S)
        q_scaled = part(qd, lo, hi) * scale_q
        kt = part(kd, lo, hi).swapaxes(-1, -2)  # (matmul reads a transposed view: no copy)
        product_shape = np.broadcast_shapes(q_scaled.shape[:-2], kt.shape[:-2]) + s.shape[-2:]
        if product_shape == s.shape and np.result_type(q_scaled, kt) == s.dtype:
            np.matmul(q_scaled, kt, out=s)
        else:  # (a mask with more batch axes than q and k, or of a wider dtype)
            s[...] = np.matmul(q_scaled, kt)
        if is_causal:  # adding a cached 0 / -inf matrix: half the time of a masked copy
            s += _causal_additive(length, source, dtype)
        elif bool_mask is not None:
            np.copyto(s, np.asarray(-np.inf, dtype=s.dtype), where=~part(bool_mask, lo, hi))
        if mask_data is not None:
            s += part(mask_data, lo, hi)

    def softmax_in_place(s: np.ndarray, lo: int, hi: int) -> None:
        if not may_die and source:
            # Softmax is shift-invariant, and the shift only has to keep exp in range:
            # subtract each row's score for key 0 (which every query sees here) instead of
            # the row's max, a reduction over short rows that costs as much as the exp
            # itself. exp(0) = 1 is in each row, so the sum cannot underflow; should some
            # score exceed key 0's by more than exp's range (a sum of inf, or nan from inf
            # inputs), the batch entry is redone with the max.
            s -= s[..., :1].copy()
            with np.errstate(over="ignore"):  # (overflow is checked for just below)
                np.exp(s, out=s)
            total = _row_sums(s)
            if np.isfinite(total).all():
                s *= np.reciprocal(total, out=total)
                return
            if hi - lo > 1:  # entry by entry, so each decides for itself as in any split
                for i in range(lo, hi):
                    entry = s[i - lo : i - lo + 1]
                    scores_into(entry, i, i + 1)
                    softmax_in_place(entry, i, i + 1)
                return
            scores_into(s, lo, hi)
        peak = s.max(axis=-1, keepdims=True)
        dead = None
        if may_die:
            dead = peak == -np.inf
            if dead.any():
                cut(dead_rows, lo, hi)[...] = dead
                peak = np.where(dead, 0.0, peak).astype(peak.dtype)
            else:
                dead = None
        s -= peak
        np.exp(s, out=s)
        total = _row_sums(s)
        if dead is not None:
            total[dead] = 1.0  # 0 / 1: the dead rows' weights stay zero
        s *= np.reciprocal(total, out=total)

    keep_mask = None
    weights = p
    if dropout_p > 0.0:  # drawn whole, before the pieces: the same numbers for any split
        draw_dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        keep = autograd.generator().random(p.shape, dtype=draw_dtype) >= dropout_p
        keep_mask = np.multiply(keep, np.asarray(1.0 / (1.0 - dropout_p), dtype=dtype), dtype=dtype)
        weights = np.empty(p.shape, np.result_type(p, keep_mask))
    # the output in q's memory layout: heads split from one (B, T, H, d) projection then come
    # back as a (B, T, H, d) array, which `transpose(0, 2, 1, 3).reshape(B, T, C)` views
    out_shape = out_batch + (length, vd.shape[-1])
    data = _empty_in_layout_of(qd, out_shape, np.result_type(weights, vd))

    def forward_piece(lo: int, hi: int) -> None:
        s = cut(p, lo, hi)
        scores_into(s, lo, hi)
        softmax_in_place(s, lo, hi)
        w = s
        if keep_mask is not None:
            w = np.multiply(s, cut(keep_mask, lo, hi), out=cut(weights, lo, hi))
        np.matmul(w, part(vd, lo, hi), out=cut(data, lo, hi))

    parallel_for(forward_piece, units, grain)
    dead = dead_rows if dead_rows is not None and dead_rows.any() else None

    inputs = (q, k, v, float_mask)
    parents = (q, k, v) if float_mask is None else (q, k, v, float_mask)

    def composed(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        return _sdpa_composed(q, k, v, mask, keep_mask, dead, scale, bool_mask)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if autograd.is_grad_enabled():  # create_graph: differentiate the composed twin instead
            return _recorded_backward(composed, inputs, g)[: len(parents)]
        gd, od = g.data, out.data
        need_mask = float_mask is not None and float_mask.requires_grad
        need_scores = q.requires_grad or k.requires_grad or need_mask
        # gradients shaped like their inputs come in the inputs' memory layout, and q, k, v
        # split from one projection get theirs in one buffer laid out like it (see
        # `_grads_in_layout`): the transpose, reshape and split backward then need no copies
        grad_shapes = (
            out_batch + (length, qd.shape[-1]),
            out_batch + kd.shape[-2:],
            out_batch + vd.shape[-2:],
        )
        wanted = (q.requires_grad, k.requires_grad, v.requires_grad)
        bufs = _grads_in_layout((qd, kd, vd), grad_shapes, wanted, np.result_type(weights, gd))
        dp_dtype = np.result_type(gd, vd)
        natural = (np.result_type(dp_dtype, kd), np.result_type(dp_dtype, qd))
        natural += (np.result_type(weights, gd),)
        grads = [
            (buf if buf is not None else np.empty(shape, dt)) if want else None
            for buf, shape, dt, want in zip(bufs, grad_shapes, natural, wanted, strict=True)
        ]
        dq, dk, dv = grads
        dmask = np.empty(out_batch + (length, source), dp_dtype) if need_mask else None
        scale_g = np.asarray(scale, dtype=gd.dtype)

        def backward_piece(lo: int, hi: int) -> None:
            g_lo = cut(gd, lo, hi)
            if dv is not None:
                np.matmul(cut(weights, lo, hi).swapaxes(-1, -2), g_lo, out=cut(dv, lo, hi))
            if not need_scores:
                return
            # dS = P * (dP - rowsum(dP * P)) with dP = g V^T (dropout's mask applied), where
            # rowsum(dP * P) = rowsum(g * out) (FlashAttention's identity): a sum over
            # (..., L, Ev), not (..., L, S). Without a mask gradient the scale goes on g, the
            # smaller array, and dS comes out scaled, ready for dQ and dK.
            g_scaled = g_lo if need_mask else g_lo * scale_g
            dp = np.matmul(g_scaled, part(vd, lo, hi).swapaxes(-1, -2))  # (..., L, S)
            if keep_mask is not None:
                dp *= cut(keep_mask, lo, hi)
            dp -= np.vecdot(g_scaled, cut(od, lo, hi))[..., None]
            dp *= cut(p, lo, hi)
            if dmask is not None:
                cut(dmask, lo, hi)[...] = dp
                dp *= np.asarray(scale, dtype=dp.dtype)
            if dq is not None:
                np.matmul(dp, part(kd, lo, hi), out=cut(dq, lo, hi))
            if dk is not None:
                np.matmul(dp.swapaxes(-1, -2), part(qd, lo, hi), out=cut(dk, lo, hi))

        parallel_for(backward_piece, units, grain)
        wrap = Tensor._from_array
        return tuple(None if a is None else wrap(a) for a in (dq, dk, dv, dmask))[: len(parents)]

    return Tensor._from_op(
        data,
        parents,
        op,
        backward,
        saved=parents,
        saves_output=True,
        scale=scale,
        dropout_p=dropout_p,
        is_causal=is_causal,
    )


def _row_sums(a: np.ndarray) -> np.ndarray:
    """Sums over the last axis, keepdims, as matrix-vector products: several times faster
    than a.sum(axis=-1) over short rows. One product per entry of the first axis (a batched
    matmul), because one product over all rows sums a row differently depending on where the
    rows start and end (OpenBLAS's kernels take rows in groups): per entry, a row's sum is the
    same whichever pieces the entries are split into."""
    lead = a.shape[0] if a.ndim > 2 else 1
    ones = np.ones((a.shape[-1], 1), dtype=a.dtype)
    return np.matmul(a.reshape(lead, -1, a.shape[-1]), ones).reshape(*a.shape[:-1], 1)


# The least work per piece when a kernel is split over threads, in score entries (L * S of
# each batch entry): handing a piece to another thread and waiting for it costs 50-150 us
# here, while 64k scores take ~0.5 ms forward (~4 ms per million in the benchmark's shapes).
# Measured alone on (B, 4, 64, 32) causal (2 cores), 1 -> 2 threads, fwd / bwd medians:
# B = 8 (two pieces of 64k) 1.11 -> 0.96 / 1.19 -> 0.99 ms, B = 16 2.10 -> 1.50 / 2.42 -> 1.50.
_MIN_PIECE_SCORES = 1 << 16


_blas_workers_sleep = blas_workers_sleep  # (autograd.parallel's: the measurement is there)


# Split over threads only where that pays (see `_blas_workers_sleep`).
_SPLIT_OVER_THREADS = _blas_workers_sleep()


def _grain(scores_per_entry: int) -> int:
    """Batch entries per piece so that each piece has at least `_MIN_PIECE_SCORES` scores."""
    return max(1, -(-_MIN_PIECE_SCORES // max(scores_per_entry, 1)))


def _pieces(split: bool, batch_axes: int) -> tuple[Callable, Callable]:
    """`part(a, lo, hi)`: an operand's batch entries lo:hi (all of it where it broadcasts
    along the first batch axis, or has none); `cut(a, lo, hi)`: entries lo:hi of an array
    shaped like the scores or the output. Both identities unless `split`."""

    def part(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
        if split and a.ndim - 2 == batch_axes and a.shape[0] != 1:
            return a[lo:hi]
        return a

    def cut(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
        return a[lo:hi] if split else a

    return part, cut


@functools.lru_cache(maxsize=16)
def _causal_additive(length: int, source: int, dtype: np.dtype) -> np.ndarray:
    """(L, S): 0 where `_causal` is True, -inf elsewhere (read-only: it is shared)."""
    mask = np.where(_causal(length, source), 0.0, -np.inf).astype(dtype)
    mask.flags.writeable = False
    return mask


def _empty_in_layout_of(a: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An empty array of `shape` with a's axis order in memory (np.empty_like's order "K")
    when a has that shape (up to its last axis), else C-contiguous."""
    if a.shape[:-1] != shape[:-1] or a.flags.c_contiguous:
        return np.empty(shape, dtype)
    return np.empty_like(a, dtype=dtype, shape=shape)


def _grads_in_layout(
    arrays: tuple[np.ndarray, ...],
    shapes: tuple[tuple[int, ...], ...],
    wanted: tuple[bool, ...],
    dtype: np.dtype,
) -> list[np.ndarray | None]:
    """`out=` arrays of `dtype` for the gradients of `arrays`, shaped `shapes` (None where not
    `wanted`, or where shape or dtype differ from the input's: a broadcast operand).

    A gradient takes its input's memory layout. When all are wanted and the inputs are equal
    views at equal address steps (q, k, v split from one (B, T, 3C) projection and reshaped
    into heads), the gradients are the same views of one new buffer laid out like the inputs'
    ((B, T, 3, H, d)), so that reshaping them back and joining them needs no copy.
    """
    fits = [
        want and a.shape == s and a.dtype == dtype
        for a, s, want in zip(arrays, shapes, wanted, strict=True)
    ]
    if all(fits):
        joint = _joint_views(arrays)
        if joint is not None:
            return joint
    return [
        _empty_in_layout_of(a, a.shape, a.dtype) if fit else None
        for a, fit in zip(arrays, fits, strict=True)
    ]


def _joint_views(arrays: tuple[np.ndarray, ...]) -> list[np.ndarray] | None:
    """New arrays placed relative to each other as `arrays` are (views of one new buffer), or
    None unless `arrays` are equally shaped and strided views at equal address steps whose
    memory, with the step as one more axis, is one dense block."""
    a0 = arrays[0]
    if any(a.shape != a0.shape or a.strides != a0.strides or a.dtype != a0.dtype for a in arrays):
        return None
    addresses = [a.__array_interface__["data"][0] for a in arrays]
    step = addresses[1] - addresses[0]
    if step <= 0 or any(b - a != step for a, b in zip(addresses[:-1], addresses[1:], strict=True)):
        return None
    order = sorted(range(a0.ndim), key=lambda axis: -a0.strides[axis])
    shape = [a0.shape[axis] for axis in order]
    strides = [a0.strides[axis] for axis in order]
    for j in range(a0.ndim + 1):  # where the new "which array" axis sits in memory
        buffer_shape = (*shape[:j], len(arrays), *shape[j:])
        c_strides = [a0.itemsize * math.prod(buffer_shape[i + 1 :]) for i in range(a0.ndim + 1)]
        if c_strides[j] == step and c_strides[:j] + c_strides[j + 1 :] == strides:
            buffer = np.empty(buffer_shape, a0.dtype)
            back = tuple(np.argsort(order).tolist())
            return [buffer[(slice(None),) * j + (i,)].transpose(back) for i in range(len(arrays))]
    return None


# ----- multi-head attention ----------------------------------------------------------------
def _as_additive(
    mask: Any, name: str, dtype: np.dtype, shapes: tuple[tuple[int, ...], ...]
) -> Tensor | None:
    """A MultiheadAttention mask as a float mask to add: bool True (= do NOT attend) becomes
    -inf, False 0; float masks are added as they are."""
    if mask is None:
        return None
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.shape not in shapes:
        raise ValueError(
            f"MultiheadAttention: {name} of shape {m.shape} does not fit "
            f"(expected one of {', '.join(str(s) for s in shapes)})"
        )
    if m.dtype == bool:
        return Tensor(np.where(m, -np.inf, 0.0).astype(dtype))
    return mask if isinstance(mask, Tensor) else Tensor(m, dtype=dtype)


class MultiheadAttention(Module):
    """Multi-head attention as `torch.nn.MultiheadAttention` (kdim = vdim = embed_dim).

    Parameters: `in_proj_weight` (3E, E) (rows: query, key, value projections; Xavier
    uniform), `in_proj_bias` (3E,) (zeros), `out_proj` a Linear(E, E) (bias zeros).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of "
                f"num_heads ({num_heads})"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must lie in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        dtype = autograd.get_default_dtype()
        self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), dtype=dtype))
        self.in_proj_bias = Parameter(np.empty(3 * embed_dim, dtype=dtype)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query (L, N, E), key and value (S, N, E) ((N, L, E) if batch_first; unbatched
        (L, E)); key_padding_mask (N, S) (or (S,)); attn_mask (L, S) or (N * num_heads, L,
        S). In both masks a bool True marks a key that may NOT be attended to; float masks
        are added to the scores. is_causal=True without attn_mask masks key j > query i
        (top-left aligned for L != S); with attn_mask it is only a hint, and attn_mask is
        used, as PyTorch does.

        Returns (output like query, weights): weights (N, L, S) averaged over heads, or
        (N, num_heads, L, S) with average_attn_weights=False, or None with
        need_weights=False.
        """
        q_in, k_in, v_in = _tensor(query), _tensor(key), _tensor(value)
        E, H, D = self.embed_dim, self.num_heads, self.head_dim  # noqa: N806
        batched = q_in.ndim == 3
        expected = 3 if batched else 2
        for name, t in (("query", q_in), ("key", k_in), ("value", v_in)):
            if t.ndim != expected or t.shape[-1] != E:
                raise ValueError(
                    f"MultiheadAttention: {name} of shape {t.shape} does not fit embed_dim {E} "
                    f"(expected {'(N, L, E)' if self.batch_first else '(L, N, E)'} or (L, E), "
                    "the same number of axes for query, key and value)"
                )
        # work batch first: (N, L, E)
        if not batched:
            q_in, k_in, v_in = (t.unsqueeze(0) for t in (q_in, k_in, v_in))
        elif not self.batch_first:
            q_in, k_in, v_in = (t.swapaxes(0, 1) for t in (q_in, k_in, v_in))
        n, length, source = q_in.shape[0], q_in.shape[1], k_in.shape[1]
        if k_in.shape[:2] != v_in.shape[:2] or k_in.shape[0] != n:
            raise ValueError(
                f"MultiheadAttention: query {tuple(np.shape(query))}, key "
                f"{tuple(np.shape(key))} and value {tuple(np.shape(value))} do not fit "
                "together (same batch; key and value of the same length)"
            )
        w, b = self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:  # self-attention: one projection matmul
            qkv = linear(q_in, w, b)
            q, k, v = qkv[..., :E], qkv[..., E : 2 * E], qkv[..., 2 * E :]
        else:
            parts = [
                linear(t, w[i * E : (i + 1) * E], None if b is None else b[i * E : (i + 1) * E])
                for i, t in enumerate((q_in, k_in, v_in))
            ]
            q, k, v = parts

        def heads(t: Tensor, steps: int) -> Tensor:  # (N, T, E) -> (N, H, T, D)
            return t.reshape(n, steps, H, D).transpose(0, 2, 1, 3)

        q, k, v = heads(q, length), heads(k, source), heads(v, source)

        dtype = q.dtype
        mask = _as_additive(
            attn_mask, "attn_mask", dtype, ((length, source), (n * H, length, source))
        )
        if mask is not None and mask.ndim == 3:
            mask = mask.reshape(n, H, length, source)
        elif mask is None and is_causal:
            mask = Tensor(np.where(_causal(length, source), 0.0, -np.inf).astype(dtype))
        pad = _as_additive(
            key_padding_mask,
            "key_padding_mask",
            dtype,
            ((n, source),) if batched else ((source,), (1, source)),
        )
        if pad is not None:
            pad = pad.reshape(n, 1, 1, source)
            mask = pad if mask is None else mask + pad
        p = self.dropout if self.training else 0.0

        weights = None
        if need_weights:  # PyTorch's explicit path: a plain softmax
            scores = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(D))
            if mask is not None:
                scores = scores + mask
            weights = scores.softmax(axis=-1)
            if p > 0:  # (the weights returned are the dropped-out ones too, as PyTorch's)
                weights = dropout(weights, p, True)
            heads_out = weights @ v
        else:
            heads_out = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(heads_out.transpose(0, 2, 1, 3).reshape(n, length, E))
        if not batched:
            out = out.reshape(length, E)
        elif not self.batch_first:
            out = out.swapaxes(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(axis=1)
            if not batched:
                weights = weights.reshape(weights.shape[1:])
        return out, weights

    def extra_repr(self) -> str:
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.in_proj_bias is None:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        return s
