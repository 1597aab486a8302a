"""Recurrent layers: `RNN`, `LSTM`, `GRU` and their cells, with PyTorch's signatures,
parameter names, gate order, initialisation and return values.

Equations (PyTorch's, gate rows of the weights in this order):

- RNN:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)   (or relu)
- LSTM: i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh), i f o sigmoid, g tanh;
        c' = f * c + i * g,  h' = o * tanh(c')
- GRU:  r, z = sigmoid(W_ir x + b_ir + W_hr h + b_hr), sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

Each layer and direction is ONE graph node: a numpy forward that computes the input-to-hidden
products of all time steps in one matmul, then loops over time (one matmul with W_hh and a
few elementwise passes per step), and a numpy backward through time whose per-step work is
a handful of passes too: every derivative factor that does not depend on the incoming
gradient (sigmoid' and tanh' of the saved gates, c_{t-1}, ...) is computed for all steps at
once before the loop, and the weight gradients are one matmul each after it. Measured
(forward + backward, T=64, batch 16, input and hidden 128, float32, one BLAS thread): LSTM
20 ms fused per layer, against 60 ms composed of Tensor ops step by step and 75 ms as one
fused op per time step (each step's slice of the inputs then costs a full-size gradient
buffer); GRU 15 / 75 / 41 ms; tanh RNN 6 / 16 / 16 ms. The LSTM kernel now keeps its
states as (features, batch) so that each step is one 2-D product that OpenBLAS threads
plus passes over contiguous blocks: with 2 BLAS threads 4.6 + 5.8 ms (forward + backward,
best of 48), where the (batch, features) kernel before it took 6.0 + 6.5 ms and PyTorch's
LSTM layer 3.7 + 5.3 ms.
Under `autograd.grad(..., create_graph=True)` the backward differentiates the same layer
composed of Tensor ops instead, so second derivatives are exact.

Layouts: sequences are time-major `(T, N, features)` unless `batch_first=True`
(`(N, T, features)`); an unbatched sequence is `(T, features)`. Hidden states are
`(num_layers * num_directions, N, hidden_size)` in either case.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import autograd
from autograd import Tensor
from autograd.parallel import blas_workers_sleep, one_blas_thread

from . import functional as F
from . import init
from .functional import _recorded_backward
from .module import Module, Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_OP_NAMES = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _data(t: Tensor | None) -> np.ndarray | None:
    return None if t is None else t.data


def _previous(states: np.ndarray, initial: np.ndarray, reverse: bool) -> np.ndarray:
    """The state each step started from, (T, N, H): `initial` then the states before."""
    if reverse:
        return np.concatenate([states[1:], initial[None]], axis=0)
    return np.concatenate([initial[None], states[:-1]], axis=0)


def _rows(a: np.ndarray) -> np.ndarray:
    """(T, N, K) -> (T*N, K), a view when it can be."""
    return a.reshape(-1, a.shape[-1])


# ----- the layers composed of Tensor ops (the fused ops' twice-differentiable twins) ----------
def _layer_composed(
    mode: str,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor | None,
    c0: Tensor | None,
    reverse: bool,
) -> Tensor:
    """One layer and direction with Tensor ops, step by step: the same result as `_layer`,
    (2, T, N, H) for LSTM (h's then c's), else (T, N, H)."""
    steps, batch = x.shape[0], x.shape[1]
    hidden = w_hh.shape[1]
    xw = x @ w_ih.T
    if b_ih is not None:
        xw = xw + b_ih
    zeros = Tensor(np.zeros((batch, hidden), dtype=x.dtype))
    h = zeros if h0 is None else h0
    c = zeros if c0 is None else c0
    hs: list[Tensor] = [zeros] * steps
    cs: list[Tensor] = [zeros] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    H = hidden  # noqa: N806 (the equations' name)
    with _step_blas():
        for t in order:
            hw = h @ w_hh.T
            if b_hh is not None:
                hw = hw + b_hh
            a = xw[t]
            if mode == "LSTM":
                pre = a + hw
                i, f = pre[:, :H].sigmoid(), pre[:, H : 2 * H].sigmoid()
                g, o = pre[:, 2 * H : 3 * H].tanh(), pre[:, 3 * H :].sigmoid()
                c = f * c + i * g
                h = o * c.tanh()
                cs[t] = c
            elif mode == "GRU":
                r = (a[:, :H] + hw[:, :H]).sigmoid()
                z = (a[:, H : 2 * H] + hw[:, H : 2 * H]).sigmoid()
                n = (a[:, 2 * H :] + r * hw[:, 2 * H :]).tanh()
                h = (1.0 - z) * n + z * h
            else:
                pre = a + hw
                h = pre.tanh() if mode == "RNN_TANH" else pre.relu()
            hs[t] = h
    out = autograd.stack(hs)
    return autograd.stack([out, autograd.stack(cs)]) if mode == "LSTM" else out


# ----- the fused numpy kernels -------------------------------------------------------------
# Each `_forward_*` runs one layer and direction over time-major arrays and returns the output
# array and a `backward(g) -> (dx, dw_ih, dw_hh, db_ih, db_hh, dh0, dc0)` numpy function.


_BLAS_WORKERS_SLEEP = blas_workers_sleep()  # (read once: OpenBLAS read its settings at load)


def _step_blas() -> contextlib.AbstractContextManager:
    """Where the time loops run their small per-step products: on one BLAS thread when
    OpenBLAS's idle workers sleep (`autograd.parallel.blas_workers_sleep`), since waking a
    worker for each (512, 128) @ (128, 16) product cost more than the product (LSTM LM step
    16.5 -> 38.6 ms with OPENBLAS_THREAD_TIMEOUT=4); with its workers spinning (the
    default), OpenBLAS's own threads, which then start at once."""
    return one_blas_thread() if _BLAS_WORKERS_SLEEP else contextlib.nullcontext()


def _swap_leading(a: np.ndarray) -> np.ndarray:
    """(P, Q, R) -> (Q, P, R), a contiguous copy that moves each run of R items as one
    element: numpy copies a (64, 512, 16) float32 transpose at half the cost this way."""
    p, q, r = a.shape
    out = np.empty((q, p, r), dtype=a.dtype)
    if out.size == 0:
        return out
    run = np.dtype((np.void, r * a.itemsize))
    np.copyto(out.view(run).reshape(q, p), a.view(run).reshape(p, q).T)
    return out


def _forward_lstm(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse):  # noqa: ANN001, ANN202
    steps, batch, _ = x.shape
    H = w_hh.shape[1]  # noqa: N806
    dtype = x.dtype
    # Layout: features x batch. Each step's gates are W_hh h with h as (H, N), so the product
    # is (4H, N) = four contiguous (H, N) gate blocks; numpy's elementwise passes on
    # contiguous blocks cost a third of those on column slices or strided views, and this
    # product (one 2-D BLAS call, which OpenBLAS threads) took 21 us against 36 us as
    # a batched (4, N, H) product.
    # Internally the gates sit in the order (o, i, f, g), not PyTorch's (i, f, g, o). All four
    # come from one exp pass (numpy's float32 exp costs half its tanh): sigmoid(a) =
    # 1 / (1 + exp(-a)) and tanh(a) = 2 sigmoid(2a) - 1, so the weights' rows are pre-scaled
    # by -1 (o, i, f) and -2 (g). The bias folds into that pass for free:
    # sigmoid(a + b) = F / (F + exp(-a)) with F = exp(b), unless exp(b) could overflow; and
    # 2F in g's numerator gives 2 sigmoid(2a) directly.
    perm = np.r_[3 * H : 4 * H, 0 : 3 * H]
    scale = np.full((4 * H, 1), -1.0, dtype=dtype)
    scale[3 * H :] = -2.0
    wih_p, whh_p = w_ih[perm], w_hh[perm]  # (4H, I), (4H, H): copies, reused by backward
    xw = (wih_p * scale) @ _rows(x).T  # (4H, T*N): the input projections of all steps
    exp_bias = np.ones(4 * H, dtype=dtype)  # F
    if b_ih is not None:
        bias = (b_ih[perm] + b_hh[perm]) * -scale[:, 0]
        if np.abs(bias).max() < 60.0:
            exp_bias = np.exp(bias)
        else:
            xw -= bias[:, None]
    f_plus = np.repeat(exp_bias[:, None], batch, axis=1)  # (4H, N): F, added to exp(-a)
    numer = f_plus.copy()  # F over it, 2F for g (whose tanh is then numer / (...) - 1)
    numer[3 * H :] *= 2.0
    gates = _swap_leading(xw.reshape(4 * H, steps, batch))  # (T, 4H, N); activations later
    del xw
    blocks = gates.reshape(steps, 4, H, batch)
    wh = whh_p * scale
    # kept for backward, whose derivative factors are cheapest from these products
    cs, hs, tanh_c, fcs, igs = np.empty((5, steps, H, batch), dtype=dtype)  # f * c_prev, i * g
    product = np.empty((4 * H, batch), dtype=dtype)
    h_init = np.zeros((batch, H), dtype) if h0 is None else h0
    c_init = np.zeros((batch, H), dtype) if c0 is None else c0
    h, c = h_init.T, c_init.T
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    matmul, add, multiply, divide, exp, tanh = (
        np.matmul,
        np.add,
        np.multiply,
        np.divide,
        np.exp,
        np.tanh,
    )
    # (exp overflowing to inf gives sigmoid 0: exact)
    with np.errstate(over="ignore"), _step_blas():
        for t in order:
            a = gates[t]
            if t != order[0] or h0 is not None:  # (h starts at zero unless given)
                matmul(wh, h, out=product)
                a += product
            exp(a, out=a)
            a += f_plus
            divide(numer, a, out=a)
            o, i, f, g = blocks[t]
            g -= 1.0
            c_new, fc, ig = cs[t], fcs[t], igs[t]
            multiply(f, c, out=fc)  # c' = f * c + i * g
            multiply(i, g, out=ig)
            add(fc, ig, out=c_new)
            tc = tanh_c[t]
            tanh(c_new, out=tc)  # h' = o * tanh(c')
            h = hs[t]
            multiply(o, tc, out=h)
            c = c_new
    out = np.empty((2, steps, batch, H), dtype=dtype)
    out[0] = hs.transpose(0, 2, 1)
    out[1] = cs.transpose(0, 2, 1)

    def backward(g_out: np.ndarray, need_dx: bool):  # noqa: ANN202
        gh, gc = g_out[0], g_out[1]
        # dL/da for each gate = (dh or dc) times a factor known before the loop, computed
        # for all steps at once on contiguous (T, H, N) planes: numpy's passes over strided
        # views of the per-step blocks cost twice as much as this copy
        o, i, f, g = np.ascontiguousarray(blocks.transpose(1, 0, 2, 3))
        k_dc = hs * tanh_c  # dc += dh * o * tanh'(c) = dh * (o - h * tanh(c))
        np.subtract(o, k_dc, out=k_dc)
        k_o = 1.0 - o  # da_o = dh * tanh(c) * sigmoid'(o) = dh * h * (1 - o)
        k_o *= hs
        k_i = 1.0 - i  # da_i = dc * g * sigmoid'(i) = dc * (i g) * (1 - i)
        k_i *= igs
        k_f = 1.0 - f  # da_f = dc * c_prev * sigmoid'(f) = dc * (f c_prev) * (1 - f)
        k_f *= fcs
        k_g = igs * g  # da_g = dc * i * tanh'(g) = dc * (i - (i g) g)
        np.subtract(i, k_g, out=k_g)
        da = np.empty((steps, 4 * H, batch), dtype=dtype)
        da_blocks = da.reshape(steps, 4, H, batch)
        whh_t = whh_p.T  # (H, 4H)
        dh = np.empty((H, batch), dtype=dtype)
        dc = np.empty((H, batch), dtype=dtype)
        dh_next = np.zeros((H, batch), dtype=dtype)
        dc_next = np.zeros((H, batch), dtype=dtype)
        # usually only c_n has a gradient, often nothing does (a max over the bits is 10x
        # faster than .any(); -0.0 passes, and adding it is harmless)
        bits = gc.view(f"u{gc.itemsize}").reshape(steps, -1)
        cell_steps = set(np.flatnonzero(bits.max(axis=1, initial=0)).tolist())
        matmul, add, multiply = np.matmul, np.add, np.multiply
        with _step_blas():
            for t in reversed(order):
                d_o, d_i, d_f, d_g = da_blocks[t]
                add(gh[t].T, dh_next, out=dh)  # (a strided read costs less than a copy of gh)
                multiply(dh, k_dc[t], out=dc)
                dc += dc_next
                if t in cell_steps:
                    dc += gc[t].T
                multiply(dh, k_o[t], out=d_o)
                multiply(dc, k_i[t], out=d_i)
                multiply(dc, k_f[t], out=d_f)
                multiply(dc, k_g[t], out=d_g)
                multiply(dc, f[t], out=dc_next)
                if t != order[0] or h0 is not None:
                    matmul(whh_t, da[t], out=dh_next)
        cols = _swap_leading(da).reshape(4 * H, steps * batch)  # (4H, T*N), steps in order
        del da
        inverse = np.argsort(perm)
        dx = (cols.T @ wih_p).reshape(x.shape) if need_dx else None
        dw_ih = (cols @ _rows(x))[inverse]
        # dW_hh = sum over steps of da_t h_{t-1}^T: the outputs shifted by one step
        rows_h, n = _rows(out[0]), batch
        if reverse:
            dw_hh = cols[:, :-n] @ rows_h[n:]
            if h0 is not None:
                dw_hh += cols[:, -n:] @ h_init
        else:
            dw_hh = cols[:, n:] @ rows_h[:-n]
            if h0 is not None:
                dw_hh += cols[:, :n] @ h_init
        dw_hh = dw_hh[inverse]
        dh0 = None if h0 is None else dh_next.T.copy()
        dc0 = None if c0 is None else dc_next.T.copy()
        if b_ih is None:
            return dx, dw_ih, dw_hh, None, None, dh0, dc0
        db = (cols @ np.ones(steps * batch, dtype=dtype))[inverse]
        return dx, dw_ih, dw_hh, db, db.copy(), dh0, dc0

    return out, backward


def _forward_gru(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse):  # noqa: ANN001, ANN202, ARG001
    steps, batch, _ = x.shape
    H = w_hh.shape[1]  # noqa: N806
    dtype = x.dtype
    # r and z through sigmoid(a) = 0.5 tanh(a/2) + 0.5: their rows pre-scaled by 1/2
    scale = np.full((3 * H, 1), 0.5, dtype=dtype)
    scale[2 * H :] = 1.0
    gates = _rows(x) @ (w_ih * scale).T  # (T*N, 3H): the input projections of all steps
    b_hn = None
    if b_ih is not None:
        bias_x = b_ih.copy()
        bias_x[: 2 * H] += b_hh[: 2 * H]  # b_hr, b_hz fold into the input side; b_hn cannot
        gates += bias_x * scale[:, 0]
        b_hn = b_hh[2 * H :]
    gates = gates.reshape(steps, batch, 3 * H)
    whh_scaled_t = (w_hh * scale).T  # (H, 3H)
    out = np.empty((steps, batch, H), dtype=dtype)
    hidden_n = np.empty((steps, batch, H), dtype=dtype)  # W_hn h + b_hn, kept for backward
    h_init = np.zeros((batch, H), dtype) if h0 is None else h0
    h = h_init
    product = np.empty((batch, 3 * H), dtype=dtype)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    with _step_blas():
        for t in order:
            a = gates[t]  # overwritten with r, z, n, kept for backward
            np.matmul(h, whh_scaled_t, out=product)
            rz = a[:, : 2 * H]
            rz += product[:, : 2 * H]
            np.tanh(rz, out=rz)
            rz *= 0.5
            rz += 0.5
            r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            hn = hidden_n[t]
            if b_hn is None:
                hn[...] = product[:, 2 * H :]
            else:
                np.add(product[:, 2 * H :], b_hn, out=hn)
            h_new = out[t]
            np.multiply(r, hn, out=h_new)  # (h_new as scratch)
            n += h_new
            np.tanh(n, out=n)
            np.subtract(h, n, out=h_new)  # h' = n + z * (h - n)
            h_new *= z
            h_new += n
            h = h_new

    def backward(g_out: np.ndarray, need_dx: bool):  # noqa: ANN202
        r, z, n = (gates[..., k * H : (k + 1) * H] for k in range(3))
        h_prev = _previous(out, h_init, reverse)
        # every gate's dL/da is dh times a factor known before the loop
        k_n = (1.0 - z) * (1.0 - n * n)
        k_x = np.empty((steps, batch, 3, H), dtype=dtype)  # for the input side (r, z, n)
        np.multiply(k_n * hidden_n, r * (1.0 - r), out=k_x[:, :, 0])
        np.multiply(h_prev - n, z * (1.0 - z), out=k_x[:, :, 1])
        k_x[:, :, 2] = k_n
        k_h = k_x.copy()  # for the hidden side: n's pre-activation holds r * (W_hn h + b_hn)
        k_h[:, :, 2] *= r
        dxw = np.empty((steps, batch, 3, H), dtype=dtype)
        dhw = np.empty((steps, batch, 3, H), dtype=dtype)
        dh = np.empty((batch, H), dtype=dtype)
        direct = np.empty((batch, H), dtype=dtype)
        dh_next = np.zeros((batch, H), dtype=dtype)
        with _step_blas():
            for t in reversed(order):
                np.add(g_out[t], dh_next, out=dh)
                np.multiply(dh[:, None, :], k_x[t], out=dxw[t])
                np.multiply(dh[:, None, :], k_h[t], out=dhw[t])
                np.multiply(dh, z[t], out=direct)
                np.matmul(dhw[t].reshape(batch, 3 * H), w_hh, out=dh_next)
                dh_next += direct
        rows_x, rows_h = dxw.reshape(-1, 3 * H), dhw.reshape(-1, 3 * H)
        dx = (rows_x @ w_ih).reshape(x.shape) if need_dx else None
        dw_ih = rows_x.T @ _rows(x)
        dw_hh = rows_h.T @ _rows(h_prev)
        if b_ih is None:
            return dx, dw_ih, dw_hh, None, None, dh_next, None
        return dx, dw_ih, dw_hh, rows_x.sum(axis=0), rows_h.sum(axis=0), dh_next, None

    return out, backward


def _forward_rnn(relu: bool):  # noqa: ANN202
    def forward(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse):  # noqa: ANN001, ANN202, ARG001
        steps, batch, _ = x.shape
        H = w_hh.shape[1]  # noqa: N806
        dtype = x.dtype
        xw = _rows(x) @ w_ih.T
        if b_ih is not None:
            xw += b_ih + b_hh
        xw = xw.reshape(steps, batch, H)
        out = np.empty((steps, batch, H), dtype=dtype)
        h_init = np.zeros((batch, H), dtype) if h0 is None else h0
        h = h_init
        w_hh_t = w_hh.T
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        with _step_blas():
            for t in order:
                h_new = out[t]
                np.matmul(h, w_hh_t, out=h_new)
                h_new += xw[t]
                if relu:
                    np.maximum(h_new, 0, out=h_new)
                else:
                    np.tanh(h_new, out=h_new)
                h = h_new

        def backward(g_out: np.ndarray, need_dx: bool):  # noqa: ANN202
            slope = (out > 0).astype(dtype) if relu else 1.0 - out * out
            da = np.empty((steps, batch, H), dtype=dtype)
            dh = np.empty((batch, H), dtype=dtype)
            dh_next = np.zeros((batch, H), dtype=dtype)
            with _step_blas():
                for t in reversed(order):
                    np.add(g_out[t], dh_next, out=dh)
                    np.multiply(dh, slope[t], out=da[t])
                    np.matmul(da[t], w_hh, out=dh_next)
            rows = _rows(da)
            dx = (rows @ w_ih).reshape(x.shape) if need_dx else None
            dw_ih = rows.T @ _rows(x)
            dw_hh = rows.T @ _rows(_previous(out, h_init, reverse))
            db = None if b_ih is None else rows.sum(axis=0)
            return dx, dw_ih, dw_hh, db, None if db is None else db.copy(), dh_next, None

        return out, backward

    return forward


_FORWARD: dict[str, Callable[..., Any]] = {
    "LSTM": _forward_lstm,
    "GRU": _forward_gru,
    "RNN_TANH": _forward_rnn(relu=False),
    "RNN_RELU": _forward_rnn(relu=True),
}


def _layer(
    mode: str,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    h0: Tensor | None,
    c0: Tensor | None,
    reverse: bool,
) -> Tensor:
    """One layer and direction over a time-major sequence x (T, N, I), as one graph node.

    h0, c0 (N, H) or None (zeros). Returns (T, N, H) (the hidden state after every step),
    or for LSTM (2, T, N, H): the hidden states, then the cell states.
    """
    inputs = (x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    parents = tuple(t for t in inputs if t is not None)
    data, kernel_backward = _FORWARD[mode](
        x.data, w_ih.data, w_hh.data, _data(b_ih), _data(b_hh), _data(h0), _data(c0), reverse
    )

    def backward(g: Tensor, out: Tensor) -> tuple:
        if autograd.is_grad_enabled():  # create_graph: differentiate the composed twin instead
            grads = _recorded_backward(
                lambda *args: _layer_composed(mode, *args, reverse), inputs, g
            )
        else:
            grads = kernel_backward(g.data, x.requires_grad)
        return tuple(
            None
            if gr is None or not t.requires_grad
            else gr
            if isinstance(gr, Tensor)
            else Tensor._from_array(gr)
            for gr, t in zip(grads, inputs, strict=True)
            if t is not None
        )

    return Tensor._from_op(
        data, parents, _OP_NAMES[mode], backward, saved=parents, saves_output=True, reverse=reverse
    )


# ----- modules -----------------------------------------------------------------------------
def _check_sizes(op: str, input_size: int, hidden_size: int) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")


def _uniform_init(module: Module, hidden_size: int) -> None:
    """PyTorch's init of recurrent layers: every parameter from U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size)
    for p in module.parameters():
        init.uniform_(p, -bound, bound)


def _empty(*shape: int) -> Parameter:
    return Parameter(np.empty(shape, dtype=autograd.get_default_dtype()))


class RNNBase(Module):
    """The multi-layer, optionally bidirectional recurrent layer behind RNN, LSTM and GRU.

    Parameters per layer k and direction (suffix "" or "_reverse"), registered in PyTorch's
    order: `weight_ih_l{k}` (gates*H, I_k), `weight_hh_l{k}` (gates*H, H), `bias_ih_l{k}`,
    `bias_hh_l{k}` (gates*H,), where I_0 = input_size and I_k = H * num_directions above.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        name = "RNN" if mode.startswith("RNN") else mode
        _check_sizes(name, input_size, hidden_size)
        if not isinstance(num_layers, (int, np.integer)) or num_layers <= 0:
            raise ValueError(f"{name}: num_layers must be a positive int, got {num_layers!r}")
        if isinstance(dropout, bool) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"{name}: dropout is applied between recurrent layers (not after the last), "
                f"so dropout={dropout} with num_layers=1 has no effect",
                stacklevel=3,
            )
        self.mode = mode
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bias = int(num_layers), bool(bias)
        self.batch_first, self.dropout = bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        directions = 2 if bidirectional else 1
        rows = _GATES[mode] * hidden_size
        self._weight_names: list[tuple[str, ...]] = []  # per (layer, direction), in order
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                names = [f"weight_ih{suffix}", f"weight_hh{suffix}"]
                setattr(self, names[0], _empty(rows, layer_input))
                setattr(self, names[1], _empty(rows, hidden_size))
                if bias:
                    names += [f"bias_ih{suffix}", f"bias_hh{suffix}"]
                    setattr(self, names[2], _empty(rows))
                    setattr(self, names[3], _empty(rows))
                self._weight_names.append(tuple(names))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _check_state(self, what: str, h: Any, batch: int, batched: bool) -> Tensor:
        h = _tensor(h)
        layers = self.num_layers * (2 if self.bidirectional else 1)
        expected = (layers, batch, self.hidden_size) if batched else (layers, self.hidden_size)
        if h.shape != expected:
            raise ValueError(
                f"{self._name}: {what} of shape {h.shape} does not fit the input "
                f"(expected {expected})"
            )
        return h if batched else h.unsqueeze(1)

    def forward(self, input: Any, hx: Any = None) -> tuple[Tensor, Any]:  # noqa: A002
        """input (T, N, input_size) ((N, T, input_size) if batch_first, or unbatched
        (T, input_size)); hx (num_layers * num_directions, N, hidden_size) or None (zeros),
        for LSTM a pair (h_0, c_0).

        Returns (output, h_n) -- for LSTM (output, (h_n, c_n)) -- with output
        (T, N, num_directions * hidden_size) (batch first if batch_first) and h_n, c_n
        (num_layers * num_directions, N, hidden_size); unbatched without the N axis.
        """
        x = _tensor(input)
        lstm = self.mode == "LSTM"
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            layout = "(N, T, " if self.batch_first else "(T, N, "
            raise ValueError(
                f"{self._name}: input of shape {x.shape} does not fit input_size "
                f"{self.input_size} (expected {layout}{self.input_size}) or "
                f"(T, {self.input_size}))"
            )
        batched = x.ndim == 3
        if not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.swapaxes(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError(f"{self._name}: input of shape {x.shape} has no time steps")
        h0 = c0 = None
        if hx is not None:
            if lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError(f"{self._name}: hx must be a pair (h_0, c_0)")
                h0 = self._check_state("h_0", hx[0], batch, batched)
                c0 = self._check_state("c_0", hx[1], batch, batched)
            else:
                h0 = self._check_state("hx", hx, batch, batched)
        directions = 2 if self.bidirectional else 1
        h_n: list[Tensor] = []
        c_n: list[Tensor] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                weights = [getattr(self, n) for n in self._weight_names[index]]
                if not self.bias:
                    weights += [None, None]
                y = _layer(
                    self.mode,
                    layer_input,
                    *weights,
                    None if h0 is None else h0[index],
                    None if c0 is None else c0[index],
                    reverse=direction == 1,
                )
                last = 0 if direction == 1 else steps - 1  # the reverse pass ends at t = 0
                if lstm:
                    outputs.append(y[0])
                    h_n.append(y[0, last])
                    c_n.append(y[1, last])
                else:
                    outputs.append(y)
                    h_n.append(y[last])
            layer_input = outputs[0] if directions == 1 else autograd.cat(outputs, axis=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        output = layer_input
        h = autograd.stack(h_n)
        c = autograd.stack(c_n) if lstm else None
        if not batched:
            output, h = output.squeeze(1), h.squeeze(1)
            c = c.squeeze(1) if lstm else None
        elif self.batch_first:
            output = output.swapaxes(0, 1)
        return (output, (h, c)) if lstm else (output, h)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN, h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu), stacked and optionally
    bidirectional; see `RNNBase.forward` for shapes. Arguments in PyTorch's order."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory, gates i, f, g, o (PyTorch's order); returns
    (output, (h_n, c_n)). See `RNNBase.forward` for shapes."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )


class GRU(RNNBase):
    """Gated recurrent unit, gates r, z, n (PyTorch's order and equations); returns
    (output, h_n). See `RNNBase.forward` for shapes."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )


# ----- cells: one time step --------------------------------------------------------------------
class _CellBase(Module):
    """One step of a recurrent layer: `weight_ih` (gates*H, I), `weight_hh` (gates*H, H),
    `bias_ih`, `bias_hh` (gates*H,), U(-1/sqrt(H), 1/sqrt(H)) as PyTorch."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool) -> None:
        super().__init__()
        _check_sizes(type(self).__name__, input_size, hidden_size)
        self.mode = mode
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        rows = _GATES[mode] * hidden_size
        self.weight_ih = _empty(rows, input_size)
        self.weight_hh = _empty(rows, hidden_size)
        self.bias_ih = _empty(rows) if bias else None
        self.bias_hh = _empty(rows) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_init(self, self.hidden_size)

    def _step(self, input: Any, hx: Any) -> tuple[Tensor, bool]:  # noqa: A002
        """The step as a one-step layer: (1, N, H) ((2, 1, N, H) for LSTM), and whether the
        input was batched."""
        name = type(self).__name__
        x = _tensor(input)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input of shape {x.shape} does not fit input_size {self.input_size} "
                f"(expected (N, {self.input_size}) or ({self.input_size},))"
            )
        batched = x.ndim == 2
        if not batched:
            x = x.reshape(1, self.input_size)
        states: list[Tensor | None] = [None, None]
        if hx is not None:
            given = list(hx) if self.mode == "LSTM" else [hx]
            if self.mode == "LSTM" and len(given) != 2:
                raise TypeError(f"{name}: hx must be a pair (h, c)")
            expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            for k, h in enumerate(given):
                h = _tensor(h)
                if h.shape != expected:
                    raise ValueError(
                        f"{name}: hidden state of shape {h.shape} does not fit input of shape "
                        f"{tuple(input.shape)} (expected {expected})"
                    )
                states[k] = h if batched else h.reshape(1, self.hidden_size)
        y = _layer(
            self.mode,
            x.reshape(1, *x.shape),
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            states[0],
            states[1],
            reverse=False,
        )
        return y, batched

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(_CellBase):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu): input (N, I) or (I,), hx like the
    output (N, H) or (H,) (zeros when None)."""

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, input: Any, hx: Any = None) -> Tensor:  # noqa: A002
        y, batched = self._step(input, hx)
        return y[0] if batched else y[0, 0]


class GRUCell(_CellBase):
    """One GRU step (gates r, z, n): input (N, I) or (I,), hx (N, H) or (H,) -> h' like hx."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__("GRU", input_size, hidden_size, bias)

    def forward(self, input: Any, hx: Any = None) -> Tensor:  # noqa: A002
        y, batched = self._step(input, hx)
        return y[0] if batched else y[0, 0]


class LSTMCell(_CellBase):
    """One LSTM step (gates i, f, g, o): input (N, I) or (I,), hx a pair (h, c) of (N, H) or
    (H,) (zeros when None) -> (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias)

    def forward(self, input: Any, hx: Any = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        y, batched = self._step(input, hx)
        if batched:
            return y[0, 0], y[1, 0]
        return y[0, 0, 0], y[1, 0, 0]
