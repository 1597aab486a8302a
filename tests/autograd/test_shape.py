"""Shape ops: values against numpy, gradcheck (and a few second derivatives), views that share
memory, and the errors (op and shapes named)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck

# name -> (input shape, op, the same on a numpy array)
SHAPE_OPS: dict[str, tuple[tuple[int, ...], Callable, Callable]] = {
    "reshape_ints": ((2, 3), lambda x: x.reshape(3, 2), lambda a: a.reshape(3, 2)),
    "reshape_tuple": ((2, 3), lambda x: x.reshape((6,)), lambda a: a.reshape(6)),
    "reshape_minus1": ((2, 3, 2), lambda x: x.reshape(-1, 4), lambda a: a.reshape(-1, 4)),
    "reshape_0d": ((), lambda x: x.reshape(1, 1), lambda a: a.reshape(1, 1)),
    "reshape_to_0d": ((1, 1), lambda x: x.reshape(()), lambda a: a.reshape(())),
    "reshape_empty": ((0, 3), lambda x: x.reshape(3, 0), lambda a: a.reshape(3, 0)),
    "view": ((2, 3), lambda x: x.view(6), lambda a: a.reshape(6)),
    "flatten": ((2, 3, 2), lambda x: x.flatten(), lambda a: a.reshape(-1)),
    "flatten_1": ((2, 3, 2), lambda x: x.flatten(1), lambda a: a.reshape(2, 6)),
    "flatten_neg": ((2, 3, 2), lambda x: x.flatten(-2), lambda a: a.reshape(2, 6)),
    "flatten_0d": ((), lambda x: x.flatten(), lambda a: a.reshape(1)),
    "transpose": ((2, 3, 4), lambda x: x.transpose(), lambda a: a.transpose()),
    "transpose_axes": ((2, 3, 4), lambda x: x.transpose(1, 2, 0), lambda a: a.transpose(1, 2, 0)),
    "transpose_tuple": (
        (2, 3, 4),
        lambda x: x.transpose((2, 0, 1)),
        lambda a: a.transpose(2, 0, 1),
    ),
    "permute_neg": ((2, 3, 4), lambda x: x.permute(-1, 0, 1), lambda a: a.transpose(2, 0, 1)),
    "T": ((2, 3), lambda x: x.T, lambda a: a.T),
    "swapaxes": ((2, 3, 4), lambda x: x.swapaxes(0, -1), lambda a: a.swapaxes(0, -1)),
    "squeeze_all": ((1, 3, 1), lambda x: x.squeeze(), lambda a: a.squeeze()),
    "squeeze_axis": ((1, 3, 1), lambda x: x.squeeze(-1), lambda a: a.squeeze(-1)),
    "squeeze_tuple": ((1, 3, 1), lambda x: x.squeeze((0, 2)), lambda a: a.squeeze((0, 2))),
    "unsqueeze": ((2, 3), lambda x: x.unsqueeze(1), lambda a: a[:, None]),
    "unsqueeze_neg": ((2, 3), lambda x: x.unsqueeze(-1), lambda a: a[..., None]),
    "unsqueeze_0d": ((), lambda x: x.unsqueeze(0), lambda a: a.reshape(1)),
    "expand": ((1, 3), lambda x: x.expand(2, 3), lambda a: np.broadcast_to(a, (2, 3))),
    "expand_minus1": (
        (3, 1),
        lambda x: x.expand(2, -1, 4),
        lambda a: np.broadcast_to(a, (2, 3, 4)),
    ),
    "broadcast_to": ((3,), lambda x: x.broadcast_to((2, 3)), lambda a: np.broadcast_to(a, (2, 3))),
    "expand_0d": ((), lambda x: x.expand(2, 2), lambda a: np.broadcast_to(a, (2, 2))),
    "sum_to": ((2, 3, 4), lambda x: x.sum_to((3, 1)), lambda a: a.sum(axis=(0, 2))[:, None]),
    "pad": ((2, 3), lambda x: x.pad(((1, 0), (0, 2))), lambda a: np.pad(a, ((1, 0), (0, 2)))),
    "pad_value": (
        (2, 3),
        lambda x: x.pad(((1, 1), (1, 1)), value=-1.0),
        lambda a: np.pad(a, 1, constant_values=-1.0),
    ),
    "pad_one_pair": ((2, 3), lambda x: x.pad((1, 2)), lambda a: np.pad(a, (1, 2))),
}


@pytest.mark.parametrize("name", SHAPE_OPS)
def test_shape_op_values_and_gradcheck(name: str, rng: np.random.Generator) -> None:
    shape, op, reference = SHAPE_OPS[name]
    x = Tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)
    out = op(x)
    np.testing.assert_array_equal(out.data, reference(x.data))
    weights = Tensor(rng.standard_normal(out.shape), dtype=np.float64)
    assert gradcheck(lambda t: op(t) * weights, [x])
    out.backward(np.ones(out.shape))
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", ["reshape_minus1", "transpose_axes", "expand_minus1", "pad"])
def test_shape_op_gradgradcheck(name: str, rng: np.random.Generator) -> None:
    shape, op, _ = SHAPE_OPS[name]
    x = Tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)
    assert gradgradcheck(lambda t: op(t) ** 2, [x])


def test_expand_grad_sums_over_the_copies() -> None:
    x = Tensor([[1.0], [2.0]], requires_grad=True)
    x.expand(2, 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [[3.0], [3.0]])


def test_pad_grad_is_the_inner_slice() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x.pad(((2, 1),), value=9.0)
    np.testing.assert_array_equal(y.data, [9.0, 9.0, 1.0, 2.0, 9.0])
    (y * Tensor([1.0, 2.0, 3.0, 4.0, 5.0])).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


@pytest.mark.parametrize(
    "op",
    [
        lambda x: x.reshape(3, 2),
        lambda x: x.view(-1),
        lambda x: x.transpose(),
        lambda x: x.swapaxes(0, 1),
        lambda x: x.unsqueeze(0),
        lambda x: x.expand(4, 2, 3),
        lambda x: x[:, 1:],
    ],
    ids=["reshape", "view", "transpose", "swapaxes", "unsqueeze", "expand", "slice"],
)
def test_views_share_memory(op: Callable[[Tensor], Tensor]) -> None:
    x = Tensor(np.arange(6.0).reshape(2, 3))
    assert np.shares_memory(op(x).data, x.data)


# ----- cat and stack ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cat_values_and_gradcheck(axis: int, leaf: Callable[..., Tensor]) -> None:
    shapes = {0: [(1, 3), (2, 3), (0, 3)], 1: [(2, 1), (2, 2), (2, 0)], -1: [(2, 2), (2, 1)]}
    parts = [leaf(*s) for s in shapes[axis]]
    out = autograd.cat(parts, axis=axis)
    np.testing.assert_array_equal(out.data, np.concatenate([p.data for p in parts], axis=axis))
    weights = Tensor(np.arange(out.size, dtype=np.float64).reshape(out.shape), dtype=np.float64)
    assert gradcheck(lambda *ts: autograd.cat(ts, axis=axis) * weights, parts)
    assert gradgradcheck(lambda *ts: autograd.cat(ts, axis=axis) ** 2, parts)


def test_cat_grads_by_hand_and_inputs_without_grad() -> None:
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([3.0])  # needs no grad
    out = autograd.cat([a, b])
    np.testing.assert_array_equal(out.data, [1.0, 2.0, 3.0])
    (out * Tensor([10.0, 20.0, 30.0])).sum().backward()
    np.testing.assert_array_equal(a.grad, [10.0, 20.0])
    assert b.grad is None


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack_values_and_gradcheck(axis: int, leaf: Callable[..., Tensor]) -> None:
    parts = [leaf(2, 3), leaf(2, 3), leaf(2, 3)]
    out = autograd.stack(parts, axis=axis)
    np.testing.assert_array_equal(out.data, np.stack([p.data for p in parts], axis=axis))
    weights = Tensor(np.arange(out.size, dtype=np.float64).reshape(out.shape), dtype=np.float64)
    assert gradcheck(lambda *ts: autograd.stack(ts, axis=axis) * weights, parts)


def test_stack_of_0d_tensors(leaf: Callable[..., Tensor]) -> None:
    parts = [leaf(), leaf()]
    assert autograd.stack(parts).shape == (2,)
    assert gradcheck(lambda a, b: autograd.stack([a, b]) * Tensor([1.0, 2.0]), parts)


# ----- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda x: x.reshape(4, 2), r"reshape.*\(2, 3\).*\(4, 2\)"),
        (lambda x: x.flatten(3), r"flatten.*\(2, 3\)"),
        (lambda x: x.transpose(0, 0), r"transpose.*\(0, 0\).*\(2, 3\)"),
        (lambda x: x.permute(0, 1, 2), r"transpose.*\(2, 3\)"),
        (lambda x: x.transpose(0, 5), r"transpose.*\(0, 5\).*\(2, 3\)"),
        (lambda x: x.swapaxes(0, 2), r"swapaxes.*\(0, 2\).*\(2, 3\)"),
        (lambda x: x.squeeze(0), r"squeeze.*axis 0.*\(2, 3\)"),
        (lambda x: x.unsqueeze(3), r"unsqueeze.*axis 3.*\(2, 3\)"),
        (lambda x: x.expand(3, 3), r"broadcast_to.*\(2, 3\).*\(3, 3\)"),
        (lambda x: x.sum_to((4,)), r"sum_to.*\(2, 3\).*\(4,\)"),
        (lambda x: x.pad(((1, 1), (1, 1), (1, 1))), r"pad.*\(2, 3\)"),
        (lambda x: x.pad(((0, -1), (0, 0))), r"pad.*negative"),
        (lambda x: autograd.cat([x, autograd.ones(2, 2)]), r"cat.*\(2, 3\).*\(2, 2\).*axis 0"),
        (lambda x: autograd.cat([x], axis=2), r"cat.*axis 2"),
        (lambda x: autograd.stack([x, autograd.ones(3, 2)]), r"stack.*\(2, 3\).*\(3, 2\)"),
        (lambda x: autograd.cat([]), r"cat.*at least one"),
        (lambda x: autograd.stack([]), r"stack.*at least one"),
    ],
)
def test_shape_errors_name_op_and_shapes(call: Callable, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call(autograd.ones(2, 3))


# ----- split and chunk -------------------------------------------------------------------------

# (shape, call, axis, expected sizes along the axis)
SPLITS = {
    "size_2_of_5": ((5, 3), lambda x: x.split(2), 0, [2, 2, 1]),
    "size_divides": ((6, 2), lambda x: x.split(3), 0, [3, 3]),
    "size_above_length": ((3, 2), lambda x: x.split(4), 0, [3]),
    "sections": ((5, 3), lambda x: x.split([1, 3, 1]), 0, [1, 3, 1]),
    "sections_with_empty": ((5, 3), lambda x: x.split([2, 0, 3]), 0, [2, 0, 3]),
    "axis_1": ((2, 5, 2), lambda x: x.split(2, axis=1), 1, [2, 2, 1]),
    "axis_neg": ((2, 3, 4), lambda x: x.split((3, 1), axis=-1), 2, [3, 1]),
    "chunk_3_of_5": ((5, 2), lambda x: x.chunk(3), 0, [2, 2, 1]),
    "chunk_4_of_6": ((6, 2), lambda x: x.chunk(4), 0, [2, 2, 2]),  # 3 pieces: fewer than 4
    "chunk_6_of_5": ((5,), lambda x: x.chunk(6), 0, [1, 1, 1, 1, 1]),
    "chunk_2_axis_1": ((3, 4), lambda x: x.chunk(2, axis=1), 1, [2, 2]),
    "chunk_1": ((3, 4), lambda x: x.chunk(1, axis=-1), 1, [4]),
}


@pytest.mark.parametrize("name", SPLITS)
def test_split_and_chunk_pieces_are_views(name: str, leaf: Callable[..., Tensor]) -> None:
    shape, call, axis, sizes = SPLITS[name]
    x = leaf(*shape)
    pieces = call(x)
    assert isinstance(pieces, tuple)
    assert [p.shape[axis] for p in pieces] == sizes
    bounds = np.cumsum([0, *sizes])
    for p, lo, hi in zip(pieces, bounds[:-1], bounds[1:], strict=True):
        np.testing.assert_array_equal(p.data, np.take(x.data, np.arange(lo, hi), axis=axis))
        assert p.size == 0 or np.shares_memory(p.data, x.data)


@pytest.mark.parametrize("name", SPLITS)
def test_split_and_chunk_gradients(name: str, leaf: Callable[..., Tensor]) -> None:
    shape, call, axis, _ = SPLITS[name]
    x = leaf(*shape)

    def weighted(t: Tensor) -> Tensor:  # each piece its own weight: a gradient in the wrong
        return sum(((p * p) * float(k + 1)).sum() for k, p in enumerate(call(t)))  # place shows

    assert gradcheck(weighted, [x])
    assert gradgradcheck(weighted, [x])


def test_split_gradient_of_one_piece_by_hand() -> None:
    x = Tensor(np.arange(10.0).reshape(5, 2), requires_grad=True, dtype=np.float64)
    _, middle, _ = x.split([1, 3, 1])
    (middle * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0], [2, 2], [2, 2], [2, 2], [0, 0]])
    (g,) = autograd.grad(x.chunk(2, axis=1)[1].sum(), x)
    np.testing.assert_array_equal(g.data, [[0, 1]] * 5)


def test_split_and_chunk_of_an_empty_axis() -> None:
    x = autograd.zeros(0, 3)
    assert [p.shape for p in x.split(2)] == [(0, 3)]  # as PyTorch: one empty piece
    assert [p.shape for p in x.split(0)] == [(0, 3)]
    assert [p.shape for p in x.chunk(3)] == [(0, 3)] * 3  # as PyTorch: `chunks` empty pieces


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda x: x.split([2, 2]),
            r"split: sections \[2, 2\] .*sum to 5.*axis 0 of shape \(5, 3\)",
        ),
        (lambda x: x.split([6, -1]), r"split: sections \[6, -1\] must be non-negative"),
        (lambda x: x.split(0), r"split: split_size must be positive, got 0.*\(5, 3\)"),
        (lambda x: x.split(-2), r"split: split_size must be positive, got -2"),
        (lambda x: x.split(2, axis=2), r"split: axis 2 is out of range for shape \(5, 3\)"),
        (lambda x: x.chunk(0), r"chunk: chunks must be positive, got 0.*\(5, 3\)"),
        (lambda x: x.chunk(2, axis=-3), r"chunk: axis -3 is out of range for shape \(5, 3\)"),
    ],
)
def test_split_and_chunk_errors(call: Callable, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call(autograd.ones(5, 3))
