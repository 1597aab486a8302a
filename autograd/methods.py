"""Binds the ops as Tensor methods and operators (`x.exp()`, `x + y`, `x @ w`, `x[i]`)."""

from __future__ import annotations

from .ops import elementwise as ew
from .ops import index, linalg, reduce, shape
from .tensor import Tensor


def _reflected(op):  # noqa: ANN001, ANN202
    return lambda self, other: op(other, self)


def install() -> None:
    methods = {
        "__add__": ew.add,
        "__radd__": _reflected(ew.add),
        "__sub__": ew.sub,
        "__rsub__": _reflected(ew.sub),
        "__mul__": ew.mul,
        "__rmul__": _reflected(ew.mul),
        "__truediv__": ew.div,
        "__rtruediv__": _reflected(ew.div),
        "__pow__": ew.pow,
        "__rpow__": _reflected(ew.pow),
        "__neg__": ew.neg,
        "__matmul__": linalg.matmul,
        "__rmatmul__": _reflected(linalg.matmul),
        "__lt__": ew.lt,
        "__le__": ew.le,
        "__gt__": ew.gt,
        "__ge__": ew.ge,
        "__eq__": ew.eq,
        "__ne__": ew.ne,
        "__and__": ew.bitwise_and,
        "__rand__": _reflected(ew.bitwise_and),
        "__or__": ew.bitwise_or,
        "__ror__": _reflected(ew.bitwise_or),
        "__xor__": ew.bitwise_xor,
        "__rxor__": _reflected(ew.bitwise_xor),
        "__invert__": ew.bitwise_not,
        "__getitem__": index.getitem,
        "pow": ew.pow,
        "exp": ew.exp,
        "log": ew.log,
        "sqrt": ew.sqrt,
        "abs": ew.abs,
        "__abs__": ew.abs,
        "tanh": ew.tanh,
        "sigmoid": ew.sigmoid,
        "relu": ew.relu,
        "leaky_relu": ew.leaky_relu,
        "gelu": ew.gelu,
        "erf": ew.erf,
        "sin": ew.sin,
        "cos": ew.cos,
        "clip": ew.clip,
        "astype": ew.astype,
        "matmul": linalg.matmul,
        "sum": reduce.sum,
        "mean": reduce.mean,
        "max": reduce.max,
        "min": reduce.min,
        "var": reduce.var,
        "std": reduce.std,
        "logsumexp": reduce.logsumexp,
        "softmax": reduce.softmax,
        "log_softmax": reduce.log_softmax,
        "argmax": reduce.argmax,
        "argmin": reduce.argmin,
        "reshape": shape.reshape,
        "view": shape.reshape,
        "flatten": shape.flatten,
        "transpose": shape.transpose,
        "permute": shape.transpose,
        "swapaxes": shape.swapaxes,
        "squeeze": shape.squeeze,
        "unsqueeze": shape.unsqueeze,
        "expand": shape.broadcast_to,
        "broadcast_to": shape.broadcast_to,
        "sum_to": shape.sum_to,
        "pad": shape.pad,
        "masked_fill": ew.masked_fill,
        "masked_fill_": ew.masked_fill_,
        "split": shape.split,
        "chunk": shape.chunk,
        "tril": linalg.tril,
        "triu": linalg.triu,
        "cumsum": reduce.cumsum,
    }
    for name, fn in methods.items():
        setattr(Tensor, name, fn)
