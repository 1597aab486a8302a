"""`autograd.checkpoint`: outputs and gradients equal to a direct call (Dropout included, its
masks repeated), several inputs and outputs, parameters and tensors it closes over, nested
modules' scopes, double backward, errors, and the memory it saves."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor, checkpoint
from benchmarks.checkpoint import make_stack, traced


def t64(data, requires_grad: bool = False) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=np.float64)


@pytest.fixture
def float64():
    autograd.set_default_dtype(np.float64)  # (the conftest fixture restores it)


def dropout_model() -> nn.Sequential:
    autograd.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 3))


def run(model: nn.Module, x: Tensor, seed: int, checkpointed: bool, **kwargs) -> tuple:
    """Output, input gradient and parameter gradients of one forward + backward."""
    model.zero_grad()
    x.zero_grad()
    autograd.manual_seed(seed)
    out = checkpoint(model, x, **kwargs) if checkpointed else model(x)
    (out * out).sum().backward()
    return out.numpy().copy(), x.grad.copy(), [p.grad.copy() for p in model.parameters()]


# ----- same numbers as a direct call ----------------------------------------------------------
def test_outputs_and_gradients_equal_a_direct_call_with_dropout(float64) -> None:
    model = dropout_model()
    x = t64(np.random.default_rng(1).standard_normal((8, 4)), requires_grad=True)
    out, gx, gparams = run(model, x, seed=5, checkpointed=False)
    out_c, gx_c, gparams_c = run(model, x, seed=5, checkpointed=True)
    np.testing.assert_array_equal(out_c, out)
    np.testing.assert_allclose(gx_c, gx, rtol=1e-13)
    for g_c, g in zip(gparams_c, gparams, strict=True):
        np.testing.assert_allclose(g_c, g, rtol=1e-13)
    # the masks matter: without the generator rewound, the recomputation draws new ones
    # and the gradients come out different
    _, gx_fresh, _ = run(model, x, seed=5, checkpointed=True, preserve_rng_state=False)
    assert not np.allclose(gx_fresh, gx)


def test_the_generator_is_put_back_after_the_recomputation(float64) -> None:
    model = dropout_model()
    x = t64(np.ones((8, 4)))
    autograd.manual_seed(3)
    model(x).sum().backward()
    after_direct = autograd.rand(5).numpy()
    autograd.manual_seed(3)
    checkpoint(model, x).sum().backward()  # recomputes (and redraws) in backward
    np.testing.assert_array_equal(autograd.rand(5).numpy(), after_direct)


def test_reseeding_between_forward_and_backward(float64) -> None:
    """`manual_seed` replaces the generator: the recomputation still replays the forward's,
    and the new one is left where it was."""
    model = dropout_model()
    x = t64(np.random.default_rng(1).standard_normal((8, 4)), requires_grad=True)
    _, gx, _ = run(model, x, seed=5, checkpointed=False)
    x.zero_grad()
    autograd.manual_seed(5)
    out = checkpoint(model, x)
    autograd.manual_seed(11)
    (out * out).sum().backward()
    np.testing.assert_allclose(x.grad, gx, rtol=1e-13)
    draw = autograd.rand(3).numpy()
    autograd.manual_seed(11)
    np.testing.assert_array_equal(draw, autograd.rand(3).numpy())


def test_several_inputs_outputs_and_non_tensor_arguments(float64) -> None:
    rng = np.random.default_rng(2)
    a, b = t64(rng.standard_normal(3), True), t64(rng.standard_normal(3), True)

    def f(a: Tensor, scale: float, b: Tensor, *, shift: Tensor) -> tuple:
        return (a * b * scale).tanh(), "tag", (a + b + shift).exp(), 7

    shift = t64(np.full(3, 0.5), True)
    results = []
    for checkpointed in (False, True):
        for t in (a, b, shift):
            t.zero_grad()
        call = (lambda *s, **k: checkpoint(f, *s, **k)) if checkpointed else f
        p, tag, q, seven = call(a, 2.0, b, shift=shift)
        assert (tag, seven) == ("tag", 7)
        ((p * q).sum() + q.sum()).backward()
        results.append((p.numpy(), q.numpy(), a.grad.copy(), b.grad.copy(), shift.grad.copy()))
    for direct, checked in zip(*results, strict=True):
        np.testing.assert_allclose(checked, direct, rtol=1e-13)
    # an output that gets no gradient is fine
    a.zero_grad()
    p, _, q, _ = checkpoint(f, a, 2.0, b, shift=shift)
    q.sum().backward()
    np.testing.assert_allclose(a.grad, np.exp(a.numpy() + b.numpy() + 0.5), rtol=1e-13)
    # and a list comes back as a list
    out = checkpoint(lambda a: [a * 2, a * 3], a)
    assert isinstance(out, list) and len(out) == 2


def test_gradcheck_and_gradgradcheck_through_checkpoint() -> None:
    rng = np.random.default_rng(3)
    a, b = t64(rng.standard_normal(3), True), t64(rng.standard_normal(3), True)

    def f(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return (a * b).sin(), (a - b) ** 3

    def both(a: Tensor, b: Tensor) -> Tensor:
        p, q = checkpoint(f, a, b)
        return p * q

    assert autograd.gradcheck(both, [a, b])
    assert autograd.gradgradcheck(both, [a, b])
    assert autograd.gradgradcheck(lambda a: checkpoint(lambda t: t.tanh() * t, a), [a])


# ----- what the node reaches ------------------------------------------------------------------
def test_parameters_get_gradients_when_the_input_needs_none(float64) -> None:
    """The first block of a network: its input is data, only its weights require grad."""
    block = dropout_model()
    x = t64(np.random.default_rng(4).standard_normal((8, 4)))  # does not require grad
    _, _, direct = run_params(block, x, checkpointed=False)
    out, node_parents, checked = run_params(block, x, checkpointed=True)
    assert out.requires_grad and out.op == "checkpoint"
    assert set(map(id, node_parents)) == set(map(id, block.parameters()))
    for g_c, g in zip(checked, direct, strict=True):
        np.testing.assert_allclose(g_c, g, rtol=1e-13)


def run_params(model: nn.Module, x: Tensor, checkpointed: bool) -> tuple:
    model.zero_grad()
    autograd.manual_seed(0)
    out = checkpoint(model, x) if checkpointed else model(x)
    parents = out._parents
    out.sum().backward()
    return out, parents, [p.grad.copy() for p in model.parameters()]


def test_autograd_grad_through_checkpoint_leaves_dot_grad_alone(float64) -> None:
    model = dropout_model()
    x = t64(np.random.default_rng(4).standard_normal((8, 4)))
    _, _, direct = run_params(model, x, checkpointed=False)
    model.zero_grad()
    autograd.manual_seed(0)
    grads = autograd.grad(checkpoint(model, x).sum(), list(model.parameters()))
    for g_c, g in zip(grads, direct, strict=True):
        np.testing.assert_allclose(g_c.numpy(), g, rtol=1e-13)
    assert all(p.grad is None for p in model.parameters())


def test_a_closed_over_tensor_of_the_callers_graph() -> None:
    w = t64([1.0, 2.0, 3.0], True)
    x = t64([0.5, -1.0, 2.0], True)
    h = w * 3.0  # the caller's intermediate, used inside and outside the checkpoint
    out = checkpoint(lambda x: x * h, x)
    (out.sum() + h.sum()).backward()  # d/dw = 3 x + 3
    np.testing.assert_allclose(w.grad, 3 * x.numpy() + 3)
    np.testing.assert_allclose(x.grad, 3 * w.numpy())


def test_a_hook_on_a_parameter_runs_once(float64) -> None:
    model = dropout_model()
    x = t64(np.random.default_rng(4).standard_normal((8, 4)))
    _, _, direct = run_params(model, x, checkpointed=False)
    weight = model[0].weight
    calls = []
    handle = weight.register_hook(lambda g: calls.append(1) or g * 2)
    _, _, checked = run_params(model, x, checkpointed=True)
    handle.remove()
    assert calls == [1]
    np.testing.assert_allclose(checked[0], 2 * direct[0], rtol=1e-13)


def test_output_requires_grad_only_when_something_does() -> None:
    const = t64(np.ones(3))
    out = checkpoint(lambda t: t * 2, const)
    assert not out.requires_grad and out.op == "mul"  # nothing to recompute: the plain result
    with autograd.no_grad():
        out = checkpoint(lambda t: t * 2, t64(np.ones(3), True))
    assert not out.requires_grad


def test_no_intermediate_result_outlives_the_call() -> None:
    x = t64(np.ones(4), True)
    made = []

    def f(x: Tensor) -> Tensor:
        h = x.exp()
        made.append(weakref.ref(h))
        return h.sin()

    out = checkpoint(f, x)
    gc.collect()
    assert made[0]() is None  # the forward's graph is gone
    assert len(out._parents) == 1 and out._parents[0] is x
    out.sum().backward()
    np.testing.assert_allclose(x.grad, np.cos(np.exp(1.0)) * np.exp(1.0) * np.ones(4))


# ----- nested modules -------------------------------------------------------------------------
class Probe(nn.Module):
    """Records the scope of an op made inside it each time it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.scopes: list = []

    def forward(self, x: Tensor) -> Tensor:
        y = x * 2.0
        self.scopes.append(y._scope)
        return y


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Linear(3, 3), Probe()), nn.Sequential(nn.Linear(3, 2), nn.Tanh())
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = checkpoint(block, x)
        return x


def test_nested_modules_recompute_in_the_same_scope(float64) -> None:
    autograd.manual_seed(0)
    net = Net()
    x = t64(np.random.default_rng(5).standard_normal((4, 3)))
    out = net(x)
    out.sum().backward()
    probe = net.blocks[0][1]
    assert probe.scopes[0] == (("", "Net"), ("blocks.0", "Sequential"), ("blocks.0.1", "Probe"))
    assert probe.scopes == [probe.scopes[0]] * 2  # the forward and the recomputation
    assert out._scope == (("", "Net"),)
    # same gradients as without checkpointing
    grads = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    h = x
    for block in net.blocks:
        h = block(h)
    h.sum().backward()
    for g, p in zip(grads, net.parameters(), strict=True):
        np.testing.assert_allclose(g, p.grad, rtol=1e-13)
    assert "checkpoint" in autograd.draw_graph(out, params=net).source


# ----- errors and second passes ---------------------------------------------------------------
def test_second_backward_needs_retain_graph() -> None:
    x = t64([1.0, 2.0], True)
    out = checkpoint(lambda t: t.exp(), x)
    out.sum().backward(retain_graph=True)
    out.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * np.exp([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="freed"):
        out.sum().backward()


def test_a_function_that_computes_something_else_when_run_again() -> None:
    calls = []

    def changing(t: Tensor) -> Tensor:
        calls.append(1)
        return t.exp() if len(calls) == 1 else t.exp().sum()

    out = checkpoint(changing, t64([1.0, 2.0], True))
    with pytest.raises(RuntimeError, match=r"checkpoint: recomputing output 0 gave shape \(\)"):
        out.sum().backward()


def test_an_in_place_change_before_backward_is_caught(float64) -> None:
    model = dropout_model()
    out = checkpoint(model, t64(np.ones((2, 4))))
    with autograd.no_grad():
        model[0].weight -= 0.1  # an optimiser step before backward
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_use_reentrant_true_is_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint: only use_reentrant=False"):
        checkpoint(lambda t: t * 2, t64([1.0], True), use_reentrant=True)
    out = checkpoint(lambda t: t * 2, t64([1.0], True), use_reentrant=False)
    assert out.op == "checkpoint"


# ----- memory ---------------------------------------------------------------------------------
def test_a_checkpointed_stack_peaks_lower() -> None:
    """32 blocks tanh(Linear(16, 16)) on a (128, 16) input, where the activations dominate:
    checkpointing keeps one output per block instead of two arrays, and recomputes one block
    at a time (measured: 0.63x of the direct peak, 0.57x of what the forward pass holds)."""
    stack = make_stack(32, 16)
    x = Tensor(np.random.default_rng(0).standard_normal((128, 16), dtype=np.float32))
    direct_peak, direct_held = traced(stack, x, checkpointed=False)
    direct_grads = [p.grad.copy() for p in stack.parameters()]
    stack.zero_grad()
    peak, held = traced(stack, x, checkpointed=True)
    assert peak < 0.7 * direct_peak, (peak, direct_peak)
    assert held < 0.65 * direct_held, (held, direct_held)
    for p, g in zip(stack.parameters(), direct_grads, strict=True):
        np.testing.assert_allclose(p.grad, g, rtol=1e-5, atol=1e-7)
