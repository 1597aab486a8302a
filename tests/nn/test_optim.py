"""Tests for nn.optim and its schedulers: updates worked out by hand, state, checkpoints."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor
from nn import optim
from nn.optim import flatten_state_dict, unflatten_state_dict


def scalar_param(value: float = 1.0) -> Tensor:
    return Tensor(np.array([value], dtype=np.float32), requires_grad=True)


def step_on_square(opt: optim.Optimizer, x: Tensor) -> None:
    """One optimiser step on f(x) = x^2 (gradient 2x)."""
    opt.zero_grad()
    (x * x).sum().backward()
    opt.step()


# ----- SGD ----------------------------------------------------------------------------------
def test_sgd_plain_step() -> None:
    x = scalar_param(1.0)
    opt = optim.SGD([x], lr=0.1)
    step_on_square(opt, x)
    assert x.data[0] == pytest.approx(1.0 - 0.1 * 2.0)
    assert opt.state.get(x, {}) == {}  # no momentum: no buffer


def test_sgd_momentum_nesterov_weight_decay_two_steps() -> None:
    x = scalar_param(1.0)
    opt = optim.SGD([x], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    # step 1: g = 2*1 + 0.1*1 = 2.1; buf = 2.1; g = 2.1 + 0.9*2.1 = 3.99; x = 1 - 0.399
    step_on_square(opt, x)
    assert x.data[0] == pytest.approx(0.601, rel=1e-6)
    # step 2: g = 2*0.601 + 0.1*0.601 = 1.2621; buf = 0.9*2.1 + 1.2621 = 3.1521;
    #         g = 1.2621 + 0.9*3.1521 = 4.09899; x = 0.601 - 0.409899 = 0.191101
    step_on_square(opt, x)
    assert x.data[0] == pytest.approx(0.191101, rel=1e-6)
    assert opt.state[x]["momentum_buffer"][0] == pytest.approx(3.1521, rel=1e-6)
    assert x.grad[0] == pytest.approx(2 * 0.601, rel=1e-6)  # the gradient itself untouched


def test_sgd_momentum_dampening_two_steps() -> None:
    x = scalar_param(1.0)
    opt = optim.SGD([x], lr=0.1, momentum=0.9, dampening=0.5)
    step_on_square(opt, x)  # first step: buf = g = 2 (no dampening); x = 1 - 0.2
    assert x.data[0] == pytest.approx(0.8)
    step_on_square(opt, x)  # buf = 0.9*2 + 0.5*1.6 = 2.6; x = 0.8 - 0.26
    assert x.data[0] == pytest.approx(0.54, rel=1e-6)


# ----- Adam / AdamW -------------------------------------------------------------------------
def test_adam_two_steps_by_hand() -> None:
    x = scalar_param(1.0)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    opt = optim.Adam([x], lr=lr)
    # step 1: g = 2; m = 0.1*2 = 0.2; v = 0.001*4 = 0.004; m_hat = 2, v_hat = 4
    step_on_square(opt, x)
    x1 = 1.0 - lr * (0.2 / (1 - b1)) / (math.sqrt(0.004) / math.sqrt(1 - b2) + eps)
    assert x1 == pytest.approx(0.9, rel=1e-7)
    assert x.data[0] == pytest.approx(x1, rel=1e-6)
    # step 2: g = 2*0.9 = 1.8; m = 0.9*0.2 + 0.1*1.8 = 0.36; v = 0.999*0.004 + 0.001*3.24
    step_on_square(opt, x)
    m, v = 0.36, 0.999 * 0.004 + 0.001 * 1.8**2
    x2 = x1 - lr / (1 - b1**2) * m / (math.sqrt(v) / math.sqrt(1 - b2**2) + eps)
    assert x.data[0] == pytest.approx(x2, rel=1e-6)
    state = opt.state[x]
    assert state["step"] == 2
    assert state["exp_avg"][0] == pytest.approx(m, rel=1e-6)
    assert state["exp_avg_sq"][0] == pytest.approx(v, rel=1e-6)


def test_adam_weight_decay_is_l2_in_the_gradient() -> None:
    x = scalar_param(1.0)
    opt = optim.Adam([x], lr=0.1, weight_decay=0.5)
    step_on_square(opt, x)  # g = 2 + 0.5*1 = 2.5 enters both moments
    assert opt.state[x]["exp_avg"][0] == pytest.approx(0.1 * 2.5)
    assert opt.state[x]["exp_avg_sq"][0] == pytest.approx(0.001 * 2.5**2)
    assert x.data[0] == pytest.approx(0.9, rel=1e-6)  # Adam's first step is lr * sign


def test_adamw_decoupled_decay() -> None:
    x = scalar_param(1.0)
    opt = optim.AdamW([x], lr=0.1, weight_decay=0.5)
    # x = 1 * (1 - 0.1*0.5) = 0.95, then the Adam step of the plain gradient 2: -0.1
    step_on_square(opt, x)
    assert x.data[0] == pytest.approx(0.85, rel=1e-6)
    assert opt.state[x]["exp_avg"][0] == pytest.approx(0.2)
    assert optim.AdamW([scalar_param()]).param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda ps: optim.Adam(ps, weight_decay=0.01),
        lambda ps: optim.AdamW(ps),
    ],
)
def test_float32_kept_and_none_grads_skipped(make) -> None:  # noqa: ANN001
    a = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    opt = make([a, b])
    a.grad = np.full((2, 3), 0.5, dtype=np.float32)
    for _ in range(3):
        opt.step()
    assert a.dtype == np.float32 and not np.array_equal(a.data, np.ones((2, 3)))
    for value in opt.state[a].values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    np.testing.assert_array_equal(b.data, np.ones(3))  # grad None: untouched, no state
    assert b not in opt.state


# ----- groups, zero_grad, errors ------------------------------------------------------------
def test_param_groups_generators_and_closure() -> None:
    a, b = scalar_param(1.0), scalar_param(1.0)
    opt = optim.SGD([{"params": [a], "lr": 0.5}, {"params": (p for p in [b])}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.1]
    a.grad = np.ones(1, np.float32)
    b.grad = np.ones(1, np.float32)
    opt.step()
    assert a.data[0] == pytest.approx(0.5) and b.data[0] == pytest.approx(0.9)
    opt2 = optim.SGD((p for p in [a]), lr=0.1)
    assert opt2.param_groups[0]["params"] == [a] or opt2.param_groups[0]["params"][0] is a

    def closure() -> Tensor:
        opt2.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    before = float(a.data[0])
    loss = opt2.step(closure)
    assert loss.item() == pytest.approx(before**2)
    assert a.data[0] == pytest.approx(before - 0.1 * 2 * before)


def test_zero_grad() -> None:
    x = scalar_param()
    opt = optim.SGD([x], lr=0.1)
    x.grad = np.ones(1, np.float32)
    buffer = x.grad
    opt.zero_grad(set_to_none=False)
    assert x.grad is buffer and x.grad[0] == 0
    opt.zero_grad()
    assert x.grad is None


def test_constructor_errors() -> None:
    x = scalar_param()
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([x, x], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([x], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.Adam([x], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([x], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="not a Tensor"):
        optim.SGD([np.zeros(3)], lr=0.1)


# ----- denormals ----------------------------------------------------------------------------
@pytest.mark.parametrize("flush_every, flushed", [(1, True), (0, False)])
def test_sgd_flushes_denormal_momentum(flush_every: int, flushed: bool) -> None:
    x = Tensor(np.zeros(2, dtype=np.float32), requires_grad=True)
    opt = optim.SGD([x], lr=0.1, momentum=0.5)
    opt.flush_every = flush_every
    x.grad = np.array([1e-3, 2e-38], dtype=np.float32)
    opt.step()
    x.grad = np.zeros(2, dtype=np.float32)
    opt.step()  # buf = 0.5 * buf: 1e-38 is below the smallest normal float32 (1.18e-38)
    buf = opt.state[x]["momentum_buffer"]
    assert buf[0] == pytest.approx(5e-4)
    assert bool(buf[1] == 0) is flushed
    assert buf.dtype == np.float32


def test_flush_schedule_follows_the_step_count() -> None:
    x = Tensor(np.zeros(1, dtype=np.float32), requires_grad=True)
    opt = optim.SGD([x], lr=0.1, momentum=0.5)
    opt.flush_every = 3
    x.grad = np.array([4e-38], dtype=np.float32)
    opt.step()  # step 1: buf = 4e-38
    x.grad = np.zeros(1, dtype=np.float32)
    opt.step()  # step 2: buf = 2e-38, normal
    opt.step()  # step 3: buf = 1e-38, denormal, and a flush step
    assert opt.state[x]["momentum_buffer"][0] == 0


def test_adam_flushes_denormal_second_moment() -> None:
    x = Tensor(np.zeros(1, dtype=np.float32), requires_grad=True)
    for flush_every, expect_zero in ((1, True), (0, False)):
        opt = optim.Adam([x], lr=1e-3)
        opt.flush_every = flush_every
        x.grad = np.array([1e-20], dtype=np.float32)  # v = 0.001 * 1e-40: denormal
        opt.step()
        assert bool(opt.state[x]["exp_avg_sq"][0] == 0) is expect_zero
        assert opt.state[x]["exp_avg"][0] == pytest.approx(1e-21)


# ----- state dicts and checkpoints ----------------------------------------------------------
def make_params() -> list[Tensor]:
    rng = np.random.default_rng(5)
    return [
        Tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
        for s in [(4, 3), (3,), (2, 2)]
    ]


def set_grads(params: list[Tensor], step: int) -> None:
    """Deterministic gradients; the last parameter gets none on odd steps (skipped)."""
    for i, p in enumerate(params):
        p.grad = (
            None
            if (i == 2 and step % 2)
            else (np.cos(p.data * (i + 1)) + 0.1 * step).astype(np.float32)
        )


OPTIMISERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=1e-3),
    "adamw": lambda ps: optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.02}]),
}


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_checkpoint_resume_is_bit_identical(name: str) -> None:
    make = OPTIMISERS[name]
    # uninterrupted: 6 steps, scheduler stepped each step, flushing every 2nd update
    params = make_params()
    opt = make(params)
    opt.flush_every = 2
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for step in range(6):
        set_grads(params, step)
        opt.step()
        sched.step()
    expected = [p.data.copy() for p in params]

    # interrupted after 3 steps: everything through one .npz file, then a fresh rebuild
    params = make_params()
    opt = make(params)
    opt.flush_every = 2
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for step in range(3):
        set_grads(params, step)
        opt.step()
        sched.step()
    arrays = {f"param.{i}": p.data for i, p in enumerate(params)}
    arrays.update(flatten_state_dict(opt.state_dict(), prefix="optim."))
    arrays.update(flatten_state_dict(sched.state_dict(), prefix="sched."))
    file = io.BytesIO()
    np.savez(file, **arrays)
    file.seek(0)
    loaded = dict(np.load(file, allow_pickle=False))

    params = [Tensor(loaded[f"param.{i}"], requires_grad=True) for i in range(3)]
    opt = make(params)
    opt.flush_every = 2
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    opt.load_state_dict(unflatten_state_dict(loaded, prefix="optim."))
    sched.load_state_dict(unflatten_state_dict(loaded, prefix="sched."))
    for step in range(3, 6):
        set_grads(params, step)
        opt.step()
        sched.step()
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_array_equal(p.data, e)
        assert p.dtype == np.float32


def test_state_dict_layout_and_snapshot() -> None:
    a, b = scalar_param(1.0), scalar_param(2.0)
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}])
    a.grad = np.ones(1, np.float32)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0] and sd["param_groups"][1]["params"] == [1]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"]) == {0} and sd["state"][0]["step"] == 1
    saved = sd["state"][0]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], saved)  # a snapshot, not a view

    flat = flatten_state_dict(sd, prefix="opt.")
    assert set(flat) >= {
        "opt.state.0.exp_avg",
        "opt.state.0.step",
        "opt.param_groups.1.lr",
        "opt.param_groups.0.params",
    }
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    back = unflatten_state_dict({**flat, "model.weight": np.zeros(3)}, prefix="opt.")
    assert back["param_groups"][0]["betas"] == [0.9, 0.999]
    assert back["param_groups"][1]["params"] == [1]
    np.testing.assert_array_equal(back["state"][0]["exp_avg"], saved)
    with pytest.raises(TypeError, match="pickle"):
        flatten_state_dict({"state": {}, "param_groups": [{"params": [0], "bad": None}]})


def test_load_state_dict_errors() -> None:
    a, b = scalar_param(), scalar_param()
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = np.ones(1, np.float32)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="group 0 saved with 2 parameters"):
        optim.SGD([a], lr=0.1, momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups saved, 2 here"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    wrong = Tensor(np.zeros(4, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"'0.momentum_buffer' has shape \(1,\)"):
        optim.SGD([wrong, b], lr=0.1, momentum=0.9).load_state_dict(sd)


# ----- schedulers ---------------------------------------------------------------------------
def test_step_lr_sequence() -> None:
    opt = optim.SGD([scalar_param()], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(5):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)


def test_cosine_annealing_closed_form_and_groups() -> None:
    opt = optim.SGD(
        [{"params": [scalar_param()], "lr": 1.0}, {"params": [scalar_param()], "lr": 0.5}], lr=0.1
    )
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    seen = [sched.get_last_lr()]
    for _ in range(4):
        sched.step()
        seen.append(sched.get_last_lr())
    for epoch, lrs in enumerate(seen):
        for base, lr in zip((1.0, 0.5), lrs, strict=True):
            assert lr == pytest.approx(0.1 + (base - 0.1) * (1 + math.cos(math.pi * epoch / 4)) / 2)
    assert seen[2][0] == pytest.approx(0.55) and seen[4] == pytest.approx([0.1, 0.1])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.1])


def test_scheduler_state_dict_resumes_the_sequence() -> None:
    opt = optim.SGD([scalar_param()], lr=1.0)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(3):
        sched.step()
    saved = unflatten_state_dict(flatten_state_dict(sched.state_dict()))
    expected = [(sched.step(), sched.get_last_lr()[0])[1] for _ in range(3)]

    opt2 = optim.SGD([scalar_param()], lr=1.0)
    sched2 = optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(saved)
    assert sched2.last_epoch == 3
    assert [(sched2.step(), sched2.get_last_lr()[0])[1] for _ in range(3)] == expected
    with pytest.raises(ValueError, match="step_size"):
        optim.lr_scheduler.StepLR(opt, step_size=0)


# ----- split over threads -------------------------------------------------------------------
SPLIT_CASES = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd decay": lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.3),
    "sgd nesterov decay": lambda ps: optim.SGD(
        ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.3
    ),
    "sgd dampening": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.8, dampening=0.25),
    "adam l2": lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1),
}


def run_steps(
    count: int, make: Callable[[list[Tensor]], optim.Optimizer], steps: int = 3
) -> list[np.ndarray]:
    """Parameters and state arrays after `steps` updates on `count` threads: one parameter
    of 35 entries (split), one of 3 (not), gradients that change from step to step."""
    autograd.set_num_threads(count)
    rng = np.random.default_rng(0)
    big = Tensor(rng.standard_normal((7, 5)).astype(np.float32), requires_grad=True)
    small = Tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    opt = make([big, small])
    opt.flush_every = 2  # (the flush runs piece by piece too)
    for step in range(steps):
        for p in (big, small):
            p.grad = np.cos(p.data * (step + 1) + np.arange(p.size).reshape(p.shape))
            p.grad = p.grad.astype(np.float32)
        opt.step()
    state = [a for p in (big, small) for a in opt.state.get(p, {}).values()]
    return [big.data, small.data] + [a for a in state if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("name", sorted(SPLIT_CASES))
def test_split_over_threads_is_bitwise_the_one_thread_result(
    spy_parallel_for: Callable,
    name: str,
    threads: Callable[[int], None],
    monkeypatch: pytest.MonkeyPatch,
    same_results: Callable[..., None],
) -> None:
    monkeypatch.setattr(optim, "_PIECE_ELEMENTS", 8)  # pieces of 8 entries or more
    one = run_steps(1, SPLIT_CASES[name])
    calls = spy_parallel_for(optim)
    two = run_steps(2, SPLIT_CASES[name])
    # the 35 entries in two pieces on every step; the 3 in one call, without parallel_for
    assert [sorted(pieces) for pieces in calls] == [[(0, 17), (17, 35)]] * 3
    states = {"sgd": 0, "sgd decay": 0}.get(name, 4 if "adam" in name else 2)
    assert len(one) == len(two) == 2 + states  # (momentum buffers, Adam's two moments)
    same_results(one, two, np.float32)


def test_split_adamw_matches_the_rule_by_hand(
    threads: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optim, "_PIECE_ELEMENTS", 8)
    threads(2)
    p0 = np.linspace(-1.0, 1.0, 40).astype(np.float32)
    g = np.cos(np.arange(40.0)).astype(np.float32)
    p = Tensor(p0.copy(), requires_grad=True)
    opt = optim.AdamW([p], lr=0.01, weight_decay=0.1)
    p.grad = g
    opt.step()
    # one step: m = 0.1 g, v = 0.001 g^2, p = p (1 - lr wd) - lr m / 0.1 / (sqrt(v / 0.001) + eps)
    m, v = 0.1 * g.astype(np.float64), 0.001 * g.astype(np.float64) ** 2
    expected = p0 * (1 - 0.01 * 0.1) - 0.01 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    np.testing.assert_allclose(p.data, expected, rtol=1e-6, atol=1e-7)


def test_which_parameters_are_split(
    spy_parallel_for: Callable, threads: Callable[[int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default 1M entries and more are split (pieces of 512k); the benchmark models'
    parameters (65k entries at most) and strided ones update in one call, here."""
    calls = spy_parallel_for(optim)
    for count in (1, 2):
        threads(count)
        big = Tensor(np.linspace(-1, 1, 1 << 20, dtype=np.float32), requires_grad=True)
        big.grad = np.cos(np.arange(1 << 20, dtype=np.float32))
        opt = optim.AdamW([big])
        opt.step()
        if count == 1:
            one = [big.data, *opt.state[big].values()]
    assert [sorted(pieces) for pieces in calls] == [
        [(0, 1 << 20)],
        [(0, 1 << 19), (1 << 19, 1 << 20)],
    ]
    for a, b in zip(one, [big.data, *opt.state[big].values()], strict=True):
        np.testing.assert_array_equal(a, b)
    calls.clear()
    small = Tensor(np.ones((512, 128), np.float32), requires_grad=True)
    small.grad = np.ones((512, 128), np.float32)
    optim.AdamW([small]).step()
    monkeypatch.setattr(optim, "_PIECE_ELEMENTS", 8)
    strided = Tensor(np.ones((8, 6), np.float32), requires_grad=True)
    strided.grad = np.arange(48, dtype=np.float32).reshape(6, 8).T  # not C-contiguous
    optim.SGD([strided], lr=0.5).step()
    assert calls == []
    np.testing.assert_array_equal(strided.data, 1 - 0.5 * np.arange(48.0).reshape(6, 8).T)
