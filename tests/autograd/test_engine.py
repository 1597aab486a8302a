"""The engine: backward over graphs (diamonds, reuse, long chains), accumulation, memory release,
`grad` and `create_graph`, grad modes, `once_differentiable`, and gradcheck's own failures."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck
from autograd.tensor import ReleasedTensor


def saved_arrays(t: Tensor) -> list[np.ndarray]:
    """The ndarrays that `t`'s backward closure holds on to."""
    cells = t._backward.__closure__ or ()
    return [c.cell_contents for c in cells if isinstance(c.cell_contents, np.ndarray)]


# ----- graphs with hand-derived gradients ------------------------------------------------------


def test_diamond_reuse_graph() -> None:
    a = Tensor([3.0, -1.0], requires_grad=True)
    b = a + a  # 2a
    c = b * b  # 4a^2, dc/da = 8a
    c.backward(np.ones(2))
    np.testing.assert_array_equal(a.grad, [24.0, -8.0])
    assert b.grad is None and c.grad is None  # non-leaves keep no grad


def test_diamond_with_two_branches() -> None:
    a = Tensor(2.0, requires_grad=True)
    left, right = a * 3.0, a.exp()
    out = left * right  # 3a e^a, d/da = 3 e^a (1 + a)
    out.backward()
    np.testing.assert_allclose(a.grad, 3 * np.exp(2.0) * 3, rtol=1e-6)


def test_same_tensor_as_both_operands() -> None:
    x = Tensor([1.0, -2.0], requires_grad=True)
    (x * x * x).sum().backward()  # 3x^2
    np.testing.assert_array_equal(x.grad, [3.0, 12.0])


def test_leaf_grads_never_alias_each_other_or_the_caller() -> None:
    a, b = Tensor([1.0, 2.0], requires_grad=True), Tensor([3.0, 4.0], requires_grad=True)
    seed = np.ones(2, dtype=np.float32)
    (a + b).backward(seed)  # add hands the same gradient to both parents
    assert a.grad is not b.grad and a.grad is not seed
    a.grad += 1.0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    np.testing.assert_array_equal(seed, [1.0, 1.0])
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.reshape(2).backward(seed)  # the gradient is a view of the seed
    x.grad *= 5.0
    np.testing.assert_array_equal(seed, [1.0, 1.0])


def test_broadcast_operand_grads_are_summed_back() -> None:
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    c = Tensor([[2.0], [3.0]], requires_grad=True)
    s = Tensor(4.0, requires_grad=True)
    (a * b * c * s).sum().backward()
    np.testing.assert_array_equal(b.grad, [20.0, 20.0, 20.0])  # sum over rows of c*s
    np.testing.assert_array_equal(c.grad, [[24.0], [24.0]])  # sum(b) * s
    assert s.grad.shape == () and s.grad == 6.0 * 5.0
    np.testing.assert_array_equal(a.grad, [[8, 16, 24], [12, 24, 36]])


def test_backward_accumulates_in_place_across_two_calls() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad
    np.testing.assert_array_equal(first, [2.0, 4.0])
    y.backward()
    assert x.grad is first  # same ndarray, accumulated with +=
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_existing_grad_is_accumulated_into() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.grad = np.array([10.0, 10.0], dtype=np.float32)
    buffer = x.grad
    (x * 3).sum().backward()
    assert x.grad is buffer
    np.testing.assert_array_equal(x.grad, [13.0, 13.0])


def test_long_chain_has_no_recursion_limit() -> None:
    a = Tensor(2.0, requires_grad=True)
    z = a
    for _ in range(100_000):
        z = -z
    z.backward()
    assert a.grad == 1.0  # (-1) ** 100000


def test_backward_of_a_leaf() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.backward(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


def test_backward_with_explicit_grad_array_or_tensor() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 40.0])
    x.zero_grad()
    (x * x).backward(Tensor([0.5, 0.5]))
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])
    assert x.grad.dtype == np.float32


def test_existing_grad_of_the_wrong_shape_raises() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    x.grad = np.zeros(3, dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"\.grad of shape \(3,\).*\(2,\)"):
        (x * 2).sum().backward()


def test_one_element_output_of_any_shape_defaults_to_one() -> None:
    x = Tensor([[2.0]], requires_grad=True)
    (x * 3).backward()
    np.testing.assert_array_equal(x.grad, [[3.0]])


# ----- errors of backward ----------------------------------------------------------------------


def test_backward_on_non_scalar_without_grad_raises() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"one-element.*grad=.*\(2,\)"):
        (x * 2).backward()


def test_backward_with_grad_of_wrong_shape_raises() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_tensor_without_graph_raises() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).sum().backward()


def test_second_backward_through_freed_graph_raises() -> None:
    x = Tensor([1.0, -2.0], requires_grad=True)
    y = x.abs().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="freed") as info:
        y.backward()
    assert "retain_graph" in str(info.value)
    np.testing.assert_array_equal(x.grad, [1.0, -1.0])  # the failed call added nothing


def test_freed_graph_keeps_its_structure() -> None:
    x = Tensor([1.0], requires_grad=True)
    h = x.exp()
    y = h.sum()
    y.backward()
    # y's parent is now a data-free stand-in for h; h itself, which we hold, keeps its data
    (released,) = y._parents
    assert isinstance(released, ReleasedTensor) and released is not h
    assert (released.op, released.shape, released.dtype) == ("exp", (1,), np.float32)
    assert repr(released) == "tensor(<released after backward>, shape=(1,), op=exp)"
    assert released._parents == (x,) and h._parents == (x,)
    assert released.data.strides == (0,) and not released.data.flags.writeable
    np.testing.assert_allclose(h.data, [np.e], rtol=1e-6)
    assert (y.op, h.op) == ("sum", "exp")
    assert h._backward is None  # exp saved its output: freed
    assert y._backward is not None  # sum saved nothing: a second backward works


# ----- memory released after backward ----------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.abs(),  # saves np.sign(x)
        lambda x: x.max(axis=0),  # saves the tie weights
    ],
    ids=["abs_sign", "max_tie_weights"],
)
def test_saved_arrays_are_released_after_backward(make) -> None:  # noqa: ANN001
    x = Tensor([[1.0, -2.0], [1.0, 3.0]], requires_grad=True)
    y = make(x)
    (saved,) = saved_arrays(y)
    ref = weakref.ref(saved)
    del saved
    y.sum().backward(retain_graph=True)
    gc.collect()
    assert ref() is not None  # retained: still there for a second backward
    y.sum().backward()
    gc.collect()
    assert ref() is None


def test_no_grad_results_hold_no_reference_to_inputs() -> None:
    x = Tensor([1.0], requires_grad=True)
    with autograd.no_grad():
        y = x * 2
    ref = weakref.ref(x)
    del x
    gc.collect()
    assert ref() is None and y._parents == ()


# ----- grad modes ------------------------------------------------------------------------------


def test_no_grad_context() -> None:
    x = Tensor([1.0], requires_grad=True)
    assert autograd.is_grad_enabled()
    with autograd.no_grad():
        assert not autograd.is_grad_enabled()
        y = (x * 2).exp()
    assert autograd.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y._parents == ()
    np.testing.assert_allclose(y.data, [np.exp(2.0)], rtol=1e-6)


def test_no_grad_decorator() -> None:
    @autograd.no_grad()
    def double(t: Tensor) -> Tensor:
        assert not autograd.is_grad_enabled()
        return t * 2

    x = Tensor([1.0], requires_grad=True)
    y = double(x)
    assert not y.requires_grad and y._parents == ()
    assert autograd.is_grad_enabled()
    assert (x * 2).requires_grad


def test_no_grad_restores_mode_after_an_exception() -> None:
    with pytest.raises(KeyError), autograd.no_grad():
        raise KeyError("boom")
    assert autograd.is_grad_enabled()


def test_enable_grad_inside_no_grad() -> None:
    x = Tensor([1.0], requires_grad=True)
    with autograd.no_grad():
        with autograd.enable_grad():
            assert autograd.is_grad_enabled()
            y = x * 3
        assert not autograd.is_grad_enabled()
        z = x * 3
    assert y.requires_grad and y._parents[0] is x
    assert not z.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0])


def test_set_grad_enabled() -> None:
    autograd.set_grad_enabled(False)
    assert not (Tensor([1.0], requires_grad=True) * 2).requires_grad
    autograd.set_grad_enabled(True)
    assert (Tensor([1.0], requires_grad=True) * 2).requires_grad


def test_ops_on_tensors_without_grad_record_nothing() -> None:
    y = Tensor([1.0]) * Tensor([2.0])
    assert not y.requires_grad and y._parents == ()


# ----- retain_grads and scope ------------------------------------------------------------------


def test_retain_grads_context_keeps_intermediate_grads() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with autograd.retain_grads():
        h = x * 2
        k = h.exp()
    outside = k.sum()
    outside.backward()
    np.testing.assert_allclose(k.grad, [1.0, 1.0])
    np.testing.assert_allclose(h.grad, np.exp([2.0, 4.0]), rtol=1e-6)
    assert outside.grad is None  # made outside the block


def test_scope_is_recorded_on_results() -> None:
    x = Tensor([1.0], requires_grad=True)
    with autograd.scope(("", "Net")), autograd.scope(("fc", "Linear")):
        y = x * 2
    z = y + 1
    assert y._scope == (("", "Net"), ("fc", "Linear"))
    assert z._scope == ()


# ----- autograd.grad ---------------------------------------------------------------------------


def test_grad_returns_a_tuple_and_leaves_dot_grad_alone() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    w = Tensor([3.0, 4.0], requires_grad=True)
    w.grad = np.array([7.0, 7.0], dtype=np.float32)
    y = x * 3
    result = autograd.grad((y * w).sum(), [x, y, w])
    assert isinstance(result, tuple) and len(result) == 3
    gx, gy, gw = result
    np.testing.assert_array_equal(gx.data, [9.0, 12.0])
    np.testing.assert_array_equal(gy.data, [3.0, 4.0])
    np.testing.assert_array_equal(gw.data, [3.0, 6.0])
    assert x.grad is None and y.grad is None
    np.testing.assert_array_equal(w.grad, [7.0, 7.0])
    assert not gx.requires_grad  # no create_graph: plain values


def test_grad_of_a_single_input_and_grad_outputs() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    (g,) = autograd.grad(x * x, x, grad_outputs=Tensor([1.0, 10.0]))
    np.testing.assert_array_equal(g.data, [2.0, 40.0])
    (g,) = autograd.grad([x.sum(), (x * x).sum()], [x])  # several outputs: summed
    np.testing.assert_array_equal(g.data, [3.0, 5.0])


def test_grad_unused_input() -> None:
    x = Tensor([1.0], requires_grad=True)
    unused = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"input 1.*\(2,\).*allow_unused"):
        autograd.grad((x * 2).sum(), [x, unused])
    gx, gu = autograd.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gu is None
    np.testing.assert_array_equal(gx.data, [2.0])


def test_grad_input_without_grad_raises() -> None:
    x = Tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="input 1.*does not require grad"):
        autograd.grad((x * 2).sum(), [x, Tensor([1.0])])


def test_grad_frees_the_graph_unless_retained() -> None:
    x = Tensor([1.0], requires_grad=True)
    y = (x * x).sum()
    autograd.grad(y, x, retain_graph=True)
    (g,) = autograd.grad(y, x)
    np.testing.assert_array_equal(g.data, [2.0])
    with pytest.raises(RuntimeError, match="freed"):
        autograd.grad(y, x)


def test_create_graph_second_derivative() -> None:
    x = Tensor([2.0, -1.0], requires_grad=True)
    (g,) = autograd.grad((x**3).sum(), x, create_graph=True)
    assert g.requires_grad
    np.testing.assert_array_equal(g.data, [12.0, 3.0])  # 3x^2
    (h,) = autograd.grad(g.sum(), x, retain_graph=True)
    np.testing.assert_array_equal(h.data, [12.0, -6.0])  # 6x
    g.sum().backward()  # also through backward(): into .grad
    np.testing.assert_array_equal(x.grad, [12.0, -6.0])


def test_hessian_vector_product_matches_finite_differences(rng: np.random.Generator) -> None:
    w = Tensor(rng.standard_normal((3, 4)), dtype=np.float64)
    v = rng.standard_normal(4)

    def loss(x: Tensor) -> Tensor:
        return ((w @ x).tanh() ** 2).sum() + (x * x * x).sum()

    def gradient(x_data: np.ndarray) -> np.ndarray:
        x = Tensor(x_data, requires_grad=True, dtype=np.float64)
        return autograd.grad(loss(x), x)[0].data

    x = Tensor(rng.standard_normal(4), requires_grad=True, dtype=np.float64)
    (g,) = autograd.grad(loss(x), x, create_graph=True)
    (hvp,) = autograd.grad((g * Tensor(v, dtype=np.float64)).sum(), x)
    eps = 1e-6
    numeric = (gradient(x.data + eps * v) - gradient(x.data - eps * v)) / (2 * eps)
    np.testing.assert_allclose(hvp.data, numeric, rtol=1e-6, atol=1e-8)


def _fused_square(x: Tensor) -> Tensor:
    """x**2 as a fused kernel whose backward is numpy only."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        return autograd.once_differentiable("square_fused", (x,), (2 * g.data * x.data,))

    return Tensor._from_op(x.data**2, (x,), "square_fused", backward)


def test_once_differentiable_first_derivative() -> None:
    x = Tensor([1.0, -3.0], requires_grad=True)
    _fused_square(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, -6.0])
    (g,) = autograd.grad(_fused_square(x).sum(), x, create_graph=True)
    np.testing.assert_array_equal(g.data, [2.0, -6.0])


def test_once_differentiable_refuses_double_backward() -> None:
    x = Tensor([1.0, -3.0], requires_grad=True)
    (g,) = autograd.grad(_fused_square(x).sum(), x, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="square_fused.*double backward"):
        g.sum().backward()
    with pytest.raises(RuntimeError, match="square_fused"):
        autograd.grad((g * g).sum(), x)


# ----- gradcheck and gradgradcheck themselves --------------------------------------------------


def _op_with_wrong_grad(x: Tensor) -> Tensor:
    """x**2 whose backward is wrong at index (1, 0) only."""
    wrong = np.ones(x.shape)
    wrong[1, 0] = 1.5

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * 2.0 * x * wrong,)

    return Tensor._from_op(x.data**2, (x,), "wrong_square", backward)


def test_gradcheck_passes_and_returns_true(leaf: Callable[..., Tensor]) -> None:
    assert gradcheck(lambda a, b: (a * b).exp(), [leaf(2, 2), leaf(2)]) is True


def test_gradcheck_names_input_index_and_values() -> None:
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    correct = Tensor([1.0, 1.0], requires_grad=True)
    with pytest.raises(AssertionError) as info:
        gradcheck(lambda c, a: c.sum() + _op_with_wrong_grad(a), [correct, x])
    message = str(info.value)
    assert "input 1" in message and "(1, 0)" in message
    assert "analytic 9" in message and "numeric 6" in message  # 1.5 * 2 * 3 vs 2 * 3


def test_gradcheck_input_float32_is_checked_in_float64() -> None:
    x = Tensor([0.3, 0.7], requires_grad=True)  # float32 as given
    assert gradcheck(lambda a: (a * 1e3).sin(), [x])
    assert x.dtype == np.float32 and x.grad is None  # the caller's tensor is untouched


def test_gradcheck_needs_an_input_that_requires_grad() -> None:
    with pytest.raises(ValueError, match="requires grad"):
        gradcheck(lambda a: a * 2, [Tensor([1.0])])


def test_gradcheck_catches_an_op_that_records_no_graph() -> None:
    def forgetful(x: Tensor) -> Tensor:
        return Tensor(x.data * 2)  # the value is right, the graph is missing

    with pytest.raises(AssertionError, match="input 0 at index"):
        gradcheck(forgetful, [Tensor([1.0], requires_grad=True)])


def test_gradgradcheck_catches_a_constant_first_derivative() -> None:
    def sin_with_frozen_derivative(x: Tensor) -> Tensor:
        def backward(g: Tensor, out: Tensor) -> tuple:
            return (g * np.cos(x.data),)  # right value, but not differentiable again

        return Tensor._from_op(np.sin(x.data), (x,), "sin_frozen", backward)

    x = Tensor([0.5, 1.0, 2.0], requires_grad=True, dtype=np.float64)
    assert gradcheck(sin_with_frozen_derivative, [x])
    assert gradgradcheck(lambda t: t.sin(), [x])
    with pytest.raises(AssertionError, match="input 0"):
        gradgradcheck(sin_with_frozen_derivative, [x])


# ----- topological_order ---------------------------------------------------------------------
def test_topological_order_puts_parents_first_and_skips_what_needs_no_grad() -> None:
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    c = Tensor(np.full(2, 3.0, np.float32))  # a constant: no grad
    b = a * 2.0
    s = b + a
    out = s * c
    order = autograd.topological_order([out])
    assert [id(t) for t in order] == [id(a), id(b), id(s), id(out)]  # c left out


def test_topological_order_follow_includes_tensors_without_grad() -> None:
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    c = Tensor(np.full(2, 3.0, np.float32))
    out = a * c
    everything = autograd.topological_order([out], follow=lambda t: True)
    assert [id(t) for t in everything] == [id(a), id(c), id(out)]
    without_a = autograd.topological_order([out], follow=lambda t: t is not a)
    assert [id(t) for t in without_a] == [id(c), id(out)]


def test_topological_order_walks_a_deep_chain_without_recursion() -> None:
    x = Tensor(np.ones(1, np.float32), requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y + 1.0
    order = autograd.topological_order([y])
    assert len(order) == 20_001 and order[0] is x and order[-1] is y


# ----- closures that break the contract: the engine names the op and the shapes ----------
def test_a_closure_returning_too_few_gradients_is_named() -> None:
    a = Tensor(np.ones(2, np.float32), requires_grad=True)
    b = Tensor(np.ones(2, np.float32), requires_grad=True)
    out = Tensor._from_op(a.data + b.data, (a, b), "bad_add", lambda g, out: (g,))
    with pytest.raises(RuntimeError, match="bad_add: backward returned 1 gradients for 2 inputs"):
        out.sum().backward()


def test_a_closure_returning_a_gradient_of_the_wrong_shape_is_named() -> None:
    a = Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    wrong = Tensor(np.ones((4,), np.float32))
    out = Tensor._from_op(a.data * 2, (a,), "bad_double", lambda g, out: (wrong,))
    with pytest.raises(RuntimeError, match=r"bad_double: .*shape \(4,\) .*shape \(2, 3\)"):
        out.sum().backward()


def test_a_closure_gradient_in_another_dtype_is_cast_to_the_input_dtype() -> None:
    a = Tensor(np.ones(3, np.float32), requires_grad=True)
    out = Tensor._from_op(
        a.data * 2, (a,), "double64", lambda g, out: (Tensor(np.full(3, 2.0), dtype=np.float64),)
    )
    out.sum().backward()
    assert a.grad.dtype == np.float32 and np.array_equal(a.grad, np.full(3, 2.0, np.float32))


def test_gradcheck_perturbs_non_contiguous_inputs() -> None:
    # a transposed leaf: reshape(-1) of it is a copy, so perturbing that would test nothing
    class WrongSquare(autograd.Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            return x * x

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return g  # should be 2 x g

    x = Tensor(np.arange(1.0, 7.0).reshape(2, 3).T, requires_grad=True, dtype=np.float64)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda x: x * x, [x])
    with pytest.raises(AssertionError, match="analytic"):
        gradcheck(WrongSquare.apply, [x])


# ----- gradients that arrive in pieces (split, chunk, slicing) --------------------------------
def test_pieces_of_a_split_add_into_one_buffer() -> None:
    rng = np.random.default_rng(11)
    x = Tensor(rng.standard_normal((4, 9)), requires_grad=True)
    a, b, c = x.split(3, axis=1)
    w = rng.standard_normal((4, 3))
    loss = (a * w).sum() + (c * c).sum() + (b[1:3] * 2.0).sum()  # (b also sliced again)
    loss.backward()
    expected = np.zeros((4, 9), np.float32)
    expected[:, :3] = w
    expected[:, 6:] = 2 * x.data[:, 6:]
    expected[1:3, 3:6] = 2.0
    np.testing.assert_allclose(x.grad, expected, rtol=1e-6)


def test_overlapping_slices_and_repeated_rows_sum() -> None:
    x = Tensor(np.arange(6.0), requires_grad=True)
    loss = x[:4].sum() + (x[2:] * 3.0).sum() + x[np.array([0, 0, 5])].sum()
    loss.backward()
    np.testing.assert_array_equal(x.grad, [3.0, 1.0, 4.0, 4.0, 3.0, 4.0])


def test_a_hook_sees_the_whole_gradient_of_a_split_input() -> None:
    x = Tensor(np.ones((2, 4)), requires_grad=True)
    h = x * 1.0
    seen = []
    h.register_hook(lambda g: seen.append(g.data.copy()))
    first, second = h.chunk(2, axis=1)
    (first.sum() + 10.0 * second.sum()).backward()
    np.testing.assert_array_equal(seen[0], [[1, 1, 10, 10], [1, 1, 10, 10]])
    np.testing.assert_array_equal(x.grad, seen[0])


def test_pieces_under_create_graph_are_differentiable() -> None:
    x = Tensor(np.array([1.0, 2.0, 3.0, 4.0]), requires_grad=True, dtype=np.float64)
    a, b = x.split(2)
    y = (a**3).sum() + (b**2).sum()
    (gx,) = autograd.grad(y, [x], create_graph=True)
    np.testing.assert_array_equal(gx.data, [3.0, 12.0, 6.0, 8.0])
    (ggx,) = autograd.grad(gx.sum(), [x])
    np.testing.assert_array_equal(ggx.data, [6.0, 12.0, 2.0, 2.0])
    assert autograd.gradgradcheck(lambda t: t.split(2)[0] * t.split(2)[1], [x])
