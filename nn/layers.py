"""Layers: Modules that hold parameters (or none) and call `nn.functional` in `forward`.

Defaults, parameter shapes, initialisation and reprs follow PyTorch. Images are NCHW.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

import autograd
from autograd import Tensor

from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = [
    "Sequential", "ModuleList", "Linear", "MLP",
    "ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU", "Softmax", "LogSoftmax", "Identity",
    "Flatten", "Dropout", "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d",
    "LayerNorm", "Embedding",
]  # fmt: skip


def _pair(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _empty(*shape: int) -> np.ndarray:
    """Uninitialised parameter storage in the default float dtype (init fills it)."""
    return np.empty(shape, dtype=autograd.get_default_dtype())


# ----- containers ------------------------------------------------------------------------------
class Sequential(Module):
    """Calls its modules in order, each on the previous one's output.

    `Sequential(m0, m1, ...)` names them "0", "1", ...; `Sequential({"name": m, ...})` keeps
    the given names. Indexing with an int gives a module, a slice a new Sequential.
    """

    def __init__(self, *modules: Module | Mapping[str, Module]) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def forward(self, x: Any) -> Any:
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, index: int | slice) -> Module:
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(dict(items[index]))
        return items[_index(index, len(items), "Sequential")][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    """A list of modules, registered under the names "0", "1", ... (no forward of its own)."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(modules[index])
        return modules[_index(index, len(modules), "ModuleList")]

    def __setitem__(self, index: int, module: Module) -> None:
        self.add_module(str(_index(index, len(self._modules), "ModuleList")), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for module in modules:
            self.append(module)
        return self


def _index(index: int, length: int, container: str) -> int:
    if not -length <= index < length:
        raise IndexError(f"{container}: index {index} out of range for length {length}")
    return index % length


# ----- dense layers ------------------------------------------------------------------------------
class Linear(Module):
    """`y = x @ weight.T + bias`; x `(..., in_features)` -> y `(..., out_features)`.

    weight `(out_features, in_features)` and bias `(out_features,)` are drawn from
    U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_empty(out_features, in_features))
        self.bias = Parameter(_empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch: kaiming_uniform_(a=sqrt(5)), i.e. bound 1/sqrt(fan_in), for weight and bias
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class MLP(Module):
    """Linear layers with an activation (and optional Dropout) between them.

    `MLP(784, [128, 64], 10)` is `layers = Sequential(Linear(784, 128), ReLU(),
    Linear(128, 64), ReLU(), Linear(64, 10))`: x `(N, 784)` -> logits `(N, 10)`.
    """

    def __init__(
        self,
        in_features: int,
        hidden: list[int],
        out_features: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"MLP: unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}"
            )
        modules: list[Module] = []
        sizes = [in_features, *hidden]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            modules += [Linear(fan_in, fan_out), _ACTIVATIONS[activation]()]
            if dropout > 0:
                modules.append(Dropout(dropout))
        modules.append(Linear(sizes[-1], out_features))
        self.layers = Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


# ----- activations ------------------------------------------------------------------------------
class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class GELU(Module):
    """GELU: exact x * Phi(x) (erf form, PyTorch's default) or, with approximate="tanh",
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Softmax(Module):
    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, axis=self.axis)


class Identity(Module):
    def forward(self, x: Any) -> Any:
        return x


class Flatten(Module):
    """Merges axes `start_axis..` into one: `(N, C, H, W)` -> `(N, C*H*W)` by default."""

    def __init__(self, start_axis: int = 1) -> None:
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(self.start_axis)

    def extra_repr(self) -> str:
        return f"start_axis={self.start_axis}"


_ACTIVATIONS: dict[str, type[Module]] = {
    "relu": ReLU, "gelu": GELU, "tanh": Tanh, "sigmoid": Sigmoid, "leaky_relu": LeakyReLU,
}  # fmt: skip


class Dropout(Module):
    """In training, zeroes each element with probability p and scales the rest by 1/(1-p);
    in eval mode, the identity."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ----- convolution and pooling -------------------------------------------------------------------
class Conv2d(Module):
    """2-D convolution (cross-correlation): x `(N, C_in, H, W)` -> `(N, C_out, H_out, W_out)`.

    weight `(out_channels, in_channels, kh, kw)` and bias `(out_channels,)`, both from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels * kh * kw (PyTorch's default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size, "Conv2d: kernel_size")
        self.stride = _pair(stride, "Conv2d: stride")
        self.padding = _pair(padding, "Conv2d: padding")
        self.weight = Parameter(_empty(out_channels, in_channels, *self.kernel_size))
        self.bias = Parameter(_empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d: expected input (N, {self.in_channels}, H, W), got shape {x.shape}"
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.bias is None:
            text += ", bias=False"
        return text


class _Pool2d(Module):
    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each window of `(N, C, H, W)`; a window's gradient goes to its first maximum."""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over each window of `(N, C, H, W)` (padding counts as zeros, as PyTorch)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


# ----- normalisation ---------------------------------------------------------------------------
class _BatchNorm(Module):
    """Normalises each channel (axis 1) with the batch's statistics in training, and with
    running statistics (updated in training with `momentum`, unbiased variance) in eval.
    `momentum=None` keeps a cumulative average instead: the n-th training batch enters with
    weight 1/n (PyTorch's rule), so the running statistics are the mean over all batches."""

    _input_ndims: tuple[int, ...] = ()
    _input_layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"{type(self).__name__}: momentum must be in [0, 1] or None, got {momentum}"
            )
        self.num_features, self.eps, self.momentum, self.affine = (
            num_features, eps, momentum, affine,
        )  # fmt: skip
        dtype = autograd.get_default_dtype()
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        self.register_buffer("running_mean", np.zeros(num_features, dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in self._input_ndims or x.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): expected input "
                f"{self._input_layout} with C={self.num_features}, got shape {x.shape}"
            )
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.data += 1
            if momentum is None:  # cumulative average: the n-th batch weighs 1/n
                momentum = 1.0 / float(self.num_batches_tracked.data)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            self.training, 0.0 if momentum is None else momentum, self.eps,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm of `(N, C)` or `(N, C, L)` inputs, per feature C."""

    _input_ndims = (2, 3)
    _input_layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of `(N, C, H, W)` images, per channel C."""

    _input_ndims = (4,)
    _input_layout = "(N, C, H, W)"


class LayerNorm(Module):
    """Normalises over the trailing `normalized_shape` axes of each sample, then scales by
    `weight` (ones) and shifts by `bias` (zeros)."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        dtype = autograd.get_default_dtype()
        affine = elementwise_affine
        self.weight = Parameter(np.ones(self.normalized_shape, dtype)) if affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, dtype)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class Embedding(Module):
    """A table of `num_embeddings` vectors of size `embedding_dim` (init N(0, 1)):
    integer indices of any shape `S` -> `S + (embedding_dim,)`."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(_empty(num_embeddings, embedding_dim))
        init.normal_(self.weight)

    def forward(self, indices: Any) -> Tensor:
        return F.embedding(indices, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
