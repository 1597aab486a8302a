"""User-defined differentiable ops: `Function`, as `torch.autograd.Function`.

```python
class Exp(Function):
    @staticmethod
    def forward(ctx, x):             # runs with grad recording off
        y = x.exp()
        ctx.save_for_backward(y)
        return y
    @staticmethod
    def backward(ctx, grad_y):       # one gradient per output, one result per input
        (y,) = ctx.saved_tensors
        return grad_y * y
y = Exp.apply(x)
```

`apply` makes one graph node named after the class, whose closure calls `backward`; the
engine then treats it as any built-in op: it unbroadcasts the returned gradients, checks
their shapes and dtypes, checks saved tensors for in-place changes and frees them after
backward. When `backward` is written with Tensor ops it records under
`grad(..., create_graph=True)`, so the op can be differentiated twice.

Several outputs: the outputs hang off one hidden node with no data (shape `(0,)`), made
before them, so the engine reaches it only after every output's gradient is in. Each
output's closure parks its gradient on the context; the hidden node's closure calls
`backward` once with all of them (zeros for outputs that got none, as PyTorch).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from . import grad_mode
from .tensor import Tensor
from .tensor import once_differentiable as _refusing_grads


class FunctionCtx:
    """The `ctx` that `forward` and `backward` share: `save_for_backward`, `saved_tensors`,
    `needs_input_grad`, and any attribute `forward` sets."""

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs_input_grad
        self._to_save: tuple[Any, ...] = ()
        self._saved: tuple[Any, ...] | None = None
        self._non_differentiable: set[int] = set()
        self._materialize_grads = True
        self._pending: dict[int, Tensor] = {}
        self._name = "Function"
        self._inputs: tuple[Tensor, ...] = ()

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        """Keep these tensors (inputs, outputs or others; None allowed) for `backward`."""
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(
                    f"save_for_backward: expected Tensors or None, got {type(t).__name__} "
                    "(store other values as attributes of ctx)"
                )
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        if self._saved is None:
            raise RuntimeError(
                "saved_tensors: they were freed by an earlier backward(); call "
                "backward(retain_graph=True) the first time to differentiate twice"
            )
        return tuple(_resolve(t) for t in self._saved)

    def mark_non_differentiable(self, *outputs: Tensor) -> None:
        """These outputs get no gradient (integer indices, masks)."""
        self._non_differentiable.update(id(t) for t in outputs)

    def set_materialize_grads(self, value: bool) -> None:
        """False: `backward` gets None (not zeros) for outputs that received no gradient."""
        self._materialize_grads = bool(value)


class _OutputRef:
    """A saved output, looked up through a weak reference: the output's closure holds the
    context, so a strong reference would be a cycle."""

    __slots__ = ("ref",)

    def __init__(self, output: Tensor) -> None:
        self.ref = weakref.ref(output)


def _resolve(saved: Any) -> Any:
    if isinstance(saved, _OutputRef):
        output = saved.ref()
        if output is None:
            raise RuntimeError("saved_tensors: a saved output no longer exists")
        return output
    return saved


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grads)`; call
    `YourFunction.apply(*args)`.

    `forward` gets the arguments as passed (Tensors and anything else) with grad recording
    off, and returns a Tensor or a tuple of them. `backward` gets one gradient per output
    and returns one value per forward argument (a bare value when there is one): a Tensor
    or array shaped like that input (or like a broadcast of it: the engine sums it back),
    or None for no gradient; non-Tensor arguments must get None.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any) -> Any:
        raise NotImplementedError("Function subclasses implement forward(ctx, *args)")

    @staticmethod
    def backward(ctx: FunctionCtx, *grads: Tensor) -> Any:
        raise NotImplementedError("Function subclasses implement backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        name = cls.__name__
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with grad_mode.no_grad():
            result = cls.forward(ctx, *args)
        single = not isinstance(result, (tuple, list))
        raw = (result,) if single else tuple(result)
        for i, r in enumerate(raw):
            if not isinstance(r, Tensor):
                raise TypeError(
                    f"{name}.forward must return a Tensor or a tuple of Tensors; output {i} "
                    f"is a {type(r).__name__}"
                )
        inputs = tuple(a for a in args if isinstance(a, Tensor))
        if not (grad_mode.is_grad_enabled() and any(needs)):
            return result  # nothing to differentiate: the forward's own results
        differentiable = [r.dtype.kind == "f" and id(r) not in ctx._non_differentiable for r in raw]
        ctx._name = name
        ctx._inputs = inputs  # (for once_differentiable's refusing nodes)
        # what the engine checks for in-place changes (and frees after backward): the saved
        # inputs and other tensors, and the output(s)
        saves_outputs = any(t is r for t in ctx._to_save for r in raw)
        saved_inputs = [t for t in ctx._to_save if t is not None and not any(t is r for r in raw)]
        backward = _make_backward(cls, ctx, args, raw, differentiable)
        if single and differentiable[0]:
            out = Tensor._from_op(
                raw[0].data,
                inputs,
                name,
                backward,
                saved=tuple(saved_inputs),
                saves_output=saves_outputs,
            )
            outputs = (out,)
        else:
            hub = Tensor._from_op(
                np.empty((0,), dtype=raw[0].dtype),
                inputs,
                name,
                backward,
                saved=tuple(saved_inputs),
                saves_output=saves_outputs,  # (the hub's own: marks the closure as saving)
            )
            outputs = tuple(
                _output_of(hub, ctx, i, r) if keep else Tensor(r.data, dtype=r.dtype)
                for i, (r, keep) in enumerate(zip(raw, differentiable, strict=True))
            )
        # saved outputs resolve to the recorded outputs (so a double backward sees them as
        # functions of the inputs), through weak references; saved inputs are themselves
        by_id = {id(r): o for r, o in zip(raw, outputs, strict=True)}
        ctx._saved = tuple(
            _OutputRef(by_id[id(t)]) if t is not None and id(t) in by_id else t
            for t in ctx._to_save
        )
        return outputs[0] if single else outputs


def _output_of(hub: Tensor, ctx: FunctionCtx, index: int, raw: Tensor) -> Tensor:
    """Output `index` of a several-output Function: parks its gradient for the hub's
    closure and hands the hub an empty one."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        previous = ctx._pending.get(index)
        ctx._pending[index] = g if previous is None else previous + g
        return (Tensor._from_array(np.empty((0,), dtype=hub.dtype)),)

    return Tensor._from_op(raw.data, (hub,), f"{hub._op}[{index}]", backward, saved=())


def _make_backward(
    cls: type[Function],
    ctx: FunctionCtx,
    args: tuple[Any, ...],
    raw: tuple[Tensor, ...],
    differentiable: list[bool],
) -> Callable[[Tensor, Tensor], tuple]:
    name = cls.__name__
    single = len(raw) == 1 and differentiable[0]
    shapes = [(r.shape, r.dtype) for r in raw]

    def backward(g: Tensor, out: Tensor) -> tuple:
        if single:
            grads: list[Tensor | None] = [g]
        else:  # the outputs' parked gradients
            grads = [ctx._pending.pop(i, None) for i in range(len(raw))]
            if ctx._materialize_grads:
                grads = [
                    Tensor._from_array(np.zeros(shape, dtype)) if gi is None else gi
                    for gi, (shape, dtype) in zip(grads, shapes, strict=True)
                ]
        result = cls.backward(ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) != len(args):
            raise RuntimeError(
                f"{name}.backward returned {len(result)} gradient(s), but forward took "
                f"{len(args)} argument(s): return one per argument (None for no gradient)"
            )
        parent_grads = []
        for i, (arg, gi) in enumerate(zip(args, result, strict=True)):
            if not isinstance(arg, Tensor):
                if gi is not None:
                    raise RuntimeError(
                        f"{name}.backward returned a gradient for argument {i}, which is a "
                        f"{type(arg).__name__}, not a Tensor: return None there"
                    )
                continue
            if gi is not None and not isinstance(gi, Tensor):
                gi = Tensor._from_array(np.asarray(gi, dtype=arg.dtype))
            parent_grads.append(gi)
        return tuple(parent_grads)

    return backward


def once_differentiable(
    backward: Callable[..., Any],
) -> Callable[..., Any]:
    """Decorator for a `backward` written in numpy: under `create_graph=True` its gradients
    become nodes that raise when differentiated again, never a silently wrong number (as
    PyTorch's `torch.autograd.function.once_differentiable`)."""

    @functools.wraps(backward)
    def wrapped(ctx: FunctionCtx, *grads: Any) -> Any:
        with grad_mode.no_grad():
            result = backward(ctx, *grads)
        if not grad_mode.is_grad_enabled():
            return result
        single = not isinstance(result, tuple)
        values = (result,) if single else result
        # connected to the forward's inputs and to the incoming gradients, so that any
        # attempt to differentiate the result again reaches a refusing node
        connected = ctx._inputs + tuple(g for g in grads if isinstance(g, Tensor))
        refused = tuple(
            None if v is None else _refusing_grads(ctx._name, connected, (v,))[0] for v in values
        )
        return refused[0] if single else refused

    return wrapped
