"""Hand-written numpy reference networks for the npgrad speed benchmark.

Plain numpy only (no ``autograd``/``nn`` imports): the networks that npgrad's
benchmark trains, written out by hand -- forward, backward and optimiser -- so
that npgrad's overhead can be measured against the best a numpy user would
reasonably write.

Networks (float32 throughout, PyTorch default initialisation):

* ``"mlp"``        MLP 784-128-10, SGD lr 0.1 momentum 0.9
* ``"mlp_large"``  MLP 784-512-256-10, SGD lr 0.1 momentum 0.9
* ``"cnn"``        conv(1->32,3x3,pad 1)-ReLU-maxpool 2-conv(32->64,3x3,pad 1)-ReLU-
                   maxpool 2-flatten-fc(3136->128)-ReLU-fc(128->10), Adam lr 1e-3

Inputs: uint8 images are scaled by 1/255 to float32 inside ``step`` (float
inputs are used as they are); no mean/std normalisation. Labels are int64.
The loss is the mean softmax cross-entropy.

Denormals: a momentum (or Adam moment) entry whose gradient has become zero
decays geometrically and, after a few hundred steps, becomes a float32
denormal; numpy cannot switch the CPU to flush-to-zero. Measured on the
development machine (AMD EPYC, 2 cores; ``python benchmarks/numpy_reference.py
denormals``): MLP 784-128-10 reaches ~4,700 denormal momentum entries (5%) by
epoch 6, yet the optimiser step and the epoch time do not change, and elementwise
multiply/add/subtract run at the same speed on arrays that are 100% denormal --
this CPU has no denormal penalty for them (``sqrt`` and divide, which Adam
uses, do run ~2x slower on denormal operands). Flushing every step
(``a[np.abs(a) < np.finfo(np.float32).tiny] = 0``) costs ~100 us a step there
(~10% of an MLP step), so the optimisers flush every ``flush_every=100`` steps
(amortised < 1 us a step): a safety net for CPUs that do take microcode assists
on denormals, free where they don't. ``flush_every=1`` flushes every step,
``0`` never. Flushing changes no parameter: an update of lr * 1e-38 is below
float32 resolution of any weight that is not itself ~1e-38.

Timing and memory are measured by ``python -m benchmarks``. Command line of this file
(from the repository root)::

    python benchmarks/numpy_reference.py check      # gradient + MNIST accuracy checks
    python benchmarks/numpy_reference.py denormals  # flush on/off on real training
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "MLPNumpy",
    "CNNNumpy",
    "SGDMomentum",
    "Adam",
    "softmax_cross_entropy",
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2_forward",
    "maxpool2_backward",
    "MODELS",
    "make_model",
    "train_step",
    "evaluate",
    "batch_order",
    "load_mnist",
    "check_gradients",
    "blas_info",
    "system_busy_seconds",
    "ContentionMeter",
    "wait_until_quiet",
]

TINY32 = np.finfo(np.float32).tiny
DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "mnist"


# --------------------------------------------------------------------------- utilities


def _to_float(x: np.ndarray, dtype) -> np.ndarray:
    """uint8 images -> dtype scaled to [0, 1]; float input is cast only if needed."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        out = x.astype(dtype)
        out *= dtype(1.0 / 255.0)
        return out
    return x.astype(dtype, copy=False)


def _flush_denormals(a: np.ndarray) -> None:
    """Zero, in place, every entry of ``a`` with magnitude below the smallest normal."""
    tiny = np.finfo(a.dtype).tiny
    a[np.abs(a) < tiny] = 0


def _uniform(rng: np.random.Generator, bound: float, shape, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``logits`` (N, K) against int labels ``y`` (N,).

    Returns ``(loss, dlogits)`` with ``dlogits = (softmax - onehot) / N``.
    """
    n = logits.shape[0]
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) - shifted[rows, y]))
    e /= s  # softmax
    e[rows, y] -= 1
    e *= logits.dtype.type(1.0 / n)
    return loss, e


# --------------------------------------------------------------------------- optimisers


class SGDMomentum:
    """PyTorch's SGD with momentum (dampening 0): ``buf = m*buf + g; p -= lr*buf``."""

    def __init__(self, params, lr: float, momentum: float = 0.9, flush_every: int = 100):
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self.flush_every = flush_every
        self.t = 0
        self.bufs = [None] * len(self.params)

    def step(self, grads) -> None:
        self.t += 1
        flush = self.flush_every and self.t % self.flush_every == 0
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            buf = self.bufs[i]
            if buf is None:  # PyTorch: first step buf = g.clone()
                buf = self.bufs[i] = g.copy()
            else:
                buf *= self.momentum
                buf += g
            if flush:
                _flush_denormals(buf)
            p -= self.lr * buf


class Adam:
    """PyTorch's Adam (bias-corrected, no weight decay, no amsgrad), updating in place."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        flush_every: int = 100,
    ):
        self.params = list(params)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.flush_every = flush_every
        self.t = 0
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.tmp = [np.empty_like(p) for p in self.params]

    def step(self, grads) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        bc1 = 1.0 - b1**self.t
        bc2_sqrt = math.sqrt(1.0 - b2**self.t)
        step_size = self.lr / bc1
        flush = self.flush_every and self.t % self.flush_every == 0
        for p, g, m, v, tmp in zip(self.params, grads, self.m, self.v, self.tmp, strict=True):
            # m = b1*m + (1-b1)*g
            np.multiply(g, 1.0 - b1, out=tmp)
            m *= b1
            m += tmp
            # v = b2*v + (1-b2)*g*g
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v *= b2
            v += tmp
            if flush:
                _flush_denormals(m)
                _flush_denormals(v)
            # p -= step_size * m / (sqrt(v)/sqrt(bc2) + eps)
            np.sqrt(v, out=tmp)
            tmp *= 1.0 / bc2_sqrt
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


# --------------------------------------------------------------------------- MLP


class MLPNumpy:
    """Linear-ReLU-...-Linear with hand-written backward and SGD momentum.

    ``sizes`` e.g. ``(784, 128, 10)``. Parameters are kept in ``self.params`` as
    ``[W0, b0, W1, b1, ...]`` with ``W`` of shape (out, in), as in PyTorch.
    """

    def __init__(
        self,
        sizes=(784, 128, 10),
        seed: int = 0,
        lr: float = 0.1,
        momentum: float = 0.9,
        dtype=np.float32,
        flush_every: int = 100,
    ):
        self.sizes = tuple(sizes)
        self.dtype = np.dtype(dtype).type
        rng = np.random.default_rng(seed)
        self.params = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.params.append(_uniform(rng, bound, (fan_out, fan_in), self.dtype))
            self.params.append(_uniform(rng, bound, (fan_out,), self.dtype))
        self.optimizer = SGDMomentum(self.params, lr, momentum, flush_every)

    def forward(self, x: np.ndarray, acts: list | None = None) -> np.ndarray:
        """Logits for a batch; `acts`, if given, collects each linear layer's input."""
        h = _to_float(x, self.dtype).reshape(len(x), -1)
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            if acts is not None:
                acts.append(h)  # (post-ReLU)
            w, b = self.params[2 * i], self.params[2 * i + 1]
            h = h @ w.T
            h += b
            if i < n_layers - 1:
                np.maximum(h, 0, out=h)
        return h

    __call__ = forward

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Forward + hand-written backward; gradients in the order of ``self.params``."""
        acts: list[np.ndarray] = []
        h = self.forward(x, acts)
        n_layers = len(self.params) // 2
        loss, dz = softmax_cross_entropy(h, y)

        grads = [None] * len(self.params)
        for i in reversed(range(n_layers)):
            a = acts[i]
            grads[2 * i] = dz.T @ a
            grads[2 * i + 1] = dz.sum(axis=0)
            if i > 0:
                da = dz @ self.params[2 * i]
                da *= a > 0  # ReLU: a = relu(z) > 0 exactly where z > 0
                dz = da
        return loss, grads

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = self.loss_and_grads(x, y)
        self.optimizer.step(grads)
        return loss


# --------------------------------------------------------------------------- CNN pieces


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int):
    """Stride-1 convolution (cross-correlation): NCHW ``x``, weight (O, C, kh, kw).

    im2col through ``sliding_window_view`` and one matmul. The columns are
    gathered channels-last -- rows (n, ho, wo), columns (kh, kw, c) -- so the
    copy moves contiguous runs of C floats; ``x`` may be any memory layout (an
    NHWC-backed NCHW view, as this function returns, costs no transpose).
    Returns ``(out, cols)``: ``out`` is an NCHW view of an NHWC-contiguous
    array, ``cols`` (N*Ho*Wo, kh*kw*C) is kept for the backward pass.
    """
    n, c = x.shape[:2]
    o, _, kh, kw = w.shape
    xh = x.transpose(0, 2, 3, 1)  # NHWC view
    if pad:
        xh = np.pad(xh, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(xh, (kh, kw), axis=(1, 2))  # (N, Ho, Wo, C, kh, kw)
    ho, wo = win.shape[1:3]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, kh * kw * c)
    out = cols @ w.transpose(0, 2, 3, 1).reshape(o, -1).T  # (N*Ho*Wo, O)
    out += b
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), cols


def conv2d_backward(dout, cols, x_shape, w, pad: int, need_dx: bool = True):
    """Gradients ``(dx, dw, db)`` of :func:`conv2d_forward` (``dx`` None unless asked).

    ``dx`` is an NCHW view of an NHWC array. col2im is one strided add per
    kernel offset (kh*kw of them), no loop over batch or pixels.
    """
    n, o, ho, wo = dout.shape
    _, c, h, wd = x_shape
    kh, kw = w.shape[2:]
    d = dout.transpose(0, 2, 3, 1).reshape(n * ho * wo, o)  # free for NHWC-backed dout
    dw = (d.T @ cols).reshape(o, kh, kw, c).transpose(0, 3, 1, 2)
    dw = np.ascontiguousarray(dw)
    db = d.sum(axis=0)
    if not need_dx:
        return None, dw, db
    w_mat = w.transpose(0, 2, 3, 1).reshape(o, -1)
    dcols = (d @ w_mat).reshape(n, ho, wo, kh, kw, c)
    dxp = np.zeros((n, h + 2 * pad, wd + 2 * pad, c), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, i : i + ho, j : j + wo, :] += dcols[:, :, :, i, j, :]
    return dxp[:, pad : pad + h, pad : pad + wd, :].transpose(0, 3, 1, 2), dw, db


def maxpool2_forward(x: np.ndarray):
    """2x2/stride-2 max pool (H, W even). Returns ``(out, masks)``.

    ``masks`` are four boolean arrays marking, for each window, the *first*
    maximum in row-major order (PyTorch's tie rule), so the gradient of a
    window with ties goes to one element only.
    """
    a0 = x[:, :, 0::2, 0::2]
    a1 = x[:, :, 0::2, 1::2]
    a2 = x[:, :, 1::2, 0::2]
    a3 = x[:, :, 1::2, 1::2]
    out = np.maximum(np.maximum(a0, a1), np.maximum(a2, a3))
    m0 = a0 == out
    m1 = a1 == out
    m1 &= ~m0
    taken = m0 | m1
    m2 = a2 == out
    m2 &= ~taken
    taken |= m2
    m3 = ~taken
    return out, (m0, m1, m2, m3)


def maxpool2_backward(dout: np.ndarray, masks, x: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the pool's input ``x`` (used for its shape and memory layout)."""
    dx = np.empty_like(x, dtype=dout.dtype)
    for (i, j), m in zip(((0, 0), (0, 1), (1, 0), (1, 1)), masks, strict=True):
        np.multiply(dout, m, out=dx[:, :, i::2, j::2])
    return dx


class CNNNumpy:
    """conv-ReLU-pool-conv-ReLU-pool-fc-ReLU-fc with hand-written backward and Adam.

    Defaults are the benchmark network; the sizes are arguments only so that
    the gradient check can run a tiny version. ``self.params`` is
    ``[conv1.w, conv1.b, conv2.w, conv2.b, fc1.w, fc1.b, fc2.w, fc2.b]`` in
    PyTorch layouts (conv weight (O, C, kh, kw), fc weight (out, in), the
    flatten in NCHW order), so a PyTorch state dict maps one to one.
    """

    def __init__(
        self,
        seed: int = 0,
        lr: float = 1e-3,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        image_size: int = 28,
        n_classes: int = 10,
        in_channels: int = 1,
        dtype=np.float32,
        flush_every: int = 100,
    ):
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        self.dtype = np.dtype(dtype).type
        self.in_channels = in_channels
        self.image_size = image_size
        rng = np.random.default_rng(seed)
        c1, c2 = channels
        flat = c2 * (image_size // 4) ** 2
        self.params = []
        for o, c in ((c1, in_channels), (c2, c1)):
            bound = 1.0 / math.sqrt(c * 9)  # kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
            self.params.append(_uniform(rng, bound, (o, c, 3, 3), self.dtype))
            self.params.append(_uniform(rng, bound, (o,), self.dtype))
        for fan_in, fan_out in ((flat, hidden), (hidden, n_classes)):
            bound = 1.0 / math.sqrt(fan_in)
            self.params.append(_uniform(rng, bound, (fan_out, fan_in), self.dtype))
            self.params.append(_uniform(rng, bound, (fan_out,), self.dtype))
        self.optimizer = Adam(self.params, lr=lr, flush_every=flush_every)

    def _input(self, x):
        s = self.image_size
        return _to_float(x, self.dtype).reshape(len(x), self.in_channels, s, s)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch (no caching; for evaluation)."""
        return self._forward(self._input(x))[0]

    __call__ = forward

    def _forward(self, x):
        cw1, cb1, cw2, cb2, fw1, fb1, fw2, fb2 = self.params
        z1, cols1 = conv2d_forward(x, cw1, cb1, pad=1)
        r1 = np.maximum(z1, 0)
        p1, masks1 = maxpool2_forward(r1)
        z2, cols2 = conv2d_forward(p1, cw2, cb2, pad=1)
        r2 = np.maximum(z2, 0)
        p2, masks2 = maxpool2_forward(r2)
        flat = p2.reshape(len(x), -1)  # NCHW flatten order (copies: p2 is NHWC-backed)
        h = flat @ fw1.T
        h += fb1
        np.maximum(h, 0, out=h)
        logits = h @ fw2.T
        logits += fb2
        cache = (x.shape, cols1, r1, masks1, p1.shape, cols2, r2, masks2, p2.shape, flat, h)
        return logits, cache

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Forward + hand-written backward; gradients in the order of ``self.params``."""
        cw1, cb1, cw2, cb2, fw1, fb1, fw2, fb2 = self.params
        logits, cache = self._forward(self._input(x))
        x_shape, cols1, r1, masks1, p1_shape, cols2, r2, masks2, p2_shape, flat, h = cache
        loss, dlogits = softmax_cross_entropy(logits, y)

        dfw2 = dlogits.T @ h
        dfb2 = dlogits.sum(axis=0)
        dh = dlogits @ fw2
        dh *= h > 0
        dfw1 = dh.T @ flat
        dfb1 = dh.sum(axis=0)
        dp2 = (dh @ fw1).reshape(p2_shape)
        dr2 = maxpool2_backward(dp2, masks2, r2)
        dr2 *= r2 > 0
        dp1, dcw2, dcb2 = conv2d_backward(dr2, cols2, p1_shape, cw2, pad=1)
        dr1 = maxpool2_backward(dp1, masks1, r1)
        dr1 *= r1 > 0
        _, dcw1, dcb1 = conv2d_backward(dr1, cols1, x_shape, cw1, pad=1, need_dx=False)
        return loss, [dcw1, dcb1, dcw2, dcb2, dfw1, dfb1, dfw2, dfb2]

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = self.loss_and_grads(x, y)
        self.optimizer.step(grads)
        return loss


# --------------------------------------------------------------------------- benchmark driver

#: benchmark model name -> (description, constructor taking ``seed``)
MODELS = {
    "mlp": ("MLP 784-128-10, SGD lr 0.1 momentum 0.9", lambda seed: MLPNumpy((784, 128, 10), seed)),
    "mlp_large": (
        "MLP 784-512-256-10, SGD lr 0.1 momentum 0.9",
        lambda seed: MLPNumpy((784, 512, 256, 10), seed),
    ),
    "cnn": ("CNN conv32-pool-conv64-pool-fc128-fc10, Adam lr 1e-3", lambda seed: CNNNumpy(seed)),
}


def make_model(model_name: str, seed: int = 0):
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; expected one of {sorted(MODELS)}")
    return MODELS[model_name][1](seed)


def train_step(model, x: np.ndarray, y: np.ndarray) -> float:
    """One optimisation step on a batch (uint8 or float32 images, int64 labels); the loss."""
    return model.step(x, y)


def evaluate(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Classification accuracy (fraction) of ``model`` on ``images``/``labels``."""
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = model.forward(images[i : i + batch_size])
        correct += int((logits.argmax(axis=1) == labels[i : i + batch_size]).sum())
    return correct / len(images)


def batch_order(n_total: int, n_images: int, batch_size: int = 128, seed: int = 0):
    """Index arrays of the batches that train on ``n_images`` images out of ``n_total``.

    A fixed seeded order: ``np.random.default_rng(seed)`` permutations of
    ``range(n_total)``, concatenated (one per epoch) until ``n_images`` indices,
    cut into batches of ``batch_size`` (the last one may be smaller).
    """
    rng = np.random.default_rng(seed)
    chunks, have = [], 0
    while have < n_images:
        chunks.append(rng.permutation(n_total))
        have += n_total
    idx = np.concatenate(chunks)[:n_images]
    return [idx[i : i + batch_size] for i in range(0, n_images, batch_size)]


def blas_info() -> list[dict]:
    """threadpoolctl's view of the BLAS numpy uses (empty list without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: d.get(k) for k in keys} for d in threadpool_info()]


def system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class ContentionMeter:
    """How much CPU *other* processes used while a block ran: the benchmark's noise gauge.

    ``other_cpu_fraction`` = (busy CPU time of the whole machine - this process's)
    / (wall time * cores); ~0 on a quiet machine, 0.5 when another process kept
    one of two cores busy. None where ``/proc/stat`` is missing.
    """

    def __enter__(self):
        self.b0, self.c0, self.t0 = system_busy_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        own = time.process_time() - self.c0
        b1 = system_busy_seconds()
        if self.b0 is None or b1 is None or wall <= 0:
            self.other_cpu_fraction = None
        else:
            other = max(0.0, (b1 - self.b0) - own)
            self.other_cpu_fraction = other / (wall * (os.cpu_count() or 1))
        return False


def wait_until_quiet(threshold: float = 0.1, timeout: float = 300.0, window: float = 1.0) -> bool:
    """Wait (up to ``timeout`` s) for a ``window`` in which the machine is < ``threshold`` busy."""
    deadline = time.perf_counter() + timeout
    ncpu = os.cpu_count() or 1
    while True:
        b0 = system_busy_seconds()
        if b0 is None:
            return True
        time.sleep(window)
        if (system_busy_seconds() - b0) / (window * ncpu) < threshold:
            return True
        if time.perf_counter() > deadline:
            return False


def _torch_reference():
    """The sibling module ``torch_reference`` (as ``benchmarks.torch_reference`` or top level)."""
    try:
        from . import torch_reference
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import torch_reference
    return torch_reference


# --------------------------------------------------------------------------- data


def load_mnist(path: str | os.PathLike = DEFAULT_MNIST, split: str = "train"):
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` from the hub parquet layout.

    Reads ``{path}/mnist/{split}-*.parquet`` (or ``{path}/{split}-*.parquet``)
    with pyarrow and decodes the PNGs with PIL.
    """
    import pyarrow.parquet as pq
    from PIL import Image

    root = Path(path)
    files = sorted(root.glob(f"mnist/{split}-*.parquet")) or sorted(root.glob(f"{split}-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no {split}-*.parquet under {root}")
    images, labels = [], []
    for f in files:
        table = pq.read_table(f)
        for cell in table.column("image").to_pylist():
            images.append(np.asarray(Image.open(io.BytesIO(cell["bytes"])), dtype=np.uint8))
        labels.append(table.column("label").to_numpy().astype(np.int64))
    return np.stack(images), np.concatenate(labels)


# --------------------------------------------------------------------------- self-checks


def _numeric_grad(f, p: np.ndarray, idx, eps: float) -> float:
    old = p[idx]
    p[idx] = old + eps
    fp = f()
    p[idx] = old - eps
    fm = f()
    p[idx] = old
    return (fp - fm) / (2 * eps)


def _check_model(name, model, x, y, eps=1e-6, rtol=1e-5, atol=1e-8, max_entries=None, rng=None):
    _, grads = model.loss_and_grads(x, y)
    worst = 0.0
    for k, (p, g) in enumerate(zip(model.params, grads, strict=True)):
        assert g.shape == p.shape and g.dtype == p.dtype, (name, k, g.shape, g.dtype)
        indices = list(np.ndindex(p.shape))
        if max_entries is not None and len(indices) > max_entries:
            pick = rng.choice(len(indices), max_entries, replace=False)
            indices = [indices[i] for i in pick]
        for idx in indices:
            num = _numeric_grad(lambda: model.loss_and_grads(x, y)[0], p, idx, eps)
            err = abs(num - g[idx])
            if err > atol + rtol * abs(num):
                raise AssertionError(f"{name} param {k} index {idx}: analytic {g[idx]} vs {num}")
            worst = max(worst, err / (atol + abs(num)))
    return worst


def _loop_maxpool_reference(x, dout):
    """Slow, obviously-correct 2x2 max pool with first-max gradient routing."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h // 2, w // 2), x.dtype)
    dx = np.zeros_like(x)
    for a, b, i, j in np.ndindex(n, c, h // 2, w // 2):
        win = x[a, b, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()
        k = int(np.argmax(win))  # first maximum in row-major order
        out[a, b, i, j] = win[k]
        dx[a, b, 2 * i + k // 2, 2 * j + k % 2] = dout[a, b, i, j]
    return out, dx


def check_gradients(verbose: bool = True) -> dict:
    """Hand-written backward vs central finite differences in float64, tiny inputs.

    Also checks the max-pool tie routing against a loop reference, and the
    fused cross-entropy gradient. Raises ``AssertionError`` on any mismatch;
    returns the worst relative errors.
    """
    rng = np.random.default_rng(123)
    report = {}

    mlp = MLPNumpy((7, 5, 4, 3), seed=1, dtype=np.float64)
    x = rng.normal(size=(6, 7))
    y = rng.integers(0, 3, size=6)
    report["mlp"] = _check_model("mlp", mlp, x, y)

    # uint8 path gives the same as float input scaled by 1/255
    xu = rng.integers(0, 256, size=(6, 7), dtype=np.uint8)
    assert np.allclose(mlp.forward(xu), mlp.forward(xu / 255.0))

    cnn = CNNNumpy(seed=2, channels=(2, 3), hidden=5, image_size=8, n_classes=4, dtype=np.float64)
    x = rng.normal(size=(3, 1, 8, 8))
    y = rng.integers(0, 4, size=3)
    report["cnn"] = _check_model("cnn", cnn, x, y)

    cnn2 = CNNNumpy(
        seed=3,
        channels=(3, 2),
        hidden=4,
        image_size=8,
        n_classes=3,
        in_channels=2,
        dtype=np.float64,
    )
    x = rng.normal(size=(2, 2, 8, 8))
    y = rng.integers(0, 3, size=2)
    report["cnn_2in"] = _check_model("cnn_2in", cnn2, x, y)

    # max pool with many ties (as on MNIST's blank background): first-max routing
    xt = rng.integers(0, 3, size=(2, 3, 6, 8)).astype(np.float64)
    dout = rng.normal(size=(2, 3, 3, 4))
    out, masks = maxpool2_forward(xt)
    dx = maxpool2_backward(dout, masks, xt)
    ref_out, ref_dx = _loop_maxpool_reference(xt, dout)
    assert np.array_equal(out, ref_out) and np.array_equal(dx, ref_dx), "maxpool tie routing"
    report["maxpool_ties"] = 0.0

    # conv2d alone, non-square kernel, input gradient included
    xc = rng.normal(size=(2, 3, 5, 6))
    w = rng.normal(size=(4, 3, 3, 2))
    b = rng.normal(size=4)
    g_out = rng.normal(size=(2, 4, 5, 7))

    def conv_loss():
        return float((conv2d_forward(xc, w, b, pad=1)[0] * g_out).sum())

    _, cols = conv2d_forward(xc, w, b, pad=1)
    dxc, dw, db = conv2d_backward(g_out, cols, xc.shape, w, pad=1)
    worst = 0.0
    for arr, grad in ((xc, dxc), (w, dw), (b, db)):
        for idx in np.ndindex(arr.shape):
            num = _numeric_grad(conv_loss, arr, idx, 1e-6)
            assert abs(num - grad[idx]) <= 1e-7 + 1e-6 * abs(num), ("conv2d", idx)
            worst = max(worst, abs(num - grad[idx]) / (1e-8 + abs(num)))
    report["conv2d"] = worst

    if verbose:
        for k, v in report.items():
            print(f"  gradient check {k:14s} ok (worst scaled error {v:.2e})")
    return report


def _check_optimizers() -> None:
    """SGD/Adam against a few steps of the textbook formulas in float64."""
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(4, 3))
    gs = [rng.normal(size=(4, 3)) for _ in range(4)]
    p = p0.copy()
    opt = SGDMomentum([p], lr=0.1, momentum=0.9)
    ref, buf = p0.copy(), np.zeros_like(p0)
    for g in gs:
        opt.step([g])
        buf = 0.9 * buf + g
        ref = ref - 0.1 * buf
    assert np.allclose(p, ref), "sgd"
    p = p0.copy()
    opt = Adam([p], lr=1e-2)
    ref, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(gs, 1):
        opt.step([g])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref = ref - 1e-2 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert np.allclose(p, ref), "adam"
    print("  optimizers ok (SGD momentum, Adam vs textbook formulas)")


def _check_against_torch(rng_seed: int = 0) -> None:
    """Same weights, same batch: numpy loss/grads/updated weights vs PyTorch, if installed."""
    torch_reference = _torch_reference()

    if torch_reference.torch_available() is None:
        print("  torch not importable: cross-check against PyTorch skipped")
        return
    rng = np.random.default_rng(rng_seed)
    x = rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    x[:, :4] = 0  # blank rows: plenty of max-pool ties
    y = rng.integers(0, 10, size=64)
    for name in MODELS:
        npm = make_model(name, seed=7)
        tm = torch_reference.make_model(name, seed=7)
        torch_reference.load_numpy_params(tm, npm.params)
        loss_np, grads_np = npm.loss_and_grads(x, y)
        loss_t, grads_t = torch_reference.loss_and_grads(tm, x, y)
        assert abs(loss_np - loss_t) < 1e-5 * max(1, abs(loss_t)), (name, loss_np, loss_t)
        worst = 0.0
        for k, (gn, gt) in enumerate(zip(grads_np, grads_t, strict=True)):
            scale = np.abs(gt).max() + 1e-12
            err = np.abs(gn - gt).max() / scale
            assert err < 1e-4, (name, k, err)
            worst = max(worst, err)
        # three optimiser steps on the same batches
        for _ in range(3):
            npm.step(x, y)
            torch_reference.train_step(tm, x, y)
        # SGD: relative to max|p|. Adam: absolute, in units of lr -- Adam's update
        # g/(sqrt(v)+eps) amplifies float32 rounding noise of gradients that are ~1e-10
        # (dead fc1 inputs), so those entries legitimately differ by a few % of lr.
        diffs = [
            float(np.abs(pn - pt).max())
            for pn, pt in zip(npm.params, torch_reference.params_numpy(tm), strict=True)
        ]
        if isinstance(npm.optimizer, Adam):
            pw, what, tol = max(diffs) / npm.optimizer.lr, "max|dp|/lr", 0.05
        else:
            rel = [d / np.abs(p).max() for d, p in zip(diffs, npm.params, strict=True)]
            pw, what, tol = max(rel), "rel", 1e-4
        assert pw < tol, (name, "params after 3 steps", what, pw)
        print(
            f"  vs PyTorch {name:10s} loss {loss_np:.6f}/{loss_t:.6f}, worst grad err "
            f"{worst:.1e} (rel. to max|g|), params after 3 steps {pw:.1e} ({what})"
        )


def _cmd_check(args) -> None:
    print("gradient checks (float64, central differences):")
    check_gradients()
    _check_optimizers()
    _check_against_torch()
    print("MNIST, 1 epoch each:")
    xtr, ytr = load_mnist(args.dataset, "train")
    xte, yte = load_mnist(args.dataset, "test")
    for name in args.models:
        model = make_model(name, seed=0)
        t0 = time.perf_counter()
        for idx in batch_order(len(xtr), len(xtr), 128, seed=0):
            loss = train_step(model, xtr[idx], ytr[idx])
        dt = time.perf_counter() - t0
        acc = evaluate(model, xte, yte)
        print(f"  {name:10s} last loss {loss:.4f}, test accuracy {acc:.4f}, epoch {dt:.1f}s")
        if name.startswith("mlp"):
            assert acc > 0.95, acc


def _cmd_denormals(args) -> None:
    """MLP 784-128-10 for a few epochs, flushing never / every step / every 100 steps.

    Prints per epoch: wall time, how many momentum entries are denormal, and the
    median time of the optimiser step alone on the buffers as they are then
    (a step that does not flush, except with flush_every=1).
    """
    xtr, ytr = load_mnist(args.dataset, "train")
    per_epoch = len(xtr) // 128
    for flush_every in (0, 1, 100):
        model = MLPNumpy((784, 128, 10), seed=0, flush_every=flush_every)
        opt = model.optimizer
        batches = batch_order(len(xtr), per_epoch * 128 * args.epochs, 128, seed=0)
        t0 = time.perf_counter()
        for i, idx in enumerate(batches):
            model.step(xtr[idx], ytr[idx])
            if (i + 1) % per_epoch:
                continue
            dt = time.perf_counter() - t0
            n_den = sum(int(((b != 0) & (np.abs(b) < TINY32)).sum()) for b in opt.bufs)
            n_all = sum(b.size for b in opt.bufs)
            grads = model.loss_and_grads(xtr[idx], ytr[idx])[1]
            saved_bufs, saved_params, saved_t = (
                [b.copy() for b in opt.bufs],
                [p.copy() for p in opt.params],
                opt.t,
            )
            times = []
            for _ in range(100):
                for b, sb in zip(opt.bufs, saved_bufs, strict=True):
                    np.copyto(b, sb)
                opt.t = saved_t
                s0 = time.perf_counter()
                opt.step(grads)
                times.append(time.perf_counter() - s0)
            opt_us = float(np.median(times)) * 1e6
            for p, sp in zip(opt.params, saved_params, strict=True):
                np.copyto(p, sp)
            opt.t = saved_t
            print(
                f"flush_every={flush_every:<3d} epoch {(i + 1) // per_epoch}: {dt:5.2f}s, "
                f"denormal momentum entries {n_den:6d}/{n_all}, "
                f"optimizer step {opt_us:4.0f} us (median)",
                flush=True,
            )
            t0 = time.perf_counter()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("check", "denormals"):
        p = sub.add_parser(cmd)
        p.add_argument("--dataset", default=str(DEFAULT_MNIST))
        p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
        p.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    {"check": _cmd_check, "denormals": _cmd_denormals}[args.cmd](args)


if __name__ == "__main__":
    main()
