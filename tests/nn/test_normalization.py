"""F.layer_norm: the fused kernel against a hand formula, finite differences, second order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck
from nn import functional as F


def _hand(x: np.ndarray, k: int, w: np.ndarray | None, b: np.ndarray | None, eps: float):
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("shape,norm", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5)), ((7,), (7,))])
@pytest.mark.parametrize("affine", [True, False])
def test_values_gradcheck_and_gradgradcheck(shape, norm, affine) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(shape) * 3 + 1, requires_grad=True, dtype=np.float64)
    w = Tensor(rng.standard_normal(norm), requires_grad=True, dtype=np.float64) if affine else None
    b = Tensor(rng.standard_normal(norm), requires_grad=True, dtype=np.float64) if affine else None
    y = F.layer_norm(x, norm, w, b, eps=1e-5)
    expected = _hand(
        x.data, len(norm), None if w is None else w.data, None if b is None else b.data, 1e-5
    )
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    inputs = [x] + ([w, b] if affine else [])
    fn = (
        (lambda x, w, b: F.layer_norm(x, norm, w, b))
        if affine
        else (lambda x: F.layer_norm(x, norm))
    )
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_gradient_by_hand_for_one_row() -> None:
    # y = (x - mean)/std: with g = e_0 and N = 2, x = (a, -a): xhat = (1, -1), rstd = 1/|a|
    # dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) = (1/a) * ((1, 0) - 0.5 - (1, -1) * 0.5)
    a = 2.0
    x = Tensor([[a, -a]], requires_grad=True, dtype=np.float64)
    y = F.layer_norm(x, 2, eps=0.0)
    (y * Tensor([[1.0, 0.0]], dtype=np.float64)).sum().backward()
    np.testing.assert_allclose(x.grad, [[0.0, 0.0]], atol=1e-15)
    x.grad = None
    y = F.layer_norm(x, 2, eps=0.0)
    (y * Tensor([[1.0, 1.0]], dtype=np.float64)).sum().backward()  # sum of xhat is 0
    np.testing.assert_allclose(x.grad, [[0.0, 0.0]], atol=1e-15)
    z = Tensor([[1.0, 2.0, 6.0]], requires_grad=True, dtype=np.float64)
    F.layer_norm(z, 3, eps=0.0)[0, 0].backward()
    mean, std = 3.0, np.sqrt(((np.array([1, 2, 6]) - 3.0) ** 2).mean())
    xhat = (np.array([1, 2, 6]) - mean) / std
    g = np.array([1.0, 0.0, 0.0])
    hand = (g - g.mean() - xhat * (g * xhat).mean()) / std
    np.testing.assert_allclose(z.grad[0], hand, rtol=1e-12)


def test_float32_stays_float32_and_errors_name_the_op() -> None:
    x = autograd.randn(3, 4, requires_grad=True)
    w = Tensor(np.ones(4, np.float32), requires_grad=True)
    y = F.layer_norm(x, 4, w)
    assert y.dtype == np.float32 and y.op == "layer_norm"
    y.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"layer_norm.*\(3, 4\).*\(5,\)"):
        F.layer_norm(x, 5)


def _hand_grads(x: np.ndarray, w: np.ndarray | None, g: np.ndarray, eps: float):
    """float64 gradients of sum(g * layer_norm(x)) over the last axis, by the formula
    dx = rstd (gw - mean(gw) - xhat mean(gw xhat)) with gw = g * w; dw = sum g xhat; db = sum g."""
    x, g = x.astype(np.float64), g.astype(np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    gw = g if w is None else g * w
    dx = rstd * (gw - gw.mean(axis=-1, keepdims=True) - xhat * (gw * xhat).mean(-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return dx, (g * xhat).sum(axis=axes), g.sum(axis=axes)


@pytest.mark.parametrize("which", ["weight", "bias"])
def test_weight_only_and_bias_only(which: str) -> None:
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((3, 5)), requires_grad=True, dtype=np.float64)
    p = Tensor(rng.standard_normal(5), requires_grad=True, dtype=np.float64)
    w, b = (p, None) if which == "weight" else (None, p)
    y = F.layer_norm(x, 5, w, b)
    expected = _hand(x.data, 1, None if w is None else w.data, None if b is None else b.data, 1e-5)
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    fn = (
        (lambda x, p: F.layer_norm(x, 5, p))
        if which == "weight"
        else (lambda x, p: F.layer_norm(x, 5, None, p))
    )
    assert gradcheck(fn, [x, p])
    assert gradgradcheck(fn, [x, p])


def test_float32_matches_float64_by_hand_far_from_zero() -> None:
    # rows with mean 1000 and std ~1: one pass of sums and sums of squares in float32 loses
    # var (1e6 - 1e6 with float32's 7 digits); centring first keeps it
    rng = np.random.default_rng(2)
    x32 = (1000 + rng.standard_normal((64, 128))).astype(np.float32)
    w32 = rng.standard_normal(128).astype(np.float32)
    b32 = rng.standard_normal(128).astype(np.float32)
    g32 = rng.standard_normal((64, 128)).astype(np.float32)
    x, w, b = (Tensor(a, requires_grad=True) for a in (x32, w32, b32))
    y = F.layer_norm(x, 128, w, b)
    assert y.dtype == np.float32
    expected = _hand(x32.astype(np.float64), 1, w32, b32, 1e-5)
    np.testing.assert_allclose(y.data, expected, atol=2e-3)
    y.backward(g32)
    dx, dw, db = _hand_grads(x32, w32, g32, 1e-5)
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, dx, atol=2e-3 * np.abs(dx).max())
    np.testing.assert_allclose(w.grad, dw, atol=2e-3 * np.abs(dw).max())
    np.testing.assert_allclose(b.grad, db, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("frozen", ["x", "weight", "bias"])
def test_gradients_when_one_input_needs_none(frozen: str) -> None:
    # the backward shares one temporary between dx and dweight: each gradient must come out
    # right whichever of the others is wanted
    rng = np.random.default_rng(3)
    xa, wa, ba, ga = (rng.standard_normal(s) for s in ((2, 3, 6), (6,), (6,), (2, 3, 6)))
    x, w, b = (
        Tensor(a, requires_grad=name != frozen, dtype=np.float64)
        for name, a in (("x", xa), ("weight", wa), ("bias", ba))
    )
    F.layer_norm(x, 6, w, b).backward(ga)
    dx, dw, db = _hand_grads(xa, wa, ga, 1e-5)
    for t, expected in ((x, dx), (w, dw), (b, db)):
        if t.requires_grad:
            np.testing.assert_allclose(t.grad, expected, rtol=1e-10, atol=1e-12)
        else:
            assert t.grad is None


def test_no_affine_gradient_and_output_left_alone_by_backward() -> None:
    rng = np.random.default_rng(4)
    xa, ga = rng.standard_normal((4, 7)), rng.standard_normal((4, 7))
    x = Tensor(xa, requires_grad=True, dtype=np.float64)
    y = F.layer_norm(x, 7)
    before = y.data.copy()
    y.backward(ga)
    np.testing.assert_allclose(x.grad, _hand_grads(xa, None, ga, 1e-5)[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(y.data, before)  # (backward reads it: it must not change it)


# ----- split over threads -------------------------------------------------------------------
def layer_norm_outputs(count: int, x: np.ndarray, affine: str) -> list[np.ndarray | None]:
    """Output and gradients of one forward and backward on `count` threads."""
    autograd.set_num_threads(count)
    n = x.shape[-1]
    tx = Tensor(x, requires_grad=True)
    w = (
        Tensor(np.linspace(0.5, 2.0, n, dtype=x.dtype), requires_grad=True)
        if "w" in affine
        else None
    )
    b = (
        Tensor(np.linspace(-1.0, 1.0, n, dtype=x.dtype), requires_grad=True)
        if "b" in affine
        else None
    )
    out = F.layer_norm(tx, n, w, b)
    out.backward(np.sin(np.arange(out.size)).reshape(out.shape).astype(x.dtype))
    return [out.data, tx.grad] + [t.grad for t in (w, b) if t is not None]


@pytest.mark.parametrize("affine", ["wb", "w", "b", ""])
def test_split_over_threads_is_bitwise_the_one_thread_result(
    spy_parallel_for: Callable,
    affine: str,
    threads: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    same_results: Callable[..., None],
) -> None:
    # chunks of 5 rows, any number per piece: 33 rows are 6 chunks and a last one of 3, split
    # after 15 rows (where one matrix-vector product over all rows would sum some rows
    # differently from one over each piece's rows)
    monkeypatch.setattr(F, "_LAYER_NORM_CHUNK_ROWS", 5)
    monkeypatch.setattr(F, "_LAYER_NORM_PIECE_ELEMENTS", 1)
    x = (np.random.default_rng(1).standard_normal((3, 11, 37)) * 3 + 1).astype(np.float32)
    one = layer_norm_outputs(1, x, affine)
    calls = spy_parallel_for(F)
    two = layer_norm_outputs(2, x, affine)
    assert [sorted(pieces) for pieces in calls] == [[(0, 3), (3, 7)]] * 2
    expected = _hand(x.astype(np.float64), 1, *(two_affine(37, affine)), 1e-5)
    np.testing.assert_allclose(two[0], expected, rtol=1e-5, atol=1e-5)
    same_results(one, two, np.float32)


def two_affine(n: int, affine: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    w = np.linspace(0.5, 2.0, n, dtype=np.float32) if "w" in affine else None
    b = np.linspace(-1.0, 1.0, n, dtype=np.float32) if "b" in affine else None
    return w, b


def test_small_and_benchmark_inputs_run_inline_large_ones_split(
    spy_parallel_for: Callable,
    threads: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    same_results: Callable[..., None],
) -> None:
    """(40, 6) and the benchmark's (16, 64, 128) in one call each, here; (4096, 1024), 4M
    elements, in two pieces of 32 chunks of 64 rows on two threads, the same bits as one."""
    threads(2)
    calls = spy_parallel_for(F)
    layer_norm_outputs(2, np.ones((40, 6), np.float32) * np.arange(6, dtype=np.float32), "wb")
    layer_norm_outputs(2, np.random.default_rng(2).random((16, 64, 128), np.float32), "wb")
    assert calls == [[(0, 1)], [(0, 1)], [(0, 16)], [(0, 16)]]
    calls.clear()
    x = np.random.default_rng(3).standard_normal((4096, 1024)).astype(np.float32)
    one = layer_norm_outputs(1, x, "wb")
    two = layer_norm_outputs(2, x, "wb")
    assert [sorted(pieces) for pieces in calls] == [[(0, 64)]] * 2 + [[(0, 32), (32, 64)]] * 2
    same_results(one, two)
