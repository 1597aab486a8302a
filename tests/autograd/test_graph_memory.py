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
from autograd.tensor import ReleasedTensor, data_released, topological_order
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


# ----- release during the forward pass ------------------------------------------------------
# 256 x 256 float64 = 512 KiB: above the engine's size threshold for watching a result
BIG = (256, 256)


def _big_leaf(seed: int = 0) -> Tensor:
    return Tensor(np.random.default_rng(seed).standard_normal(BIG), requires_grad=True)


def test_an_unsaved_result_the_caller_dropped_is_released_in_forward() -> None:
    """conv -> relu in miniature: h feeds only relu, which saves its own output; once the
    caller drops h, the graph alone holds it, and its array goes at the next op."""
    x = _big_leaf()
    h = x * 2.0  # (mul by a constant saves nothing of h's)
    array = weakref.ref(h.data)
    y = h.relu()
    del h
    z = y * 3.0  # the next recorded op looks at the watched results
    node = y._parents[0]
    assert array() is None  # freed by refcount, at once
    assert data_released(node)
    assert node.shape == BIG and node.dtype == np.float32
    assert node.data.strides == (0, 0)
    assert repr(node) == "tensor(<data released>, shape=(256, 256), op=mul)"
    z.sum().backward()  # the backward needed only h's shape
    np.testing.assert_array_equal(x.grad, np.where(x.data > 0, 6.0, 0.0))


def test_a_result_the_caller_holds_keeps_its_data() -> None:
    x = _big_leaf(1)
    h = x * 2.0
    y = h.relu()
    for _ in range(8):  # ops after ops: h is never released while `h` names it
        y = y * 1.0
    assert not data_released(h)
    np.testing.assert_array_equal(h.data, x.data * 2.0)


@pytest.mark.parametrize(
    ("consume", "released"),
    [
        (lambda h, w: h * w, False),  # mul saves both inputs
        (lambda h, w: h @ w, False),  # matmul saves both
        (lambda h, w: h.tanh() * h, False),  # one of two consumers saves it
        (lambda h, w: h.exp(), True),  # exp saves only its output: h may go
    ],
    ids=["mul", "matmul", "two-consumers", "exp"],
)
def test_a_result_some_backward_reads_keeps_its_data(consume, released: bool) -> None:  # noqa: ANN001
    x, w = _big_leaf(2), _big_leaf(3)
    h = x.sin()  # sin saves its input x, not its output
    expected = np.sin(x.data)
    y = consume(h, w)
    del h
    z = (y * 1.0) * 1.0
    node = next(p for p in _walk(y) if p._op == "sin")
    assert data_released(node) == released
    if not released:
        np.testing.assert_array_equal(node.data, expected)
    z.sum().backward()
    assert x.grad is not None and np.isfinite(x.grad).all()


def _walk(t: Tensor) -> list[Tensor]:
    return topological_order([t])


def test_a_result_whose_own_backward_reads_it_keeps_its_data() -> None:
    x = _big_leaf(4)
    h = x.exp()  # exp's backward is g * out
    y = h + 1.0
    del h
    _ = y * 1.0
    node = y._parents[0]
    np.testing.assert_array_equal(node.data, np.exp(x.data))


def test_small_results_are_not_watched() -> None:
    x = Tensor(np.ones((4, 4)), requires_grad=True)
    h = x * 2.0
    y = h.relu()
    del h
    _ = y * 1.0
    np.testing.assert_array_equal(y._parents[0].data, np.full((4, 4), 2.0))


def test_forward_release_gives_the_same_gradients_and_drawing_says_so() -> None:
    """Two identical nets, one keeping its intermediates by holding them: equal gradients;
    the drawing of the other says "data released" where the twin shows values."""
    grads, dots = [], []
    for hold in (True, False):
        x = _big_leaf(5)
        w = Tensor(np.random.default_rng(6).standard_normal((256, 16)), requires_grad=True)
        held = []
        h = x * 0.5 - 0.1
        held.append(h) if hold else None
        a = h.relu()
        h = None
        loss = ((a @ w) ** 2).mean()
        dots.append(draw_graph(loss, show_data=True).source)
        loss.backward()
        grads.append((x.grad.copy(), w.grad.copy()))
    np.testing.assert_array_equal(grads[0][0], grads[1][0])
    np.testing.assert_array_equal(grads[0][1], grads[1][1])
    # x * 0.5 is released in both (only `sub` reads it, and saves nothing); h as well
    # where nothing holds it
    assert dots[0].count("data released") == 1
    assert dots[1].count("data released") == 2


def test_forward_release_cuts_the_cnn_forward_memory() -> None:
    """A conv -> relu stack: the conv outputs (which only the ReLUs read, through their own
    outputs) are released during the forward pass, so memory after the forward is smaller
    than with every intermediate held (measured with tracemalloc)."""
    autograd.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU())  # fmt: skip
    x = Tensor(np.random.default_rng(7).standard_normal((16, 1, 32, 32)).astype(np.float32))
    net(x).sum()  # warm up caches and work buffers
    after = []
    for hold in (False, True):
        gc.collect()
        tracemalloc.start()
        held = []
        h = x
        for layer in net:
            h = layer(h)
            held.append(h) if hold else None
        loss = h.sum()
        after.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        del loss, h, held
    conv_output = 16 * 8 * 32 * 32 * 4  # bytes: two of them are released
    assert after[1] - after[0] >= 1.9 * conv_output
