"""F.layer_norm: the fused kernel against a hand formula, finite differences, second order."""

from __future__ import annotations

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
