"""`Parameter` and `Module`: the containers that every layer, loss and model is built from.

A `Module` registers what is assigned to its attributes:

- a `Parameter` (a Tensor that requires grad) goes to `_parameters`,
- a `Module` goes to `_modules` (its submodules, so a model is a tree),
- a buffer, registered with `register_buffer(name, value)`, goes to `_buffers`. Buffers are
  state that is saved but not trained (BatchNorm's running statistics). They are always
  Tensors that do not require grad; their `.data` is updated in place.

Everything registered also stays an ordinary instance attribute, so `self.weight` in
`forward` is a plain attribute read (no `__getattr__` detour on the hot path).

Scope protocol (shared with the graph drawing in `autograd.viz`): while a module runs,
`Module.__call__` pushes one entry `(dotted_name, class_name)` on `autograd.scope`, and every
op created during the call records the whole stack in `._scope`, outermost first. The module
called from outside any other module is the root: it pushes `("", class_name)`; a module
called inside the root's call pushes its dotted name relative to that root. For
`model = MLP(784, [128], 10)`, an op made by `model.layers[0]` during `model(x)` has

    _scope == (("", "MLP"), ("layers", "Sequential"), ("layers.0", "Linear"))

A module that is not in the tree of the module being called (say, a loss module called inside
`forward`) starts a naming of its own: it pushes `("", its class)` nested inside the outer
entries, and its children are named relative to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from autograd import Tensor, grad_mode
from autograd.tensor import RemovableHandle

# Bumped whenever any module's tree changes (a submodule assigned or deleted): the name
# tables that `__call__` caches on a root are valid only for the version they were built at.
_structure_version = 0
# `{id(module): (dotted_name, class_name)}` of the root module being called, None outside any
# call.
_current_names: dict[int, tuple[str, str]] | None = None


class Parameter(Tensor):
    """A Tensor that requires grad and is registered when assigned as a Module attribute.

    `Parameter(data)`: float data; like `Tensor`, it becomes the default dtype (float32).
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(strict=False)` could not match."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class of layers and models: subclass it, assign parts in `__init__`, write `forward`.

    ```python
    class TwoLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)   # registered as submodule "fc1"
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))
    ```
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_modules"] = {}
        d["_forward_pre_hooks"] = {}
        d["_forward_hooks"] = {}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: forward() is not implemented")

    # ----- calling: forward inside this module's scope ------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        global _current_names
        outer = _current_names
        entry = outer.get(id(self)) if outer is not None else None
        if entry is None:  # called from outside: this module roots the dotted names
            _current_names = self._names_in_tree()
            entry = _current_names[id(self)]  # ("", class name)
        # push the scope entry: what `with autograd.scope(entry):` does, inlined because a
        # generator-based context manager costs ~10x more, on every call of every module
        outer_scope = grad_mode._scope
        grad_mode._scope = outer_scope + (entry,)
        try:
            if not (self._forward_pre_hooks or self._forward_hooks):
                return self.forward(*args, **kwargs)
            return self._call_with_hooks(args, kwargs)
        finally:
            grad_mode._scope = outer_scope
            _current_names = outer

    def _call_with_hooks(self, args: tuple, kwargs: dict) -> Any:
        for hook in tuple(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ----- hooks -------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> RemovableHandle:
        """`hook(module, args) -> None | new_args` runs before every `forward`; `args` is the
        tuple of positional inputs, and a returned value (a tuple, or one value) replaces
        them. Returns a handle whose `.remove()` removes the hook."""
        return RemovableHandle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """`hook(module, args, output) -> None | new_output` runs after every `forward`; a
        returned value replaces the output. Returns a handle with `.remove()`."""
        return RemovableHandle(self._forward_hooks, hook)

    def _names_in_tree(self) -> dict[int, tuple[str, str]]:
        """`{id(module): (dotted name, class name)}` (the scope entries) for this module's tree,
        cached until the tree changes."""
        cached = self.__dict__.get("_names_cache")
        # the id check rejects a table copied along by copy.deepcopy or pickling
        if cached is not None and cached[0] == _structure_version and cached[1] == id(self):
            return cached[2]
        names: dict[int, tuple[str, str]] = {}
        for name, module in self.named_modules():
            names.setdefault(id(module), (name, type(module).__name__))
        self.__dict__["_names_cache"] = (_structure_version, id(self), names)
        return names

    # ----- registration by attribute assignment -------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        global _structure_version
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            self._forget(name, keep=params)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=modules)
            modules[name] = value
            _structure_version += 1
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} to parameter "
                    f"{name!r} (nn.Parameter or None expected)"
                )
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} to submodule "
                    f"{name!r} (nn.Module or None expected)"
                )
            modules[name] = None
            _structure_version += 1
        elif name in buffers:
            value = _as_buffer(value)
            buffers[name] = value
        d[name] = value

    def __delattr__(self, name: str) -> None:
        self._forget(name)
        object.__delattr__(self, name)

    def _forget(self, name: str, keep: dict | None = None) -> None:
        """Unregister `name` from parameters, buffers and submodules, except from `keep`
        (where the caller re-registers it: a dict assignment keeps the name's position)."""
        global _structure_version
        d = self.__dict__
        for table in (d["_parameters"], d["_buffers"], d["_modules"]):
            if table is not keep and name in table:
                if table.pop(name) is not None and table is d["_modules"]:
                    _structure_version += 1

    def register_buffer(self, name: str, value: Any) -> None:
        """Register state that is saved in `state_dict` but not trained (e.g. running stats).

        `value`: a Tensor, an array or a number (stored as a Tensor without grad), or None.
        """
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"register_buffer: invalid buffer name {name!r}")
        if name in self.__dict__ and name not in self._buffers:
            raise KeyError(f"register_buffer: attribute {name!r} already exists")
        value = _as_buffer(value)
        self._buffers[name] = value
        self.__dict__[name] = value

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be an nn.Parameter or None")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param
        self.__dict__[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be an nn.Module or None")
        global _structure_version
        self._forget(name, keep=self._modules)
        self._modules[name] = module
        self.__dict__[name] = module
        _structure_version += 1

    # ----- walking the tree ----------------------------------------------------------------
    def named_modules(
        self, prefix: str = "", remove_duplicate: bool = True, _seen: set[int] | None = None
    ) -> Iterator[tuple[str, Module]]:
        """This module (named `prefix`, "" by default) and all below it, depth first.

        A module reachable twice is yielded once, under its first name.
        """
        if remove_duplicate:
            _seen = set() if _seen is None else _seen
            if id(self) in _seen:
                return
            _seen.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                child_prefix = f"{prefix}.{name}" if prefix else name
                yield from module.named_modules(child_prefix, remove_duplicate, _seen)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def _named_members(
        self,
        table: Callable[[Module], dict[str, Any]],
        prefix: str,
        recurse: bool,
        remove_duplicate: bool = True,
    ) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        tree = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        for module_prefix, module in tree:
            for name, member in table(module).items():
                if member is None or (remove_duplicate and id(member) in seen):
                    continue
                seen.add(id(member))
                yield (f"{module_prefix}.{name}" if module_prefix else name), member

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """`(dotted_name, parameter)` pairs, e.g. `("layers.0.weight", ...)`; a parameter
        shared by several modules is yielded once, under its first name."""
        return self._named_members(lambda m: m._parameters, prefix, recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members(lambda m: m._buffers, prefix, recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    # ----- modes and gradients -------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout active, BatchNorm uses batch statistics) on the tree."""
        for module in self.modules():
            module.__dict__["training"] = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: `train(False)`."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set `.grad = None` on every parameter (as PyTorch's default `set_to_none=True`)."""
        for param in self.parameters():
            param.grad = None

    # ----- state -----------------------------------------------------------------------------
    def _state_tensors(self) -> dict[str, Tensor]:
        """Every parameter and buffer under every name it has (shared ones under each)."""
        state: dict[str, Tensor] = {}
        for prefix, module in self.named_modules(remove_duplicate=False):
            for table in (module._parameters, module._buffers):
                for name, tensor in table.items():
                    if tensor is not None:
                        state[f"{prefix}.{name}" if prefix else name] = tensor
        return state

    def state_dict(self) -> dict[str, np.ndarray]:
        """`{dotted_name: array}` of parameters and buffers, copies (training after the call
        does not change them)."""
        return {name: tensor.data.copy() for name, tensor in self._state_tensors().items()}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Copy `state_dict`'s arrays into this module's parameters and buffers, in place.

        The arrays keep their dtype (float32 stays float32). With `strict`, missing or
        unexpected keys raise `KeyError` naming them; a shape mismatch raises `ValueError`
        naming the key and both shapes (always, and before anything is copied).
        """
        own = self._state_tensors()
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"load_state_dict of {type(self).__name__}: " + "; ".join(parts))
        updates = []
        for key, tensor in own.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            if value.shape != tensor.shape:
                raise ValueError(
                    f"load_state_dict: shape mismatch for {key!r}: checkpoint has {value.shape}, "
                    f"model has {tensor.shape}"
                )
            if not np.can_cast(value.dtype, tensor.dtype, casting="same_kind"):
                raise ValueError(
                    f"load_state_dict: cannot load {key!r} of dtype {value.dtype} into "
                    f"dtype {tensor.dtype}"
                )
            updates.append((tensor, value))
        for tensor, value in updates:
            np.copyto(tensor.data, value, casting="same_kind")
            tensor._bump_version()
        return IncompatibleKeys(missing, unexpected)

    # ----- repr ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The arguments shown inside `ClassName(...)`; layers override it."""
        return ""

    def __repr__(self) -> str:
        lines = self.extra_repr().split("\n") if self.extra_repr() else []
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")  # indent the child's own lines
            lines.append(f"({name}): {child}")
        if not self._modules:
            return f"{type(self).__name__}({''.join(lines)})"
        return type(self).__name__ + "(\n  " + "\n  ".join(lines) + "\n)"


def _as_buffer(value: Any) -> Tensor | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise TypeError("register_buffer: a buffer must not require grad (use a Parameter)")
        return value
    if isinstance(value, np.ndarray):
        return Tensor(value, dtype=value.dtype)  # keep the array (and its dtype) itself
    return Tensor(value)
