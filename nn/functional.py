"""Stateless neural-network functions: activations, losses, convolution, pooling, normalisation.

`from nn import functional as F`. Every function takes and returns `autograd.Tensor`s (numpy
arrays are accepted as inputs) and keeps float32 in float32, gradients included.

Three kinds of functions live here, and each says which it is:

- *Composed*: written with Tensor ops only, so the engine differentiates them (twice too).
- *Fused*: a numpy forward and a hand-written numpy backward, for speed (linear,
  cross_entropy, batch_norm in training). Under `autograd.grad(..., create_graph=True)`
  their backward recomputes the composed equivalent and differentiates that instead, so
  second derivatives stay exact; the fast path runs only in a plain `backward()`.
- *Once differentiable*: conv2d and the pools. Their numpy backward returns gradients through
  `autograd.once_differentiable`, so differentiating them a second time raises RuntimeError.

Layout note: conv2d works on an NHWC copy of its input (channels innermost make the im2col
gather copy contiguous runs) and returns an NCHW *view* of NHWC memory. The elementwise ops
and pools that follow keep that memory order (numpy's ufuncs write in the input's order), so
a CNN pays for the layout change once, at its first conv.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from autograd import Tensor, generator, grad, is_grad_enabled, once_differentiable

__all__ = [
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "leaky_relu",
    "softplus",
    "softmax",
    "log_softmax",
    "linear",
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "binary_cross_entropy_with_logits",
    "dropout",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "layer_norm",
    "embedding",
]

_REDUCTIONS = ("mean", "sum", "none")


# ----- helpers -----------------------------------------------------------------------------
def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _pair(op: str, name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """`3` or `(3, 3)` as a pair of ints."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def _check_reduction(op: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _recorded_backward(
    composed: Callable[..., Tensor], inputs: Sequence[Tensor | None], g: Tensor
) -> tuple[Tensor | None, ...]:
    """A fused op's gradients under `create_graph=True`: differentiate its composed twin.

    `composed(*inputs)` must compute the same function with Tensor ops. The result is recorded
    (it depends on the inputs and on `g`), so it can be differentiated again.
    """
    wanted = [t for t in inputs if t is not None and t.requires_grad]
    found = iter(
        grad(composed(*inputs), wanted, grad_outputs=g, create_graph=True, allow_unused=True)
    )
    return tuple(next(found) if t is not None and t.requires_grad else None for t in inputs)


# ----- activations (composed: thin wrappers over the Tensor methods) ------------------------
def relu(x: Tensor) -> Tensor:
    return _tensor(x).relu()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: exact x * Phi(x) (erf form, PyTorch's default) with approximate="none"; with
    approximate="tanh", 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's tanh form.

    The tanh form is fused: numpy forward and backward (derivative 0.5 (1 + t) + 0.5 x
    (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t the forward's tanh); under
    create_graph the backward differentiates the composed formula instead.
    """
    x = _tensor(x)
    if approximate == "none":
        return x.gelu()
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    k, c = float(np.sqrt(2.0 / np.pi)), 0.044715

    def composed(x: Tensor) -> Tensor:
        return 0.5 * x * (1.0 + (k * (x + c * x * x * x)).tanh())

    xd = x.data
    t = np.tanh(k * (xd + c * xd * xd * xd))
    data = 0.5 * xd * (1.0 + t)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if is_grad_enabled():  # create_graph: differentiate the composed twin instead
            return _recorded_backward(composed, (x,), g)
        slope = 1.0 - t * t
        slope *= (0.5 * k) * xd * (1.0 + (3.0 * c) * xd * xd)
        slope += 0.5 * (1.0 + t)
        slope *= g.data
        return (Tensor._from_array(slope),)

    return Tensor._from_op(data, (x,), "gelu", backward, saved=(x,), approximate="tanh")


def sigmoid(x: Tensor) -> Tensor:
    return _tensor(x).sigmoid()


def tanh(x: Tensor) -> Tensor:
    return _tensor(x).tanh()


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _tensor(x).leaky_relu(negative_slope)


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)), computed as logaddexp(0, x) so that it neither overflows nor rounds
    small values to 0; the derivative is sigmoid(x)."""
    x = _tensor(x)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * x.sigmoid(),)

    return Tensor._from_op(np.logaddexp(0, x.data), (x,), "softplus", backward)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return _tensor(x).softmax(axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return _tensor(x).log_softmax(axis=axis)


# ----- linear (fused) ----------------------------------------------------------------------
def _linear_composed(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    out = x @ weight.T
    return out if bias is None else out + bias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`x @ weight.T + bias`: x (..., in), weight (out, in), bias (out,) -> (..., out).

    Fused into one graph node instead of three (transpose, matmul, add), with a numpy backward:
    grad_x = g @ W, grad_W = g.T @ x (batch axes flattened), grad_b = sum of g's rows. The
    weight's gradient comes out contiguous and (out, in), not as a transposed view the engine
    would copy; measured on the MLP 784-128-10 step (batch 128) this saves ~20% against
    `x @ weight.T + bias` with Tensor-op backward.
    """
    x, weight = _tensor(x), _tensor(weight)
    x_data, w_data = x.data, weight.data
    if w_data.ndim != 2 or x_data.ndim == 0 or x_data.shape[-1] != w_data.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} does not fit weight of shape {weight.shape} "
            f"(expected (..., {weight.shape[-1]}) for weight (out, in))"
        )
    out_features, in_features = w_data.shape
    # batch axes flattened into one gemm: numpy runs (B, T, in) @ (in, out) as B small ones
    data = (x_data.reshape(-1, in_features) @ w_data.T).reshape(*x_data.shape[:-1], out_features)
    if bias is None:
        parents: tuple[Tensor, ...] = (x, weight)
    else:
        bias = _tensor(bias)
        if bias.data.shape != (out_features,):
            raise ValueError(
                f"linear: bias of shape {bias.shape} does not fit weight of shape {weight.shape}"
            )
        data += bias.data
        parents = (x, weight, bias)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if is_grad_enabled():  # create_graph: differentiate the composed twin instead
            return _recorded_backward(_linear_composed, (x, weight, bias), g)[: len(parents)]
        wrap = Tensor._from_array
        gx = gw = gb = None
        if x.requires_grad:
            gx = wrap((g.data.reshape(-1, out_features) @ w_data).reshape(x_data.shape))
        # batch axes flattened: rows (M, out) of the gradient, (M, in) of the input
        rows = g.data if g.data.ndim == 2 else g.data.reshape(-1, out_features)
        if weight.requires_grad:
            gw = wrap(rows.T @ (x_data if x_data.ndim == 2 else x_data.reshape(-1, in_features)))
        if bias is None:
            return gx, gw
        if bias.requires_grad:
            gb = wrap(rows.sum(axis=0))
        return gx, gw, gb

    return Tensor._from_op(data, parents, "linear", backward)


# ----- losses over class indices ------------------------------------------------------------
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # by itemsize


def _class_targets(op: str, scores: Tensor, target: Any) -> np.ndarray:
    """Integer class indices shaped like `scores` without its class axis 1, checked."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must hold integer class indices, got dtype {t.dtype} "
            "(probabilities as targets are not supported)"
        )
    if scores.ndim < 2:
        raise ValueError(
            f"{op}: expected scores of shape (N, C) or (N, C, d1, ...), got shape {scores.shape}"
        )
    expected = (scores.shape[0],) + scores.shape[2:]
    if t.shape != expected:
        raise ValueError(
            f"{op}: target of shape {t.shape} does not match input of shape {scores.shape} "
            f"(expected target shape {expected})"
        )
    classes = scores.shape[1]
    # one max over the indices read as unsigned ints: negative ones turn huge and fail it too
    if t.size and t.view(_UNSIGNED[t.itemsize]).max() >= classes:
        low, high = t.min(), t.max()
        if low < 0 or high >= classes:
            bad = int(low if low < 0 else high)
            raise IndexError(
                f"{op}: target {bad} is out of range for {classes} classes "
                f"(input of shape {scores.shape}); targets must lie in [0, {classes - 1}]"
            )
    return t.astype(np.intp, copy=False)


def _target_distribution(
    t: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, smoothing: float
) -> np.ndarray:
    """(1 - smoothing) * onehot(t) + smoothing / C along axis 1, in `dtype`."""
    dist = np.full(shape, smoothing / shape[1], dtype=dtype)
    picked = np.take_along_axis(dist, t[:, None], axis=1)
    np.put_along_axis(dist, t[:, None], picked + (1.0 - smoothing), axis=1)
    return dist


def _unbatched(fn: Callable[..., Tensor], scores: Tensor, target: Any, *args: Any) -> Tensor:
    """Class-index losses on a single sample: scores (C,), target a scalar index."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    out = fn(scores.reshape(1, -1), t.reshape(1), *args)
    return out.reshape(()) if out.ndim else out


def cross_entropy(
    logits: Tensor,
    target: Any,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of `logits` against integer class indices (fused, stable).

    logits (N, C) or (N, C, d1, ...) (or (C,) for one sample); target (N,) or (N, d1, ...)
    int array/Tensor. Per element: loss = logsumexp(z) - sum_c q_c z_c with the target
    distribution q = (1 - eps) * onehot + eps / C (eps = label_smoothing, PyTorch's rule).
    reduction "mean" averages over all N*d1*... elements, "sum" adds them, "none" keeps them.
    The gradient is (softmax(z) - q) / count, computed in numpy from the forward's softmax.
    """
    logits = _tensor(logits)
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"cross_entropy: label_smoothing must lie in [0, 1], got {label_smoothing}"
        )
    if logits.ndim == 1:
        return _unbatched(cross_entropy, logits, target, reduction, label_smoothing)
    t = _class_targets("cross_entropy", logits, target)
    eps = float(label_smoothing)
    classes = logits.shape[1]
    # (N, C, d1, ...) -> rows (N*d1*..., C): one 2-D code path (a view for plain (N, C))
    z = logits.data if logits.ndim == 2 else np.moveaxis(logits.data, 1, -1).reshape(-1, classes)
    labels = t if t.ndim == 1 else t.reshape(-1)
    rows = np.arange(len(labels))

    shifted = z - z.max(axis=1, keepdims=True)  # exp never overflows
    probs = np.exp(shifted)
    total = probs.sum(axis=1)
    log_total = np.log(total)
    losses = log_total - shifted[rows, labels]
    if eps:  # -sum_c (eps/C) log p_c = log_total - mean_c(shifted)
        losses = (1.0 - eps) * losses + eps * (log_total - shifted.mean(axis=1))
    probs /= total[:, None]  # the softmax, kept for backward
    count = losses.size
    if reduction == "none":
        data = losses.reshape(t.shape)
    elif reduction == "sum":
        data = losses.sum()
    else:
        data = losses.sum() / count if count else np.array(np.nan, dtype=logits.dtype)

    def composed(z: Tensor) -> Tensor:
        dist = _target_distribution(t, z.shape, z.dtype, eps)
        return _reduce(-(z.log_softmax(axis=1) * dist).sum(axis=1), reduction)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if is_grad_enabled():  # create_graph: a recorded (twice differentiable) gradient
            return _recorded_backward(composed, (logits,), g)
        if reduction == "none":
            scale = g.data.reshape(-1, 1)
            target_scale = (1.0 - eps) * scale[:, 0]
        else:  # a 0-d gradient: Python floats keep the arithmetic off numpy's scalar path
            scale = float(g.data) / count if reduction == "mean" else float(g.data)
            target_scale = (1.0 - eps) * scale
        dz = probs * scale  # (softmax - q) * scale with q = (1 - eps) onehot + eps / C
        dz[rows, labels] -= target_scale
        if eps:
            dz -= (eps / classes) * scale
        if logits.ndim > 2:
            dz = np.moveaxis(dz.reshape(t.shape + (classes,)), -1, 1)
        return (Tensor._from_array(dz),)

    return Tensor._from_op(
        data,  # (a numpy scalar for "mean" and "sum", of the logits' dtype)
        (logits,),
        "cross_entropy",
        backward,
        reduction=reduction,
        label_smoothing=eps,
    )


def nll_loss(log_probs: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood: -log_probs[n, target[n]] (composed).

    log_probs (N, C) or (N, C, d1, ...) (or (C,)), e.g. from `log_softmax(z, axis=1)`;
    target int (N,) or (N, d1, ...); reduction "mean" | "sum" | "none".
    """
    log_probs = _tensor(log_probs)
    _check_reduction("nll_loss", reduction)
    if log_probs.ndim == 1:
        return _unbatched(nll_loss, log_probs, target, reduction)
    t = _class_targets("nll_loss", log_probs, target)
    onehot = _target_distribution(t, log_probs.shape, log_probs.dtype, 0.0)
    return _reduce(-(log_probs * onehot).sum(axis=1), reduction)


# ----- losses over values (composed) -------------------------------------------------------
def _value_target(op: str, input: Tensor, target: Any) -> Tensor:  # noqa: A002
    target = target if isinstance(target, Tensor) else Tensor(target, dtype=input.dtype)
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: target of shape {target.shape} does not match input of shape {input.shape}"
        )
    return target


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:  # noqa: A002
    """(input - target)^2, averaged/summed/kept; shapes must match exactly (no broadcasting:
    an (N, 1) against (N,) mix-up is an error, not a silent (N, N) loss)."""
    input = _tensor(input)  # noqa: A001
    _check_reduction("mse_loss", reduction)
    diff = input - _value_target("mse_loss", input, target)
    return _reduce(diff * diff, reduction)


def binary_cross_entropy_with_logits(
    logits: Tensor, target: Any, reduction: str = "mean", pos_weight: Any = None
) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable expression (composed).

    loss = max(x, 0) - x t + log1p(exp(-|x|)) = softplus(x) - x t; with `pos_weight` p
    (broadcast over the last axis, one weight per class), PyTorch's
    loss = (1 - t) x + (1 + (p - 1) t) softplus(-x). target: probabilities shaped like logits.
    """
    logits = _tensor(logits)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    t = _value_target("binary_cross_entropy_with_logits", logits, target)
    if pos_weight is None:
        losses = softplus(logits) - logits * t
    else:
        p = pos_weight if isinstance(pos_weight, Tensor) else Tensor(pos_weight, dtype=logits.dtype)
        losses = (1.0 - t) * logits + (1.0 + (p - 1.0) * t) * softplus(-logits)
    return _reduce(losses, reduction)


# ----- dropout (composed) ------------------------------------------------------------------
def dropout(
    x: Tensor, p: float = 0.5, training: bool = True, rng: np.random.Generator | None = None
) -> Tensor:
    """Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

    Identity when not training or p == 0; zeros when p == 1. The mask comes from `rng`, or
    the generator that `autograd.manual_seed` seeds.
    """
    x = _tensor(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * np.zeros((), dtype=x.dtype)
    rng = rng if rng is not None else generator()
    draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    keep = rng.random(x.shape, dtype=draw_dtype) >= p
    mask = np.multiply(keep, np.asarray(1.0 / (1.0 - p), dtype=x.dtype), dtype=x.dtype)
    return x * mask


# ----- convolution and pooling (once differentiable) ----------------------------------------
def _spatial_geometry(
    op: str,
    shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int]:
    """Output height and width, after checking the kernel fits the padded input."""
    h, w = shape[-2:]
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(
            f"{op}: stride must be >= 1 and padding >= 0, got stride {stride}, padding {padding}"
        )
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"{op}: kernel {kernel} is larger than the padded input "
            f"{(h + 2 * ph, w + 2 * pw)} (input of shape {shape}, padding {padding})"
        )
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _check_4d(op: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W), got shape {x.shape}")


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """2-D cross-correlation (PyTorch's conv2d, no groups or dilation).

    x (N, C, H, W) (or (C, H, W)), weight (O, C, kh, kw), bias (O,) -> (N, O, Ho, Wo) with
    Ho = (H + 2 ph - kh) // sh + 1. im2col through `sliding_window_view` and one matmul:
    out[n, ho, wo, o] = sum_{i, j, c} xpad[n, ho*sh + i, wo*sw + j, c] w[o, c, i, j].
    """
    x, weight = _tensor(x), _tensor(weight)
    if x.ndim == 3:
        out = conv2d(x.reshape(1, *x.shape), weight, bias, stride, padding)
        return out.reshape(out.shape[1:])
    _check_4d("conv2d", x)
    if weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"conv2d: weight of shape {weight.shape} does not fit input of shape {x.shape} "
            f"(expected weight (O, {x.shape[1]}, kh, kw): input channels must match)"
        )
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair("conv2d", "stride", stride), _pair("conv2d", "padding", padding)
    ho, wo = _spatial_geometry("conv2d", x.shape, (kh, kw), (sh, sw), (ph, pw))
    parents: tuple[Tensor, ...] = (x, weight)
    if bias is not None:
        bias = _tensor(bias)
        if bias.shape != (o,):
            raise ValueError(
                f"conv2d: bias of shape {bias.shape} does not fit weight of shape "
                f"{weight.shape} (expected ({o},))"
            )
        parents += (bias,)

    # NHWC, padded: a view when the input is already NHWC in memory and unpadded
    x_nhwc = x.data.transpose(0, 2, 3, 1)
    if ph or pw:
        xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
        xp[:, ph : ph + h, pw : pw + w, :] = x_nhwc
    else:
        xp = x_nhwc
    windows = sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # (N,Ho,Wo,C,kh,kw)
    # the im2col buffer, rows (n, ho, wo), columns (i, j, c): channels innermost copy fastest
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * c)
    w_rows = weight.data.transpose(0, 2, 3, 1).reshape(o, kh * kw * c)  # (O, (i, j, c))
    out = cols @ w_rows.T  # (N*Ho*Wo, O)
    if bias is not None:
        out += bias.data
    data = out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    if not weight.requires_grad:
        cols = None  # only grad_weight needs the im2col buffer: don't keep it alive

    def backward(g: Tensor, out: Tensor) -> tuple:
        d = g.data.transpose(0, 2, 3, 1).reshape(n * ho * wo, o)  # free if g is NHWC memory
        gx = gw = gb = None
        if weight.requires_grad:
            gw = np.ascontiguousarray((d.T @ cols).reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
        if bias is not None and bias.requires_grad:
            gb = d.sum(axis=0)
        if x.requires_grad:
            # col2im one kernel offset (i, j) at a time: the gradient of the columns that
            # offset read, d @ w[:, :, i, j] (N*Ho*Wo, C), adds back onto the input positions
            # it read. Never building the whole (N*Ho*Wo, kh*kw*C) gradient buffer saves its
            # memory (29 MB for the benchmark CNN's second conv) and time (contiguous adds).
            w_blocks = w_rows.reshape(o, kh, kw, c)
            dxp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=d.dtype)
            for i in range(kh):
                for j in range(kw):
                    dcols = (d @ w_blocks[:, i, j, :]).reshape(n, ho, wo, c)
                    dxp[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += dcols
            gx = dxp[:, ph : ph + h, pw : pw + w].transpose(0, 3, 1, 2)
        return once_differentiable("conv2d", parents + (g,), (gx, gw, gb)[: len(parents)])

    return Tensor._from_op(data, parents, "conv2d", backward, stride=(sh, sw), padding=(ph, pw))


def _padded(a: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    if not (ph or pw):
        return a
    n, c, h, w = a.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=a.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = a
    return out


def _pool_setup(
    op: str, x: Tensor, kernel_size: Any, stride: Any, padding: Any
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int, int]:
    _check_4d(op, x)
    kernel = _pair(op, "kernel_size", kernel_size)
    strides = kernel if stride is None else _pair(op, "stride", stride)
    pads = _pair(op, "padding", padding)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {pads} must be at most half the kernel {kernel}")
    ho, wo = _spatial_geometry(op, x.shape, kernel, strides, pads)
    return kernel, strides, pads, ho, wo


def _window_slices(kernel, stride, ho, wo):  # noqa: ANN001, ANN202
    """For each kernel offset (i, j), row-major, the slice of the padded input it reads:
    element [.., a, b] of that slice is offset (i, j) of output window (a, b)."""
    (kh, kw), (sh, sw) = kernel, stride
    return [
        (..., slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def max_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """Max over kh x kw windows (stride defaults to the kernel; padding counts as -inf).

    x (N, C, H, W) (or (C, H, W)) -> (N, C, Ho, Wo). Each window's gradient goes to its FIRST
    maximum in row-major order, as in PyTorch (ties are everywhere on MNIST's blank
    background); overlapping windows add up. One numpy pass per kernel offset, no argmax.
    """
    x = _tensor(x)
    if x.ndim == 3:
        out = max_pool2d(x.reshape(1, *x.shape), kernel_size, stride, padding)
        return out.reshape(out.shape[1:])
    kernel, strides, (ph, pw), ho, wo = _pool_setup("max_pool2d", x, kernel_size, stride, padding)
    xp = _padded(x.data, ph, pw, -np.inf)
    slices = _window_slices(kernel, strides, ho, wo)
    data = (
        xp[slices[0]].copy(order="K")
        if len(slices) == 1
        else np.maximum(xp[slices[0]], xp[slices[1]])
    )
    for s in slices[2:]:
        np.maximum(data, xp[s], out=data)
    overlapping = strides[0] < kernel[0] or strides[1] < kernel[1]
    # windows tile the padded input exactly: every position is written once in backward
    tiled = strides == kernel and xp.shape[2:] == (ho * kernel[0], wo * kernel[1])

    def backward(g: Tensor, out: Tensor) -> tuple:
        dxp = np.empty_like(xp, dtype=g.dtype) if tiled else np.zeros_like(xp, dtype=g.dtype)
        taken = None  # windows whose first maximum an earlier offset already was
        for k, s in enumerate(slices):
            if taken is not None and k == len(slices) - 1:
                first = ~taken  # the last offset is the maximum wherever no earlier one was
            else:
                first = xp[s] == out.data
                if taken is None:
                    taken = first.copy(order="K")  # keep the memory order (NHWC)
                else:
                    first &= ~taken
                    taken |= first
            if overlapping:
                dxp[s] += g.data * first
            else:
                np.multiply(g.data, first, out=dxp[s])
        gx = dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]
        return once_differentiable("max_pool2d", (x, g), (gx,))

    return Tensor._from_op(
        data, (x,), "max_pool2d", backward, kernel_size=kernel, stride=strides, padding=(ph, pw)
    )


def avg_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """Mean over kh x kw windows; zero padding counts in the mean (PyTorch's default
    count_include_pad=True). x (N, C, H, W) (or (C, H, W)) -> (N, C, Ho, Wo)."""
    x = _tensor(x)
    if x.ndim == 3:
        out = avg_pool2d(x.reshape(1, *x.shape), kernel_size, stride, padding)
        return out.reshape(out.shape[1:])
    kernel, strides, (ph, pw), ho, wo = _pool_setup("avg_pool2d", x, kernel_size, stride, padding)
    xp = _padded(x.data, ph, pw, 0.0)
    slices = _window_slices(kernel, strides, ho, wo)
    divisor = np.asarray(len(slices), dtype=x.dtype)
    data = xp[slices[0]] + xp[slices[1]] if len(slices) > 1 else xp[slices[0]].copy(order="K")
    for s in slices[2:]:
        data += xp[s]
    data /= divisor
    padded_shape = xp.shape
    del xp  # backward needs only shapes

    def backward(g: Tensor, out: Tensor) -> tuple:
        share = g.data / divisor
        dxp = np.zeros(padded_shape, dtype=g.dtype)
        for s in slices:
            dxp[s] += share
        gx = dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]
        return once_differentiable("avg_pool2d", (x, g), (gx,))

    return Tensor._from_op(
        data, (x,), "avg_pool2d", backward, kernel_size=kernel, stride=strides, padding=(ph, pw)
    )


# ----- normalisation -----------------------------------------------------------------------
def _check_channel_vector(op: str, name: str, value: Any, channels: int, shape: tuple) -> None:
    if value is not None and np.shape(value) != (channels,):
        raise ValueError(
            f"{op}: {name} of shape {np.shape(value)} does not fit input of shape "
            f"{shape} (expected ({channels},))"
        )


def _batch_norm_composed(
    x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
) -> Tensor:
    """Training-mode batch norm with Tensor ops only (the fused op's twice-differentiable twin)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) / (x.var(axis=axes, keepdims=True) + eps).sqrt()
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel (axis 1) of x (N, C) or (N, C, H, W) over all other axes.

    y = (x - mean) / sqrt(var + eps) * weight + bias. In training (or without running
    statistics) mean and var are the batch's (var biased, ddof=0), and running_mean /
    running_var (arrays or Tensors, shape (C,)) are updated IN PLACE as PyTorch does:
    running = (1 - momentum) * running + momentum * batch, with the UNBIASED batch variance.
    In eval they are used as they are. Training mode is fused: numpy forward and backward
    (dx = weight / std * (g - mean(g) - xhat * mean(g * xhat))).
    """
    x = _tensor(x)
    if x.ndim < 2:
        raise ValueError(
            f"batch_norm: expected input of shape (N, C) or (N, C, ...), got shape {x.shape}"
        )
    channels = x.shape[1]
    for name, value in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        _check_channel_vector("batch_norm", name, value, channels, x.shape)
    weight = None if weight is None else _tensor(weight)
    bias = None if bias is None else _tensor(bias)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, channels) + (1,) * (x.ndim - 2)

    if not training and running_mean is not None and running_var is not None:
        # eval: with constant statistics an affine map x * scale + shift, per channel;
        # composed (differentiable twice), two passes over x
        mean = np.asarray(running_mean.data if isinstance(running_mean, Tensor) else running_mean)
        var = np.asarray(running_var.data if isinstance(running_var, Tensor) else running_var)
        scale = Tensor((1.0 / np.sqrt(var + eps)).astype(x.dtype))
        if weight is not None:
            scale = weight * scale
        shift = scale * -mean.astype(x.dtype)
        if bias is not None:
            shift = shift + bias
        return x * scale.reshape(shape) + shift.reshape(shape)

    count = x.size // channels
    if training and count <= 1:
        raise ValueError(
            f"batch_norm: expected more than 1 value per channel when training, "
            f"got input of shape {x.shape}"
        )
    mean = x.data.mean(axis=axes, keepdims=True)
    xhat = x.data - mean
    var = np.mean(np.square(xhat), axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + np.asarray(eps, dtype=var.dtype))
    xhat *= inv_std  # now (x - mean) / std, kept for backward
    data = xhat * weight.data.reshape(shape) if weight is not None else xhat.copy(order="K")
    if bias is not None:
        data += bias.data.reshape(shape)
    if training:
        for running, batch in ((running_mean, mean), (running_var, var * (count / (count - 1)))):
            if running is not None:
                buffer = running.data if isinstance(running, Tensor) else running
                buffer *= 1.0 - momentum
                buffer += momentum * batch.reshape(channels).astype(buffer.dtype)

    parents = tuple(t for t in (x, weight, bias) if t is not None)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if is_grad_enabled():  # create_graph: differentiate the composed twin instead
            grads = _recorded_backward(
                lambda x, w, b: _batch_norm_composed(x, w, b, eps), (x, weight, bias), g
            )
            return tuple(
                gr for gr, t in zip(grads, (x, weight, bias), strict=True) if t is not None
            )
        gd = g.data
        g_sum = gd.sum(axis=axes, keepdims=True)
        g_xhat_sum = np.sum(gd * xhat, axis=axes, keepdims=True)
        grads = []
        if x.requires_grad:
            w = weight.data.reshape(shape) if weight is not None else 1.0
            gx = xhat * (g_xhat_sum / count)
            gx += g_sum / count
            np.subtract(gd, gx, out=gx)
            gx *= inv_std * w
            grads.append(gx)
        else:
            grads.append(None)
        if weight is not None:
            grads.append(g_xhat_sum.reshape(channels) if weight.requires_grad else None)
        if bias is not None:
            grads.append(g_sum.reshape(channels) if bias.requires_grad else None)
        return tuple(None if a is None else Tensor._from_array(a) for a in grads)

    return Tensor._from_op(
        data, parents, "batch_norm", backward, training=training, momentum=momentum, eps=eps
    )


def layer_norm(
    x: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the last len(normalized_shape) axes (composed, differentiable twice).

    x (..., *normalized_shape); weight and bias shaped normalized_shape.
    y = (x - mean) / sqrt(var + eps) * weight + bias, var biased (ddof=0).
    """
    x = _tensor(x)
    norm_shape = (
        (normalized_shape,)
        if isinstance(normalized_shape, (int, np.integer))
        else (tuple(normalized_shape))
    )
    k = len(norm_shape)
    if x.shape[x.ndim - k :] != norm_shape or k > x.ndim:
        raise ValueError(
            f"layer_norm: input of shape {x.shape} does not end with normalized_shape {norm_shape}"
        )
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and np.shape(value) != norm_shape:
            raise ValueError(
                f"layer_norm: {name} of shape {np.shape(value)} does not match "
                f"normalized_shape {norm_shape}"
            )
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) / (x.var(axis=axes, keepdims=True) + eps).sqrt()
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


# ----- embedding (composed) ----------------------------------------------------------------
def embedding(indices: Any, weight: Tensor) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) picked by integer `indices` (any shape):
    (*indices.shape, dim). Repeated indices add up their gradients."""
    weight = _tensor(weight)
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got {weight.shape}")
    rows = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        bad = int(idx.min() if idx.min() < 0 else idx.max())
        raise IndexError(
            f"embedding: index {bad} is out of range for {rows} embeddings "
            f"(weight of shape {weight.shape})"
        )
    return weight[idx]
from .attention import scaled_dot_product_attention  # noqa: E402, F401 (F's attention op)
