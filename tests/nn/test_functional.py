"""Tests for nn.functional: values derived by hand or from the definitions, gradients by
finite differences (float64), error messages, dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor, gradcheck, gradgradcheck
from nn import functional as F

RNG = np.random.default_rng(1234)


def rand(*shape: int, requires_grad: bool = True, dtype=np.float64) -> Tensor:
    return Tensor(RNG.standard_normal(shape), requires_grad=requires_grad, dtype=dtype)


def weights_like(shape: tuple[int, ...]) -> np.ndarray:
    """Fixed random weights: gradcheck of (f * w).sum() checks every output's gradient."""
    return np.random.default_rng(7).standard_normal(shape)


# ----- activations --------------------------------------------------------------------------
def test_activation_values() -> None:
    x = Tensor([-2.0, -0.5, 0.0, 1.5])
    v = np.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(F.relu(x).data, [0, 0, 0, 1.5])
    np.testing.assert_allclose(F.leaky_relu(x).data, [-0.02, -0.005, 0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(F.leaky_relu(x, 0.2).data, [-0.4, -0.1, 0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(F.sigmoid(x).data, 1 / (1 + np.exp(-v)), rtol=1e-6)
    np.testing.assert_allclose(F.tanh(x).data, np.tanh(v), rtol=1e-6)
    phi = np.array([0.5 * (1 + math.erf(a / math.sqrt(2))) for a in v])
    np.testing.assert_allclose(F.gelu(x).data, v * phi, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(F.softplus(x).data, np.log1p(np.exp(v)), rtol=1e-6)
    for f in (F.relu, F.gelu, F.sigmoid, F.tanh, F.leaky_relu, F.softplus):
        assert f(x).dtype == np.float32


def test_activations_accept_arrays() -> None:
    out = F.relu(np.array([-1.0, 2.0], dtype=np.float32))
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal(out.data, [0, 2])


@pytest.mark.parametrize(
    "fn",
    [
        F.relu,
        F.gelu,
        F.sigmoid,
        F.tanh,
        F.softplus,
        lambda x: F.leaky_relu(x, 0.1),
        lambda x: F.softmax(x, axis=0) * weights_like((3, 4)),
        lambda x: F.log_softmax(x, axis=1) * weights_like((3, 4)),
    ],
)
def test_activation_gradcheck(fn) -> None:  # noqa: ANN001
    # |x| >= 0.1: finite differences never straddle the kinks of relu and leaky_relu at 0
    values = RNG.choice([-1.0, 1.0], (3, 4)) * RNG.uniform(0.1, 2.0, (3, 4))
    x = Tensor(values, requires_grad=True)
    assert gradcheck(fn, [x])


def test_softplus_is_stable_and_twice_differentiable() -> None:
    x = Tensor(np.array([-200.0, -30.0, 0.0, 30.0, 200.0], dtype=np.float32))
    out = F.softplus(x).data
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, [0.0, math.exp(-30.0), math.log(2.0), 30.0, 200.0], rtol=1e-6)
    assert gradgradcheck(F.softplus, [rand(5)])


def test_softmax_stable_for_huge_logits() -> None:
    z = Tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True)
    p = F.softmax(z, axis=-1)
    np.testing.assert_allclose(p.data, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    logp = F.log_softmax(z, axis=-1)
    np.testing.assert_allclose(logp.data[0], [0.0, -2e4, -1e4], rtol=1e-6)
    (logp * Tensor([[1.0, 0, 0], [0, 1, 0]])).sum().backward()
    assert np.all(np.isfinite(z.grad))


# ----- linear -------------------------------------------------------------------------------
def test_linear_value_and_dtype() -> None:
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    w = Tensor([[1.0, 0.0], [1.0, -1.0], [0.5, 0.5]], requires_grad=True)
    b = Tensor([0.0, 1.0, -1.0], requires_grad=True)
    y = F.linear(x, w, b)
    np.testing.assert_allclose(y.data, [[1, 0, 0.5], [3, 0, 2.5]])
    y.sum().backward()
    # d sum / dW[o, i] = sum_n x[n, i];  d sum / dx[n, i] = sum_o W[o, i];  db = N
    np.testing.assert_allclose(w.grad, [[4, 6]] * 3)
    np.testing.assert_allclose(x.grad, [[2.5, -0.5]] * 2)
    np.testing.assert_allclose(b.grad, [2, 2, 2])
    assert y.dtype == np.float32
    assert w.grad.dtype == x.grad.dtype == b.grad.dtype == np.float32
    assert w.grad.flags.c_contiguous


@pytest.mark.parametrize("x_shape", [(4,), (3, 4), (2, 3, 4)])
def test_linear_gradcheck(x_shape: tuple[int, ...]) -> None:
    x, w, b = rand(*x_shape), rand(5, 4), rand(5)
    weights = weights_like(x_shape[:-1] + (5,))
    assert gradcheck(lambda x, w, b: F.linear(x, w, b) * weights, [x, w, b])
    assert gradcheck(lambda x, w: F.linear(x, w) * weights, [x, w])


def test_linear_batched_float32_gradients_by_hand_and_an_empty_batch() -> None:
    rng = np.random.default_rng(3)
    xa, wa, ba = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 4), (5, 4), (5,)))
    ga = rng.standard_normal((2, 3, 5)).astype(np.float32)
    x, w, b = (Tensor(a, requires_grad=True) for a in (xa, wa, ba))
    y = F.linear(x, w, b)
    np.testing.assert_allclose(y.data, xa @ wa.T + ba, rtol=1e-5, atol=1e-6)
    y.backward(ga)
    g2, x2 = ga.reshape(6, 5).astype(np.float64), xa.reshape(6, 4).astype(np.float64)
    np.testing.assert_allclose(x.grad, (g2 @ wa).reshape(2, 3, 4), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.grad, g2.T @ x2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.grad, g2.sum(axis=0), rtol=1e-5, atol=1e-6)
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    # no rows at all: zero weight and bias gradients of the right shapes
    x0 = Tensor(np.zeros((0, 4), np.float32), requires_grad=True)
    w0, b0 = Tensor(wa, requires_grad=True), Tensor(ba, requires_grad=True)
    F.linear(x0, w0, b0).backward(np.zeros((0, 5), np.float32))
    np.testing.assert_array_equal(w0.grad, np.zeros((5, 4)))
    np.testing.assert_array_equal(b0.grad, np.zeros(5))
    assert x0.grad.shape == (0, 4)


def test_linear_gradgradcheck() -> None:
    weights = weights_like((3, 2))
    assert gradgradcheck(
        lambda x, w, b: F.linear(x, w, b).tanh() * weights, [rand(3, 4), rand(2, 4), rand(2)]
    )


def test_linear_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"linear.*\(3, 5\).*\(2, 4\)"):
        F.linear(rand(3, 5), rand(2, 4))
    with pytest.raises(ValueError, match=r"linear: bias of shape \(3,\)"):
        F.linear(rand(3, 4), rand(2, 4), rand(3))


# ----- cross_entropy ------------------------------------------------------------------------
LOGITS = [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]
TARGET = np.array([2, 0])


def hand_cross_entropy(eps: float) -> list[float]:
    """Per-row loss written out: (1-eps) (lse - z_t) + eps (lse - mean(z))."""
    lse0 = math.log(math.e + math.e**2 + math.e**3)
    lse1 = math.log(3 * math.e)
    row0 = (1 - eps) * (lse0 - 3.0) + eps * (lse0 - 2.0)
    row1 = (1 - eps) * (lse1 - 1.0) + eps * (lse1 - 1.0)
    return [row0, row1]


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_hand_values(reduction: str, eps: float) -> None:
    z = Tensor(LOGITS, requires_grad=True)
    loss = F.cross_entropy(z, TARGET, reduction=reduction, label_smoothing=eps)
    rows = hand_cross_entropy(eps)
    expected = {"mean": sum(rows) / 2, "sum": sum(rows), "none": rows}[reduction]
    np.testing.assert_allclose(loss.data, expected, rtol=1e-6)
    assert loss.dtype == np.float32
    loss.sum().backward()
    # gradient: (softmax - q) * scale with q = (1 - eps) onehot + eps / C
    e = np.exp(np.array(LOGITS))
    softmax = e / e.sum(axis=1, keepdims=True)
    q = np.full((2, 3), eps / 3)
    q[[0, 1], TARGET] += 1 - eps
    scale = 0.5 if reduction == "mean" else 1.0
    np.testing.assert_allclose(z.grad, (softmax - q) * scale, rtol=1e-5, atol=1e-7)
    assert z.grad.dtype == np.float32


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(reduction: str, eps: float) -> None:
    target = np.array([0, 3, 1, 3, 2])
    weights = weights_like((5,)) if reduction == "none" else 1.0
    fn = lambda z: F.cross_entropy(z, target, reduction, eps) * weights  # noqa: E731
    assert gradcheck(fn, [rand(5, 4)])
    assert gradgradcheck(fn, [rand(5, 4)])


def test_cross_entropy_spatial_matches_rows() -> None:
    z = rand(2, 3, 4, requires_grad=False)  # (N, C, d1)
    t = np.array([[0, 1, 2, 1], [2, 2, 0, 1]])
    per_position = F.cross_entropy(z, t, reduction="none")
    assert per_position.shape == (2, 4)
    for n in range(2):
        for d in range(4):
            row = z.data[n, :, d]
            expected = np.log(np.exp(row).sum()) - row[t[n, d]]
            assert per_position.data[n, d] == pytest.approx(expected, rel=1e-10)
    weights = weights_like((2, 4))
    assert gradcheck(lambda z: F.cross_entropy(z, t, "none", 0.1) * weights, [rand(2, 3, 4)])
    assert gradcheck(lambda z: F.cross_entropy(z, t), [rand(2, 3, 4)])


def test_cross_entropy_single_sample() -> None:
    z = Tensor([1.0, 2.0, 3.0])
    assert F.cross_entropy(z, 2).item() == pytest.approx(hand_cross_entropy(0.0)[0], rel=1e-6)
    assert F.cross_entropy(z, np.int64(2), reduction="none").shape == ()


def test_cross_entropy_stable_for_huge_logits() -> None:
    z = Tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 5e3]], requires_grad=True)
    loss = F.cross_entropy(z, np.array([1, 2]))
    assert loss.item() == pytest.approx(2e4 / 2, rel=1e-6)  # row 0: lse 1e4 - (-1e4)
    loss.backward()
    assert np.all(np.isfinite(z.grad))


def test_cross_entropy_accepts_tensor_and_unsigned_targets() -> None:
    z = Tensor(LOGITS)
    expected = sum(hand_cross_entropy(0.0)) / 2
    assert F.cross_entropy(z, Tensor(TARGET)).item() == pytest.approx(expected, rel=1e-6)
    assert F.cross_entropy(z, TARGET.astype(np.uint8)).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_errors() -> None:
    z = Tensor(LOGITS)
    with pytest.raises(IndexError, match=r"cross_entropy: target 3 .* 3 classes"):
        F.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(IndexError, match=r"target -1"):
        F.cross_entropy(z, np.array([-1, 0]))
    with pytest.raises(TypeError, match="float32"):
        F.cross_entropy(z, np.array([0.0, 1.0], dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        F.cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, TARGET, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, TARGET, label_smoothing=1.5)


# ----- nll, mse, bce ------------------------------------------------------------------------
def test_nll_loss_values_and_grad() -> None:
    logp = Tensor([[-0.1, -2.0, -3.0], [-1.0, -0.5, -4.0]], requires_grad=True)
    t = np.array([1, 0])
    assert F.nll_loss(logp, t).item() == pytest.approx((2.0 + 1.0) / 2)
    assert F.nll_loss(logp, t, reduction="sum").item() == pytest.approx(3.0)
    np.testing.assert_allclose(F.nll_loss(logp, t, reduction="none").data, [2.0, 1.0])
    F.nll_loss(logp, t).backward()
    np.testing.assert_allclose(logp.grad, [[0, -0.5, 0], [-0.5, 0, 0]])
    with pytest.raises(IndexError, match="nll_loss: target 5"):
        F.nll_loss(logp, np.array([5, 0]))


def test_nll_loss_gradcheck() -> None:
    t = np.array([[1, 0, 2], [2, 2, 0]])
    weights = weights_like((2, 3))
    assert gradcheck(lambda lp: F.nll_loss(lp, t, "none") * weights, [rand(2, 3, 3)])
    assert gradcheck(lambda lp: F.nll_loss(lp, t[0]), [rand(3, 3)])


def test_nll_of_log_softmax_is_cross_entropy() -> None:
    z = rand(4, 5, requires_grad=False)
    t = np.array([4, 0, 2, 2])
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_allclose(
            F.nll_loss(F.log_softmax(z, axis=1), t, reduction).data,
            F.cross_entropy(z, t, reduction).data,
            rtol=1e-12,
        )
    assert gradcheck(lambda z: F.nll_loss(F.log_softmax(z, axis=1), t), [rand(4, 5)])


def test_mse_loss() -> None:
    x = Tensor([1.0, 2.0, 4.0], requires_grad=True)
    y = np.array([0.0, 2.0, 1.0])
    assert F.mse_loss(x, y).item() == pytest.approx((1 + 0 + 9) / 3)
    assert F.mse_loss(x, y, reduction="sum").item() == pytest.approx(10.0)
    np.testing.assert_allclose(F.mse_loss(x, y, reduction="none").data, [1, 0, 9])
    F.mse_loss(x, y).backward()
    np.testing.assert_allclose(x.grad, [2 / 3, 0, 2.0], rtol=1e-6)  # 2 (x - y) / N
    assert gradcheck(lambda a, b: F.mse_loss(a, b), [rand(2, 3), rand(2, 3)])
    with pytest.raises(ValueError, match=r"mse_loss.*\(3, 1\).*\(3,\)"):
        F.mse_loss(rand(3), rand(3, 1))


def test_bce_with_logits_values() -> None:
    x = [-3.0, 0.0, 2.0, 100.0, -100.0]
    t = [0.0, 1.0, 1.0, 0.0, 0.0]
    hand = [max(a, 0) - a * b + math.log1p(math.exp(-abs(a))) for a, b in zip(x, t, strict=True)]
    out = F.binary_cross_entropy_with_logits(Tensor(x), np.array(t), reduction="none")
    np.testing.assert_allclose(out.data, hand, rtol=1e-6, atol=1e-30)  # exp(-100): denormal
    assert F.binary_cross_entropy_with_logits(Tensor(x), np.array(t)).item() == pytest.approx(
        sum(hand) / 5, rel=1e-6
    )
    # pos_weight p: (1 - t) x + (1 + (p - 1) t) log(1 + exp(-x))
    p = 3.0
    hand_p = [
        (1 - b) * a + (1 + (p - 1) * b) * (max(-a, 0) + math.log1p(math.exp(-abs(a))))
        for a, b in zip(x, t, strict=True)
    ]
    out = F.binary_cross_entropy_with_logits(Tensor(x), np.array(t), "none", pos_weight=p)
    np.testing.assert_allclose(out.data, hand_p, rtol=1e-6, atol=1e-30)


def test_bce_with_logits_gradcheck() -> None:
    t = Tensor(RNG.uniform(0, 1, (3, 2)), requires_grad=True)
    assert gradcheck(lambda x, t: F.binary_cross_entropy_with_logits(x, t), [rand(3, 2), t])
    pw = Tensor([0.5, 2.0], requires_grad=True)
    assert gradcheck(
        lambda x, t, p: F.binary_cross_entropy_with_logits(x, t, "sum", p), [rand(3, 2), t, pw]
    )
    x = Tensor([-50.0, 50.0], requires_grad=True)
    F.binary_cross_entropy_with_logits(x, np.array([1.0, 0.0]), "sum").backward()
    np.testing.assert_allclose(x.grad, [-1.0, 1.0], rtol=1e-6)  # sigmoid(x) - t


# ----- dropout ------------------------------------------------------------------------------
def test_dropout_statistics_and_exact_scaling() -> None:
    x = Tensor(np.full(200_000, 1.5, dtype=np.float32), requires_grad=True)
    p = 0.3
    out = F.dropout(x, p, training=True, rng=np.random.default_rng(0))
    kept = out.data != 0
    sigma = math.sqrt(p * (1 - p) / x.size)
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    scale = np.float32(1.0) / np.float32(1 - p)
    assert out.dtype == np.float32
    assert np.all(out.data[kept] == np.float32(1.5) * np.float32(1 / (1 - p)))
    assert out.data[kept][0] == pytest.approx(1.5 * scale, rel=1e-7)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, np.where(kept, np.float32(1 / (1 - p)), 0))


def test_dropout_gradcheck() -> None:
    weights = weights_like((4, 5))
    fn = lambda x: F.dropout(x, 0.4, rng=np.random.default_rng(0)) * weights  # noqa: E731
    assert gradcheck(fn, [rand(4, 5)])  # the same mask on every call


def test_dropout_identity_zero_and_errors() -> None:
    x = rand(10, requires_grad=False, dtype=np.float32)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    zeros = F.dropout(x, 1.0)
    np.testing.assert_array_equal(zeros.data, np.zeros(10))
    assert zeros.dtype == np.float32
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            F.dropout(x, bad)


def test_dropout_generator() -> None:
    x = Tensor(np.ones(1000, dtype=np.float32))
    a = F.dropout(x, 0.5, rng=np.random.default_rng(3)).data
    b = F.dropout(x, 0.5, rng=np.random.default_rng(3)).data
    np.testing.assert_array_equal(a, b)
    autograd.manual_seed(11)
    c = F.dropout(x, 0.5).data
    autograd.manual_seed(11)
    d = F.dropout(x, 0.5).data
    np.testing.assert_array_equal(c, d)
    assert not np.array_equal(a, c)  # a different generator, a different mask


# ----- conv2d -------------------------------------------------------------------------------
def conv2d_by_definition(x, w, b, stride, padding):  # noqa: ANN001, ANN201
    """out[n, o, i, j] = b[o] + sum_{c, u, v} xpad[n, c, i*sh + u, j*sw + v] w[o, c, u, v]."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, wd = xp.shape
    o, _, kh, kw = w.shape
    ho, wo = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = np.einsum("ncuv,ocuv->no", patch, w)
    return out + (0 if b is None else b[None, :, None, None])


def test_conv2d_tiny_hand_example() -> None:
    x = Tensor(np.arange(9.0).reshape(1, 1, 3, 3), requires_grad=True)
    w = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    y = F.conv2d(x, w)
    # window sums: 0+1+3+4, 1+2+4+5, 3+4+6+7, 4+5+7+8
    np.testing.assert_allclose(y.data, [[[[8, 12], [20, 24]]]])
    y.sum().backward()
    # each input is counted once per window that covers it
    np.testing.assert_allclose(x.grad[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_allclose(w.grad[0, 0], [[8, 12], [20, 24]])  # sum of each offset's inputs
    assert y.dtype == x.grad.dtype == w.grad.dtype == np.float32


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [((3, 3), 1, 1), ((2, 3), 2, 1), ((3, 2), (2, 1), (1, 0)), ((1, 1), 1, 0), ((2, 2), 3, 0)],
)
def test_conv2d_matches_definition(kernel, stride, padding) -> None:  # noqa: ANN001
    x, w, b = rand(2, 3, 5, 6), rand(4, 3, *kernel), rand(4)
    out = F.conv2d(x, w, b, stride=stride, padding=padding)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    expected = conv2d_by_definition(x.data, w.data, b.data, pair(stride), pair(padding))
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)


def test_conv2d_gradcheck_stride2_padding1_nonsquare() -> None:
    x, w, b = rand(2, 3, 5, 6), rand(4, 3, 2, 3), rand(4)
    weights = weights_like((2, 4, 3, 3))
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1) * weights, [x, w, b])
    weights = weights_like((2, 4, 6, 2))  # Ho = (5 + 2 - 2) + 1, Wo = (6 - 3) // 2 + 1
    assert gradcheck(
        lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(1, 0)) * weights, [x, rand(4, 3, 2, 3)]
    )


def test_conv2d_grads_only_where_needed_and_unbatched() -> None:
    x = rand(3, 5, 5, requires_grad=False)  # (C, H, W): one image
    w = rand(2, 3, 3, 3)
    y = F.conv2d(x, w, padding=1)
    assert y.shape == (2, 5, 5)
    np.testing.assert_allclose(
        y.data, conv2d_by_definition(x.data[None], w.data, None, (1, 1), (1, 1))[0], rtol=1e-10
    )
    y.sum().backward()
    assert x.grad is None and w.grad.shape == w.shape


def nhwc_memory(a: np.ndarray) -> np.ndarray:
    """The same NCHW array, stored channels-last (as conv2d's outputs are)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def test_conv2d_nhwc_memory_gives_same_values_and_grads() -> None:
    x = rand(2, 3, 4, 4)
    x_nhwc = Tensor(nhwc_memory(x.data), requires_grad=True, dtype=x.dtype)
    w = rand(2, 3, 3, 3)
    g = RNG.standard_normal((2, 2, 2, 2))
    y = F.conv2d(x, w, stride=2, padding=1)
    y_nhwc = F.conv2d(x_nhwc, w, stride=2, padding=1)
    np.testing.assert_array_equal(y.data, y_nhwc.data)
    y.backward(g)
    w_grad = w.grad
    w.grad = None
    y_nhwc.backward(nhwc_memory(g))  # the upstream gradient stored channels-last too
    np.testing.assert_allclose(x.grad, x_nhwc.grad, rtol=1e-12)
    np.testing.assert_allclose(w_grad, w.grad, rtol=1e-12)


def test_conv2d_errors() -> None:
    with pytest.raises(ValueError, match=r"conv2d.*\(4, 2, 3, 3\).*\(1, 3, 5, 5\)"):
        F.conv2d(rand(1, 3, 5, 5), rand(4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d: kernel \(7, 7\) is larger .*\(5, 5\)"):
        F.conv2d(rand(1, 3, 5, 5), rand(4, 3, 7, 7))
    with pytest.raises(ValueError, match=r"conv2d: bias"):
        F.conv2d(rand(1, 3, 5, 5), rand(4, 3, 3, 3), rand(3))
    with pytest.raises(ValueError, match=r"conv2d: expected input"):
        F.conv2d(rand(5, 5), rand(4, 3, 3, 3))


def test_conv2d_double_backward_raises() -> None:
    x, w = rand(1, 2, 4, 4), rand(3, 2, 3, 3)
    (gx,) = autograd.grad(F.conv2d(x, w).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="conv2d"):
        (gx * gx).sum().backward()


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    h=st.integers(3, 7),
    w=st.integers(3, 7),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
)
def test_conv2d_shapes_and_values_property(n, c, o, h, w, kh, kw, sh, sw, ph, pw) -> None:  # noqa: ANN001
    rng = np.random.default_rng(n * 1000 + h * 10 + w)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((o, c, kh, kw))
    out = F.conv2d(Tensor(x), Tensor(weight), stride=(sh, sw), padding=(ph, pw))
    assert out.shape == (n, o, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    expected = conv2d_by_definition(x, weight, None, (sh, sw), (ph, pw))
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)


# ----- pooling ------------------------------------------------------------------------------
def test_max_pool_values_and_ties_go_to_first_maximum() -> None:
    x = Tensor(
        [
            [
                [
                    [0.0, 5.0, 1.0, 1.0],
                    [5.0, 2.0, 1.0, 1.0],
                    [0.0, 0.0, 3.0, 7.0],
                    [0.0, 0.0, 7.0, 7.0],
                ]
            ]
        ],
        requires_grad=True,
    )
    y = F.max_pool2d(x, 2)
    np.testing.assert_array_equal(y.data, [[[[5, 1], [0, 7]]]])
    y.backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    # window (0,0): 5 at (0,1) and (1,0): row-major first is (0,1); window (0,1): all 1s ->
    # (0,2); window (1,0): all 0s -> (2,0); window (1,1): 7s at (2,3),(3,2),(3,3) -> (2,3)
    expected = np.zeros((4, 4))
    expected[0, 1], expected[0, 2], expected[2, 0], expected[2, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(x.grad[0, 0], expected)
    assert y.dtype == x.grad.dtype == np.float32


def test_max_pool_overlapping_windows_accumulate() -> None:
    # all zeros, kernel 2 stride 1: each of the 4 windows picks its top-left element
    x = Tensor(np.zeros((1, 1, 3, 3)), requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    # one maximum shared by all four windows collects all four gradients
    x = Tensor(np.array([[[[0.0, 0, 0], [0, 9, 0], [0, 0, 0]]]]), requires_grad=True)
    y = F.max_pool2d(x, 2, stride=1)
    np.testing.assert_array_equal(y.data[0, 0], [[9, 9], [9, 9]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[0, 0, 0], [0, 4, 0], [0, 0, 0]])


def test_max_pool_padding_is_minus_infinity() -> None:
    x = Tensor(-np.arange(1.0, 5.0).reshape(1, 1, 2, 2), requires_grad=True)  # -1 -2 / -3 -4
    y = F.max_pool2d(x, 2, stride=1, padding=1)
    np.testing.assert_array_equal(y.data[0, 0], [[-1, -1, -2], [-1, -1, -2], [-3, -3, -4]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [[4, 2], [2, 1]])


def test_max_pool_remainder_rows_get_zero_grad() -> None:
    x = Tensor(np.arange(25.0).reshape(1, 1, 5, 5), requires_grad=True)
    y = F.max_pool2d(x, 2)  # floor: the last row and column are not pooled
    np.testing.assert_array_equal(y.data[0, 0], [[6, 8], [16, 18]])
    y.sum().backward()
    expected = np.zeros((5, 5))
    expected[1, 1] = expected[1, 3] = expected[3, 1] = expected[3, 3] = 1
    np.testing.assert_array_equal(x.grad[0, 0], expected)


@pytest.mark.parametrize(
    "kernel, stride, padding", [(2, None, 0), (3, 1, 1), ((2, 3), (1, 2), (1, 1)), (2, 3, 0)]
)
def test_max_pool_gradcheck(kernel, stride, padding) -> None:  # noqa: ANN001
    # distinct values spaced far apart: the finite differences never cross a tie
    values = RNG.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) * 0.1
    x = Tensor(values, requires_grad=True)
    out_shape = F.max_pool2d(x, kernel, stride, padding).shape
    weights = weights_like(out_shape)
    assert gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding) * weights, [x])


def test_max_pool_nhwc_memory_and_unbatched() -> None:
    values = RNG.permutation(2 * 3 * 4 * 4).reshape(2, 3, 4, 4).astype(np.float64)
    values[0, 0] = 0.0  # ties too
    x = Tensor(values, requires_grad=True, dtype=np.float64)
    x_nhwc = Tensor(nhwc_memory(values), requires_grad=True, dtype=np.float64)
    g = RNG.standard_normal((2, 3, 2, 2))
    F.max_pool2d(x, 2).backward(g)
    F.max_pool2d(x_nhwc, 2).backward(nhwc_memory(g))
    np.testing.assert_array_equal(x.grad, x_nhwc.grad)
    assert F.max_pool2d(rand(3, 4, 4), 2).shape == (3, 2, 2)


def test_pool_errors_and_double_backward() -> None:
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(5, 5\) is larger"):
        F.max_pool2d(rand(1, 1, 3, 3), 5)
    with pytest.raises(ValueError, match="max_pool2d: padding"):
        F.max_pool2d(rand(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d: expected input"):
        F.avg_pool2d(rand(4, 4), 2)
    x = rand(1, 1, 4, 4)
    (gx,) = autograd.grad(F.max_pool2d(x, 2).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="max_pool2d"):
        (gx * x).sum().backward()


def test_avg_pool_values_count_padding() -> None:
    x = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    y = F.avg_pool2d(x, 2, stride=1, padding=1)
    # zero padding counts in the mean: corners see 1 of 4 ones, edges 2, centre 4
    np.testing.assert_allclose(y.data[0, 0], [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]])
    y.sum().backward()
    np.testing.assert_allclose(x.grad[0, 0], [[1, 1], [1, 1]])  # each input: 4 windows / 4
    z = Tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_allclose(F.avg_pool2d(z, 2).data[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    assert F.avg_pool2d(z, 2).dtype == np.float32


def test_avg_pool_gradcheck() -> None:
    weights = weights_like((2, 2, 3, 3))
    assert gradcheck(lambda x: F.avg_pool2d(x, 3, 2, 1) * weights, [rand(2, 2, 5, 6)])
    weights = weights_like((1, 2, 2, 5))
    assert gradcheck(lambda x: F.avg_pool2d(x, (2, 2), 2) * weights, [rand(1, 2, 5, 10)])


# ----- batch_norm ---------------------------------------------------------------------------
def test_batch_norm_training_values_and_running_stats() -> None:
    x = Tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]])
    running_mean = np.array([0.0, 1.0], dtype=np.float32)
    running_var = Tensor(np.array([1.0, 2.0], dtype=np.float32))
    buffer = running_var.data
    y = F.batch_norm(x, running_mean, running_var, training=True, momentum=0.1, eps=0.0)
    # channel 0: mean 3, biased var 8/3; channel 1: mean 12, biased var 8
    np.testing.assert_allclose(y.data[:, 0], np.array([-2, 0, 2]) / math.sqrt(8 / 3), rtol=1e-6)
    np.testing.assert_allclose(y.data[:, 1], np.array([-2, -2, 4]) / math.sqrt(8), rtol=1e-6)
    # running = 0.9 running + 0.1 batch, with the unbiased variance (4 and 12)
    np.testing.assert_allclose(running_mean, [0.3, 0.9 + 1.2], rtol=1e-6)
    np.testing.assert_allclose(running_var.data, [0.9 + 0.4, 1.8 + 1.2], rtol=1e-6)
    assert running_var.data is buffer and running_mean.dtype == np.float32
    assert y.dtype == np.float32


def test_batch_norm_eval_uses_running_stats() -> None:
    x = Tensor(np.array([[[[2.0]], [[-1.0]]]]), requires_grad=True)  # (1, 2, 1, 1)
    mean, var = np.array([1.0, 0.0]), np.array([4.0, 0.25])
    w, b = Tensor([2.0, 1.0], requires_grad=True), Tensor([0.5, -0.5], requires_grad=True)
    y = F.batch_norm(x, mean, var, w, b, training=False, eps=0.0)
    np.testing.assert_allclose(y.data.reshape(2), [(2 - 1) / 2 * 2 + 0.5, -1 / 0.5 - 0.5])
    np.testing.assert_array_equal(mean, [1.0, 0.0])  # eval leaves the statistics alone
    y.sum().backward()
    np.testing.assert_allclose(x.grad.reshape(2), [2 / 2, 1 / 0.5])
    np.testing.assert_allclose(w.grad, [0.5, -2.0])
    np.testing.assert_allclose(b.grad, [1, 1])


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 3)])
def test_batch_norm_training_gradcheck(shape: tuple[int, ...]) -> None:
    c = shape[1]
    weights = weights_like(shape)
    fn = lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True) * weights  # noqa: E731
    assert gradcheck(fn, [rand(*shape), rand(c), rand(c)])
    assert gradcheck(lambda x: F.batch_norm(x, None, None, training=True) * weights, [rand(*shape)])
    assert gradgradcheck(fn, [rand(*shape), rand(c), rand(c)])


def test_batch_norm_eval_gradcheck() -> None:
    mean, var = RNG.standard_normal(3), RNG.uniform(0.5, 2, 3)
    weights = weights_like((4, 3, 2, 2))
    fn = lambda x, w, b: F.batch_norm(x, mean, var, w, b) * weights  # noqa: E731
    assert gradcheck(fn, [rand(4, 3, 2, 2), rand(3), rand(3)])
    assert gradgradcheck(fn, [rand(4, 3, 2, 2), rand(3), rand(3)])


def test_batch_norm_nhwc_memory_and_errors() -> None:
    x = rand(4, 3, 2, 2, requires_grad=False)
    nhwc = Tensor(nhwc_memory(x.data), dtype=x.dtype)
    np.testing.assert_allclose(
        F.batch_norm(x, None, None, training=True).data,
        F.batch_norm(nhwc, None, None, training=True).data,
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(rand(1, 3), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean of shape \(4,\)"):
        F.batch_norm(rand(2, 3), np.zeros(4), np.ones(3))


# ----- layer_norm, embedding ----------------------------------------------------------------
def test_layer_norm_values_and_gradcheck() -> None:
    x = Tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    y = F.layer_norm(x, 3, eps=0.0)
    np.testing.assert_allclose(y.data[0], np.array([-1, 0, 1]) / math.sqrt(2 / 3), rtol=1e-6)
    np.testing.assert_allclose(y.data[1], np.array([-2, -2, 4]) / math.sqrt(8), rtol=1e-6)
    weights = weights_like((2, 3, 4))
    fn = lambda x, w, b: F.layer_norm(x, (3, 4), w, b) * weights  # noqa: E731
    assert gradcheck(fn, [rand(2, 3, 4), rand(3, 4), rand(3, 4)])
    assert gradgradcheck(fn, [rand(2, 3, 4), rand(3, 4), rand(3, 4)])
    with pytest.raises(ValueError, match=r"layer_norm.*\(2, 3\).*\(4,\)"):
        F.layer_norm(rand(2, 3), 4)


def test_embedding() -> None:
    w = Tensor(np.arange(8.0).reshape(4, 2), requires_grad=True)
    idx = np.array([[0, 2], [0, 3]])
    out = F.embedding(idx, w)
    np.testing.assert_array_equal(out.data, [[[0, 1], [4, 5]], [[0, 1], [6, 7]]])
    out.sum().backward()
    np.testing.assert_array_equal(w.grad, [[2, 2], [0, 0], [1, 1], [1, 1]])  # row 0 used twice
    weights = weights_like((2, 2, 2))
    assert gradcheck(lambda w: F.embedding(idx, w) * weights, [rand(4, 2)])
    with pytest.raises(IndexError, match="embedding: index 4 .* 4 embeddings"):
        F.embedding(np.array([4]), w)
    with pytest.raises(TypeError, match="float"):
        F.embedding(np.array([1.0]), w)
