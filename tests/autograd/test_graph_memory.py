"""The graph after backward: intermediates' data is released, structure and held tensors stay."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor, draw_graph
from autograd.tensor import ReleasedTensor
from nn import functional as F


def _mlp_graph(rng: np.random.Generator) -> tuple[Tensor, list[weakref.ref], list[Tensor]]:
    x = Tensor(rng.standard_normal((8, 5)))
    w1 = Tensor(rng.standard_normal((5, 6)), requires_grad=True)
    w2 = Tensor(rng.standard_normal((6, 3)), requires_grad=True)
    h = x @ w1
    a = h.tanh()
    z = a @ w2
    loss = (z * z).mean()
    refs = [weakref.ref(t.data) for t in (h, a, z)] + [weakref.ref(x.data)]
    return loss, refs, [w1, w2]


def test_intermediates_die_after_backward_while_the_loss_lives() -> None:
    loss, refs, params = _mlp_graph(np.random.default_rng(0))
    gc.collect()
    assert all(r() is not None for r in refs)  # the graph holds them before backward
    loss.backward()
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)
    assert all(p.grad is not None and p.data is not None for p in params)  # leaves untouched
    assert np.isfinite(loss.item())  # the loss itself keeps its data


def test_without_gc_the_arrays_go_at_once() -> None:
    """No reference cycles: refcounting alone frees them (no wait for the cycle collector)."""
    gc.disable()
    try:
        loss, refs, _ = _mlp_graph(np.random.default_rng(1))
        loss.backward()
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_tensors_the_user_holds_keep_their_data() -> None:
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((4, 3)))
    w = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    h = (x @ w).relu()
    expected_h, expected_x = np.maximum(x.data @ w.data, 0), x.data.copy()
    loss = (h * h).sum()
    loss.backward()
    np.testing.assert_allclose(h.data, expected_h)  # held: intact
    np.testing.assert_array_equal(x.data, expected_x)
    product = loss._parents[0]  # what the graph keeps of h * h
    released, same = product._parents
    assert released is same and released is not h
    assert isinstance(released, ReleasedTensor)  # the graph refers to a stand-in for h
    assert released.shape == h.shape and released.op == "relu"


def test_retain_graph_keeps_everything() -> None:
    loss, refs, _ = _mlp_graph(np.random.default_rng(3))
    loss.backward(retain_graph=True)
    gc.collect()
    assert all(r() is not None for r in refs)
    loss.backward()  # and a second backward works and accumulates
    gc.collect()
    assert all(r() is None for r in refs)


def test_second_backward_through_ops_that_saved_nothing_accumulates() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    w = Tensor([3.0, 4.0], requires_grad=True)
    y = ((x + w).reshape(2, 1).T - w).sum()  # add, reshape, transpose, sub, sum: none saves
    y.backward()
    y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])
    np.testing.assert_array_equal(w.grad, [0.0, 0.0])


def test_second_backward_that_needs_a_released_array_raises() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x + x).sum()  # mul saved x
    y.backward()
    with pytest.raises(RuntimeError, match="'mul' was freed"):
        y.backward()


def test_retained_intermediate_grads_survive_for_the_drawing() -> None:
    rng = np.random.default_rng(4)
    with autograd.retain_grads():
        loss, _, _ = _mlp_graph(rng)
    loss.backward()
    stand_ins = [t for t in autograd.topological_order([loss]) if isinstance(t, ReleasedTensor)]
    assert stand_ins and all(t.grad is not None for t in stand_ins if t.requires_grad)


def test_drawing_is_identical_before_and_after_the_release() -> None:
    autograd.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x = autograd.randn(4, 6)
    target = np.array([0, 2, 1, 0])
    with autograd.retain_grads():
        loss = F.cross_entropy(model(x), target)
    before = draw_graph(loss, params=model, show_grad=False).source
    loss.backward()
    assert draw_graph(loss, params=model, show_grad=False).source == before
    # with the gradients: the same as when the whole graph is retained
    autograd.manual_seed(0)
    twin = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with autograd.retain_grads():
        kept = F.cross_entropy(twin(autograd.tensor(x.data)), target)
    kept.backward(retain_graph=True)
    assert draw_graph(loss, params=model).source == draw_graph(kept, params=twin).source


def _step_peak(keep_last_loss: bool) -> int:
    """Peak traced bytes (all that is alive) during the second of two steps of an MLP."""
    gc.collect()
    tracemalloc.start()
    autograd.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh())
    x = autograd.randn(256, 256)
    loss = (model(x) ** 2).mean()
    loss.backward()
    if not keep_last_loss:
        del loss
    gc.collect()
    tracemalloc.reset_peak()
    step = (model(x) ** 2).mean()
    step.backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_last_steps_loss_alive_costs_no_activation_memory() -> None:
    alive, deleted = _step_peak(True), _step_peak(False)
    activations = 4 * 256 * 512 * 4  # four (256, 512) float32 arrays in the graph
    assert abs(alive - deleted) < activations / 4, (alive, deleted)


def test_intermediates_die_during_backward_not_only_after() -> None:
    """By the time a leaf's gradient is complete, every intermediate above it is released."""
    gc.disable()
    try:
        w = Tensor(np.ones((64, 64)), requires_grad=True)
        x = Tensor(np.full((32, 64), 0.1))
        h1 = (x @ w).tanh()
        h2 = (h1 @ w).tanh()
        refs = [weakref.ref(t.data) for t in (h1, h2)]
        loss = (h2 @ w).sum()
        del h1, h2
        alive_at_leaf = []
        w.register_hook(lambda g: alive_at_leaf.append([r() is not None for r in refs]))
        loss.backward()
        assert alive_at_leaf == [[False, False]]
    finally:
        gc.enable()
