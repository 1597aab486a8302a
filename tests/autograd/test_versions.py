"""In-place safety: `_version`, and backward refusing saved tensors changed in place."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor, no_grad

INPLACE = "modified by an inplace operation"


def leaf(*values: float) -> Tensor:
    return Tensor(np.array(values), requires_grad=True, dtype=np.float64)


def test_every_inplace_path_bumps_the_version() -> None:
    t = Tensor(np.zeros(3), dtype=np.float64)
    assert t._version == 0
    t += 1.0
    t -= 1.0
    t *= 2.0
    t /= 2.0
    assert t._version == 4
    t[0] = 5.0
    assert t._version == 5
    assert (t + 1.0)._version == 0  # new results start at 0


def test_optimizer_init_and_load_state_dict_bump_parameter_versions() -> None:
    layer = nn.Linear(2, 1)
    before, bias_before = layer.weight._version, layer.bias._version
    nn.init.zeros_(layer.weight)
    assert layer.weight._version == before + 1
    layer.load_state_dict(layer.state_dict())
    assert layer.weight._version == before + 2
    opt = nn.optim.SGD(layer.parameters(), lr=0.1)
    layer(Tensor(np.ones((1, 2)))).sum().backward()
    opt.step()
    assert layer.weight._version == before + 3 and layer.bias._version == bias_before + 2


# (name, build y from x and w, which of x / w / the output the op saved)
OPS: list[tuple[str, Callable[[Tensor, Tensor], Tensor], set[str]]] = [
    ("add", lambda x, w: x + w, set()),
    ("sub", lambda x, w: x - w, set()),
    ("neg", lambda x, w: -x, set()),
    ("sum", lambda x, w: x.sum(axis=0, keepdims=True) + 0 * w.detach(), set()),
    ("mean", lambda x, w: x.mean(), set()),
    ("reshape", lambda x, w: x.reshape(2, 2), set()),
    ("transpose", lambda x, w: x.reshape(2, 2).T, set()),
    ("slice", lambda x, w: x[1:], set()),
    ("cat", lambda x, w: autograd.cat([x, w]), set()),
    ("mul", lambda x, w: x * w, {"x", "w"}),
    ("div", lambda x, w: x / w, {"w", "out"}),
    ("matmul", lambda x, w: x.reshape(2, 2) @ w.reshape(2, 2), {"x", "w"}),
    ("exp", lambda x, w: x.exp(), {"out"}),
    ("tanh", lambda x, w: x.tanh(), {"out"}),
    ("sigmoid", lambda x, w: x.sigmoid(), {"out"}),
    ("relu", lambda x, w: x.relu(), {"out"}),
    ("softmax", lambda x, w: x.softmax(), {"out"}),
    ("log", lambda x, w: x.abs().log(), set()),  # log saved abs's output, not x (abs saves x)
    ("sin", lambda x, w: x.sin(), {"x"}),
    ("max", lambda x, w: x.max(), {"x"}),
    ("pow", lambda x, w: x**3, {"x"}),
]


@pytest.mark.parametrize("name,build,saves", OPS, ids=[op[0] for op in OPS])
@pytest.mark.parametrize("changed", ["x", "w", "out"])
def test_backward_raises_exactly_where_a_saved_tensor_changed(
    name: str, build: Callable, saves: set[str], changed: str
) -> None:
    x = leaf(0.5, 1.0, 2.0, 3.0)
    w = leaf(1.5, 2.0, 2.5, 4.0)
    y = build(x, w)
    with no_grad():
        {"x": x, "w": w, "out": y}[changed].__iadd__(1.0)
    if name == "log" and changed == "x":
        saves = {"x"}  # through abs, which saved x
    if changed in saves:
        with pytest.raises(RuntimeError, match=INPLACE):
            y.sum().backward()
    else:
        y.sum().backward()  # ops that saved nothing (or saved something else) never raise


def test_error_names_the_op() -> None:
    x, w = leaf(1.0), leaf(2.0)
    y = x * w
    with no_grad():
        w *= 3.0
    with pytest.raises(RuntimeError, match=r"'mul' saved an input of shape \(1,\)"):
        y.backward()


def test_a_change_through_a_view_is_seen() -> None:
    x, w = leaf(1.0, 2.0, 3.0, 4.0), leaf(1.0, 1.0, 1.0, 1.0)
    y = x.reshape(2, 2) @ w.reshape(2, 2)  # matmul saved the reshapes: views of x and w
    with no_grad():
        x[0] = 7.0
    with pytest.raises(RuntimeError, match=f"'matmul'.*{INPLACE}"):
        y.sum().backward()


def test_a_change_before_the_op_runs_is_fine() -> None:
    x, w = leaf(1.0), leaf(2.0)
    with no_grad():
        w += 1.0
    y = x * w
    y.backward()
    np.testing.assert_array_equal(x.grad, [3.0])


def test_gan_style_optimizer_step_between_forward_and_backward() -> None:
    """The classic mistake: the discriminator's step changes weights that the generator's
    loss graph saved; PyTorch raises, and so does npgrad, instead of wrong gradients."""
    autograd.manual_seed(0)
    generator, discriminator = nn.Linear(3, 4), nn.Linear(4, 1)
    opt_d = nn.optim.SGD(discriminator.parameters(), lr=0.1)
    z = autograd.randn(5, 3)
    fake = generator(z)
    loss_g = -discriminator(fake).mean()  # saves D's weight (fake requires grad)
    loss_d = discriminator(fake.detach()).mean()
    loss_d.backward()
    opt_d.step()
    with pytest.raises(RuntimeError, match=f"'linear'.*{INPLACE}"):
        loss_g.backward()


def test_correct_order_of_the_same_loop_works() -> None:
    autograd.manual_seed(0)
    generator, discriminator = nn.Linear(3, 4), nn.Linear(4, 1)
    opt_d = nn.optim.SGD(discriminator.parameters(), lr=0.1)
    z = autograd.randn(5, 3)
    fake = generator(z)
    loss_g = -discriminator(fake).mean()
    loss_g.backward()  # first the generator's backward ...
    opt_d.zero_grad()
    discriminator(fake.detach()).mean().backward()
    opt_d.step()  # ... then the step
    assert generator.weight.grad is not None


def test_retained_graph_then_inplace_then_second_backward_raises() -> None:
    x = leaf(1.0, 2.0)
    y = x.exp()
    y.sum().backward(retain_graph=True)
    with no_grad():
        x += 1.0  # exp saved its output, not x: still fine
    y.sum().backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, 2 * np.exp([1.0, 2.0]))
    with no_grad():
        y[0] = 0.0
    with pytest.raises(RuntimeError, match=f"'exp' saved its output.*{INPLACE}"):
        y.sum().backward()
