"""Property tests over random shapes: binary ops on random broadcast pairs, reductions on random
axes, reshapes and permutations. Gradients always come back shaped like their inputs, with the
values the chain rule gives (computed here with numpy)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autograd
from autograd import Tensor, gradcheck

SETTINGS = settings(max_examples=25, deadline=None, database=None)  # nothing written to disk

broadcast_pairs = hnp.mutually_broadcastable_shapes(
    num_shapes=2, min_dims=0, max_dims=3, max_side=3
)


def _sum_to(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """numpy reference for unbroadcasting: sum the broadcast axes away."""
    lead = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True)


# name -> (op, d out/d a, d out/d b), derivatives in numpy on the broadcast values
BINARY: dict[str, tuple[Callable, Callable, Callable]] = {
    "add": (lambda a, b: a + b, lambda a, b: np.ones_like(a * b), lambda a, b: np.ones_like(a * b)),
    "sub": (
        lambda a, b: a - b,
        lambda a, b: np.ones_like(a * b),
        lambda a, b: -np.ones_like(a * b),
    ),
    "mul": (lambda a, b: a * b, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b),
    "div": (lambda a, b: a / b, lambda a, b: 1 / b + 0 * a, lambda a, b: -a / b**2),
    "maximum": (
        autograd.maximum,
        lambda a, b: (a > b) + 0.0 * b,
        lambda a, b: (a < b) + 0.0 * a,
    ),
}


@SETTINGS
@given(
    shapes=broadcast_pairs,
    name=st.sampled_from(sorted(BINARY)),
    seed=st.integers(0, 2**16),
)
def test_binary_ops_on_random_broadcast_pairs(
    shapes: hnp.BroadcastableShapes, name: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape_a, shape_b = shapes.input_shapes
    op, da, db = BINARY[name]
    a_data = rng.standard_normal(shape_a)
    b_data = rng.uniform(0.5, 2.0, shape_b) * rng.choice([-1.0, 1.0], shape_b)  # away from 0
    a = Tensor(a_data, requires_grad=True, dtype=np.float64)
    b = Tensor(b_data, requires_grad=True, dtype=np.float64)
    out = op(a, b)
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(
        out.data, op(a_data, b_data) if name != "maximum" else np.maximum(a_data, b_data)
    )
    seed_grad = rng.standard_normal(out.shape)
    out.backward(seed_grad)
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    assert a.grad.dtype == b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad, _sum_to(seed_grad * da(a_data, b_data), shape_a), atol=1e-12)
    np.testing.assert_allclose(b.grad, _sum_to(seed_grad * db(a_data, b_data), shape_b), atol=1e-12)


@SETTINGS
@given(shapes=broadcast_pairs, seed=st.integers(0, 2**16))
def test_gradcheck_on_random_broadcast_pairs(shapes: hnp.BroadcastableShapes, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = (
        Tensor(rng.standard_normal(s), requires_grad=True, dtype=np.float64)
        for s in shapes.input_shapes
    )
    assert gradcheck(lambda x, y: (x * y).tanh() + x / (1 + y * y) - y, [a, b])


@SETTINGS
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=3),
    data=st.data(),
    name=st.sampled_from(["sum", "mean", "max", "min", "logsumexp", "var"]),
    keepdims=st.booleans(),
)
def test_reductions_on_random_axes(
    shape: tuple[int, ...], data: st.DataObject, name: str, keepdims: bool
) -> None:
    ndim = len(shape)
    axis = data.draw(
        st.none()
        | hnp.valid_tuple_axes(ndim)
        | (st.integers(-ndim, ndim - 1) if ndim else st.none())
    )
    rng = np.random.default_rng(len(shape))
    x = Tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)
    out = getattr(x, name)(axis=axis, keepdims=keepdims)
    reference = getattr(np, name if name != "logsumexp" else "sum")(
        x.data if name != "logsumexp" else np.exp(x.data), axis=axis, keepdims=keepdims
    )
    if name == "logsumexp":
        reference = np.log(reference)
    assert out.shape == np.shape(reference)
    np.testing.assert_allclose(out.data, reference, rtol=1e-12)
    out.backward(np.ones(out.shape))
    assert x.grad.shape == shape
    if name == "sum":
        np.testing.assert_array_equal(x.grad, np.ones(shape))
    if name == "mean":
        np.testing.assert_allclose(x.grad * x.size / max(out.size, 1), np.ones(shape))


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=3), data=st.data())
def test_permute_and_reshape_round_trip(shape: tuple[int, ...], data: st.DataObject) -> None:
    perm = data.draw(st.permutations(range(len(shape))))
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(shape), requires_grad=True, dtype=np.float64)
    y = x.permute(*perm) if perm else x.permute()
    np.testing.assert_array_equal(y.data, np.transpose(x.data, perm))
    flat = y.reshape(-1)
    weights = rng.standard_normal(flat.shape)
    (flat * Tensor(weights, dtype=np.float64)).sum().backward()
    assert x.grad.shape == shape
    expected = np.transpose(weights.reshape(y.shape), np.argsort(perm))  # undo the permutation
    np.testing.assert_array_equal(x.grad, expected)
