"""Recurrent layers: PyTorch's parameter names, order, shapes and init; the gate equations
against a tiny case written out in numpy (PyTorch's gate order); gradients by finite
differences (the fused numpy backward, and the composed twin under create_graph); shapes for
every layout; dropout between layers; state-dict round trips."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor
from nn import recurrent


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def randn(*shape: int, seed: int = 0, requires_grad: bool = False, dtype=None) -> Tensor:  # noqa: ANN001
    data = np.random.default_rng(seed).standard_normal(shape)
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def check_module(layer: nn.Module, fn: Callable[..., Tensor], *inputs: Tensor) -> None:
    """gradcheck `fn(layer, *inputs)` with respect to the inputs and all of the layer's
    parameters (float64 copies swapped in for the parameters while it runs)."""
    named = list(layer.named_parameters())

    def call(*args: Tensor) -> Tensor:
        xs, params = args[: len(inputs)], args[len(inputs) :]
        saved = [layer.__dict__[name] for name, _ in named]
        for (name, _), p in zip(named, params, strict=True):
            layer.__dict__[name] = p
        try:
            return fn(layer, *xs)
        finally:
            for (name, _), p in zip(named, saved, strict=True):
                layer.__dict__[name] = p

    assert autograd.gradcheck(call, [*inputs, *(p for _, p in named)])


def pytorch_state_dict(
    mode: str, input_size: int, hidden: int, layers: int, bidirectional: bool, seed: int = 1
) -> dict[str, np.ndarray]:
    """A state dict with PyTorch's key names, order and shapes, built by hand."""
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[mode]
    rng = np.random.default_rng(seed)
    sd = {}
    for layer in range(layers):
        fan_in = input_size if layer == 0 else hidden * (2 if bidirectional else 1)
        for suffix in ("", "_reverse") if bidirectional else ("",):
            s = f"_l{layer}{suffix}"
            sd["weight_ih" + s] = rng.uniform(-0.6, 0.6, (gates * hidden, fan_in))
            sd["weight_hh" + s] = rng.uniform(-0.6, 0.6, (gates * hidden, hidden))
            sd["bias_ih" + s] = rng.uniform(-0.6, 0.6, gates * hidden)
            sd["bias_hh" + s] = rng.uniform(-0.6, 0.6, gates * hidden)
    return sd


# ----- the equations by hand (one layer, one direction, PyTorch's gate order) ----------------
def lstm_by_hand(x, sd, s, h, c):  # noqa: ANN001, ANN201
    w_ih, w_hh, b_ih, b_hh = (sd[k + s] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    H = h.shape[-1]  # noqa: N806
    hs, cs = [], []
    for x_t in x:
        a = x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i, f = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H])
        g, o = np.tanh(a[:, 2 * H : 3 * H]), sigmoid(a[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), h, c


def gru_by_hand(x, sd, s, h):  # noqa: ANN001, ANN201
    w_ih, w_hh, b_ih, b_hh = (sd[k + s] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    H = h.shape[-1]  # noqa: N806
    hs = []
    for x_t in x:
        gx, gh = x_t @ w_ih.T + b_ih, h @ w_hh.T + b_hh
        r = sigmoid(gx[:, :H] + gh[:, :H])
        z = sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
        n = np.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - z) * n + z * h
        hs.append(h)
    return np.stack(hs), h


def rnn_by_hand(x, sd, s, h, act):  # noqa: ANN001, ANN201
    w_ih, w_hh, b_ih, b_hh = (sd[k + s] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    hs = []
    for x_t in x:
        h = act(x_t @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        hs.append(h)
    return np.stack(hs), h


# ----- parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize(("cls", "gates"), [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_parameter_names_order_shapes_and_init(cls: type, gates: int) -> None:
    autograd.manual_seed(0)
    layer = cls(3, 5, num_layers=2, bidirectional=True)
    expected = []
    for k, fan_in in ((0, 3), (1, 10)):
        for suffix in ("", "_reverse"):
            expected += [
                (f"weight_ih_l{k}{suffix}", (gates * 5, fan_in)),
                (f"weight_hh_l{k}{suffix}", (gates * 5, 5)),
                (f"bias_ih_l{k}{suffix}", (gates * 5,)),
                (f"bias_hh_l{k}{suffix}", (gates * 5,)),
            ]
    assert [(n, p.shape) for n, p in layer.named_parameters()] == expected
    assert list(layer.state_dict()) == [n for n, _ in expected]
    bound = 1 / math.sqrt(5)
    values = np.concatenate([p.data.ravel() for p in layer.parameters()])
    assert values.dtype == np.float32
    assert np.all(np.abs(values) <= bound) and np.abs(values).max() > 0.9 * bound
    assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)  # U(-b, b)
    no_bias = cls(3, 5, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]


def test_reprs_and_argument_checks() -> None:
    assert repr(nn.LSTM(3, 4)) == "LSTM(3, 4)"
    assert (
        repr(nn.GRU(3, 4, 2, batch_first=True, bidirectional=True))
        == "GRU(3, 4, num_layers=2, batch_first=True, bidirectional=True)"
    )
    assert repr(nn.LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"
    relu = nn.RNN(3, 4, 2, "relu")  # PyTorch's positional order: nonlinearity 4th
    assert relu.nonlinearity == "relu" and relu.num_layers == 2
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, num_layers=2, dropout=1.5)
    with pytest.warns(UserWarning, match="num_layers=1"):
        nn.LSTM(3, 4, dropout=0.5)


# ----- the equations against numpy by hand -------------------------------------------------------
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_tanh", "RNN_relu"])
def test_pytorch_state_dict_gives_the_hand_computed_outputs(mode: str) -> None:
    """A PyTorch-shaped state dict (2 layers, bidirectional) loads and gives the outputs of
    the equations written out in numpy, over two time steps, with a given h_0 (and c_0)."""
    kind = mode.split("_")[0]
    T, N, I, H = 2, 3, 4, 3  # noqa: N806
    sd = pytorch_state_dict(kind, I, H, 2, True)
    if kind == "LSTM":
        layer = nn.LSTM(I, H, num_layers=2, bidirectional=True)
    elif kind == "GRU":
        layer = nn.GRU(I, H, num_layers=2, bidirectional=True)
    else:
        layer = nn.RNN(I, H, 2, mode.split("_")[1], bidirectional=True)
    layer.load_state_dict(sd)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    h0 = rng.standard_normal((4, N, H)).astype(np.float32)
    c0 = rng.standard_normal((4, N, H)).astype(np.float32)
    sd = {k: v.astype(np.float32) for k, v in sd.items()}

    def direction(inp, s, index):  # noqa: ANN001, ANN202
        reverse = s.endswith("_reverse")
        seq = inp[::-1] if reverse else inp
        if kind == "LSTM":
            hs, h, c = lstm_by_hand(seq, sd, s, h0[index], c0[index])
        elif kind == "GRU":
            (hs, h), c = gru_by_hand(seq, sd, s, h0[index]), None
        else:
            act = np.tanh if mode == "RNN_tanh" else (lambda a: np.maximum(a, 0))
            (hs, h), c = rnn_by_hand(seq, sd, s, h0[index], act), None
        return (hs[::-1] if reverse else hs), h, c

    inp, h_n, c_n = x, [], []
    for k in range(2):
        outs = []
        for d, s in enumerate((f"_l{k}", f"_l{k}_reverse")):
            hs, h, c = direction(inp, s, 2 * k + d)
            outs.append(hs)
            h_n.append(h)
            c_n.append(c)
        inp = np.concatenate(outs, axis=-1)

    hx = (Tensor(h0), Tensor(c0)) if kind == "LSTM" else Tensor(h0)
    out, state = layer(Tensor(x), hx)
    assert out.shape == (T, N, 2 * H) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, inp, rtol=1e-5, atol=1e-6)
    h_out = state[0] if kind == "LSTM" else state
    np.testing.assert_allclose(h_out.data, np.stack(h_n), rtol=1e-5, atol=1e-6)
    if kind == "LSTM":
        np.testing.assert_allclose(state[1].data, np.stack(c_n), rtol=1e-5, atol=1e-6)


def test_cells_against_the_equations_by_hand() -> None:
    rng = np.random.default_rng(3)
    x, h, c = rng.standard_normal((2, 4)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    autograd.set_default_dtype(np.float64)
    try:
        for cls, kind in ((nn.LSTMCell, "LSTM"), (nn.GRUCell, "GRU"), (nn.RNNCell, "RNN")):
            sd = {
                k.replace("_l0", ""): v for k, v in pytorch_state_dict(kind, 4, 3, 1, False).items()
            }
            cell = cls(4, 3)
            assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            cell.load_state_dict(sd)
            ref = {k + "_l0": v for k, v in sd.items()}
            if kind == "LSTM":
                _, h1, c1 = lstm_by_hand(x[None], ref, "_l0", h, c)
                got_h, got_c = cell(Tensor(x), (Tensor(h), Tensor(c)))
                np.testing.assert_allclose(got_c.data, c1, rtol=1e-12)
                zero_h, _ = cell(Tensor(x))  # hx None: zeros
                _, h_zero, _ = lstm_by_hand(x[None], ref, "_l0", 0 * h, 0 * c)
                np.testing.assert_allclose(zero_h.data, h_zero, rtol=1e-12)
                single = cell(Tensor(x[0]), (Tensor(h[0]), Tensor(c[0])))  # unbatched
                assert single[0].shape == (3,) and single[1].shape == (3,)
                np.testing.assert_allclose(single[0].data, h1[0], rtol=1e-12)
            elif kind == "GRU":
                _, h1 = gru_by_hand(x[None], ref, "_l0", h)
                got_h = cell(Tensor(x), Tensor(h))
            else:
                _, h1 = rnn_by_hand(x[None], ref, "_l0", h, np.tanh)
                got_h = cell(Tensor(x), Tensor(h))
            np.testing.assert_allclose(got_h.data, h1, rtol=1e-12)
    finally:
        autograd.set_default_dtype(np.float32)


# ----- shapes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "batch_first", "bidirectional", "num_layers"),
    list(itertools.product([nn.RNN, nn.LSTM, nn.GRU], [False, True], [False, True], [1, 2])),
)
def test_shapes(cls: type, batch_first: bool, bidirectional: bool, num_layers: int) -> None:
    T, N, I, H = 5, 3, 4, 6  # noqa: N806
    D = 2 if bidirectional else 1  # noqa: N806
    layer = cls(I, H, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional)
    x = randn(*((N, T, I) if batch_first else (T, N, I)))
    lstm = cls is nn.LSTM
    out, state = layer(x)
    assert out.shape == ((N, T, D * H) if batch_first else (T, N, D * H))
    states = state if lstm else (state,)
    assert all(s.shape == (num_layers * D, N, H) for s in states)
    # h_n is the output's last step (forward direction; the reverse direction ends at t = 0)
    seq = out.data if not batch_first else out.data.swapaxes(0, 1)
    np.testing.assert_array_equal(states[0].data[-D], seq[-1, :, :H])
    if bidirectional:
        np.testing.assert_array_equal(states[0].data[-1], seq[0, :, H:])
    hx = tuple(randn(num_layers * D, N, H, seed=k) for k in (1, 2))
    out2, _ = layer(x, hx if lstm else hx[0])
    assert out2.shape == out.shape and not np.allclose(out2.data, out.data)
    # unbatched (T, I) -> (T, D*H), states (L*D, H); equal to a batch of one
    single, single_state = layer(x[0] if batch_first else x[:, 0])
    assert single.shape == (T, D * H)
    seq0 = out.data[0] if batch_first else out.data[:, 0]
    np.testing.assert_allclose(single.data, seq0, rtol=1e-6, atol=1e-7)
    single_states = single_state if lstm else (single_state,)
    assert all(s.shape == (num_layers * D, H) for s in single_states)


def test_shape_errors_name_the_layer_and_shapes() -> None:
    layer = nn.LSTM(4, 3, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM.*\(5, 2, 7\).*input_size 4"):
        layer(randn(5, 2, 7))
    with pytest.raises(ValueError, match=r"h_0 of shape \(1, 2, 3\).*\(2, 2, 3\)"):
        layer(randn(5, 2, 4), (randn(1, 2, 3), randn(2, 2, 3)))
    with pytest.raises(TypeError, match="pair"):
        layer(randn(5, 2, 4), randn(2, 2, 3))
    with pytest.raises(ValueError, match=r"GRUCell.*\(2, 5\)"):
        nn.GRUCell(4, 3)(randn(2, 5))


# ----- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_gradcheck_two_layers_bidirectional_with_hx(cls: type) -> None:
    autograd.set_default_dtype(np.float64)
    try:
        layer = cls(3, 2, num_layers=2, bidirectional=True, batch_first=True)
    finally:
        autograd.set_default_dtype(np.float32)
    x = randn(2, 3, 3, requires_grad=True)
    h0, c0 = randn(4, 2, 2, seed=1, requires_grad=True), randn(4, 2, 2, seed=2, requires_grad=True)
    weights = [randn(*s, seed=3 + k).data for k, s in enumerate([(2, 3, 4), (4, 2, 2), (4, 2, 2)])]

    def loss(layer: nn.Module, x: Tensor, h0: Tensor, c0: Tensor) -> Tensor:
        # every output gets a gradient of its own: the outputs, h_n and c_n
        out, state = layer(x, (h0, c0) if cls is nn.LSTM else h0)
        total = (out * weights[0]).sum() + (state[0] if cls is nn.LSTM else state) * weights[1]
        return total.sum() + ((state[1] * weights[2]).sum() if cls is nn.LSTM else 0.0)

    check_module(layer, loss, x, h0, c0)


def test_gradcheck_cells_and_relu() -> None:
    autograd.set_default_dtype(np.float64)
    try:
        cells = [nn.LSTMCell(3, 2), nn.GRUCell(3, 2), nn.RNNCell(3, 2, nonlinearity="relu")]
        relu = nn.RNN(3, 2, nonlinearity="relu", bias=False)
    finally:
        autograd.set_default_dtype(np.float32)
    x, h = randn(2, 3, requires_grad=True), randn(2, 2, seed=1, requires_grad=True)
    c = randn(2, 2, seed=2, requires_grad=True)

    def two_steps(cell: nn.Module, x: Tensor, h: Tensor, c: Tensor) -> Tensor:
        if isinstance(cell, nn.LSTMCell):
            h1, c1 = cell(x, (h, c))
            h2, c2 = cell(x * 0.5, (h1, c1))
            return h2 * 1.5 + c2
        return cell(x * 0.5, cell(x, h)) + 0.0 * c

    for cell in cells:
        check_module(cell, two_steps, x, h, c)
    check_module(relu, lambda layer, x: layer(x)[0], randn(3, 2, 3, requires_grad=True))


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_second_derivatives_through_the_composed_twin(mode: str) -> None:
    """Under create_graph the fused op's backward differentiates the composed layer: exact
    second derivatives (gradgradcheck), in both directions."""
    g = recurrent._GATES[mode]
    x = randn(2, 1, 2, requires_grad=True)
    w_ih, w_hh = (
        randn(g * 2, 2, seed=1, requires_grad=True),
        randn(g * 2, 2, seed=2, requires_grad=True),
    )
    b = randn(g * 2, seed=3, requires_grad=True)
    h0 = randn(1, 2, seed=4, requires_grad=True)
    for reverse in (False, True):
        assert autograd.gradgradcheck(
            lambda x, w_ih, w_hh, b, h0, r=reverse: recurrent._layer(
                mode, x, w_ih, w_hh, b, b * 0.5, h0, h0 * 2.0, r
            ),
            [x, w_ih, w_hh, b, h0],
        )


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_layer_equals_its_composed_twin(mode: str, reverse: bool) -> None:
    g = recurrent._GATES[mode]
    ins = [randn(4, 3, 5, requires_grad=True, dtype=np.float64)] + [
        randn(*s, seed=k + 1, requires_grad=True, dtype=np.float64)
        for k, s in enumerate([(g * 6, 5), (g * 6, 6), (g * 6,), (g * 6,), (3, 6), (3, 6)])
    ]
    weight = np.random.default_rng(9).standard_normal((2, 4, 3, 6) if mode == "LSTM" else (4, 3, 6))
    results = []
    for layer in (recurrent._layer, recurrent._layer_composed):
        out = layer(mode, *ins, reverse)
        grads = autograd.grad((out * weight).sum(), ins, allow_unused=True)  # (c0: LSTM only)
        results.append((out.data, [0.0 if gr is None else gr.data for gr in grads]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", ["no_bias", "large_bias", "no_state", "sparse_cell_grads"])
def test_lstm_kernel_paths_equal_the_composed_twin(case: str, reverse: bool) -> None:
    """The fused LSTM's special paths against the step-by-step Tensor ops: no bias; biases
    too large to fold into the exp pass as exp(b) (|b| >= 60: added to the input projections
    instead); no h_0 / c_0 (the first step's W_hh product is skipped); gradients on the cell
    states of two steps only (the backward adds them at those steps)."""
    x = randn(5, 3, 4, requires_grad=True, dtype=np.float64)
    w_ih = randn(24, 4, seed=1, requires_grad=True, dtype=np.float64)
    w_hh = randn(24, 6, seed=2, requires_grad=True, dtype=np.float64)
    b_ih = randn(24, seed=3, requires_grad=True, dtype=np.float64)
    b_hh = randn(24, seed=4, requires_grad=True, dtype=np.float64)
    h0 = randn(3, 6, seed=5, requires_grad=True, dtype=np.float64)
    c0 = randn(3, 6, seed=6, requires_grad=True, dtype=np.float64)
    if case == "large_bias":
        with autograd.no_grad():
            big = np.zeros(24)
            big[[0, 8, 13, 20]] = [70.0, -80.0, 65.0, -90.0]  # i, f, g, o gates
            b_ih = Tensor(b_ih.data + big, requires_grad=True)
    ins = [x, w_ih, w_hh, b_ih, b_hh, h0, c0]
    if case == "no_bias":
        ins[3] = ins[4] = None
    if case == "no_state":
        ins[5] = ins[6] = None
    weight = np.random.default_rng(9).standard_normal((2, 5, 3, 6))
    if case == "sparse_cell_grads":
        weight[1, [0, 2, 4]] = 0.0
    given = [t for t in ins if t is not None]
    results = []
    for layer in (recurrent._layer, recurrent._layer_composed):
        out = layer("LSTM", *ins, reverse)
        grads = autograd.grad((out * weight).sum(), given)
        results.append((out.data, [gr.data for gr in grads]))
    assert np.isfinite(results[0][0]).all()
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_lstm_saturated_gates_stay_exact_in_float32() -> None:
    """Pre-activations in the hundreds (exp overflows to inf inside the kernel) give gates of
    exactly 0 or 1 and tanh(g) of exactly +-1, as the equations do, and finite gradients."""
    rng = np.random.default_rng(4)
    sd = {k: v * 40.0 for k, v in pytorch_state_dict("LSTM", 3, 4, 1, False).items()}
    layer = nn.LSTM(3, 4)
    layer.load_state_dict(sd)
    x = (rng.standard_normal((6, 2, 3)) * 10.0).astype(np.float32)
    sd32 = {k: v.astype(np.float32) for k, v in sd.items()}
    with np.errstate(over="ignore"):
        hs, h, c = lstm_by_hand(x, sd32, "_l0", np.zeros((2, 4), np.float32), np.zeros((2, 4)))
    xt = Tensor(x, requires_grad=True)
    out, (h_n, c_n) = layer(xt)
    np.testing.assert_allclose(out.data, hs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_n.data[0], c, rtol=1e-5, atol=1e-5)
    (out.sum() + c_n.sum()).backward()
    assert np.isfinite(xt.grad).all()
    assert all(np.isfinite(p.grad).all() for p in layer.parameters())


def test_empty_batch() -> None:
    for bidirectional in (False, True):
        layer = nn.LSTM(3, 4, bidirectional=bidirectional)
        x = Tensor(np.zeros((5, 0, 3), np.float32), requires_grad=True)
        out, (h, c) = layer(x)
        assert out.shape == (5, 0, 4 * (1 + bidirectional)) and h.shape == c.shape
        assert h.shape == (1 + bidirectional, 0, 4)
        (out.sum() + h.sum() + c.sum()).backward()
        assert x.grad.shape == (5, 0, 3)
        assert all(not p.grad.any() for p in layer.parameters())


def test_float32_in_float32_out_gradients_included() -> None:
    layer = nn.GRU(3, 4, batch_first=True, bidirectional=True)
    x = Tensor(randn(2, 5, 3).data.astype(np.float32), requires_grad=True)
    out, h = layer(x)
    assert out.dtype == h.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())


# ----- dropout and state dicts -------------------------------------------------------------------
def test_dropout_between_layers_only_in_training() -> None:
    autograd.manual_seed(0)
    layer = nn.LSTM(3, 4, num_layers=2, dropout=1.0)  # drops ALL of layer 0's output
    x = randn(5, 2, 3)
    out_train, (h_train, _) = layer(x)
    # the second layer then sees zeros: its result is the first-layer-free computation
    zeros_in = nn.LSTM(4, 4)
    zeros_in.load_state_dict(
        {k.replace("_l1", "_l0"): v for k, v in layer.state_dict().items() if "_l1" in k}
    )
    expected, _ = zeros_in(Tensor(np.zeros((5, 2, 4), np.float32)))
    np.testing.assert_allclose(out_train.data, expected.data, rtol=1e-6)
    layer.eval()
    out_eval, _ = layer(x)
    plain = nn.LSTM(3, 4, num_layers=2)
    plain.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(out_eval.data, plain(x)[0].data)
    assert not np.allclose(out_eval.data, out_train.data)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_state_dict_round_trip(cls: type, tmp_path) -> None:  # noqa: ANN001
    layer = cls(3, 4, num_layers=2, bidirectional=True)
    path = tmp_path / "rnn.npz"
    nn.save(layer.state_dict(), path)
    other = cls(3, 4, num_layers=2, bidirectional=True)
    other.load_state_dict(nn.load(path))
    x = randn(4, 2, 3)
    np.testing.assert_array_equal(layer(x)[0].data, other(x)[0].data)
    with pytest.raises(KeyError, match="weight_ih_l1_reverse"):
        cls(3, 4, num_layers=2).load_state_dict(layer.state_dict())


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_time_loops_on_one_blas_thread_when_blas_workers_sleep(
    cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OpenBLAS's idle workers asleep, each time loop (forward and backward) runs its
    per-step products on one BLAS thread, restored after; the numbers are the same."""
    from autograd import parallel

    entered: list[bool] = []
    real = parallel.one_blas_thread

    def spy():  # noqa: ANN202
        entered.append(True)
        return real()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)

    def run() -> tuple[np.ndarray, np.ndarray]:
        autograd.manual_seed(0)
        layer = cls(4, 5)
        inp = Tensor(x, requires_grad=True)
        out, _ = layer(inp)
        (out * out).sum().backward()
        return out.data, inp.grad

    monkeypatch.setattr(recurrent, "_BLAS_WORKERS_SLEEP", False)
    expected = run()
    assert not entered
    before = parallel._blas_libs() and [lib.get_num_threads() for lib in parallel._blas_libs()]
    monkeypatch.setattr(recurrent, "_BLAS_WORKERS_SLEEP", True)
    monkeypatch.setattr(recurrent, "one_blas_thread", spy)
    got = run()
    assert len(entered) == 2  # the forward loop and the backward loop
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6, atol=1e-7)
    after = parallel._blas_libs() and [lib.get_num_threads() for lib in parallel._blas_libs()]
    assert after == before  # BLAS's thread count is back
