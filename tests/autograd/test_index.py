"""Indexing: every kind of numpy index, gradients that scatter back (repeated indices add up),
second derivatives, and out-of-range errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck

MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, True, True]])

INDICES: dict[str, object] = {
    "int": 1,
    "negative_int": -1,
    "int_pair": (2, -3),
    "slice": slice(1, 3),
    "step_slice": (slice(None), slice(None, None, -2)),
    "none": (None, 1),
    "ellipsis": (Ellipsis, 2),
    "ellipsis_none": (Ellipsis, None),
    "int_list": [2, 0],
    "repeated_list": [0, 2, 0, 0],
    "int_array": np.array([[1, 1], [2, 0]]),
    "int32_array": np.array([1, 1, 0], dtype=np.int32),
    "int_tensor": Tensor([2, 2, 1]),
    "0d_int_tensor": Tensor(1),
    "paired_arrays": ([0, 2, 0], [1, 3, 1]),
    "slice_and_array": (slice(0, 2), [3, 3, 0]),
    "bool_mask_2d": MASK,
    "bool_mask_tensor": Tensor(MASK),
    "bool_mask_rows": np.array([True, False, True]),
    "empty_mask": np.zeros((3, 4), dtype=bool),
    "empty_list": [],
}


def _numpy_index(index: object) -> object:
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list) and not index:
        return np.array([], dtype=np.intp)
    return index


@pytest.mark.parametrize("name", INDICES)
def test_getitem_values_and_gradcheck(name: str, leaf: Callable[..., Tensor]) -> None:
    index = INDICES[name]
    x = leaf(3, 4)
    out = x[index]
    expected = x.data[_numpy_index(index)]
    np.testing.assert_array_equal(out.data, expected)
    weights = Tensor(np.arange(1.0, 1.0 + expected.size).reshape(expected.shape), dtype=np.float64)
    assert gradcheck(lambda t: t[index] * weights, [x])
    out.backward(np.ones(out.shape))
    assert x.grad.shape == x.shape


def test_getitem_of_a_0d_tensor(leaf: Callable[..., Tensor]) -> None:
    x = leaf()
    assert x[()].shape == () and x[None].shape == (1,) and x[...].shape == ()
    assert gradcheck(lambda t: t[None] * 3.0, [x])


def test_repeated_indices_accumulate_by_hand() -> None:
    x = Tensor([10.0, 20.0, 30.0], requires_grad=True)
    out = x[[0, 2, 0, 0]]
    np.testing.assert_array_equal(out.data, [10.0, 30.0, 10.0, 10.0])
    (out * Tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0 + 3.0 + 4.0, 0.0, 2.0])


def test_repeated_pairs_accumulate_in_2d() -> None:
    x = Tensor(np.zeros((2, 2)), requires_grad=True)
    x[Tensor([1, 1, 0]), Tensor([0, 0, 1])].sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0], [2.0, 0.0]])


def test_boolean_mask_gradient_by_hand() -> None:
    x = Tensor([[1.0, -2.0], [-3.0, 4.0]], requires_grad=True)
    positive = x > 0
    out = x[positive]
    np.testing.assert_array_equal(out.data, [1.0, 4.0])
    (out * out).sum().backward()
    np.testing.assert_array_equal(x.grad, [[2.0, 0.0], [0.0, 8.0]])


def test_repeated_gather_gradgradcheck(leaf: Callable[..., Tensor]) -> None:
    assert gradgradcheck(lambda t: t[[0, 0, 2, 1, 0]] ** 3, [leaf(3)])
    assert gradgradcheck(lambda t: t[:, [1, 1]] ** 2, [leaf(2, 3)])
    assert gradgradcheck(lambda t: t[MASK[:2, :3]] ** 2, [leaf(2, 3)])


def test_gradient_of_a_gather_is_used_twice() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    first, rest = x[0], x[1:]
    (first * rest).sum().backward()  # x0 (x1 + x2)
    np.testing.assert_array_equal(x.grad, [5.0, 1.0, 1.0])


def test_basic_indexing_is_a_view() -> None:
    x = Tensor(np.arange(12.0).reshape(3, 4))
    assert np.shares_memory(x[1].data, x.data)
    assert np.shares_memory(x[:, ::2].data, x.data)
    assert np.shares_memory(x[None, ..., 1].data, x.data)


def test_index_tensors_need_no_grad_and_get_none() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    index = Tensor([1, 0])
    x[index].sum().backward()
    assert index.grad is None and not index.requires_grad
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


@pytest.mark.parametrize(
    "index",
    [3, -4, (0, 4), [0, 3], (slice(None), 5), np.array([[True, False]]), (0, 0, 0)],
    ids=["int", "negative", "pair", "list", "slice_int", "mask_shape", "too_many"],
)
def test_getitem_out_of_range_raises_index_error_naming_the_shape(index: object) -> None:
    x = autograd.ones(3, 4)
    with pytest.raises(IndexError, match=r"getitem.*\(3, 4\)"):
        x[index]


def test_row_gather_backward_sums_repeated_and_negative_rows() -> None:
    # the embedding path: one integer array picking rows, repeats and negatives mixed
    rng = np.random.default_rng(5)
    w = Tensor(rng.standard_normal((6, 3)), requires_grad=True, dtype=np.float64)
    small = np.array([[0, 5, -1], [2, 0, 0]])  # -1 is row 5 again
    rows = np.tile(small, (1, 100))  # (2, 300): enough rows for the sorting path
    g = rng.standard_normal((2, 300, 3))
    w[rows].backward(g)
    expected = np.zeros((6, 3))
    for (i, j), r in np.ndenumerate(rows):
        expected[r] += g[i, j]
    np.testing.assert_allclose(w.grad, expected, rtol=1e-12)
    assert gradcheck(lambda w: w[rows] ** 2, [w])
    assert gradcheck(lambda w: w[small] ** 2, [w])  # the np.add.at path
