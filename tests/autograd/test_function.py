"""autograd.Function: user-defined ops with forward(ctx, ...) and backward(ctx, ...)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import autograd
from autograd import Function, Tensor, gradcheck, gradgradcheck
from autograd.function import once_differentiable


class Exp(Function):
    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_y):  # noqa: ANN001, ANN205
        (y,) = ctx.saved_tensors
        return grad_y * y


class LogSumExp(Function):
    """Stable log(sum(exp(x))) along the last axis, saving its input and output."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        peak = x.max(axis=-1, keepdims=True)
        out = (((x - peak).exp().sum(axis=-1, keepdims=True)).log() + peak).squeeze(-1)
        # the output itself, not an intermediate: saved outputs come back as the recorded
        # output, a function of x, so the double backward sees through them (as PyTorch)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        x, out = ctx.saved_tensors
        return g.unsqueeze(-1) * (x - out.unsqueeze(-1)).exp()


class RoundSTE(Function):
    """Rounding with a straight-through gradient: forward rounds, backward passes g on."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        return Tensor(np.round(x.data), dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        return g


class ScaleShift(Function):
    """`a * x + shift` with a non-Tensor `shift`; also returns `x - a` (two outputs)."""

    @staticmethod
    def forward(ctx, x, a, shift):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x, a)
        ctx.shift = shift
        return a * x + shift, x - a

    @staticmethod
    def backward(ctx, g_first, g_second):  # noqa: ANN001, ANN205
        x, a = ctx.saved_tensors
        return g_first * a + g_second, (g_first * x - g_second).sum(keepdims=True), None


def f64(*values: float | list) -> Tensor:
    return Tensor(np.array(values), requires_grad=True, dtype=np.float64)


def test_exp_values_and_gradient_by_hand() -> None:
    x = f64(0.0, 1.0, -2.0)
    y = Exp.apply(x)
    np.testing.assert_allclose(y.data, np.exp([0.0, 1.0, -2.0]))
    assert y.op == "Exp" and y.requires_grad and not y.is_leaf
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.exp([0.0, 1.0, -2.0]))


def test_user_functions_pass_gradcheck_and_gradgradcheck(rng: np.random.Generator) -> None:
    x = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    assert gradcheck(Exp.apply, [x])
    assert gradgradcheck(Exp.apply, [x])  # saved output resolves to the recorded one
    assert gradcheck(LogSumExp.apply, [x])
    assert gradgradcheck(LogSumExp.apply, [x])


def test_logsumexp_is_stable_and_matches_hand_values() -> None:
    x = Tensor([[1000.0, 1000.0], [-1000.0, 0.0]], requires_grad=True, dtype=np.float64)
    out = LogSumExp.apply(x)
    np.testing.assert_allclose(out.data, [1000.0 + math.log(2.0), 0.0], atol=1e-12)
    out.sum().backward()
    np.testing.assert_allclose(x.grad, [[0.5, 0.5], [0.0, 1.0]], atol=1e-12)


def test_straight_through_estimator() -> None:
    x = f64(0.2, 0.7, -1.6)
    y = RoundSTE.apply(x)
    np.testing.assert_array_equal(y.data, [0.0, 1.0, -2.0])
    (y * f64(1.0, 2.0, 3.0).detach()).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])  # the gradient passes straight on


def test_several_outputs_non_tensor_argument_and_none_gradient() -> None:
    x, a = f64(1.0, 2.0), f64(3.0)
    first, second = ScaleShift.apply(x, a, 10.0)
    np.testing.assert_allclose(first.data, [13.0, 16.0])
    np.testing.assert_allclose(second.data, [-2.0, -1.0])
    (first.sum() * 2.0 + (second * f64(1.0, 5.0).detach()).sum()).backward()
    # d/dx = 2a + [1, 5]; d/da = 2 * sum(x) - (1 + 5)
    np.testing.assert_allclose(x.grad, [7.0, 11.0])
    np.testing.assert_allclose(a.grad, [2.0 * 3.0 - 6.0])


def test_several_outputs_gradcheck_and_one_unused_output(rng: np.random.Generator) -> None:
    x = Tensor(rng.standard_normal(4), requires_grad=True, dtype=np.float64)
    a = Tensor(rng.standard_normal(1), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda x, a: ScaleShift.apply(x, a, 1.5)[0] ** 2, [x, a])
    assert gradcheck(lambda x, a: ScaleShift.apply(x, a, 1.5)[1].exp(), [x, a])
    assert gradgradcheck(lambda x, a: ScaleShift.apply(x, a, 1.5)[0] ** 2, [x, a])


def test_ctx_needs_input_grad_and_attributes() -> None:
    seen = {}

    class Probe(Function):
        @staticmethod
        def forward(ctx, x, y, k):  # noqa: ANN001, ANN205
            seen["needs"] = ctx.needs_input_grad
            seen["grad_mode"] = autograd.is_grad_enabled()
            ctx.k = k
            return x * y * k

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            seen["k"] = ctx.k
            return g * ctx.k, None, None

    x, y = f64(1.0), Tensor([2.0], dtype=np.float64)
    Probe.apply(x, y, 3.0).backward()
    assert seen == {"needs": (True, False, False), "grad_mode": False, "k": 3.0}
    np.testing.assert_allclose(x.grad, [3.0])


def test_no_graph_when_nothing_requires_grad() -> None:
    x = Tensor(np.array([1.0]))
    y = Exp.apply(x)
    assert not y.requires_grad and y.is_leaf
    with autograd.no_grad():
        z = Exp.apply(f64(1.0))
    assert not z.requires_grad


def test_gradient_count_and_non_tensor_slot_errors_name_the_function() -> None:
    class TooMany(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            return x * 2

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return g, g

    class GradForNumber(Function):
        @staticmethod
        def forward(ctx, x, k):  # noqa: ANN001, ANN205
            return x * k

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return g, g

    with pytest.raises(RuntimeError, match=r"TooMany\.backward returned 2 gradient"):
        TooMany.apply(f64(1.0)).backward()
    with pytest.raises(RuntimeError, match=r"GradForNumber\.backward .*argument 1"):
        GradForNumber.apply(f64(1.0), 2.0).backward()


def test_returned_gradients_are_unbroadcast_and_shape_checked() -> None:
    class Broadcasting(Function):
        @staticmethod
        def forward(ctx, x, b):  # noqa: ANN001, ANN205
            return x + b

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return g, g  # g has x's shape (2, 3): the engine sums it back for b (3,)

    class WrongShape(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            return x * 1.0

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return Tensor(np.ones(5))

    x = Tensor(np.ones((2, 3)), requires_grad=True, dtype=np.float64)
    b = Tensor(np.ones(3), requires_grad=True, dtype=np.float64)
    Broadcasting.apply(x, b).sum().backward()
    np.testing.assert_array_equal(b.grad, [2.0, 2.0, 2.0])
    with pytest.raises(RuntimeError, match=r"WrongShape.*\(5,\).*\(2, 3\)"):
        WrongShape.apply(x).sum().backward()


def test_gradient_array_is_cast_to_the_input_dtype() -> None:
    class NumpyGrad(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            return x * 3.0

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return np.asarray(g.data, dtype=np.float64) * 3.0  # an array, float64

    x = Tensor(np.ones(2, dtype=np.float32), requires_grad=True)
    NumpyGrad.apply(x).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_once_differentiable_backward_refuses_double_backward() -> None:
    class NumpyExp(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            ctx.save_for_backward(x)
            return Tensor(np.exp(x.data), dtype=x.dtype)

        @staticmethod
        @once_differentiable
        def backward(ctx, g):  # noqa: ANN001, ANN205
            (x,) = ctx.saved_tensors
            return g.data * np.exp(x.data)

    x = f64(0.5)
    assert gradcheck(NumpyExp.apply, [x])
    (gx,) = autograd.grad(NumpyExp.apply(x), x, create_graph=True)
    np.testing.assert_allclose(gx.data, [math.exp(0.5)])
    with pytest.raises(RuntimeError, match="NumpyExp.*double backward"):
        gx.backward()


def test_drawn_under_the_class_name() -> None:
    x = f64(1.0, 2.0)
    source = autograd.draw_graph(Exp.apply(x).sum()).source
    assert ">Exp<" in source


def test_saved_tensors_freed_after_backward_and_a_second_backward_raises() -> None:
    x = f64(1.0)
    y = Exp.apply(x)
    y.backward()
    with pytest.raises(RuntimeError, match="freed"):
        y.backward()


def test_function_that_saves_nothing_backpropagates_twice() -> None:
    class Double(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            return x * 2.0

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return g * 2.0

    x = f64(1.0, 1.0)
    y = Double.apply(x).sum()
    y.backward()
    y.backward()  # saved nothing: a second backward works and accumulates, as PyTorch
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])


def test_inplace_change_of_a_saved_input_is_detected() -> None:
    x = f64(1.0, 2.0)
    a = f64(3.0)
    first, _ = ScaleShift.apply(x, a, 0.0)
    with autograd.no_grad():
        a += 1.0
    with pytest.raises(RuntimeError, match="ScaleShift.*modified by an inplace operation"):
        first.sum().backward()


def test_forward_and_save_for_backward_type_errors_name_the_function() -> None:
    class ReturnsArray(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            return x.data * 2

    class SavesArray(Function):
        @staticmethod
        def forward(ctx, x):  # noqa: ANN001, ANN205
            ctx.save_for_backward(x.data)
            return x * 2

    with pytest.raises(TypeError, match=r"ReturnsArray\.forward must return a Tensor"):
        ReturnsArray.apply(f64(1.0))
    with pytest.raises(TypeError, match="save_for_backward: expected Tensors"):
        SavesArray.apply(f64(1.0))
