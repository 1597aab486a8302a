"""Optimisers: SGD, Adam, AdamW, with PyTorch's update rules and state-dict layout.

`from nn import optim`; schedulers live in `optim.lr_scheduler` (nn/lr_scheduler.py).

Each optimiser updates `p.data` in place with numpy ufuncs (`out=`), keeps its state in the
parameters' dtype (float32 stays float32), and skips parameters whose `.grad` is None.

Denormals: a momentum or Adam-moment entry whose gradient has become 0 decays geometrically
and ends up a float32 denormal (|x| < 1.18e-38) for hundreds (SGD, momentum 0.9) to thousands
(Adam's second moment, beta2 0.999) of steps; numpy cannot switch the CPU to flush-to-zero,
and many x86 CPUs (Intel in particular) run arithmetic several times slower on denormals.
So the optimisers zero state entries below `np.finfo(dtype).tiny` (`_flush_denormals`) on
every `flush_every`-th update of a parameter (default 100, as benchmarks/numpy_reference.py;
set `opt.flush_every = 1` for every step, 0 for never). Measured here (AMD EPYC, 2 cores,
float32): a flush costs ~35 us per 100k entries (~115 us for the CNN's 400k-entry fc1
buffers), about two of the ~10 elementwise passes of an Adam update, while an SGD momentum
update of 100k all-denormal entries ran as fast as a normal one (80 vs 78 us);
benchmarks/numpy_reference.py found sqrt and divide ~2x slower on denormals. Every 100
steps keeps the cost below 1% and still bounds how long an entry can stay denormal. The
schedule follows the per-parameter "step" count kept in the state (SGD with momentum keeps
one too), so a resumed run flushes on the same steps as an uninterrupted one. Flushing
changes no parameter visibly: an update of lr * 1e-38 is below float32 resolution of any
weight that is not itself ~1e-38.

Threads: a parameter of at least 2 * `_PIECE_ELEMENTS` (1M) entries is updated in pieces of
its flat view on `autograd.get_num_threads()` threads; smaller ones (all of the benchmark
models') in one call. Every entry gets the same arithmetic either way, so the parameters and
state are bit-identical for any number of threads.

Checkpoints: `state_dict()` is `{"state": {index: {name: ndarray | number}},
"param_groups": [{hyper-parameters..., "params": [indices]}]}` (indices count parameters
across groups in order), a snapshot (arrays copied). `flatten_state_dict(sd, prefix)` turns
it (or a scheduler's state dict) into `{str: ndarray}` for an .npz file and
`unflatten_state_dict(arrays, prefix)` turns it back; no pickle anywhere:

    np.savez(path, **model.state_dict(), **optim.flatten_state_dict(opt.state_dict(), "optim."))
    arrays = dict(np.load(path))
    opt.load_state_dict(optim.unflatten_state_dict(arrays, "optim."))

Saving after k steps, rebuilding, loading (parameters and optimiser) and stepping on gives
bit-identical parameters to an uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from autograd import Tensor, enable_grad
from autograd.parallel import parallel_for

from . import lr_scheduler  # noqa: F401  (optim.lr_scheduler.StepLR, as in PyTorch)

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "lr_scheduler",
    "flatten_state_dict",
    "unflatten_state_dict",
]


# A parameter's update is split over threads in pieces of at least this many entries (so only
# parameters of twice as many are split); smaller ones run in one call, here. Each of an
# update's ~12 numpy calls hands the GIL to the other thread and back, which costs more than
# the call over small pieces. Measured here (2 cores, AdamW, float32), two threads against
# one: 256k entries 0.51 -> 0.53-0.64 ms (slower), 512k 1.06 -> 1.0 ms, 1M 2.7-3.0 -> 1.9 ms,
# 4M 17.6 -> 9.4 ms. (The benchmark models' parameters, 65k entries at most, run inline.)
# Right after a threaded BLAS product, while OpenBLAS's idle workers spin (see
# nn/attention.py's `_blas_workers_sleep`), 1M went 3.56 -> 3.58 ms and 4M 18.1 -> 17.1; with
# OPENBLAS_THREAD_TIMEOUT=4, 3.67 -> 2.85 and 19.6 -> 12.9.
_PIECE_ELEMENTS = 1 << 19


def _elementwise(
    update: Callable[..., None], arrays: tuple[np.ndarray | None, ...], args: tuple
) -> None:
    """`update(*arrays, *args)` on same-shaped arrays (None entries pass as None), or on pieces
    of their flat views spread over `autograd.get_num_threads()` threads when they are large
    and C-contiguous. `update` works entry by entry, so the result is the same for any split."""
    size = arrays[0].size
    if size < 2 * _PIECE_ELEMENTS or not all(a.flags.c_contiguous for a in arrays if a is not None):
        update(*arrays, *args)
        return
    flat = [None if a is None else a.reshape(-1) for a in arrays]

    def piece(lo: int, hi: int) -> None:
        update(*(None if a is None else a[lo:hi] for a in flat), *args)

    parallel_for(piece, size, _PIECE_ELEMENTS)


def _flush_denormals(buffer: np.ndarray, nonnegative: bool = False) -> None:
    """Zero, in place, the entries of `buffer` below the smallest normal float (see above);
    `nonnegative` buffers (Adam's second moment) skip the abs."""
    tiny = np.finfo(buffer.dtype).tiny
    buffer[(buffer if nonnegative else np.abs(buffer)) < tiny] = 0


def _plain(value: Any) -> Any:
    """A loaded array back to what a state dict holds: 0-d -> number, 1-d -> list."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    return value


class Optimizer:
    """Base class: parameter groups, per-parameter state, zero_grad, step, state dicts.

    `params`: Tensors (a list or a generator such as `model.parameters()`), or a list of dicts
    (parameter groups) each with "params" and any hyper-parameters that override the
    defaults, e.g. `[{"params": body}, {"params": head, "lr": 1e-2}]`.
    """

    # state entries that are Python numbers, not arrays (e.g. Adam's "step")
    _scalar_state: tuple[str, ...] = ("step",)
    # flush denormal state entries on every `flush_every`-th update of a parameter (0: never)
    flush_every: int = 100

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}
        # scratch space (not state, not saved): one flat buffer per dtype, as large as the
        # largest parameter, and each parameter's view of it
        self._scratch: dict[np.dtype, np.ndarray] = {}
        self._work: dict[Tensor, np.ndarray] = {}
        self.param_groups: list[dict[str, Any]] = []
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters; hyper-parameters it does not name take the defaults."""
        name = type(self).__name__
        group = dict(group)
        params = group.get("params")
        group["params"] = [params] if isinstance(params, Tensor) else list(params or ())
        for i, p in enumerate(group["params"]):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{name}: parameter {i} of a group is a {type(p).__name__}, not a Tensor"
                )
            if not p.is_leaf or p.dtype.kind != "f":
                raise ValueError(
                    f"{name}: parameter {i} (shape {p.shape}) must be a floating leaf tensor"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in group["params"]]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError(f"{name}: a parameter appears more than once in the groups")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: `p.grad = None` (PyTorch 2's default), or zero them in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.fill(0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; `closure` (optional) recomputes and
        returns the loss first, as in PyTorch."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                grad, data = p.grad, p.data
                if grad is None:
                    continue
                if grad.shape != data.shape:
                    raise ValueError(
                        f"{type(self).__name__}: grad of shape {grad.shape} for "
                        f"a parameter of shape {p.shape}"
                    )
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                work = self._work.get(p)
                if work is None or work.shape != data.shape or work.dtype != data.dtype:
                    work = self._work_buffer(p)
                self._update(data, grad, state, group, work)
                p._bump_version()  # a backward through ops that saved `p` must now refuse
        return loss

    def _work_buffer(self, p: Tensor) -> np.ndarray:
        """Scratch space shaped like `p`: a view of one buffer that all parameters share.

        Kept between steps, because allocating a fresh buffer per step costs more than the
        arithmetic for large parameters (page faults); shared, because a buffer per parameter
        would add the model's size again to the peak memory of training.
        """
        data = p.data
        flat = self._scratch.get(data.dtype)
        if flat is None or flat.size < data.size:
            flat = self._scratch[data.dtype] = np.empty(data.size, dtype=data.dtype)
            self._work.clear()  # views of the smaller buffer: remake them on their next use
        work = self._work[p] = flat[: data.size].reshape(data.shape)
        return work

    def _update(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict, work: np.ndarray
    ) -> None:
        """Update `p` in place from its gradient `g`; `work` is scratch space."""
        raise NotImplementedError

    # ----- state dicts ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot: {"state": {index: {name: array | number}}, "param_groups": [...]}."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {
            index[id(p)]: {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in s.items()}
            for p, s in self.state.items()
            if id(p) in index
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict()` (copies the arrays).

        The groups must hold the same numbers of parameters, in the same order, as when saved.
        """
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: {len(saved_groups)} parameter groups "
                f"saved, {len(self.param_groups)} here"
            )
        params: list[Tensor] = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(_plain(saved["params"])) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: group {i} saved with "
                    f"{len(_plain(saved['params']))} parameters, has "
                    f"{len(group['params'])} here"
                )
            params.extend(group["params"])
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            for key, value in saved.items():
                if key != "params":
                    value = _plain(value)
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = {}
        for key, entries in state_dict.get("state", {}).items():
            i = int(key)
            if not 0 <= i < len(params):
                raise KeyError(
                    f"{name}.load_state_dict: state for parameter {i}, but there are "
                    f"only {len(params)} parameters"
                )
            p = params[i]
            restored = {}
            for entry, value in entries.items():
                if entry in self._scalar_state:
                    restored[entry] = _plain(value)
                    continue
                array = np.array(value, dtype=p.dtype)  # a copy, in the parameter's dtype
                if array.shape != p.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: state '{i}.{entry}' has shape "
                        f"{array.shape}, the parameter {p.shape}"
                    )
                restored[entry] = array
            self.state[p] = restored

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {settings}")
        return "\n".join(lines + [")"])


def _check_hyper(
    name: str,
    lr: float,
    betas: tuple[float, float] | None = None,
    eps: float = 0.0,
    weight_decay: float = 0.0,
) -> None:
    if lr < 0:
        raise ValueError(f"{name}: invalid learning rate {lr}")
    if eps < 0:
        raise ValueError(f"{name}: invalid eps {eps}")
    if weight_decay < 0:
        raise ValueError(f"{name}: invalid weight_decay {weight_decay}")
    if betas is not None and not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"{name}: betas must lie in [0, 1), got {betas}")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    PyTorch's rule, per parameter p with gradient g (b is the momentum buffer):

        g = g + weight_decay * p                        (if weight_decay)
        b = g                       on the first step   (if momentum)
        b = momentum * b + (1 - dampening) * g  after
        g = g + momentum * b  if nesterov  else  g = b  (if momentum)
        p = p - lr * g

    State (only with momentum): "momentum_buffer", and "step" (the number of updates, which
    PyTorch does not keep: it schedules the denormal flush, see the module docstring).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        _check_hyper("SGD", lr, weight_decay=weight_decay)
        if momentum < 0:
            raise ValueError(f"SGD: invalid momentum {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs a momentum > 0 and dampening 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)

    def _update(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict, work: np.ndarray
    ) -> None:
        momentum = group["momentum"]
        buf = state.get("momentum_buffer") if momentum else None
        first = flush = False
        if momentum and buf is None:
            buf = state["momentum_buffer"] = np.empty(p.shape, dtype=p.dtype)
            state["step"] = 1
            first = True
        elif momentum:
            state["step"] += 1
            flush = bool(self.flush_every) and state["step"] % self.flush_every == 0
        _elementwise(_sgd_update, (p, g, work, buf), (first, flush, group))


def _sgd_update(
    p: np.ndarray,
    g: np.ndarray,
    work: np.ndarray,
    buf: np.ndarray | None,
    first: bool,
    flush: bool,
    group: dict,
) -> None:
    """SGD's rule on (pieces of) p, its gradient g, scratch space and momentum buffer (None
    without momentum), in place, with `work` as scratch space: no temporaries the size of the
    parameter (but one for Nesterov with weight decay)."""
    momentum, decay, lr = group["momentum"], group["weight_decay"], group["lr"]
    if decay:  # d = g + decay * p, built in `work` (p.grad itself stays untouched)
        d = np.multiply(p, decay, out=work)
        d += g
    else:
        d = g
    if buf is None:
        np.multiply(d, lr, out=work)
        p -= work
        return
    if first:
        buf[...] = d
    else:
        buf *= momentum
        if group["dampening"]:
            buf += (1.0 - group["dampening"]) * d
        else:
            buf += d
        if flush:
            _flush_denormals(buf)
    step = buf
    if group["nesterov"]:  # step = d + momentum * buf
        if d is work:  # (weight decay built d in `work`: one temporary here)
            work += momentum * buf
        else:
            np.multiply(buf, momentum, out=work)
            work += d
        step = work
    np.multiply(step, lr, out=work)
    p -= work


class Adam(Optimizer):
    """Adam with bias correction (PyTorch's rule; no amsgrad).

    Per parameter p with gradient g, at step t = 1, 2, ... (m, v start at 0):

        g = g + weight_decay * p                        (if weight_decay: L2, not AdamW)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    State: "step" (int), "exp_avg" (m), "exp_avg_sq" (v).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check_hyper(type(self).__name__, lr, tuple(betas), eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _decay(self, p: np.ndarray, g: np.ndarray, group: dict) -> np.ndarray:
        """Adam's L2 penalty folds into the gradient (AdamW overrides this)."""
        return g + group["weight_decay"] * p if group["weight_decay"] else g

    def _update(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict, work: np.ndarray
    ) -> None:
        (beta1, beta2), lr = group["betas"], group["lr"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        flush = bool(self.flush_every) and t % self.flush_every == 0
        # the bias corrections: 1 / (1 - beta1^t) goes on the step, sqrt(1 - beta2^t) on sqrt(v)
        corrections = (lr / (1.0 - beta1**t), math.sqrt(1.0 - beta2**t))
        arrays = (p, g, state["exp_avg"], state["exp_avg_sq"], work)
        _elementwise(self._adam_update, arrays, (corrections, flush, group))

    def _adam_update(
        self,
        p: np.ndarray,
        g: np.ndarray,
        m: np.ndarray,
        v: np.ndarray,
        work: np.ndarray,
        corrections: tuple[float, float],
        flush: bool,
        group: dict,
    ) -> None:
        """Adam's rule on (pieces of) p, g, the moments m and v and scratch space, in place."""
        (beta1, beta2), eps = group["betas"], group["eps"]
        step_size, bias2 = corrections
        g = self._decay(p, g, group)
        np.multiply(g, 1.0 - beta1, out=work)  # m = beta1 m + (1 - beta1) g
        m *= beta1
        m += work
        np.multiply(g, g, out=work)  # v = beta2 v + (1 - beta2) g^2
        work *= 1.0 - beta2
        v *= beta2
        v += work
        if flush:
            _flush_denormals(m)
            _flush_denormals(v, nonnegative=True)
        np.sqrt(v, out=work)  # denominator sqrt(v) / sqrt(1 - beta2^t) + eps
        work /= bias2
        work += eps
        np.divide(m, work, out=work)
        work *= step_size
        p -= work


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's AdamW; weight_decay defaults to 0.01).

    Per parameter, before the Adam update of the plain gradient g (see `Adam`):

        p = p * (1 - lr * weight_decay)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _decay(self, p: np.ndarray, g: np.ndarray, group: dict) -> np.ndarray:
        if group["weight_decay"]:
            p *= 1.0 - group["lr"] * group["weight_decay"]
        return g


# ----- checkpoints without pickle ---------------------------------------------------------
def flatten_state_dict(state_dict: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """An optimiser's (or scheduler's) state dict as flat `{name: ndarray}` for an .npz file.

    Keys: `{prefix}state.{index}.{name}`, `{prefix}param_groups.{group}.{name}` and
    `{prefix}{name}` for anything else (a scheduler's numbers and lists).
    """
    flat: dict[str, np.ndarray] = {}

    def put(key: str, value: Any) -> None:
        array = np.asarray(value)
        if array.dtype.kind == "O":
            raise TypeError(
                f"flatten_state_dict: {key!r} holds {value!r}, which an .npz file "
                "cannot store without pickle"
            )
        flat[prefix + key] = array

    for key, value in state_dict.items():
        if key == "state":
            for index, entries in value.items():
                for name, entry in entries.items():
                    put(f"state.{index}.{name}", entry)
        elif key == "param_groups":
            for i, group in enumerate(value):
                for name, entry in group.items():
                    put(f"param_groups.{i}.{name}", entry)
        else:
            put(key, value)
    return flat


def unflatten_state_dict(arrays: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The inverse of `flatten_state_dict`; keys not starting with `prefix` are ignored (so a
    whole checkpoint's arrays can be passed). Numbers come back as Python numbers, lists as
    lists; state arrays stay arrays."""
    result: dict[str, Any] = {}
    state: dict[int, dict[str, Any]] = {}
    groups: dict[int, dict[str, Any]] = {}
    for key, value in arrays.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix) :].split(".")
        if parts[0] == "state" and len(parts) == 3:
            state.setdefault(int(parts[1]), {})[parts[2]] = np.asarray(value)
        elif parts[0] == "param_groups" and len(parts) == 3:
            groups.setdefault(int(parts[1]), {})[parts[2]] = _plain(np.asarray(value))
        else:
            result[".".join(parts)] = _plain(np.asarray(value))
    if groups:
        result["param_groups"] = [groups[i] for i in sorted(groups)]
        result["state"] = state
    return result
