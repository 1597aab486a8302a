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


# ----- tril / triu -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("k", [-1, 0, 1])
@pytest.mark.parametrize("name", ["tril", "triu"])
def test_tril_triu(name: str, k: int, shape: tuple[int, ...], leaf: Callable[..., Tensor]) -> None:
    x = leaf(*shape)
    rows, cols = np.indices(shape[-2:])
    keep = cols - rows <= k if name == "tril" else cols - rows >= k  # numpy's rule, by hand
    out = getattr(x, name)(k)
    np.testing.assert_array_equal(out.data, np.where(keep, x.data, 0.0))
    np.testing.assert_array_equal(getattr(autograd, name)(x, k=k).data, out.data)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, np.broadcast_to(keep, shape).astype(np.float64))
    assert gradcheck(lambda t: getattr(t, name)(k) * t, [x])
    assert gradgradcheck(lambda t: getattr(t, name)(k) ** 2, [x])


def test_tril_triu_keep_dtype_and_need_two_axes() -> None:
    assert autograd.ones(3, 3).tril().dtype == np.float32
    np.testing.assert_array_equal(autograd.ones(2, 2).triu(1).data, [[0, 1], [0, 0]])
    with pytest.raises(ValueError, match=r"tril: needs at least 2 dimensions, got shape \(3,\)"):
        autograd.ones(3).tril()
    with pytest.raises(ValueError, match=r"triu: .*shape \(\)"):
        autograd.triu(autograd.tensor(1.0))


# ----- einsum ------------------------------------------------------------------------------------

# name -> (subscripts, operand shapes, the same in plain numpy, written without einsum)
EINSUMS: dict[str, tuple[str, list[tuple[int, ...]], Callable]] = {
    "matmul": ("ij,jk->ik", [(2, 3), (3, 4)], lambda a, b: a @ b),
    "batched_matmul": ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)], lambda a, b: a @ b),
    "outer": ("i,j->ij", [(3,), (4,)], np.outer),
    "trace": ("ii->", [(3, 3)], np.trace),
    "diagonal": ("ii->i", [(3, 3)], np.diagonal),
    "sum": ("ij->", [(2, 3)], np.sum),
    "transpose": ("ij->ji", [(2, 3)], np.transpose),
    "bilinear": ("i,ij,j->", [(3,), (3, 4), (4,)], lambda a, m, b: a @ m @ b),
    "implicit_matmul": ("ij,jk", [(2, 3), (3, 4)], lambda a, b: a @ b),
    "implicit_order": ("ba", [(2, 3)], np.transpose),  # implicit output: letters sorted
    "implicit_trace": ("ii", [(3, 3)], np.trace),
    "column_sums": ("ij->j", [(2, 3)], lambda a: a.sum(0)),  # i only in the operand
    "row_dots": ("ij,ij->i", [(2, 3), (2, 3)], lambda a, b: (a * b).sum(1)),
    "diag_times_vector": ("ii,i->i", [(3, 3), (3,)], lambda a, v: np.diagonal(a) * v),
    "diag_of_batch": ("bii->b", [(2, 3, 3)], lambda a: np.trace(a, axis1=1, axis2=2)),
    "spaces": ("i j , j k -> i k", [(2, 3), (3, 2)], lambda a, b: a @ b),
    "ellipsis": ("...ij,jk->...ik", [(2, 2, 3), (3, 4)], lambda a, b: a @ b),
    "ellipsis_broadcast": ("...ij,...jk", [(2, 1, 2, 3), (3, 3, 2)], lambda a, b: a @ b),
    "attention_scores": (
        "bhtd,bhsd->bhts",
        [(2, 2, 3, 4), (2, 2, 5, 4)],
        lambda q, k: q @ k.swapaxes(-1, -2),
    ),
    "large_matmul": ("ij,jk->ik", [(40, 50), (50, 40)], lambda a, b: a @ b),  # optimize=True
}


@pytest.mark.parametrize("name", EINSUMS)
def test_einsum_values(name: str, rng: np.random.Generator) -> None:
    subscripts, shapes, reference = EINSUMS[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    out = autograd.einsum(subscripts, *[Tensor(a, dtype=np.float64) for a in arrays])
    np.testing.assert_allclose(out.data, reference(*arrays), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in EINSUMS if n != "large_matmul"])
def test_einsum_gradcheck_and_gradgradcheck(name: str, leaf: Callable[..., Tensor]) -> None:
    subscripts, shapes, _ = EINSUMS[name]
    operands = [leaf(*s) for s in shapes]
    assert gradcheck(lambda *ts: autograd.einsum(subscripts, *ts), operands)
    # squared: the backward's einsums (and the diagonal write-back) are differentiated again
    assert gradgradcheck(lambda *ts: autograd.einsum(subscripts, *ts) ** 2, operands)


def test_einsum_gradients_by_hand() -> None:
    a = Tensor(np.arange(9.0).reshape(3, 3), requires_grad=True, dtype=np.float64)
    autograd.einsum("ii->i", a).sum().backward()  # the diagonal: ones on it
    np.testing.assert_array_equal(a.grad, np.eye(3))
    a.grad = None
    w = np.array([1.0, 2.0, 3.0])
    (autograd.einsum("ij->j", a) * w).sum().backward()  # broadcast back over i
    np.testing.assert_array_equal(a.grad, np.tile(w, (3, 1)))
    x = Tensor([1.0, 2.0], requires_grad=True, dtype=np.float64)
    autograd.einsum("i,i->", x, x).backward()  # the same tensor twice: 2x
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


def test_einsum_only_some_operands_need_grad_and_dtype_kept() -> None:
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = np.full((3, 4), 2.0, dtype=np.float32)  # an array operand: a constant
    out = autograd.einsum("ij,jk->ik", a, b)
    assert out.dtype == np.float32
    out.sum().backward()
    assert a.grad.dtype == np.float32
    np.testing.assert_array_equal(a.grad, np.full((2, 3), 8.0))


@pytest.mark.parametrize(
    ("subscripts", "shapes", "pattern"),
    [
        ("ij,jk->ik", [(2, 3)], r"einsum: .*'ij,jk->ik'.*\[\(2, 3\)\]: 2 terms for 1 operands"),
        ("ij", [(3,)], r"einsum: .*term 'ij' does not fit an operand of shape \(3,\)"),
        (
            "ij,jk->ik",
            [(2, 3), (4, 5)],
            r"einsum: .*do not fit operands of shapes \[\(2, 3\), \(4, 5\)\]",
        ),
        ("ij->k", [(2, 3)], r"einsum: .*an output subscript appears in no input"),
        ("ij->ii", [(2, 2)], r"einsum: .*an output subscript appears twice"),
        ("i1", [(2, 3)], r"einsum: .*subscripts are letters"),
        ("i->i->i", [(2,)], r"einsum: .*more than one '->'"),
    ],
)
def test_einsum_errors(subscripts: str, shapes: list, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        autograd.einsum(subscripts, *[autograd.ones(*s) for s in shapes])
