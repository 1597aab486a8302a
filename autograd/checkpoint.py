"""Gradient checkpointing: `checkpoint(function, *args)` trades compute for memory.

As `torch.utils.checkpoint.checkpoint` with `use_reentrant=False`: the graph keeps one node
for the whole call, holding only what went in; the backward pass runs `function` again, with
the random state, module scope and grad mode it first ran with, and backpropagates through
that recomputation. Outputs and gradients are those of a direct call; a stack of checkpointed
blocks keeps one block's activations alive at a time instead of all of them.

How the node knows its inputs. Everything `function` reads that requires grad becomes a parent
of the node: the Tensor arguments, but also parameters it closes over (a Module's weights) and
tensors of the caller's graph it closes over. They are found by running `function` with grad
recording on and walking its graph from the outputs down to the tensors that existed before
the call (op results are numbered as they are made, `_seq`), and that graph is dropped when
the call returns: no intermediate result outlives it. Running with recording on costs no more
peak memory than the recomputation in backward, which holds the same graph, and it makes the
node an ordinary one: `requires_grad` of the outputs is exact, `backward()` accumulates into
the parameters' `.grad` through the engine as usual, `autograd.grad(loss, params)` works, and
so does `create_graph=True` (the recomputation is then recorded, so a gradient penalty
through a checkpointed block differentiates again).

In backward, the recomputed graph is differentiated down to those same tensors, which are
made leaves for the duration (their own graph is the outer backward pass's business, and
their hooks run there, once).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import creation, grad_mode
from .functional import as_leaves
from .grad_mode import enable_grad, is_grad_enabled
from .tensor import Tensor, _op_counter, grad


def checkpoint(
    function: Callable[..., Any],
    *args: Any,
    use_reentrant: bool | None = None,
    preserve_rng_state: bool = True,
    **kwargs: Any,
) -> Any:
    """`function(*args, **kwargs)`, keeping none of its intermediate results for backward.

    `function` returns a Tensor, or a tuple or list of Tensors and other values (those pass
    through). Arguments may be anything; Tensors among them, and tensors `function` closes
    over, get their gradients. With `preserve_rng_state` (the default) the generator behind
    `autograd.rand`/`randn` and Dropout (`autograd.generator()`) is rewound for the
    recomputation, so random masks repeat, and put back afterwards. `function` must compute
    the same thing when run again (no data-dependent choice of different tensors).
    `use_reentrant` exists for PyTorch's signature: only `False` (the non-reentrant variant)
    is implemented.
    """
    if use_reentrant:
        raise ValueError(
            "checkpoint: only use_reentrant=False (the non-reentrant variant) is implemented"
        )
    if not is_grad_enabled():  # nothing will be differentiated: nothing to save
        return function(*args, **kwargs)
    replay = _Replay(preserve_rng_state)
    start = next(_op_counter)  # tensors made by the call are numbered above this
    outputs = function(*args, **kwargs)

    # a tuple or list comes back as the same kind, its other values passed through
    kind = list if isinstance(outputs, list) else tuple if isinstance(outputs, tuple) else None
    items = list(outputs) if kind else [outputs]
    del outputs  # (the graph goes when the `items` that require grad are replaced below)
    wanted = [i for i, o in enumerate(items) if isinstance(o, Tensor) and o.requires_grad]
    if not wanted:  # nothing that requires grad was reached: there is no graph to keep
        return kind(items) if kind else items[0]
    reached = tuple(_reached_before(tuple(items[i] for i in wanted), start))
    arrays = [items[i].data for i in wanted]
    layout = [(items[i].shape, items[i].dtype) for i in wanted]
    # what the recomputation reads: a later in-place change of these would make it wrong
    reached_ids = {id(t) for t in reached}  # (`in` on a list would compare elementwise)
    saved = reached + tuple(
        a for a in (*args, *kwargs.values()) if isinstance(a, Tensor) and id(a) not in reached_ids
    )

    def recompute_and_differentiate(output_grads: Sequence[Tensor | None]) -> tuple:
        create_graph = is_grad_enabled()  # the engine turns recording on for create_graph
        with replay():
            again = function(*args, **kwargs)
        again = list(again) if isinstance(again, (tuple, list)) else [again]
        roots, root_grads = [], []
        for i, (shape, dtype), g in zip(wanted, layout, output_grads, strict=True):
            t = again[i] if i < len(again) else None
            if not isinstance(t, Tensor) or t.shape != shape or t.dtype != dtype:
                got = f"shape {t.shape}, {t.dtype}" if isinstance(t, Tensor) else repr(t)
                raise RuntimeError(
                    f"checkpoint: recomputing output {i} gave {got}, the forward pass gave "
                    f"shape {shape}, {dtype}; the function must compute the same when run again"
                )
            if g is not None and t.requires_grad:
                roots.append(t)
                root_grads.append(g)
        if not roots:
            return (None,) * len(reached)
        with as_leaves(reached):
            return grad(
                roots,
                reached,
                root_grads,
                retain_graph=create_graph,
                create_graph=create_graph,
                allow_unused=True,
            )

    if len(wanted) == 1:  # the output itself is the node

        def backward(g: Tensor, out: Tensor) -> tuple:
            return recompute_and_differentiate([g])

        items[wanted[0]] = Tensor._from_op(
            arrays[0], reached, "checkpoint", backward, saved=saved, saves_output=False
        )
        return kind(items) if kind else items[0]

    # Several outputs: one node that recomputes, and one per output below it that passes its
    # gradient up. The node is numbered below all of them, so the engine runs it after every
    # output's gradient is in; they hand their gradients over through `arrived` (the engine
    # gives a node one gradient of its own shape), the node a 0-d zero.
    arrived: dict[int, Tensor] = {}

    def backward_all(g: Tensor, out: Tensor) -> tuple:
        output_grads = [arrived.pop(k, None) for k in range(len(wanted))]
        return recompute_and_differentiate(output_grads)

    node = Tensor._from_op(
        np.zeros((), layout[0][1]), reached, "checkpoint", backward_all, saved=saved,
        saves_output=False,
    )  # fmt: skip
    dtype = layout[0][1]
    for k, i in enumerate(wanted):

        def hand_over(g: Tensor, out: Tensor, k: int = k) -> tuple:
            arrived[k] = g
            return (Tensor._from_array(np.zeros((), dtype)),)  # (the engine may += into it)

        items[i] = Tensor._from_op(
            arrays[k], (node,), "checkpoint_output", hand_over, saved=(), index=k
        )
    return kind(items)


def _reached_before(outputs: tuple[Tensor, ...], start: int) -> list[Tensor]:
    """The tensors that require grad, existed before op number `start`, and that `outputs`
    were computed from (the graph walked down to them and no further), in a fixed order."""
    found: list[Tensor] = []
    seen: set[Tensor] = set()  # (Tensors hash by identity)
    stack = list(reversed(outputs))
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t._seq > start:
            stack.extend(p for p in reversed(t._parents) if p.requires_grad and p not in seen)
        else:
            found.append(t)
    return found


class _Replay:
    """The state `function` first ran in, to run it again in: the random generator's state
    (optional), the module scope (graph drawing clusters) and nn's table of module names."""

    def __init__(self, preserve_rng_state: bool) -> None:
        self.generator = creation._rng if preserve_rng_state else None
        self.rng_state = self.generator.bit_generator.state if self.generator else None
        self.scope = grad_mode._scope
        self.names = _module_names_get()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        current = creation._rng  # `manual_seed` may have replaced the generator since
        states = [(current, current.bit_generator.state)]
        if self.generator is not None and self.generator is not current:
            states.append((self.generator, self.generator.bit_generator.state))
        scope, names = grad_mode._scope, _module_names_get()
        try:
            if self.generator is not None:
                creation._rng = self.generator
                self.generator.bit_generator.state = self.rng_state
            grad_mode._scope = self.scope
            _module_names_set(self.names)
            with enable_grad():
                yield
        finally:
            creation._rng = current
            for generator, state in states:
                generator.bit_generator.state = state
            grad_mode._scope = scope
            _module_names_set(names)


# nn.Module.__call__ names modules by the tree of the outermost module being called, kept in
# `nn.module._current_names`: a block recomputed in backward (outside any module call) must
# see the same table to record the same scopes. autograd never imports nn: look it up.
def _module_names_get() -> Any:
    return getattr(sys.modules.get("nn.module"), "_current_names", None)


def _module_names_set(names: Any) -> None:
    module = sys.modules.get("nn.module")
    if module is not None:
        module._current_names = names
