"""Derivatives of whole functions, as `torch.autograd.functional`: `vjp`, `jvp`, `jacobian`,
`hessian`, `hvp`, `vhp`.

Each is a few lines on top of `grad` (in the spirit of HIPS autograd's
`differential_operators.py`): a vector-Jacobian product is one backward pass; a Jacobian is one
vjp per output element; a Jacobian-vector product is the vjp of a vjp (the "double-vjp trick":
`u -> J^T u` is linear in `u`, so its vjp with `v` is `J v`, no forward mode needed); a Hessian
is the Jacobian of the gradient.

Conventions, as PyTorch's:
- `func` takes one Tensor per input and returns a Tensor or a tuple of Tensors.
- `inputs` is a Tensor or a tuple of Tensors; they need not require grad. `func` runs on
  stand-ins that share their data: the user's tensors are never modified and never get `.grad`.
- Results nest like the arguments: a Tensor for a Tensor, tuples for tuples; Jacobians per
  output, then per input, `J[i][j].shape == outputs[i].shape + inputs[j].shape`.
- Without `create_graph` the results are plain tensors (no graph). With `create_graph=True`
  they carry a graph, back to the user's inputs where those require grad, so they can be
  differentiated again.
- An output that does not depend on an input contributes zeros (`strict=True`: an error).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .grad_mode import enable_grad
from .ops.shape import stack
from .tensor import Tensor, grad

Inputs = Tensor | Sequence[Tensor]


# ----- plumbing -------------------------------------------------------------------------------
def _as_tuple(name: str, arg: Any, what: str) -> tuple[bool, tuple[Tensor, ...]]:
    """(was it a tuple, its Tensors); for `v`, arrays become tensors too."""
    convert = what == "v"
    if isinstance(arg, Tensor) or (convert and isinstance(arg, np.ndarray)):
        return False, (_tensor(arg),)
    if isinstance(arg, (tuple, list)) and all(
        isinstance(a, Tensor) or (convert and isinstance(a, np.ndarray)) for a in arg
    ):
        return True, tuple(_tensor(a) for a in arg)
    raise TypeError(
        f"{name}: {what} must be a Tensor or a tuple of Tensors, got {type(arg).__name__}"
    )


def _tensor(a: Tensor | np.ndarray) -> Tensor:
    return a if isinstance(a, Tensor) else Tensor(a, dtype=a.dtype)


def _pass_gradient(g: Tensor, out: Tensor) -> tuple[Tensor]:
    return (g,)


@contextmanager
def as_leaves(tensors: Sequence[Tensor]) -> Iterator[None]:
    """Inside the block, `tensors` are leaves to the engine, without hooks: a backward pass
    stops at them (and hands them their gradient), instead of running on through the graph
    that made them (`grad` computes every path, not just those that reach its inputs).
    Their parents and hooks are put back on exit."""
    kept = [(t, t._parents, t._hooks) for t in tensors]
    try:
        for t in tensors:
            t._parents, t._hooks = (), None
        yield
    finally:
        for t, parents, hooks in kept:
            t._parents, t._hooks = parents, hooks


@contextmanager
def _differentiable_inputs(
    name: str, inputs: Inputs, create_graph: bool
) -> Iterator[tuple[bool, tuple[Tensor, ...]]]:
    """Stand-ins for `inputs` that require grad and share their data: copies cut from the
    graph, or, for `create_graph` and an input that requires grad, an identity op on it (so
    the results' graphs lead back to the user's tensor), a leaf while the transform runs."""
    is_tuple, given = _as_tuple(name, inputs, "inputs")
    stand_ins, aliases = [], []
    for i, x in enumerate(given):
        if x.dtype.kind != "f":
            raise TypeError(
                f"{name}: input {i} (shape {x.shape}) has dtype {x.dtype}; only floating "
                "inputs can be differentiated"
            )
        if create_graph and x.requires_grad:
            alias = Tensor._from_op(x.data, (x,), "input", _pass_gradient, saved=())
            aliases.append(alias)
        else:
            alias = Tensor(x.data, requires_grad=True, dtype=x.dtype)
        stand_ins.append(alias)
    with enable_grad(), as_leaves(aliases):
        yield is_tuple, tuple(stand_ins)


def _outputs(name: str, outputs: Any) -> tuple[bool, tuple[Tensor, ...]]:
    if isinstance(outputs, Tensor):
        return False, (outputs,)
    if isinstance(outputs, (tuple, list)) and all(isinstance(o, Tensor) for o in outputs):
        return True, tuple(outputs)
    raise TypeError(
        f"{name}: func must return a Tensor or a tuple of Tensors, got {type(outputs).__name__}"
    )


def _scalar_output(name: str, outputs: Any) -> Tensor:
    _, ys = _outputs(name, outputs)
    if len(ys) != 1 or ys[0].size != 1:
        shapes = ", ".join(str(y.shape) for y in ys)
        raise RuntimeError(
            f"{name}: func must return a single one-element Tensor (a scalar), got "
            f"output{'s' if len(ys) > 1 else ''} of shape {shapes}"
        )
    return ys[0]


def _vectors(name: str, v: Any, like: tuple[Tensor, ...], what: str) -> tuple[Tensor, ...]:
    """`v` checked against `like` (the outputs for vjp, the inputs for jvp/hvp/vhp)."""
    if v is None:
        if len(like) != 1 or like[0].size != 1:
            shapes = ", ".join(str(t.shape) for t in like)
            raise RuntimeError(
                f"{name}: v can be left out only when the {what} is a single one-element "
                f"Tensor; pass v for the {what} of shape {shapes}"
            )
        return (Tensor(np.ones(like[0].shape, like[0].dtype), dtype=like[0].dtype),)
    _, vs = _as_tuple(name, v, "v")
    if len(vs) != len(like):
        raise ValueError(f"{name}: v has {len(vs)} Tensors for {len(like)} {what}s")
    for i, (vi, t) in enumerate(zip(vs, like, strict=True)):
        if vi.shape != t.shape:
            which = f"{what} {i}" if len(like) > 1 else f"the {what}"
            raise ValueError(f"{name}: v of shape {vi.shape} for {which} of shape {t.shape}")
    return vs


def _grads(
    name: str,
    outputs: Sequence[Tensor],
    inputs: Sequence[Tensor],
    grad_outputs: Sequence[Tensor],
    create_graph: bool,
    strict: bool = False,
) -> list[Tensor]:
    """sum_i grad_outputs[i] . d outputs[i] / d inputs, zeros where an input is unused.

    The graph is retained (the transforms run several backward passes through it); the
    engine's errors (a fused op differentiated twice) come out naming the transform."""
    used = [(y, g) for y, g in zip(outputs, grad_outputs, strict=True) if y.requires_grad]
    found: Sequence[Tensor | None] = (None,) * len(inputs)
    if used:
        try:
            found = grad(
                [y for y, _ in used],
                list(inputs),
                [g for _, g in used],
                retain_graph=True,
                create_graph=create_graph,
                allow_unused=True,
            )
        except RuntimeError as error:
            raise RuntimeError(f"{name}: {error}") from error
    result = []
    for i, (x, g) in enumerate(zip(inputs, found, strict=True)):
        if g is None:
            if strict:
                raise RuntimeError(
                    f"{name}: the output does not depend on input {i} (shape {x.shape}); "
                    "strict=True forbids that"
                )
            g = Tensor(np.zeros(x.shape, x.dtype), dtype=x.dtype)
        result.append(g)
    return result


def _result(t: Tensor, create_graph: bool) -> Tensor:
    return t if create_graph else t.detach()


def _nest(is_tuple: bool, items: Sequence[Any]) -> Any:
    return tuple(items) if is_tuple else items[0]


def _unit(shape: tuple[int, ...], dtype: np.dtype, k: int) -> Tensor:
    e = np.zeros(shape, dtype)
    e.reshape(-1)[k] = 1
    return Tensor(e, dtype=dtype)


def _dummies(like: Sequence[Tensor]) -> list[Tensor]:
    """Zeros that require grad, one per tensor of `like`: the `u` of the double-vjp trick."""
    return [Tensor(np.zeros(t.shape, t.dtype), requires_grad=True, dtype=t.dtype) for t in like]


# ----- the transforms -------------------------------------------------------------------------
def vjp(
    func: Callable[..., Any],
    inputs: Inputs,
    v: Any = None,
    create_graph: bool = False,
    strict: bool = False,
) -> tuple[Any, Any]:
    """`(func(*inputs), v^T J)`: `v` shaped like the outputs (may be left out for a
    one-element output), the product shaped like the inputs."""
    with _differentiable_inputs("vjp", inputs, create_graph) as (in_tuple, xs):
        out_tuple, ys = _outputs("vjp", func(*xs))
        vs = _vectors("vjp", v, ys, "output")
        vj = _grads("vjp", ys, xs, vs, create_graph, strict)
    return (
        _nest(out_tuple, [_result(y, create_graph) for y in ys]),
        _nest(in_tuple, [_result(g, create_graph) for g in vj]),
    )


def jvp(
    func: Callable[..., Any],
    inputs: Inputs,
    v: Any = None,
    create_graph: bool = False,
    strict: bool = False,
) -> tuple[Any, Any]:
    """`(func(*inputs), J v)`: `v` shaped like the inputs (may be left out for a one-element
    input), the product shaped like the outputs. By the double-vjp trick: two backward
    passes, so through a fused op that is differentiable only once it raises."""
    with _differentiable_inputs("jvp", inputs, create_graph) as (in_tuple, xs):
        out_tuple, ys = _outputs("jvp", func(*xs))
        vs = _vectors("jvp", v, xs, "input")
        us = _dummies(ys)
        jtu = _grads("jvp", ys, xs, us, create_graph=True, strict=strict)  # J^T u, linear in u
        jv = _grads("jvp", jtu, us, vs, create_graph)
    return (
        _nest(out_tuple, [_result(y, create_graph) for y in ys]),
        _nest(out_tuple, [_result(g, create_graph) for g in jv]),
    )


def _jacobian_blocks(
    name: str,
    ys: tuple[Tensor, ...],
    xs: tuple[Tensor, ...],
    create_graph: bool,
    strict: bool,
    strategy: str,
) -> list[list[Tensor]]:
    """`blocks[i][j]` of shape `ys[i].shape + xs[j].shape`.

    reverse-mode: one vjp per output element, all inputs at once (so a scalar output costs
    one backward pass). forward-mode: the double-vjp trick, one pass through the graph of
    `u -> J^T u` per input element, better when the inputs have fewer elements."""

    def assemble(pieces: list[Tensor], shape: tuple[int, ...], dtype: np.dtype, axis: int):
        if not pieces:  # an empty output or input
            return Tensor(np.zeros(shape, dtype), dtype=dtype)
        return stack(pieces, axis=axis).reshape(shape)

    if strategy == "reverse-mode":
        blocks = []
        for y in ys:
            rows = [
                _grads(name, [y], xs, [_unit(y.shape, y.dtype, k)], create_graph, strict)
                for k in range(y.size)
            ]
            blocks.append(
                [
                    assemble([r[j] for r in rows], y.shape + x.shape, x.dtype, 0)
                    for j, x in enumerate(xs)
                ]
            )
        return blocks
    if strategy == "forward-mode":
        us = _dummies(ys)
        jtu = _grads(name, ys, xs, us, create_graph=True, strict=strict)
        columns = [  # columns[j][l][i]: d ys[i] / d xs[j][l]
            [
                _grads(name, [jtu[j]], us, [_unit(x.shape, x.dtype, k)], create_graph)
                for k in range(x.size)
            ]
            for j, x in enumerate(xs)
        ]
        return [
            [
                assemble([c[i] for c in columns[j]], y.shape + x.shape, y.dtype, -1)
                for j, x in enumerate(xs)
            ]
            for i, y in enumerate(ys)
        ]
    raise ValueError(f"{name}: strategy must be 'reverse-mode' or 'forward-mode', got {strategy!r}")


def _jacobian(
    name: str,
    func: Callable[..., Any],
    inputs: Inputs,
    create_graph: bool,
    strict: bool,
    strategy: str,
) -> Any:
    with _differentiable_inputs(name, inputs, create_graph) as (in_tuple, xs):
        out_tuple, ys = _outputs(name, func(*xs))
        blocks = _jacobian_blocks(name, ys, xs, create_graph, strict, strategy)
    return _nest(
        out_tuple, [_nest(in_tuple, [_result(b, create_graph) for b in row]) for row in blocks]
    )


def jacobian(
    func: Callable[..., Any],
    inputs: Inputs,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    strategy: str = "reverse-mode",
) -> Any:
    """The Jacobian of `func` at `inputs`: `J[i][j].shape == outputs[i].shape +
    inputs[j].shape` (a bare Tensor for a Tensor in and out, as PyTorch nests it).

    `vectorize` is accepted for PyTorch's signature and changes nothing: there is no vmap
    here, the rows are computed one backward pass each."""
    del vectorize
    return _jacobian("jacobian", func, inputs, create_graph, strict, strategy)


def hessian(
    func: Callable[..., Any],
    inputs: Inputs,
    create_graph: bool = False,
    strict: bool = False,
    vectorize: bool = False,
    outer_jacobian_strategy: str = "reverse-mode",
) -> Any:
    """The Hessian of a scalar `func`: the Jacobian of its gradient. `H[i][j].shape ==
    inputs[i].shape + inputs[j].shape`. A fused op that is differentiable only once
    (conv2d, the pooling ops) raises."""
    del vectorize

    def gradient(*xs: Tensor) -> Any:
        y = _scalar_output("hessian", func(*xs))
        ones = Tensor(np.ones(y.shape, y.dtype), dtype=y.dtype)
        g = _grads("hessian", [y], xs, [ones], create_graph=True, strict=strict)
        return g[0] if isinstance(inputs, Tensor) else tuple(g)

    return _jacobian("hessian", gradient, inputs, create_graph, strict, outer_jacobian_strategy)


def vhp(
    func: Callable[..., Any],
    inputs: Inputs,
    v: Any = None,
    create_graph: bool = False,
    strict: bool = False,
) -> tuple[Tensor, Any]:
    """`(func(*inputs), v^T H)` for a scalar `func`: the gradient of `grad f . v`, two
    backward passes whatever the size of the inputs."""
    with _differentiable_inputs("vhp", inputs, create_graph) as (in_tuple, xs):
        y = _scalar_output("vhp", func(*xs))
        vs = _vectors("vhp", v, xs, "input")
        ones = Tensor(np.ones(y.shape, y.dtype), dtype=y.dtype)
        g = _grads("vhp", [y], xs, [ones], create_graph=True, strict=strict)
        vh = _grads("vhp", g, xs, vs, create_graph, strict)
    return _result(y, create_graph), _nest(in_tuple, [_result(t, create_graph) for t in vh])


def hvp(
    func: Callable[..., Any],
    inputs: Inputs,
    v: Any = None,
    create_graph: bool = False,
    strict: bool = False,
) -> tuple[Tensor, Any]:
    """`(func(*inputs), H v)` for a scalar `func`: the Jacobian-vector product of the
    gradient, by the double-vjp trick (one pass more than `vhp`; for a twice continuously
    differentiable `func`, H is symmetric and `vhp` gives the same numbers faster)."""
    with _differentiable_inputs("hvp", inputs, create_graph) as (in_tuple, xs):
        y = _scalar_output("hvp", func(*xs))
        vs = _vectors("hvp", v, xs, "input")
        ones = Tensor(np.ones(y.shape, y.dtype), dtype=y.dtype)
        g = _grads("hvp", [y], xs, [ones], create_graph=True, strict=strict)
        us = _dummies(g)
        htu = _grads("hvp", g, xs, us, create_graph=True, strict=strict)  # H^T u
        hv = _grads("hvp", htu, us, vs, create_graph)
    return _result(y, create_graph), _nest(in_tuple, [_result(t, create_graph) for t in hv])
