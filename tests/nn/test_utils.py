"""nn.utils.clip_grad_norm_ against hand values, and GELU's tanh form (F.gelu(approximate=),
nn.GELU(approximate=)) against its formula, by finite differences, twice."""

from __future__ import annotations

import math

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor
from nn import functional as F


def params_with_grads(*grads: list[float] | None) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(np.zeros(3 if g is None else len(g), dtype=np.float32))
        p.grad = None if g is None else np.array(g, dtype=np.float32)
        params.append(p)
    return params


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before() -> None:
    params = params_with_grads([3.0, 0.0], [4.0, 12.0], None)  # total 2-norm sqrt(9+16+144) = 13
    total = nn.utils.clip_grad_norm_(params, max_norm=6.5)
    assert isinstance(total, Tensor) and total.shape == () and total.dtype == np.float32
    assert total.item() == pytest.approx(13.0)
    coefficient = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(params[0].grad, [3 * coefficient, 0.0], rtol=1e-6)
    np.testing.assert_allclose(params[1].grad, [4 * coefficient, 12 * coefficient], rtol=1e-6)
    assert params[2].grad is None  # skipped, not created


def test_clip_grad_norm_below_max_norm_leaves_the_gradients() -> None:
    params = params_with_grads([0.3, -0.4])
    assert nn.utils.clip_grad_norm_(params, 1.0).item() == pytest.approx(0.5)
    np.testing.assert_array_equal(params[0].grad, np.array([0.3, -0.4], np.float32))


@pytest.mark.parametrize(
    ("norm_type", "expected"),
    [(1.0, 3 + 4 + 12), (float("inf"), 12.0), (3.0, (27 + 64 + 1728) ** (1 / 3))],
)
def test_clip_grad_norm_other_norms(norm_type: float, expected: float) -> None:
    params = params_with_grads([3.0, -4.0], [12.0])
    total = nn.utils.clip_grad_norm_(iter(params), 2.0, norm_type=norm_type)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    c = 2.0 / (expected + 1e-6)
    np.testing.assert_allclose(params[0].grad, [3 * c, -4 * c], rtol=1e-6)
    np.testing.assert_allclose(params[1].grad, [12 * c], rtol=1e-6)


def test_clip_grad_norm_single_tensor_no_grads_and_nonfinite() -> None:
    (p,) = params_with_grads([0.0, 5.0])
    assert nn.utils.clip_grad_norm_(p, 1.0).item() == pytest.approx(5.0)  # a bare Tensor
    np.testing.assert_allclose(p.grad, [0.0, 1.0], rtol=1e-5)
    assert nn.utils.clip_grad_norm_(params_with_grads(None), 1.0).item() == 0.0
    bad = params_with_grads([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="inf"):
        nn.utils.clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        nn.utils.clip_grad_norm_(bad, 1.0, norm_type=0)


def test_clip_grad_norm_on_a_model_after_backward() -> None:
    model = nn.Linear(3, 2)
    model(Tensor(np.full((4, 3), 10.0))).sum().backward()
    before = math.sqrt(
        sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in model.parameters())
    )
    assert nn.utils.clip_grad_norm_(model.parameters(), 0.1).item() == pytest.approx(
        before, rel=1e-6
    )
    after = math.sqrt(
        sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in model.parameters())
    )
    assert after == pytest.approx(0.1, rel=1e-4)


# ----- GELU, tanh form ---------------------------------------------------------------------------
def gelu_tanh_by_hand(v: np.ndarray) -> np.ndarray:
    return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))


def test_gelu_tanh_values_gradients_and_dtype() -> None:
    v = np.linspace(-5, 5, 41)
    out = F.gelu(Tensor(v, dtype=np.float64), approximate="tanh")
    np.testing.assert_allclose(out.data, gelu_tanh_by_hand(v), rtol=1e-14, atol=1e-15)
    x = Tensor(v[::4], requires_grad=True)
    assert autograd.gradcheck(lambda x: F.gelu(x, approximate="tanh"), [x])
    assert autograd.gradgradcheck(lambda x: F.gelu(x, approximate="tanh"), [x])
    x32 = Tensor(v.astype(np.float32), requires_grad=True)
    y = F.gelu(x32, "tanh")
    y.sum().backward()
    assert y.dtype == np.float32 and x32.grad.dtype == np.float32
    # the exact form is still the default, and differs from the tanh form
    assert not np.allclose(F.gelu(Tensor(v)).data, gelu_tanh_by_hand(v), atol=1e-5)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="sigmoid")


def test_gelu_module_approximate_and_repr() -> None:
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    layer = nn.GELU(approximate="tanh")
    assert repr(layer) == "GELU(approximate='tanh')"
    v = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(layer(Tensor(v)).data, gelu_tanh_by_hand(v), rtol=1e-6)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
