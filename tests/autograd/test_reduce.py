"""Reductions (axis None/int/negative/tuple, keepdims, 0-d and empty), max/min ties, var/std,
argmax/argmin, and softmax / log-softmax / logsumexp with their stability at logits of ±1e4."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from autograd import Tensor, gradcheck, gradgradcheck

REDUCTIONS = ["sum", "mean", "max", "min", "var", "std", "logsumexp"]
AXES = [None, 0, -1, 1, (0, 2), (-1, 0), ()]


def _reference(name: str, data: np.ndarray, axis: object, keepdims: bool) -> np.ndarray:
    if name == "logsumexp":
        return np.log(np.sum(np.exp(data), axis=axis, keepdims=keepdims))
    return getattr(np, name)(data, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_values_and_gradcheck(
    name: str, axis: object, keepdims: bool, leaf: Callable[..., Tensor]
) -> None:
    if name == "std" and axis == ():
        pytest.skip("std of single values is 0: sqrt has no derivative there (nan, as PyTorch)")
    x = leaf(2, 3, 2)
    out = getattr(x, name)(axis=axis, keepdims=keepdims)
    expected = _reference(name, x.data, axis, keepdims)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    # weighted, so that a gradient that is constant along the reduced axes cannot hide
    weights = Tensor(np.arange(1.0, 1.0 + expected.size).reshape(expected.shape), dtype=np.float64)
    assert gradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims) * weights, [x])


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_of_a_0d_tensor(name: str, leaf: Callable[..., Tensor]) -> None:
    x = leaf()
    out = getattr(x, name)()
    assert out.shape == ()
    if name == "std":  # the std of one value is 0, where sqrt has no derivative
        return
    assert gradcheck(lambda t: getattr(t, name)(), [x])
    assert getattr(x, name)(axis=None, keepdims=True).shape == ()


@pytest.mark.parametrize("name", ["sum", "mean", "var", "std", "logsumexp"])
def test_reduction_of_an_empty_axis_grad_shape(name: str) -> None:
    x = Tensor(np.zeros((0, 3)), requires_grad=True, dtype=np.float64)
    out = getattr(x, name)(axis=1)  # reduces over the non-empty axis: result (0,)
    assert out.shape == (0,)
    out.sum().backward()
    assert x.grad.shape == (0, 3)


def test_sum_over_an_empty_axis_is_zero_with_empty_grad() -> None:
    x = Tensor(np.zeros((0, 3)), requires_grad=True, dtype=np.float64)
    out = x.sum(axis=0)
    np.testing.assert_array_equal(out.data, [0.0, 0.0, 0.0])
    assert gradcheck(lambda t: t.sum(axis=0), [x])
    out.sum().backward()
    assert x.grad.shape == (0, 3)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_of_an_empty_tensor_raise(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}.*empty.*\(0, 3\)"):
        getattr(Tensor(np.zeros((0, 3))), name)()


@pytest.mark.parametrize(
    ("name", "axis"),
    [("sum", 1), ("mean", (0, 1)), ("var", -1), ("std", 0), ("logsumexp", 1), ("max", 1)],
)
def test_reduction_gradgradcheck(name: str, axis: object, leaf: Callable[..., Tensor]) -> None:
    # squared so that the second derivative is not trivially zero for sum and mean
    assert gradgradcheck(lambda t: getattr(t, name)(axis=axis) ** 2, [leaf(2, 3)])


def test_sum_and_mean_hand_values() -> None:
    x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    assert x.sum().item() == 21.0
    np.testing.assert_array_equal(x.sum(axis=0).data, [5.0, 7.0, 9.0])
    np.testing.assert_array_equal(x.sum(axis=-1, keepdims=True).data, [[6.0], [15.0]])
    (x.mean(axis=1) * Tensor([1.0, 2.0])).sum().backward()
    np.testing.assert_allclose(x.grad, [[1 / 3] * 3, [2 / 3] * 3])


def test_max_min_split_ties_evenly() -> None:
    x = Tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], requires_grad=True)
    y = x.max()
    assert y.item() == 3.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]])
    x.zero_grad()
    (x.max(axis=1) * Tensor([1.0, 10.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5], [5.0, 5.0, 0.0]])
    x.zero_grad()
    x.min(axis=0, keepdims=True).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    x.zero_grad()
    Tensor.min(x, axis=(0, 1)).backward()  # one minimum
    np.testing.assert_array_equal(x.grad, [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_max_of_all_equal_values_spreads_evenly() -> None:
    x = Tensor(np.full((2, 2), 7.0), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 0.25))


def test_max_axis_returns_values_only() -> None:
    out = Tensor([[1.0, 5.0], [7.0, 2.0]]).max(axis=1)
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal(out.data, [5.0, 7.0])


def test_var_std_ddof_hand_values() -> None:
    x = Tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True, dtype=np.float64)
    assert x.var().item() == pytest.approx(1.25)
    assert x.var(ddof=1).item() == pytest.approx(5 / 3)
    assert x.std(ddof=1).item() == pytest.approx(math.sqrt(5 / 3))
    x.var(ddof=1).backward()
    np.testing.assert_allclose(x.grad, 2 * (x.data - 2.5) / 3)  # 2 (x - mean) / (n - ddof)
    x.zero_grad()
    x.std().backward()  # (x - mean) / (n std)
    np.testing.assert_allclose(x.grad, (x.data - 2.5) / (4 * math.sqrt(1.25)))
    assert gradcheck(
        lambda t: t.var(axis=1, ddof=1), [Tensor(x.data.reshape(2, 2), requires_grad=True)]
    )


def test_argmax_argmin() -> None:
    x = Tensor([[1.0, 5.0, 5.0], [7.0, 2.0, 0.0]], requires_grad=True)
    assert x.argmax().item() == 3
    assert x.argmax(axis=1).tolist() == [1, 0]  # first of the ties
    assert x.argmin(axis=0).tolist() == [0, 1, 1]
    assert x.argmin(axis=-1, keepdims=True).tolist() == [[0], [2]]
    assert x.argmax(axis=1).dtype == np.int64
    assert not x.argmax().requires_grad


# ----- softmax, log_softmax, logsumexp ---------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_gradcheck_and_gradgradcheck(
    name: str, axis: int, leaf: Callable[..., Tensor]
) -> None:
    x = leaf(3, 2)
    # softmax sums to 1: weight the outputs or every gradient would be zero
    weights = Tensor(np.arange(6.0).reshape(3, 2) - 2.0, dtype=np.float64)
    assert gradcheck(lambda t: getattr(t, name)(axis=axis) * weights, [x])
    assert gradgradcheck(lambda t: getattr(t, name)(axis=axis) * weights, [x])


def test_softmax_values() -> None:
    x = Tensor([[0.0, math.log(3.0)], [1.0, 1.0]], dtype=np.float64)
    np.testing.assert_allclose(x.softmax(axis=-1).data, [[0.25, 0.75], [0.5, 0.5]])
    np.testing.assert_allclose(x.log_softmax(axis=1).data, np.log([[0.25, 0.75], [0.5, 0.5]]))
    np.testing.assert_allclose(x.softmax(axis=0).data.sum(axis=0), [1.0, 1.0])
    assert Tensor([1.0, 2.0]).softmax().dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_log_softmax_stable_at_1e4(dtype: type) -> None:
    logits = Tensor(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], requires_grad=True, dtype=dtype
    )
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = logits.softmax(axis=-1)
        logp = logits.log_softmax(axis=-1)
        lse = logits.logsumexp(axis=-1)
        (p[:, 0].sum() + logp[:, 1].sum() + lse.sum()).backward()
    np.testing.assert_allclose(p.data, [[1, 0, 0], [1 / 3] * 3, [0.5, 0.5, 0]], rtol=1e-6)
    third, half = math.log(1 / 3), math.log(0.5)
    np.testing.assert_allclose(
        logp.data, [[0, -2e4, -1e4], [third] * 3, [half, half, -2e4 + half]], rtol=1e-6
    )
    np.testing.assert_allclose(lse.data, [1e4, -1e4 - third, 1e4 - half], rtol=1e-7)
    assert np.isfinite(logits.grad).all()
    assert p.dtype == logp.dtype == lse.dtype == logits.grad.dtype == dtype


def test_log_softmax_gradient_at_extreme_logits_by_hand() -> None:
    logits = Tensor([1e4, -1e4, 0.0], requires_grad=True)
    logits.log_softmax()[1].backward()  # d logp_1 / dx = onehot_1 - softmax
    np.testing.assert_array_equal(logits.grad, [-1.0, 1.0, 0.0])


def test_logsumexp_hand_values() -> None:
    x = Tensor([[0.0, 0.0], [1.0, 2.0]], requires_grad=True, dtype=np.float64)
    out = x.logsumexp(axis=1)
    np.testing.assert_allclose(out.data, [math.log(2.0), math.log(math.e + math.e**2)])
    out.sum().backward()  # the gradient is the softmax of each row
    np.testing.assert_allclose(x.grad, [[0.5, 0.5], [1 / (1 + math.e), math.e / (1 + math.e)]])


def test_softmax_family_over_an_empty_axis() -> None:
    x = Tensor(np.zeros((2, 0)), requires_grad=True)
    with np.errstate(divide="ignore"):  # log of an empty sum
        for name in ["softmax", "log_softmax"]:
            out = getattr(x, name)(axis=-1)
            assert out.shape == (2, 0)
            out.backward(np.ones((2, 0)))
            assert x.grad.shape == (2, 0)
        lse = x.logsumexp(axis=1)
    np.testing.assert_array_equal(lse.data, [-np.inf, -np.inf])  # log(0), as PyTorch
    assert Tensor(np.zeros((0, 3))).softmax(axis=-1).shape == (0, 3)


# ----- cumsum ------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_cumsum_values_and_gradients(axis: int, leaf: Callable[..., Tensor]) -> None:
    x = leaf(2, 3, 4)
    out = x.cumsum(axis)
    np.testing.assert_allclose(out.data, np.cumsum(x.data, axis=axis), rtol=1e-15)
    assert gradcheck(lambda t: t.cumsum(axis) * t, [x])
    assert gradgradcheck(lambda t: t.cumsum(axis) ** 2, [x])


def test_cumsum_gradient_by_hand() -> None:
    # out = [x0, x0 + x1, x0 + x1 + x2]: x0 is in every sum, x2 in one
    x = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True, dtype=np.float64)
    w = np.array([1.0, 10.0, 100.0])
    (x.cumsum(1) * w).sum().backward()
    np.testing.assert_array_equal(x.grad, [[111.0, 110.0, 100.0]] * 2)
    x.grad = None
    x.cumsum(0).sum().backward()
    np.testing.assert_array_equal(x.grad, [[2.0] * 3, [1.0] * 3])


def test_cumsum_dtype_and_errors() -> None:
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    out = x.cumsum(0)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"cumsum: axis 2 is out of range for shape \(2, 2\)"):
        x.cumsum(2)


def test_softmax_of_a_0d_tensor_is_one_along_axis_0_or_minus_1() -> None:
    x = Tensor(np.array(2.5), requires_grad=True, dtype=np.float64)
    for axis in (0, -1):
        y = x.softmax(axis=axis)
        assert y.shape == () and y.item() == 1.0
        z = x.log_softmax(axis=axis)
        assert z.shape == () and z.item() == 0.0
    (x.softmax() * 3.0 + x.log_softmax()).backward()
    assert x.grad == 0.0  # both are constant in x
    with pytest.raises(ValueError, match="softmax: axis 1 is out of range for shape"):
        x.softmax(axis=1)
