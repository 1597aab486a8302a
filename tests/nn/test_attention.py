"""Attention: scaled_dot_product_attention and MultiheadAttention against a tiny numpy softmax
written out here (masks bool and float, is_causal square and L != S, key_padding_mask, fully
masked rows), gradients by finite differences (twice for the fused op), dropout from the
seeded generator, PyTorch's parameter names and init, and state dicts."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor
from nn import attention as attention_module
from nn import functional as F


def arr(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def t64(a: np.ndarray, requires_grad: bool = False) -> Tensor:
    return Tensor(a, dtype=np.float64, requires_grad=requires_grad)


def softmax_by_hand(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention_by_hand(q, k, v, add=None, scale=None):  # noqa: ANN001, ANN201
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if add is not None:
        s = s + add
    return softmax_by_hand(s) @ v


# ----- scaled_dot_product_attention ---------------------------------------------------------
def test_sdpa_plain_and_scale() -> None:
    q, k, v = arr(2, 3, 4, 5), arr(2, 3, 6, 5, seed=1), arr(2, 3, 6, 7, seed=2)
    out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v))
    assert out.shape == (2, 3, 4, 7)
    np.testing.assert_allclose(out.data, attention_by_hand(q, k, v), rtol=1e-12)
    out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), scale=0.25)
    np.testing.assert_allclose(out.data, attention_by_hand(q, k, v, scale=0.25), rtol=1e-12)
    # 2-D inputs and broadcast batch axes
    out = F.scaled_dot_product_attention(t64(q[0, 0]), t64(k[0, 0]), t64(v[0, 0]))
    np.testing.assert_allclose(out.data, attention_by_hand(q[0, 0], k[0, 0], v[0, 0]), rtol=1e-12)
    out = F.scaled_dot_product_attention(t64(q), t64(k[:1, :1]), t64(v[:1, :1]))
    np.testing.assert_allclose(out.data, attention_by_hand(q, k[:1, :1], v[:1, :1]), rtol=1e-12)


def test_sdpa_bool_mask_true_takes_part_float_mask_is_added() -> None:
    q, k, v = arr(3, 4, 5), arr(3, 6, 5, seed=1), arr(3, 6, 2, seed=2)
    keep = np.random.default_rng(3).random((4, 6)) > 0.5
    keep[:, 0] = True
    out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), attn_mask=keep)
    expected = attention_by_hand(q, k, v, add=np.where(keep, 0.0, -np.inf))
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    bias = arr(3, 4, 6, seed=4)
    out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), attn_mask=t64(bias))
    np.testing.assert_allclose(out.data, attention_by_hand(q, k, v, add=bias), rtol=1e-12)


@pytest.mark.parametrize(("length", "source"), [(4, 4), (3, 5), (5, 3)])
def test_sdpa_is_causal_is_the_top_left_lower_triangle(length: int, source: int) -> None:
    q, k, v = arr(2, length, 3), arr(2, source, 3, seed=1), arr(2, source, 2, seed=2)
    out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), is_causal=True)
    # query i sees keys 0..i, whatever S is
    allowed = np.array([[j <= i for j in range(source)] for i in range(length)])
    expected = attention_by_hand(q, k, v, add=np.where(allowed, 0.0, -np.inf))
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(
            t64(q), t64(k), t64(v), np.ones((length, source), bool), is_causal=True
        )


def test_sdpa_fully_masked_rows_give_zeros_as_pytorch() -> None:
    """PyTorch 2.x's math path: rows with no key to attend give zero weights (bool and float
    masks alike), and zero gradients; the other rows are untouched."""
    q, k, v = arr(3, 4), arr(5, 4, seed=1), arr(5, 2, seed=2)
    keep = np.ones((3, 5), bool)
    keep[1] = False
    bias = np.zeros((3, 5))
    bias[1] = -np.inf
    for mask in (keep, t64(bias)):
        tq = t64(q, requires_grad=True)
        out = F.scaled_dot_product_attention(tq, t64(k), t64(v), attn_mask=mask)
        np.testing.assert_array_equal(out.data[1], [0.0, 0.0])
        np.testing.assert_allclose(out.data[[0, 2]], attention_by_hand(q, k, v)[[0, 2]], rtol=1e-12)
        out.sum().backward()
        np.testing.assert_array_equal(tq.grad[1], np.zeros(4))
        assert np.isfinite(tq.grad).all()


def test_sdpa_gradients_twice_and_the_float_mask_gradient() -> None:
    q, k, v = (t64(arr(2, 3, 4, seed=s), True) for s in range(3))
    keep = np.random.default_rng(5).random((3, 3)) > 0.3  # scores (2, 3, 3)
    keep[:, 0] = True
    bias = t64(arr(3, 3, seed=6), True)
    assert autograd.gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q, k, v])
    assert autograd.gradcheck(
        lambda q, k, v, b: F.scaled_dot_product_attention(q, k, v, attn_mask=b), [q, k, v, bias]
    )
    assert autograd.gradgradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=0.7),
        [q, k, v],
    )
    assert autograd.gradgradcheck(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [q, k, v]
    )


def test_sdpa_dropout_uses_the_seeded_generator() -> None:
    q, k, v = arr(2, 4, 3), arr(2, 5, 3, seed=1), arr(2, 5, 2, seed=2)
    autograd.manual_seed(7)
    out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), dropout_p=0.5)
    keep = np.random.default_rng(7).random((2, 4, 5)) >= 0.5  # the same draws, by hand
    weights = softmax_by_hand(q @ k.swapaxes(-1, -2) / math.sqrt(3)) * keep / 0.5
    np.testing.assert_allclose(out.data, weights @ v, rtol=1e-12)

    def seeded(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        autograd.manual_seed(7)  # the same mask on every evaluation
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)

    assert autograd.gradcheck(seeded, [t64(q, True), t64(k, True), t64(v, True)])


def test_sdpa_keeps_float32_and_names_bad_shapes() -> None:
    q = Tensor(arr(2, 3, 4).astype(np.float32), requires_grad=True)
    out = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert out.dtype == np.float32
    out.sum().backward()
    assert q.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(2, 3, 5\)"):
        F.scaled_dot_product_attention(q, Tensor(np.zeros((2, 3, 5))), q)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\)"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=np.ones((4, 4), bool))


def sdpa_grads_by_hand(q, k, v, g, add=None, scale=None):  # noqa: ANN001, ANN201
    """float64 dQ, dK, dV of sum(g * attention(q, k, v)): dV = P^T g, dS = P (g V^T -
    rowsum(g V^T P)), dQ = dS K scale, dK = dS^T Q scale."""
    q, k, v, g = (a.astype(np.float64) for a in (q, k, v, g))
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    p = softmax_by_hand(s if add is None else s + add)
    dp = g @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, np.swapaxes(p, -1, -2) @ g


def causal_add(length: int, source: int) -> np.ndarray:
    return np.where(np.tri(length, source, dtype=bool), 0.0, -np.inf)


def split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, T, 3C) -> q, k, v (B, heads, T, C / heads): views, as a GPT block makes them."""
    b, t, c3 = qkv.shape
    c = c3 // 3
    return tuple(
        part.reshape(b, t, heads, c // heads).transpose(0, 2, 1, 3) for part in qkv.split(c, axis=2)
    )


def test_sdpa_heads_split_from_one_projection() -> None:
    """q, k, v as views of one (B, T, 3C) array: the output comes back in (B, T, H, d) memory
    (so transposing and reshaping it to (B, T, C) is a view) and the gradients land right."""
    qkv_a = arr(2, 5, 12)
    qkv = t64(qkv_a, True)
    q, k, v = split_heads(qkv, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expected = attention_by_hand(q.data, k.data, v.data, add=causal_add(5, 5))
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    merged = out.transpose(0, 2, 1, 3).reshape(2, 5, 4)
    assert np.shares_memory(merged.data, out.data)
    g = arr(2, 5, 4, seed=9)
    merged.backward(g)
    g_heads = g.reshape(2, 5, 2, 2).transpose(0, 2, 1, 3)
    dq, dk, dv = sdpa_grads_by_hand(q.data, k.data, v.data, g_heads, add=causal_add(5, 5))
    by_hand = np.concatenate(
        [d.transpose(0, 2, 1, 3).reshape(2, 5, 4) for d in (dq, dk, dv)], axis=2
    )
    np.testing.assert_allclose(qkv.grad, by_hand, rtol=1e-10, atol=1e-12)

    def fn(qkv: Tensor) -> Tensor:
        return F.scaled_dot_product_attention(*split_heads(qkv, 2), is_causal=True)

    assert autograd.gradcheck(fn, [t64(qkv_a, True)])
    assert autograd.gradgradcheck(fn, [t64(arr(1, 3, 6), True)])


def test_sdpa_gradient_buffers_follow_the_inputs_layout() -> None:
    from nn.attention import _grads_in_layout

    base = np.zeros((2, 5, 3, 2, 4))  # (B, T, 3, H, d): q, k, v are [:, :, i] transposed
    views = tuple(base[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    shapes = tuple(a.shape for a in views)
    dq, dk, dv = _grads_in_layout(views, shapes, (True,) * 3, np.dtype(np.float64))
    assert all(a.strides == views[0].strides for a in (dq, dk, dv))
    assert dq.base is dk.base is dv.base is not None
    step = dk.__array_interface__["data"][0] - dq.__array_interface__["data"][0]
    assert step == dv.__array_interface__["data"][0] - dk.__array_interface__["data"][0] == 64
    # not views of one buffer (or q is k): each gets its own array in its input's layout
    apart = (views[0], views[2].copy(), views[1])
    got = _grads_in_layout(apart, shapes, (True,) * 3, np.dtype(np.float64))
    assert all(not np.shares_memory(a, b) for a, b in ((got[0], got[1]), (got[1], got[2])))
    assert got[0].strides == np.empty((2, 5, 2, 4)).transpose(0, 2, 1, 3).strides
    same = _grads_in_layout((views[0],) * 3, shapes, (True,) * 3, np.dtype(np.float64))
    assert not np.shares_memory(same[0], same[1])
    # unwanted, broadcast (shape differs) or another dtype: None (matmul allocates)
    assert _grads_in_layout(views, shapes, (False, True, True), np.dtype(np.float64))[0] is None
    assert _grads_in_layout(views, shapes, (True,) * 3, np.dtype(np.float32)) == [None] * 3
    wide = ((3,) + shapes[0][1:],) + shapes[1:]
    assert _grads_in_layout(views, wide, (True,) * 3, np.dtype(np.float64))[0] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("is_causal", [True, False])
def test_sdpa_scores_far_above_key_0_stay_exact(dtype, is_causal: bool) -> None:  # noqa: ANN001
    # without a mask (or causal) the softmax is shifted by each row's key-0 score, not its
    # max; a score more than exp's range above it (here 1000) must still give the softmax
    q = np.array([[1.0], [1.0], [-1.0]], dtype=dtype)
    k = np.array([[0.0], [1000.0], [1.0]], dtype=dtype)
    v = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]], dtype=dtype)
    tq, tk, tv = (Tensor(a, requires_grad=True, dtype=dtype) for a in (q, k, v))
    out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=is_causal, scale=1.0)
    add = causal_add(3, 3) if is_causal else None
    expected = attention_by_hand(q.astype(np.float64), k, v, add=add, scale=1.0)
    # rows: query 0 sees only key 0 when causal; query 1 puts all weight on key 1
    np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=1e-30)
    assert out.dtype == dtype
    out.backward(np.ones((3, 2), dtype))
    assert all(np.isfinite(t.grad).all() for t in (tq, tk, tv))
    dq, dk, dv = sdpa_grads_by_hand(q, k, v, np.ones((3, 2)), add=add, scale=1.0)
    for t, expected in zip((tq, tk, tv), (dq, dk, dv), strict=True):
        np.testing.assert_allclose(t.grad, expected, rtol=1e-6, atol=1e-6)


def test_sdpa_float32_causal_matches_float64_by_hand() -> None:
    """The benchmark's case: heads split from one float32 projection, causal."""
    qkv = Tensor(arr(3, 16, 3 * 8).astype(np.float32), requires_grad=True)
    q, k, v = split_heads(qkv, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == np.float32
    add = causal_add(16, 16)
    expected = attention_by_hand(*(t.data.astype(np.float64) for t in (q, k, v)), add=add)
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-6)
    g = arr(3, 2, 16, 4, seed=4).astype(np.float32)
    out.backward(g)
    assert qkv.grad.dtype == np.float32
    grads = sdpa_grads_by_hand(q.data, k.data, v.data, g, add=add)
    by_hand = np.concatenate([d.transpose(0, 2, 1, 3).reshape(3, 16, 8) for d in grads], axis=2)
    np.testing.assert_allclose(qkv.grad, by_hand, rtol=1e-4, atol=1e-5)


# ----- MultiheadAttention -------------------------------------------------------------------------
E, HEADS = 4, 2


def mha_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """PyTorch's key names and shapes for MultiheadAttention(4, 2), built by hand."""
    rng = np.random.default_rng(seed)
    return {
        "in_proj_weight": rng.uniform(-0.7, 0.7, (3 * E, E)),
        "in_proj_bias": rng.uniform(-0.2, 0.2, 3 * E),
        "out_proj.weight": rng.uniform(-0.7, 0.7, (E, E)),
        "out_proj.bias": rng.uniform(-0.2, 0.2, E),
    }


def mha_by_hand(sd, q, k, v, add=None):  # noqa: ANN001, ANN201
    """Batch-first (N, L, E) inputs; `add` broadcastable to (N, H, L, S). -> out, weights."""
    w, b = sd["in_proj_weight"], sd["in_proj_bias"]
    d = E // HEADS
    n, length, source = q.shape[0], q.shape[1], k.shape[1]
    qp = (q @ w[:E].T + b[:E]).reshape(n, length, HEADS, d).transpose(0, 2, 1, 3)
    kp = (k @ w[E : 2 * E].T + b[E : 2 * E]).reshape(n, source, HEADS, d).transpose(0, 2, 1, 3)
    vp = (v @ w[2 * E :].T + b[2 * E :]).reshape(n, source, HEADS, d).transpose(0, 2, 1, 3)
    s = qp @ kp.transpose(0, 1, 3, 2) / math.sqrt(d)
    if add is not None:
        s = s + add
    p = softmax_by_hand(s)
    heads = (p @ vp).transpose(0, 2, 1, 3).reshape(n, length, E)
    return heads @ sd["out_proj.weight"].T + sd["out_proj.bias"], p


def make_mha(batch_first: bool = False) -> nn.MultiheadAttention:
    autograd.set_default_dtype(np.float64)
    try:
        mha = nn.MultiheadAttention(E, HEADS, batch_first=batch_first)
    finally:
        autograd.set_default_dtype(np.float32)
    mha.load_state_dict(mha_state_dict())
    return mha


def test_mha_parameters_and_init_as_pytorch() -> None:
    autograd.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2)
    assert [(n, p.shape) for n, p in mha.named_parameters()] == [
        ("in_proj_weight", (24, 8)),
        ("in_proj_bias", (24,)),
        ("out_proj.weight", (8, 8)),
        ("out_proj.bias", (8,)),
    ]
    bound = math.sqrt(6 / (24 + 8))  # xavier_uniform_ over the whole (3E, E) matrix
    assert np.abs(mha.in_proj_weight.data).max() <= bound
    assert np.abs(mha.in_proj_weight.data).max() > 0.9 * bound
    assert not mha.in_proj_bias.data.any() and not mha.out_proj.bias.data.any()
    assert [n for n, _ in nn.MultiheadAttention(8, 2, bias=False).named_parameters()] == [
        "in_proj_weight",
        "out_proj.weight",
    ]
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nn.MultiheadAttention(6, 4)


def test_mha_pytorch_state_dict_gives_the_hand_computed_outputs() -> None:
    sd = mha_state_dict()
    q, k, v = arr(2, 3, E), arr(2, 5, E, seed=1), arr(2, 5, E, seed=2)
    expected, p = mha_by_hand(sd, q, k, v)
    mha = make_mha()  # sequence first: (L, N, E)
    out, weights = mha(t64(q.swapaxes(0, 1)), t64(k.swapaxes(0, 1)), t64(v.swapaxes(0, 1)))
    np.testing.assert_allclose(out.data, expected.swapaxes(0, 1), rtol=1e-12)
    np.testing.assert_allclose(weights.data, p.mean(axis=1), rtol=1e-12)  # (N, L, S)
    out, weights = make_mha(batch_first=True)(
        t64(q), t64(k), t64(v), need_weights=True, average_attn_weights=False
    )
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_allclose(weights.data, p, rtol=1e-12)  # (N, H, L, S)
    out, weights = make_mha(batch_first=True)(t64(q), t64(k), t64(v), need_weights=False)
    assert weights is None
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    # self-attention (query is key is value: one projection matmul) and unbatched (L, E)
    x = t64(q)
    self_out, _ = make_mha(batch_first=True)(x, x, x)
    np.testing.assert_allclose(self_out.data, mha_by_hand(sd, q, q, q)[0], rtol=1e-12)
    single, single_w = make_mha()(t64(q[0]), t64(k[0]), t64(v[0]))
    assert single.shape == (3, E) and single_w.shape == (3, 5)
    np.testing.assert_allclose(single.data, expected[0], rtol=1e-12)


def test_mha_masks_true_means_not_attended() -> None:
    sd = mha_state_dict()
    mha = make_mha(batch_first=True)
    q, k = arr(2, 3, E), arr(2, 5, E, seed=1)
    padding = np.zeros((2, 5), bool)
    padding[0, 3:] = True  # sample 0: its last two keys are padding
    blocked = np.random.default_rng(4).random((3, 5)) > 0.7
    blocked[:, 0] = False
    add = np.where(blocked, -np.inf, 0.0) + np.where(padding, -np.inf, 0.0)[:, None, None, :]
    out, w = mha(t64(q), t64(k), t64(k), key_padding_mask=padding, attn_mask=blocked)
    expected, p = mha_by_hand(sd, q, k, k, add)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_allclose(w.data, p.mean(axis=1), rtol=1e-12)
    assert not w.data[0, :, 3:].any()
    # float masks are added; a 3-D attn_mask is per (sample, head)
    per_head = arr(2 * HEADS, 3, 5, seed=5)
    out, _ = mha(t64(q), t64(k), t64(k), attn_mask=t64(per_head), need_weights=False)
    expected, _ = mha_by_hand(sd, q, k, k, per_head.reshape(2, HEADS, 3, 5))
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)


@pytest.mark.parametrize(("length", "source"), [(4, 4), (3, 5)])
def test_mha_is_causal_uses_the_top_left_triangle(length: int, source: int) -> None:
    sd = mha_state_dict()
    q, k = arr(2, length, E), arr(2, source, E, seed=1)
    add = np.where(np.tri(length, source, dtype=bool), 0.0, -np.inf)
    expected, p = mha_by_hand(sd, q, k, k, add)
    for need_weights in (True, False):
        out, _ = make_mha(batch_first=True)(
            t64(q), t64(k), t64(k), need_weights=need_weights, is_causal=True
        )
        np.testing.assert_allclose(out.data, expected, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # (the NaN)
def test_mha_fully_masked_rows_as_pytorch() -> None:
    """need_weights=True is PyTorch's explicit softmax: NaN for a sample with every key
    padded; need_weights=False goes through scaled_dot_product_attention: zeros (so the
    output is out_proj's bias)."""
    sd = mha_state_dict()
    x = t64(arr(2, 3, E))
    padding = np.zeros((2, 3), bool)
    padding[0] = True
    out, w = make_mha(batch_first=True)(x, x, x, key_padding_mask=padding)
    assert np.isnan(out.data[0]).all() and np.isnan(w.data[0]).all()
    assert np.isfinite(out.data[1]).all()
    out, _ = make_mha(batch_first=True)(x, x, x, key_padding_mask=padding, need_weights=False)
    np.testing.assert_allclose(out.data[0], np.broadcast_to(sd["out_proj.bias"], (3, E)))


def test_mha_gradcheck_and_dropout() -> None:
    mha = make_mha(batch_first=True)
    names = [n for n, _ in mha.named_parameters()]
    q, kv = t64(arr(1, 2, E), True), t64(arr(1, 3, E, seed=1), True)
    padding = np.array([[False, False, True]])

    def fn(q: Tensor, kv: Tensor, *params: Tensor) -> Tensor:
        saved = [mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias]
        mha.__dict__["in_proj_weight"], mha.__dict__["in_proj_bias"] = params[0], params[1]
        mha.out_proj.__dict__["weight"], mha.out_proj.__dict__["bias"] = params[2], params[3]
        try:
            out, w = mha(q, kv, kv, key_padding_mask=padding)
            return out.sum() + (w * w).sum()
        finally:
            mha.__dict__["in_proj_weight"], mha.__dict__["in_proj_bias"] = saved[0], saved[1]
            mha.out_proj.__dict__["weight"], mha.out_proj.__dict__["bias"] = saved[2], saved[3]

    params = [p for _, p in mha.named_parameters()]
    assert len(params) == len(names)
    assert autograd.gradcheck(fn, [q, kv, *params])
    dropping = nn.MultiheadAttention(E, HEADS, dropout=0.5)
    x = Tensor(arr(3, 2, E))
    autograd.manual_seed(0)
    a, _ = dropping(x, x, x)
    autograd.manual_seed(0)
    b, _ = dropping(x, x, x)
    np.testing.assert_array_equal(a.data, b.data)  # the seeded generator decides
    dropping.eval()
    c, _ = dropping(x, x, x)
    d, _ = dropping(x, x, x)
    np.testing.assert_array_equal(c.data, d.data)
    assert not np.allclose(a.data, c.data)


def test_mha_state_dict_round_trip_and_errors(tmp_path) -> None:  # noqa: ANN001
    mha = nn.MultiheadAttention(8, 4, batch_first=True)
    path = tmp_path / "mha.safetensors"
    nn.save(mha.state_dict(), path)
    other = nn.MultiheadAttention(8, 4, batch_first=True)
    other.load_state_dict(nn.load(path))
    x = Tensor(arr(2, 3, 8))
    np.testing.assert_array_equal(mha(x, x, x)[0].data, other(x, x, x)[0].data)
    with pytest.raises(ValueError, match=r"query of shape \(2, 3, 5\)"):
        mha(Tensor(arr(2, 3, 5)), x, x)
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(3, 3\)"):
        mha(x, x, x, key_padding_mask=np.zeros((3, 3), bool))


# ----- split over threads -------------------------------------------------------------------
def f32(a: np.ndarray) -> Tensor:
    return Tensor(a.astype(np.float32), requires_grad=True)


Case = tuple[tuple[Tensor, ...], dict[str, Any]]  # (q, k, v[, float mask]), keyword arguments


def sdpa_outputs(count: int, make: Callable[[], Case]) -> list[np.ndarray]:
    """Output and gradients of one forward and backward on `count` threads."""
    autograd.set_num_threads(count)
    tensors, kwargs = make()
    for t in tensors:
        if not t.is_leaf:  # (heads split from one projection: views)
            t.retain_grad()
    autograd.manual_seed(3)  # (dropout's draws)
    out = F.scaled_dot_product_attention(*tensors, **kwargs)
    out.backward(np.cos(np.arange(out.size)).reshape(out.shape).astype(out.dtype))
    return [out.data] + [t.grad for t in tensors]


def causal_heads() -> Case:
    return split_heads(f32(arr(5, 6, 3 * 8)), 2), {"is_causal": True}


def broadcast_keys() -> Case:
    return (f32(arr(5, 3, 4, 4)), f32(arr(1, 3, 6, 4, seed=1)), f32(arr(3, 6, 2, seed=2))), {}


def long_rows() -> Case:
    # 40 keys, pieces of 2 * 3 * 7 and 3 * 3 * 7 rows: one matrix-vector product over all
    # rows would sum some rows differently from one over each piece's rows
    tensors = (f32(arr(5, 3, 7, 8)), f32(arr(5, 3, 40, 8, seed=1)), f32(arr(5, 3, 40, 3, seed=2)))
    return tensors, {}


def bool_mask_with_a_dead_row() -> Case:
    keep = np.random.default_rng(4).random((5, 4, 6)) > 0.4
    keep[2, 1] = False
    tensors = (f32(arr(5, 4, 3)), f32(arr(5, 6, 3, seed=1)), f32(arr(5, 6, 2, seed=2)))
    return tensors, {"attn_mask": keep}


def float_mask_with_grad() -> Case:
    bias = arr(5, 4, 6, seed=5)
    bias[3, 2] = -np.inf
    tensors = (f32(arr(5, 4, 3)), f32(arr(5, 6, 3, seed=1)), f32(arr(5, 6, 2, seed=2)))
    return tensors + (f32(bias),), {}


def shared_float_mask_and_dropout() -> Case:
    tensors = (f32(arr(5, 4, 3)), f32(arr(5, 6, 3, seed=1)), f32(arr(5, 6, 2, seed=2)))
    mask = Tensor(arr(4, 6, seed=6).astype(np.float32))
    return tensors, {"attn_mask": mask, "dropout_p": 0.3}


def some_entries_overflow() -> Case:
    q, k = np.ones((4, 3, 1)), arr(4, 3, 1, seed=1)
    k[2, 1] = 1000.0  # entry 2 only: exp(score - key 0's) overflows, redone with the max
    return (f32(q), f32(k), f32(arr(4, 3, 2, seed=2))), {"scale": 1.0}


@pytest.mark.parametrize(
    "make",
    [
        causal_heads,
        broadcast_keys,
        long_rows,
        bool_mask_with_a_dead_row,
        float_mask_with_grad,
        shared_float_mask_and_dropout,
        some_entries_overflow,
    ],
)
def test_sdpa_split_over_threads_is_bitwise_the_one_thread_result(
    spy_parallel_for: Callable,
    make: Callable[[], Case],
    threads: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    same_results: Callable[..., None],
) -> None:
    monkeypatch.setattr(attention_module, "_MIN_PIECE_SCORES", 1)  # split even these
    monkeypatch.setattr(attention_module, "_SPLIT_OVER_THREADS", True)  # (whatever BLAS does)
    calls = spy_parallel_for(attention_module)
    one = sdpa_outputs(1, make)
    two = sdpa_outputs(2, make)
    # forward and backward in one piece on one thread, in two on two
    assert [len(pieces) for pieces in calls] == [1, 1, 2, 2]
    same_results(one, two, np.float32)


def test_sdpa_split_overflow_still_exact(
    threads: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attention_module, "_MIN_PIECE_SCORES", 1)
    monkeypatch.setattr(attention_module, "_SPLIT_OVER_THREADS", True)
    (q, k, v), _ = some_entries_overflow()
    threads(2)
    out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
    expected = attention_by_hand(*(t.data.astype(np.float64) for t in (q, k, v)), scale=1.0)
    np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=1e-7)
    assert out.data[2, 0].tolist() == pytest.approx(v.data[2, 1].tolist(), rel=1e-6)


def test_sdpa_benchmark_shapes_split_in_two(
    spy_parallel_for: Callable,
    threads: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    same_results: Callable[..., None],
) -> None:
    """q, k, v (16, 4, 64, 32) heads of one (16, 64, 384) projection, causal: two pieces of 8
    batch entries on two threads, one call on one; the same bits either way."""

    def make() -> Case:
        return split_heads(f32(arr(16, 64, 3 * 128) * 0.5), 4), {"is_causal": True}

    monkeypatch.setattr(attention_module, "_SPLIT_OVER_THREADS", True)  # (whatever BLAS does)
    calls = spy_parallel_for(attention_module)
    one = sdpa_outputs(1, make)
    two = sdpa_outputs(2, make)
    assert [sorted(pieces) for pieces in calls] == [[(0, 16)]] * 2 + [[(0, 8), (8, 16)]] * 2
    same_results(one, two)


def test_sdpa_small_inputs_run_inline(
    spy_parallel_for: Callable, threads: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads(2)
    monkeypatch.setattr(attention_module, "_SPLIT_OVER_THREADS", True)  # (whatever BLAS does)
    calls = spy_parallel_for(attention_module)
    q = f32(arr(2, 3, 4, 5))
    F.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    assert calls == [[(0, 2)], [(0, 2)]]  # one call each, here (64k scores per piece at least)


def test_sdpa_splits_only_where_openblas_workers_sleep(
    spy_parallel_for: Callable, threads: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    sleep = attention_module._blas_workers_sleep
    assert not sleep({})  # OpenBLAS's default: its idle workers spin for 2^28 cycles
    assert sleep({"OPENBLAS_THREAD_TIMEOUT": "4"}) and sleep({"GOTO_THREAD_TIMEOUT": " 10"})
    assert not sleep({"OPENBLAS_THREAD_TIMEOUT": "28"}) and not sleep(
        {"OPENBLAS_THREAD_TIMEOUT": "x"}
    )
    assert sleep({"OPENBLAS_NUM_THREADS": "1"}) and sleep({"OMP_NUM_THREADS": "1"})
    assert not sleep({"OPENBLAS_NUM_THREADS": "2"})
    monkeypatch.setattr(attention_module, "_SPLIT_OVER_THREADS", True)  # (whatever BLAS does)
    calls = spy_parallel_for(attention_module)
    monkeypatch.setattr(attention_module, "_SPLIT_OVER_THREADS", False)
    threads(2)
    qkv = f32(arr(16, 64, 3 * 128) * 0.5)
    F.scaled_dot_product_attention(*split_heads(qkv, 4), is_causal=True).sum().backward()
    assert calls == [[(0, 1)], [(0, 1)]]  # the whole batch in one call each
