"""Tensor.register_hook: watch and change gradients during backward."""

from __future__ import annotations

import numpy as np
import pytest

import autograd
from autograd import Tensor


def f64(*values: float) -> Tensor:
    return Tensor(np.array(values), requires_grad=True, dtype=np.float64)


def test_leaf_hook_sees_the_gradient_before_accumulation() -> None:
    x = f64(1.0, 2.0)
    seen = []
    x.register_hook(lambda g: seen.append((g.data.copy(), None if x.grad is None else 1)))
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(seen[0][0], [3.0, 3.0])
    assert seen[0][1] is None  # .grad was not set yet when the hook ran
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_leaf_hook_runs_once_with_the_summed_gradient() -> None:
    x = f64(2.0)
    calls = []
    x.register_hook(lambda g: calls.append(float(g.data[0])))
    (x * 3.0 + x * x).sum().backward()  # two paths: 3 + 2x = 7
    assert calls == [7.0]


def test_returned_tensor_replaces_the_gradient_from_there_on() -> None:
    x = f64(1.0, -1.0)
    h = x * 2.0  # non-leaf
    h.register_hook(lambda g: g * 10.0)
    (h * h).sum().backward()
    # d/dh = 2h = [4, -4], times 10 by the hook, then dh/dx = 2
    np.testing.assert_array_equal(x.grad, [80.0, -80.0])


def test_leaf_hook_replacing_the_gradient_changes_what_accumulates() -> None:
    w = f64(1.0, 1.0)
    w.register_hook(lambda g: g.clip(-0.5, 0.5))  # clip one tensor's gradient
    (w * Tensor([3.0, -0.25], dtype=np.float64)).sum().backward()
    np.testing.assert_array_equal(w.grad, [0.5, -0.25])
    # accumulating a second time: the hook runs again on the new gradient only
    (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad, [1.0, 0.25])


def test_hooks_run_in_registration_order_and_chain() -> None:
    x = f64(1.0)
    order = []
    x.register_hook(lambda g: order.append("first") or g + 1.0)
    x.register_hook(lambda g: order.append(("second", float(g.data[0]))))
    (x * 2.0).backward()
    assert order == ["first", ("second", 3.0)]
    np.testing.assert_array_equal(x.grad, [3.0])


def test_remove_takes_the_hook_out() -> None:
    x = f64(1.0)
    calls = []
    handle = x.register_hook(lambda g: calls.append(1))
    (x * 1.0).backward()
    handle.remove()
    handle.remove()  # harmless twice
    (x * 1.0).backward()
    assert calls == [1]


def test_hook_on_intermediate_does_not_give_it_a_grad() -> None:
    x = f64(1.0)
    h = x * 2.0
    norms = []
    h.register_hook(lambda g: norms.append(float(np.linalg.norm(g.data))))
    (h * 4.0).backward()
    assert norms == [4.0] and h.grad is None


def test_hook_sees_create_graph_gradients_as_graph_tensors() -> None:
    x = f64(3.0)
    y = x * x
    seen = []
    y.register_hook(lambda g: seen.append(g.requires_grad))
    (gx,) = autograd.grad(y * y, x, create_graph=True)  # d(x^4)/dx = 4x^3
    np.testing.assert_allclose(gx.data, [108.0])
    assert seen == [True]


def test_hook_on_grad_input_captured_by_grad() -> None:
    x = f64(1.0)
    x.register_hook(lambda g: g * 0.0)
    (gx,) = autograd.grad(x * 5.0, x)
    np.testing.assert_array_equal(gx.data, [0.0])


def test_register_hook_errors() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).register_hook(lambda g: None)
    x = f64(1.0, 2.0)
    x.register_hook(lambda g: Tensor(np.ones(3)))
    with pytest.raises(RuntimeError, match=r"hook returned a gradient of shape \(3,\)"):
        (x * 1.0).sum().backward()


def test_handle_as_context_manager() -> None:
    x = f64(1.0)
    calls = []
    with x.register_hook(lambda g: calls.append(1)):
        (x * 1.0).backward()
    (x * 1.0).backward()
    assert calls == [1]


def test_hook_may_return_an_array() -> None:
    x = f64(1.0, 2.0)
    x.register_hook(lambda g: np.array([5.0, 6.0]))
    (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 6.0])
    assert x.grad.dtype == np.float64
