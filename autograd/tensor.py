"""The `Tensor` and the engine that walks its graph backwards.

Every op builds its result with `Tensor._from_op(data, parents, op, backward)`, where
`backward(g, out)` maps the output gradient `g` (a Tensor shaped like `out`) to one gradient
per parent (Tensors, or None). Closures compute with Tensor ops, so the same code serves a
plain `backward()` (grad mode off: just numpy underneath) and `grad(create_graph=True)` (grad
mode on: the backward pass records a graph of its own, which can be differentiated again).
A few closures on every training step's path (mul, matmul, relu, the reductions' broadcast)
also spell out the plain case in numpy, two lines each, because there the Tensor ops would
only add wrapping around the same numpy calls.

Broadcast operands get gradients shaped like the output; the engine sums them back to each
operand's shape in one place (`_fit_to_parent`), never op by op.
"""

from __future__ import annotations

import itertools
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from heapq import heappop, heappush
from typing import Any

import numpy as np

from . import grad_mode
from .grad_mode import get_default_dtype, is_grad_enabled

Backward = Callable[["Tensor", "Tensor"], Sequence["Tensor | None"]]
# Numbers op results as they are made: a tensor's number is above its inputs' (see
# `backpropagate`). Leaves get 0.
_op_counter = itertools.count(1)


def as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """`data` as an ndarray without copying when possible: floats become the default dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    array = np.asarray(data)
    if array.dtype.kind == "f" and array.dtype != get_default_dtype():
        return array.astype(get_default_dtype())
    if array.dtype.kind in "iu" and array.dtype != np.int64 and not isinstance(data, np.ndarray):
        return array.astype(np.int64)  # Python ints: int64 on every platform
    if array.dtype.kind == "O":
        raise TypeError(f"Tensor: cannot make a tensor from {type(data).__name__} data")
    return array


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    `Tensor(data, requires_grad=False, dtype=None, name=None)`; floating data becomes the
    default dtype (float32), integers int64, bools stay bool.
    """

    __slots__ = (
        "data",
        "grad",
        "requires_grad",
        "name",
        "_parents",
        "_backward",
        "_op",
        "_op_args",
        "_scope",
        "_retains_grad",
        "_seq",
        "_version",
        "_saved",
        "_hooks",
        "_trace",
        "__weakref__",
    )
    __array_ufunc__ = None  # numpy hands `ndarray + Tensor` to Tensor.__radd__

    def __init__(
        self, data: Any, requires_grad: bool = False, dtype: Any = None, name: str | None = None
    ) -> None:
        self.data = as_array(data, dtype)
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"Tensor: only floating tensors can require grad, got dtype {self.data.dtype}"
            )
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Backward | None = None
        self._op: str | None = None
        self._op_args: dict[str, Any] = {}
        self._scope = grad_mode.current_scope()
        self._retains_grad = False
        self._seq = 0
        self._version = 0
        self._saved = None
        self._hooks = None

    @classmethod
    def _from_op(
        cls,
        data: Any,
        parents: tuple[Tensor, ...],
        op: str,
        backward: Backward,
        saved: tuple[Tensor, ...] | None = None,
        saves_output: bool | None = None,
        **op_args: Any,
    ) -> Tensor:
        """The result of op `op`: records parents and closure when grad is being recorded.

        `saved` lists the tensors whose data `backward` reads (`()`: it reads only `g` and
        shapes), `saves_output` whether it reads `out`. Left out, both mean "everything": the
        parents and the output. The engine checks their versions before running `backward`
        and, after a backward without `retain_graph`, keeps the closure of an op that saved
        nothing (a second backward through it works) and frees every other one.
        """
        out = cls.__new__(cls)
        out.data = data if type(data) is np.ndarray else np.asarray(data)
        out.grad = None
        out.name = None
        out._op = op
        out._op_args = op_args
        out._scope = grad_mode._scope
        out._retains_grad = grad_mode._retain_all
        record = False
        if grad_mode._grad_enabled:
            for parent in parents:  # a loop, not any(genexpr): this runs for every op
                if parent.requires_grad:
                    record = True
                    break
        out.requires_grad = record
        out._version = 0
        out._hooks = None
        if record:
            if _unheld:  # (results that only the graph may hold by now: see `_release_unheld`)
                _release_unheld()
            out._parents = parents
            out._backward = backward
            out._seq = next(_op_counter)
            for parent in parents:  # large op results this op does not save: candidates
                if parent._backward is not None and parent.data.nbytes >= _RELEASE_MIN_BYTES:
                    _note_unsaved_use(parent, out, saved)
            if saved is None:  # not stated: assume the closure reads everything
                saved, saves_output = parents, True
            # checked against in-place changes before `backward` runs (see `_check_saved`);
            # None: the closure reads only `g` and shapes, so it survives a backward
            if saves_output:  # (exp, tanh, relu, softmax... save only their output)
                out._saved = saved + _OUTPUT if saved else _OUTPUT
            else:
                out._saved = saved or None
            if grad_mode._anomaly:
                out._trace = _user_frame()
                _traces.recorded = True
        else:  # nothing to differentiate: keep no reference to the inputs
            out._parents = ()
            out._backward = None
            out._seq = 0
            out._saved = None
        return out

    @classmethod
    def _from_array(cls, data: np.ndarray) -> Tensor:
        """A tensor around an array numpy just made, taken as it is (no dtype rule, no copy;
        a numpy scalar becomes a 0-d array).

        The cheap wrapper for gradients that the engine and fused kernels compute in numpy:
        `Tensor(a, dtype=a.dtype)` does the same with checks, at ~4x the cost.
        """
        out = cls.__new__(cls)
        # (ufuncs on 0-d arrays return numpy scalars)
        out.data = data if type(data) is np.ndarray else np.asarray(data)
        out.grad = None
        out.requires_grad = False
        out.name = None
        out._parents = ()
        out._backward = None
        out._op = None
        out._op_args = {}
        out._scope = grad_mode._scope
        out._retains_grad = False
        out._seq = 0
        out._version = 0
        out._saved = None
        out._hooks = None
        return out

    # ----- attributes -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """True unless the tensor came out of an op that recorded the graph."""
        return not self._parents

    @property
    def op(self) -> str | None:
        """Name of the op that made this tensor (None for tensors made by hand)."""
        return self._op

    @property
    def T(self) -> Tensor:  # noqa: N802 (numpy's name)
        return self.transpose()

    def numel(self) -> int:
        return self.data.size

    def item(self) -> float | int | bool:
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors, got shape {self.shape}")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying array itself (no copy)."""
        return self.data

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor(self.data, dtype=self.data.dtype)

    def retain_grad(self) -> Tensor:
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: the tensor does not require grad")
        self._retains_grad = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: dtype {self.dtype} cannot require grad")
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad")
        self.requires_grad = requires_grad
        return self

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    __hash__ = object.__hash__  # identity, although `==` is elementwise

    def __repr__(self) -> str:
        if self._parents and data_released(self):  # (only the graph could show it)
            return f"tensor(<data released>, shape={self.shape}, op={self._op})"
        body = np.array2string(self.data, separator=", ", prefix="tensor(", precision=4)
        extra = [f"dtype={self.dtype}"]
        if self.name:
            extra.insert(0, f"name={self.name!r}")
        if self._parents:
            extra.append(f"op={self._op}")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extra)})"

    # ----- in-place arithmetic: only where nothing is recorded ---------------------------
    def _check_inplace(self, op: str) -> None:
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                f"{op}: in-place update of a tensor that requires grad while grad is being "
                "recorded; wrap it in `with no_grad():` or update `.data`"
            )

    def _inplace(self, op: str, ufunc: np.ufunc, other: Any) -> Tensor:
        self._check_inplace(op)
        other = other.data if isinstance(other, Tensor) else other
        try:
            ufunc(self.data, other, out=self.data, casting="same_kind")
        except ValueError:
            raise ValueError(
                f"{op}: cannot update shape {self.shape} in place with shape {np.shape(other)}"
            ) from None
        self._bump_version()
        return self

    def __iadd__(self, other: Any) -> Tensor:
        return self._inplace("iadd", np.add, other)

    def __isub__(self, other: Any) -> Tensor:
        return self._inplace("isub", np.subtract, other)

    def __imul__(self, other: Any) -> Tensor:
        return self._inplace("imul", np.multiply, other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self._inplace("itruediv", np.divide, other)

    def __setitem__(self, index: Any, value: Any) -> None:
        self._check_inplace("setitem")
        index = index.data if isinstance(index, Tensor) else index
        self.data[index] = value.data if isinstance(value, Tensor) else value
        self._bump_version()

    def _bump_version(self) -> None:
        """Record an in-place change of `.data` (every in-place path of the API calls this).

        `_version` counts the changes, as PyTorch's. The change is also stamped, on the op
        counter, on the array that owns the memory (`_buffer_stamps`): so views of it (a
        reshape, a slice) see the change too, as PyTorch's views share one version counter,
        and an op made earlier (smaller `_seq`) can tell that a tensor it saved changed
        since, without recording anything when it is made.
        """
        global _latest_stamp
        self._version += 1
        _latest_stamp = next(_op_counter)
        owner = _owner(self.data)
        key = id(owner)
        entry = _buffer_stamps.get(key)
        if entry is not None and entry[0]() is owner:  # (an optimiser's every step)
            _buffer_stamps[key] = (entry[0], _latest_stamp)
            return
        # (the weak reference drops the stamp with the array: ids are reused afterwards)
        _buffer_stamps[key] = (
            weakref.ref(owner, lambda _, key=key: _forget(key)),
            _latest_stamp,
        )

    # ----- hooks -------------------------------------------------------------------------
    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
        """Run `hook(grad)` each time this tensor's gradient has been computed in a backward
        pass (for a leaf: before it is accumulated into `.grad`). A returned Tensor replaces
        the gradient from there on. Returns a handle whose `.remove()` removes the hook.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "register_hook: the tensor does not require grad, so it never gets a gradient"
            )
        if self._hooks is None:
            self._hooks = {}
        return RemovableHandle(self._hooks, hook)

    # ----- gradients ---------------------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires grad.

        `grad` (array or Tensor shaped like self) defaults to 1 for one-element tensors.
        Without `retain_graph` the closures (and the arrays they saved) are released.
        """
        backpropagate(
            [self], [grad], retain_graph=retain_graph, create_graph=False, accumulate=True
        )


class RemovableHandle:
    """What `register_hook` (and Module's hook registrations) return: `.remove()` takes the
    hook out again; removing twice is harmless. Also a context manager that removes on exit.
    """

    _next_id = itertools.count()

    def __init__(self, hooks: dict[int, Any], hook: Any) -> None:
        self.id = next(RemovableHandle._next_id)
        self._hooks = hooks
        hooks[self.id] = hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# Stands for the op's own result in `_saved` (a reference to it would be a cycle).
_OUTPUT = ("<output>",)
# id(array that owns the memory) -> (weak reference to it, op-counter stamp of its last
# in-place change through the API). An op made after the stamp is unaffected by the change.
_buffer_stamps: dict[int, tuple[weakref.ref, int]] = {}
# The newest stamp: an op made after it saved nothing that changed since (the usual case in a
# training loop, whose optimiser step comes after backward), so backward skips the check.
_latest_stamp = 0


# ----- releasing unsaved results during the forward pass ----------------------------------
# PyTorch's graph holds only what ops saved, so a convolution's output that only feeds a ReLU
# (which saves its own output) is gone as soon as the caller drops it. Here the graph is made
# of the tensors themselves, and a child's `_parents` would keep that output's data alive
# until backward. So an op result of at least `_RELEASE_MIN_BYTES` that a consumer does not
# save, whose own op does not read its output, is watched for the next `_RELEASE_WATCH` ops
# recorded: once the references to it are exactly its consumers' `_parents` entries (the
# caller has dropped it; CPython's reference count tells), its data is replaced by a
# zero-byte placeholder, as backward does with everything it has passed. Anything else that
# holds it (a variable, a saved tuple, a closure, a hook, a list) keeps it whole: counting can
# only err towards keeping.
_RELEASE_MIN_BYTES = 1 << 17
_RELEASE_WATCH = 4
# [weak ref to the tensor, weak refs to the consumers that do not save it, checks so far]
_unheld: list[list[Any]] = []
_unheld_by_id: dict[int, list[Any]] = {}


def _note_unsaved_use(parent: Tensor, out: Tensor, saved: tuple[Tensor, ...] | None) -> None:
    """`out`'s op has `parent` among its inputs: watch `parent` unless its data is needed."""
    if saved is None or parent._retains_grad:  # (unstated: the closure reads every input)
        return
    for tensor in saved:
        if tensor is parent:
            return
    own = parent._saved
    if own is not None and own[-1] is _OUTPUT[0]:  # its own backward reads its data
        return
    entry = _unheld_by_id.get(id(parent))
    if entry is None or entry[0]() is not parent:  # (an id of a tensor that died: reused)
        entry = _unheld_by_id[id(parent)] = [weakref.ref(parent), [], 0]
        _unheld.append(entry)
    entry[1].append(weakref.ref(out))


def _graph_references(tensor: Tensor, consumers: list[weakref.ref]) -> int:
    """How many times the live consumers list `tensor` among their parents."""
    count = 0
    for ref in consumers:
        consumer = ref()
        if consumer is not None:
            count += sum(1 for p in consumer._parents if p is tensor)
    return count


def _release_unheld() -> None:
    """Release the watched tensors that only their consumers' `_parents` still refer to."""
    keep = []
    for entry in _unheld:
        tensor = entry[0]()
        if tensor is None:
            continue
        in_graph = _graph_references(tensor, entry[1])
        # the other references: `tensor` here and getrefcount's argument
        if in_graph and sys.getrefcount(tensor) == in_graph + 2:
            tensor.data = _placeholder(tensor.data.shape, tensor.data.dtype)
        elif in_graph and entry[2] < _RELEASE_WATCH:
            entry[2] += 1
            keep.append(entry)
    _unheld[:] = keep
    _unheld_by_id.clear()
    for entry in keep:
        _unheld_by_id[id(entry[0]())] = entry


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns `array`'s memory (itself unless it is a view)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _forget(key: int) -> None:
    _buffer_stamps.pop(key, None)


def _user_frame() -> str:
    """'file:line' of the innermost caller outside the autograd and nn packages: where the
    user's code made the op (anomaly mode only)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.partition(".")[0] not in _LIBRARY_PACKAGES:
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


# Frames of these packages are skipped when anomaly mode looks for the user's line (a name
# only: autograd never imports nn).
_LIBRARY_PACKAGES = frozenset({"autograd", "nn"})


# ----- the engine --------------------------------------------------------------------------
def topological_order(
    roots: Sequence[Tensor], follow: Callable[[Tensor], bool] | None = None
) -> list[Tensor]:
    """Tensors reachable from `roots` through the parents that `follow` accepts (default:
    those that require grad), every tensor after all its parents; roots are always included.

    Iterative depth-first search (no recursion limit: a chain of 100,000 ops is fine); lists,
    not sets, keep it deterministic. Tensors hash by identity, so the visited set holds them.
    """
    follow = follow if follow is not None else _requires_grad
    order: list[Tensor] = []
    visited: set[Tensor] = set()
    for root in roots:
        stack: list[tuple[Tensor, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif node not in visited:
                visited.add(node)
                stack.append((node, True))
                stack.extend(
                    (parent, False)
                    for parent in reversed(node._parents)
                    if parent not in visited and follow(parent)
                )
    return order


def _requires_grad(tensor: Tensor) -> bool:
    return tensor.requires_grad


def unbroadcast(grad: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum `grad` over the axes that broadcasting added or stretched, back to `shape`."""
    if grad.shape == shape:
        return grad
    from .ops.shape import sum_to  # ops import this module; import late to avoid a cycle

    return sum_to(grad, shape)


def _fit_to_parent(grad: Tensor, parent: Tensor, node: Tensor) -> Tensor:
    """The engine's one place for unbroadcasting, dtype and shape checks of a parent grad."""
    if grad.shape != parent.shape:
        try:
            grad = unbroadcast(grad, parent.shape)
        except ValueError:
            raise RuntimeError(
                f"{node._op}: backward returned a gradient of shape {grad.shape} for an input "
                f"of shape {parent.shape}"
            ) from None
    if grad.dtype != parent.dtype:
        grad = grad.astype(parent.dtype)
    return grad


_ones: dict[tuple[tuple[int, ...], np.dtype], np.ndarray] = {}


def _ones_like(a: np.ndarray) -> np.ndarray:
    """A read-only array of ones shaped like one-element `a` (the implicit root gradient,
    shared: the engine never writes into a gradient it does not own)."""
    key = (a.shape, a.dtype)
    ones = _ones.get(key)
    if ones is None:
        ones = _ones[key] = np.ones(a.shape, a.dtype)
        ones.flags.writeable = False
    return ones


def _root_grad(root: Tensor, grad: Any) -> Tensor:
    if not root.requires_grad:
        raise RuntimeError(
            "backward: the tensor does not require grad and has no op that recorded a graph"
        )
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for one-element outputs; "
                f"pass grad= for the output of shape {root.shape}"
            )
        return Tensor._from_array(_ones_like(root.data))
    if not isinstance(grad, Tensor):  # an array (or anything np.asarray takes)
        grad = Tensor._from_array(np.asarray(grad, dtype=root.data.dtype))
    if grad.data.shape != root.data.shape:
        raise ValueError(
            f"backward: grad of shape {grad.shape} for an output of shape {root.shape}"
        )
    return grad if grad.data.dtype == root.data.dtype else grad.astype(root.dtype)


def backpropagate(
    roots: Sequence[Tensor],
    root_grads: Sequence[Any],
    *,
    retain_graph: bool,
    create_graph: bool,
    accumulate: bool,
    inputs: Sequence[Tensor] = (),
) -> dict[int, Tensor]:
    """Run the backward pass from `roots`; returns the gradients of `inputs` by `id`.

    With `accumulate`, leaves (and tensors that called `retain_grad`) get `.grad` += their
    gradient. Gradients are summed in place where the engine owns the buffer.

    Order: every op result is numbered as it is made (`_seq`), so always after its inputs.
    Tensors that have started to receive gradient wait in a heap and leave it highest number
    first: each one after every tensor made from it, when its gradient is complete. So there
    is no separate graph walk, and only tensors that gradient reaches are visited. (Dicts and
    sets here hold Tensors as keys: they hash by identity.)
    """
    grads: dict[Tensor, Tensor] = {}  # the gradient summed so far for each tensor
    owned: set[Tensor] = set()  # tensors whose gradient buffer nobody else holds: += is safe
    waiting: list[tuple[int, Tensor]] = []  # heap of (-_seq, op result)
    if len(roots) != len(root_grads):
        raise ValueError(f"backward: {len(root_grads)} gradients for {len(roots)} outputs")
    for root, g in zip(roots, root_grads):  # noqa: B905 (lengths checked: cheaper than strict)
        if root._parents and root not in grads:
            heappush(waiting, (-root._seq, root))
        _accumulate(grads, owned, root, _root_grad(root, g), False, create_graph)
    wanted = set(inputs)
    captured: dict[int, Tensor] = {}
    # stand-ins for the tensors whose data backward releases (see `_release_parents`)
    # (by id, not by tensor: a key would keep the released tensor alive until the end; ids
    # are safe, every tensor looked up is alive and was made before backward began)
    ghosts: dict[int, ReleasedTensor] | None = None if retain_graph else {}
    anomaly = grad_mode._anomaly
    # the closures record a graph of their own only for create_graph
    previous_mode = grad_mode._grad_enabled
    grad_mode._grad_enabled = create_graph
    try:
        while waiting:
            node = heappop(waiting)[1]
            g = grads.pop(node)
            if node._hooks:
                g = _run_hooks(node, g, owned)
            if wanted and node in wanted:
                captured[id(node)] = g
            if accumulate and node._retains_grad:
                _store_grad(node, g.data, node in owned)
            owned.discard(node)  # (done with it: the set must not keep it alive)
            if node._backward is None:
                raise RuntimeError(
                    f"backward: the graph through '{node._op}' was freed by an earlier "
                    "backward(); call backward(retain_graph=True) the first time to "
                    "differentiate through it twice"
                )
            if node._saved is not None and _latest_stamp > node._seq:  # (else nothing changed)
                _check_saved(node)
            parent_grads = node._backward(g, node)
            parents = node._parents
            n = len(parents)
            if len(parent_grads) != n:  # (cheaper than zip's strict=True)
                raise RuntimeError(
                    f"{node._op}: backward returned {len(parent_grads)} gradients for {n} inputs"
                )
            # A parent gradient is the closure's own buffer, to keep or sum into in place,
            # unless it is `g` or a view of it (arrays that own their memory share it only if
            # they are the same array; a view of a buffer the closure just made, such as
            # conv2d's input gradient, is its own), or one object handed to two parents
            # (repeated Nones count too: that only costs a copy).
            g_data = g.data
            g_is_view = g_data.base is not None
            if n == 1:
                distinct = True
            elif n == 2:
                distinct = parent_grads[0] is not parent_grads[1]
            elif n == 3:  # (linear with bias: spelled out, cheaper than a set)
                g0, g1, g2 = parent_grads
                distinct = g0 is not g1 and g0 is not g2 and g1 is not g2
            else:
                distinct = len({id(p) for p in parent_grads}) == n
            for parent, pg in zip(parents, parent_grads):  # noqa: B905 (lengths checked)
                if pg is None or not parent.requires_grad:
                    continue
                if pg.__class__ is GradPiece:  # (split, chunk, slicing: a part of the grad)
                    if parent in owned:  # add the part where it lands, in place
                        pg.add_into(grads[parent].data)
                        if anomaly:
                            _check_finite(node, parent, grads[parent])
                        continue
                    pg = pg.materialize()  # the first to arrive: zeros around the part
                data, parent_data = pg.data, parent.data
                # (dtypes of arrays numpy made are mostly the same object: `is` first is cheaper)
                if data.shape != parent_data.shape or (
                    data.dtype is not parent_data.dtype and data.dtype != parent_data.dtype
                ):
                    pg, fresh = _fit_to_parent(pg, parent, node), True  # a new buffer
                else:
                    fresh = distinct and not (
                        data is g_data
                        or (g_is_view or data.base is not None)
                        and _overlap(data, g_data)
                    )
                if anomaly:
                    _check_finite(node, parent, pg)
                if parent in grads:
                    _accumulate(grads, owned, parent, pg, fresh, create_graph)
                else:  # the first gradient to arrive: keep it, and wait for the rest
                    grads[parent] = pg
                    if fresh:
                        owned.add(parent)
                    if parent._parents:
                        heappush(waiting, (-parent._seq, parent))
            if ghosts is not None:  # (after the parents got their gradients)
                if node._saved is not None:
                    node._backward = node._saved = None  # what it saved goes as it ran
                _release_parents(node, ghosts)
        for leaf, g in grads.items():  # what is left are the leaves' summed gradients
            if leaf._hooks:  # (leaf hooks run before accumulation, in grad mode as above)
                g = _run_hooks(leaf, g, owned)
            if leaf in wanted:
                captured[id(leaf)] = g
            if accumulate:
                _store_grad(leaf, g.data, leaf in owned)
    finally:
        grad_mode._grad_enabled = previous_mode
    return captured


class GradPiece:
    """A gradient that is zero except for one part, as a backward without create_graph may
    return it (the pieces of `split`, basic slicing): `add_into(array)` adds the part to a
    gradient buffer of the input's shape. The engine adds each piece straight into the
    input's summed gradient instead of padding every piece with zeros to the full shape
    and adding those (a split into three cost 3 zero-filled copies and 2 full additions).
    """

    __slots__ = ("shape", "dtype", "add_into")

    def __init__(
        self, shape: tuple[int, ...], dtype: np.dtype, add_into: Callable[[np.ndarray], None]
    ) -> None:
        self.shape, self.dtype, self.add_into = shape, dtype, add_into

    def materialize(self) -> Tensor:
        """The whole gradient as a Tensor (zeros, plus the part)."""
        data = np.zeros(self.shape, self.dtype)
        self.add_into(data)
        return Tensor._from_array(data)


class ReleasedTensor(Tensor):
    """What the graph keeps of an intermediate tensor after a backward without
    `retain_graph`: the structure (op, arguments, parents, scope, name, shape, dtype, retained
    gradient) and no data, so the graph holds no activations (as PyTorch's graph of nodes
    holds no tensors). `.data` is a zero-byte read-only placeholder of the right shape and
    dtype. The closure stays only if the op saved nothing, so a second backward through
    such ops works; through any other it raises "freed".
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"tensor(<released after backward>, shape={self.shape}, op={self._op})"


_placeholders: dict[tuple[tuple[int, ...], np.dtype], np.ndarray] = {}


def _placeholder(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of `shape` and `dtype` that takes no memory (all strides 0)."""
    key = (shape, dtype)
    array = _placeholders.get(key)
    if array is None:
        if len(_placeholders) > 4096:  # shapes seen by one program are few; never grow unbounded
            _placeholders.clear()
        array = _placeholders[key] = np.broadcast_to(np.zeros((), dtype), shape)
    return array


def data_released(tensor: Tensor) -> bool:
    """Whether the engine has released `tensor`'s data (after backward passed it, or during
    the forward pass once only the graph held it): its `.data` is then a placeholder."""
    if isinstance(tensor, ReleasedTensor):
        return True
    return _placeholders.get((tensor.data.shape, tensor.data.dtype)) is tensor.data


class _traces:
    recorded = False  # whether anomaly mode ever recorded a `_trace` in this process


def _released(node: Tensor) -> ReleasedTensor:
    ghost = ReleasedTensor.__new__(ReleasedTensor)
    ghost.data = _placeholder(node.data.shape, node.data.dtype)
    ghost.grad = node.grad
    ghost.requires_grad = node.requires_grad
    ghost.name = node.name
    ghost._parents = node._parents
    ghost._backward = node._backward
    ghost._op = node._op
    ghost._op_args = node._op_args
    ghost._scope = node._scope
    ghost._retains_grad = node._retains_grad
    ghost._seq = node._seq
    ghost._version = 0
    ghost._saved = node._saved  # None once its backward ran; kept where gradient never came
    ghost._hooks = node._hooks
    if _traces.recorded:  # (reading the unset slot costs more than the rest here)
        trace = getattr(node, "_trace", None)
        if trace is not None:
            ghost._trace = trace
    return ghost


def _release_parents(node: Tensor, ghosts: dict[int, ReleasedTensor]) -> None:
    """Backward without `retain_graph`, right after `node`'s closure ran: `node` stops
    referring to its parents' data, so each intermediate's array goes as soon as backward
    has passed it, and none is reachable from the graph once `backward()` returns.

    Parents that are op results, and inputs that need no gradient, are replaced by
    `ReleasedTensor`s; leaves that require grad (a second backward accumulates into their
    `.grad`) and one-element constants stay themselves. A tensor the caller still holds keeps
    its data (its own parents are replaced just the same when backward reaches it).
    """
    new_parents = []
    changed = False
    for parent in node._parents:
        if not parent._parents and (parent.requires_grad or parent.data.size <= 1):
            new_parents.append(parent)
            continue
        ghost = ghosts.get(id(parent))
        if ghost is None:
            ghost = ghosts[id(parent)] = _released(parent)
        new_parents.append(ghost)
        changed = True
    if changed:
        node._parents = tuple(new_parents)
    ghost = ghosts.get(id(node))
    if ghost is not None:  # made when a child came by, before this node's backward ran
        ghost._parents = node._parents
        ghost._backward = node._backward
        ghost._saved = node._saved
        ghost.grad = node.grad


def _run_hooks(node: Tensor, g: Tensor, owned: set[Tensor]) -> Tensor:
    """The tensor's hooks in registration order; a returned Tensor replaces the gradient."""
    for hook in tuple(node._hooks.values()):  # (a hook may remove itself)
        result = hook(g)
        if result is not None:
            if not isinstance(result, Tensor):
                result = Tensor._from_array(np.asarray(result, dtype=node.dtype))
            if result.shape != node.shape:
                raise RuntimeError(
                    f"register_hook: a hook returned a gradient of shape {result.shape} for a "
                    f"tensor of shape {node.shape}"
                )
            g = result
            owned.discard(node)  # the hook's array may be held elsewhere: never += into it
    return g


def _check_saved(node: Tensor) -> None:
    """Raise if a tensor the op saved for backward was changed in place since the op ran.

    (Arrays that a closure keeps, such as index arrays, cannot be changed through the API.)
    """
    for saved in node._saved:
        tensor = node if saved is _OUTPUT[0] else saved
        if not isinstance(tensor, Tensor):
            continue
        stamp = _buffer_stamps.get(id(_owner(tensor.data)))
        if stamp is not None and stamp[1] > node._seq:
            which = "its output" if tensor is node else f"an input of shape {tensor.shape}"
            raise RuntimeError(
                f"backward: '{node._op}' saved {which} ({tensor.dtype}) for its backward, and "
                f"it was modified by an inplace operation after '{node._op}' ran (it is at "
                f"version {tensor._version} now). Change a copy instead, or run backward "
                "before the change (e.g. optimizer.step() after loss.backward())"
            )


def _check_finite(node: Tensor, parent: Tensor, g: Tensor) -> None:
    """Anomaly mode: the first backward that produces a NaN raises, naming the op and the
    user's line that created it in the forward pass."""
    if np.isnan(g.data).any():
        where_made = getattr(node, "_trace", None) or "<made before anomaly mode was on>"
        index = next(i for i, p in enumerate(node._parents) if p is parent)
        raise RuntimeError(
            f"detect_anomaly: the backward of '{node._op}' produced NaN in the gradient of its "
            f"input {index} (shape {parent.shape}); the '{node._op}' was created at "
            f"{where_made}"
        )


_overlap = np.may_share_memory


def _accumulate(
    grads: dict[Tensor, Tensor],
    owned: set[Tensor],
    node: Tensor,
    g: Tensor,
    fresh: bool,
    graph: bool,
) -> None:
    """Add the gradient `g` to what `node` has received so far (`fresh`: nobody else holds
    `g`'s buffer)."""
    previous = grads.get(node)
    if previous is None:
        grads[node] = g
        if fresh:
            owned.add(node)
    elif graph:
        grads[node] = previous + g  # recorded, so the sum itself can be differentiated
    elif node in owned:
        np.add(previous.data, g.data, out=previous.data)
    else:
        grads[node] = Tensor._from_array(previous.data + g.data)
        owned.add(node)


def _store_grad(node: Tensor, g: np.ndarray, owned: bool) -> None:
    if node.grad is None:
        node.grad = g if owned and g.flags.writeable else g.copy()
    else:
        if node.grad.shape != g.shape:
            raise RuntimeError(
                f"backward: existing .grad of shape {node.grad.shape} for a tensor of shape "
                f"{node.shape}"
            )
        node.grad += g


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """Gradients of `outputs` with respect to `inputs`, as `torch.autograd.grad`.

    Leaves' `.grad` are untouched. With `create_graph=True` the returned gradients carry a
    graph of their own and can be differentiated again.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) does not require grad")
    retain = create_graph if retain_graph is None else retain_graph
    found = backpropagate(
        outputs,
        list(grad_outputs),
        retain_graph=retain,
        create_graph=create_graph,
        accumulate=False,
        inputs=inputs,
    )
    result: list[Tensor | None] = []
    for i, t in enumerate(inputs):
        g = found.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {i} (shape {t.shape}) was not used in the graph; "
                "pass allow_unused=True to get None for it"
            )
        result.append(g)
    return tuple(result)


def once_differentiable(op: str, inputs: tuple[Tensor, ...], grads: Sequence[Any]) -> tuple:
    """Wrap gradients that a fused kernel computed with numpy.

    Under a plain backward they pass through. When a graph of the backward pass is being
    recorded (`create_graph=True`), each becomes a node that raises if differentiated, so a
    second derivative through `op` is an error, never a silently wrong number.
    """
    if not is_grad_enabled():
        return tuple(
            g if g is None or isinstance(g, Tensor) else Tensor._from_array(g) for g in grads
        )

    def refuse(g: Tensor, out: Tensor) -> tuple:
        raise RuntimeError(f"{op}: double backward is not supported by this fused op")

    return tuple(
        None
        if g is None
        else Tensor._from_op(
            g.data if isinstance(g, Tensor) else g, inputs, f"{op}_backward", refuse
        )
        for g in grads
    )
