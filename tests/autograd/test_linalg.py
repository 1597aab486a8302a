"""Matmul with numpy's rules: 1-D, 2-D and batched N-D (broadcast batch axes); values, gradients
by hand and by gradcheck, second derivatives, and the shape errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck

SHAPE_PAIRS = [
    ((3,), (3,)),
    ((3,), (3, 2)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((1, 3), (3, 1)),
    ((2, 2, 3), (2, 3, 2)),
    ((2, 1, 2, 3), (3, 3, 2)),  # batch axes broadcast: (2, 1) with (3,)
    ((2, 3), (4, 3, 2)),  # a 2-D operand against a batch
    ((2, 2, 3), (3,)),
    ((3,), (2, 3, 2)),
    ((0, 3), (3, 2)),
    ((2, 0), (0, 3)),  # empty inner axis: zeros
]


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_matmul_values_and_gradcheck(
    shapes: tuple[tuple[int, ...], tuple[int, ...]], leaf: Callable[..., Tensor]
) -> None:
    a, b = leaf(*shapes[0]), leaf(*shapes[1])
    out = a @ b
    expected = a.data @ b.data
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_allclose(a.matmul(b).data, expected, rtol=1e-12)
    assert gradcheck(lambda x, y: x @ y, [a, b])
    out.backward(np.ones(out.shape))
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


@pytest.mark.parametrize(
    "shapes", [((2, 3), (3, 2)), ((3,), (3,)), ((2, 1, 2, 3), (3, 3, 2))], ids=str
)
def test_matmul_gradgradcheck(
    shapes: tuple[tuple[int, ...], tuple[int, ...]], leaf: Callable[..., Tensor]
) -> None:
    assert gradgradcheck(lambda x, y: x @ y, [leaf(*shapes[0]), leaf(*shapes[1])])


def test_matmul_grads_by_hand() -> None:
    a = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    b = Tensor([[5.0, 6.0], [7.0, 8.0]], requires_grad=True)
    out = a @ b
    np.testing.assert_array_equal(out.data, [[19.0, 22.0], [43.0, 50.0]])
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, [[11.0, 15.0], [11.0, 15.0]])  # ones @ b.T: row sums
    np.testing.assert_array_equal(b.grad, [[4.0, 4.0], [6.0, 6.0]])  # a.T @ ones: column sums


def test_vector_dot_product_by_hand() -> None:
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = Tensor([4.0, 5.0, 6.0], requires_grad=True)
    out = a @ b
    assert out.shape == () and out.item() == 32.0
    out.backward()
    np.testing.assert_array_equal(a.grad, [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(b.grad, [1.0, 2.0, 3.0])


def test_broadcast_batch_grads_are_summed_over_the_batch() -> None:
    a = Tensor(np.ones((4, 2, 3)), requires_grad=True)
    w = Tensor(np.ones((3, 5)), requires_grad=True)  # shared by the 4 batch entries
    (a @ w).sum().backward()
    np.testing.assert_array_equal(w.grad, np.full((3, 5), 8.0))  # 4 batches x 2 rows
    np.testing.assert_array_equal(a.grad, np.full((4, 2, 3), 5.0))


def test_matmul_with_numpy_arrays_on_either_side() -> None:
    w = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    left = np.array([[1.0, 0.0]]) @ w
    right = w @ np.array([0.0, 1.0])
    assert isinstance(left, Tensor) and isinstance(right, Tensor)
    np.testing.assert_array_equal(left.data, [[1.0, 2.0]])
    np.testing.assert_array_equal(right.data, [2.0, 4.0])
    (left.sum() + right.sum()).backward()
    np.testing.assert_array_equal(w.grad, [[1.0, 2.0], [0.0, 1.0]])


def test_matmul_keeps_float32() -> None:
    a, b = autograd.ones(2, 3, requires_grad=True), autograd.ones(3, 4, requires_grad=True)
    out = a @ b
    out.sum().backward()
    assert out.dtype == a.grad.dtype == b.grad.dtype == np.float32


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (5, 6)), ((3,), (4,)), ((2, 3), (2,)), ((2,), (3, 2)), ((2, 2, 3), (3, 3, 2))],
    ids=str,
)
def test_matmul_shape_errors_name_op_and_shapes(
    shapes: tuple[tuple[int, ...], tuple[int, ...]],
) -> None:
    with pytest.raises(ValueError) as info:
        autograd.ones(*shapes[0]) @ autograd.ones(*shapes[1])
    message = str(info.value)
    assert "matmul" in message and str(shapes[0]) in message and str(shapes[1]) in message


def test_matmul_of_0d_raises() -> None:
    with pytest.raises(ValueError, match=r"matmul.*0-d.*\(\).*\(3,\)"):
        autograd.ones(()) @ autograd.ones(3)
