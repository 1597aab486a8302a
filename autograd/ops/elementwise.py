"""Elementwise ops: arithmetic, comparisons and activations (broadcasting ones too)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import grad_mode
from ..grad_mode import get_default_dtype
from ..tensor import Tensor

_from_op = Tensor._from_op


def lift(value: Any, like: Tensor) -> Tensor:
    """`value` as a Tensor to combine with `like`; numbers and float arrays take `like`'s float
    dtype.

    So `float32 * 2.0` stays float32 (numpy 2 treats Python scalars as weak, too), and a
    float64 tensor never meets a constant that was rounded to float32 on the way in.
    """
    if isinstance(value, Tensor):
        return value
    if like.dtype.kind == "f":
        python_int = isinstance(value, int) and not isinstance(value, (bool, np.generic))
        if python_int or np.asarray(value).dtype.kind == "f":
            return Tensor(value, dtype=like.dtype)
    return Tensor(value)  # int -> int64, bool -> bool, float -> default float dtype


def operands(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as Tensors (numbers lifted to the Tensor's dtype).

    An integer Tensor meeting a float one takes the float dtype, as in PyTorch: numpy would
    make int64 + float32 a float64, breaking "float32 in, float32 out" (bools never upcast).
    """
    a, b = (a, lift(b, a)) if isinstance(a, Tensor) else (lift(a, b), b)
    if a.dtype != b.dtype:
        if a.dtype.kind == "f" and b.dtype.kind in "iu":
            b = Tensor(b.data, dtype=a.dtype)  # integer data never requires grad
        elif b.dtype.kind == "f" and a.dtype.kind in "iu":
            a = Tensor(a.data, dtype=b.dtype)
    return a, b


def _broadcast(op: str, ufunc: np.ufunc, a: Tensor, b: Tensor) -> np.ndarray:
    try:
        return ufunc(a.data, b.data)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together"
        ) from None


def _each_others(a: Tensor, b: Tensor) -> tuple[Tensor, ...]:
    """What a product saves: each operand's gradient needs the other operand."""
    if a.requires_grad:
        return (b, a) if b.requires_grad else (b,)
    return (a,)


def add(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return g, g

    return _from_op(_broadcast("add", np.add, a, b), (a, b), "add", backward, saved=())


def sub(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)
    b_needs_grad = b.requires_grad  # a bool, not `b`: this closure outlives backward

    def backward(g: Tensor, out: Tensor) -> tuple:
        return g, (-g if b_needs_grad else None)

    data = _broadcast("sub", np.subtract, a, b)
    return _from_op(data, (a, b), "sub", backward, saved=())


def mul(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: the same products in numpy
            wrap = Tensor._from_array
            ga = wrap(np.multiply(g.data, b.data)) if a.requires_grad else None
            return ga, (wrap(np.multiply(g.data, a.data)) if b.requires_grad else None)
        return (g * b if a.requires_grad else None), (g * a if b.requires_grad else None)

    data = _broadcast("mul", np.multiply, a, b)
    return _from_op(data, (a, b), "mul", backward, saved=_each_others(a, b))


def div(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)
    if a.dtype.kind != "f" and b.dtype.kind != "f":  # true division of ints gives floats
        a, b = Tensor(a.data, dtype=get_default_dtype()), Tensor(b.data, dtype=get_default_dtype())

    def backward(g: Tensor, out: Tensor) -> tuple:
        ga = g / b if a.requires_grad else None
        gb = -g * out / b if b.requires_grad else None  # d(a/b)/db = -a/b**2 = -out/b
        return ga, gb

    data = _broadcast("div", np.divide, a, b)
    return _from_op(data, (a, b), "div", backward, saved=(b,), saves_output=b.requires_grad)


def neg(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (-g,)

    return _from_op(np.negative(x.data), (x,), "neg", backward, saved=())


def pow(x: Any, exponent: Any) -> Tensor:  # noqa: A001 (Tensor.pow)
    """`x ** exponent` with a Python-number or Tensor exponent."""
    if not isinstance(x, Tensor):  # scalar ** Tensor
        x = lift(x, exponent)
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        p = exponent
        if isinstance(p, float) and x.dtype.kind != "f":  # int ** 0.5 is a float
            x = Tensor(x.data, dtype=get_default_dtype())

        def backward_scalar(g: Tensor, out: Tensor) -> tuple:
            if p == 0:
                return (g * 0.0,)
            return (g * p * x ** (p - 1) if p != 2 else g * 2.0 * x,)

        data = np.power(x.data, np.asarray(p, dtype=x.dtype) if x.dtype.kind == "f" else p)
        return _from_op(data, (x,), "pow", backward_scalar, saved=(x,), exponent=p)
    x, e = operands(x, exponent)

    def backward(g: Tensor, out: Tensor) -> tuple:
        gx = g * e * x ** (e - 1.0) if x.requires_grad else None
        # d(x**e)/de = x**e * log(x); where x <= 0 the power has no real derivative in e
        positive = x.data > 0
        safe_log = where(positive, x, 1.0).log()
        ge = g * out * safe_log if e.requires_grad else None
        return gx, ge

    data = _broadcast("pow", np.power, x, e)
    return _from_op(data, (x, e), "pow", backward, saved=(x, e), saves_output=True)


def exp(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * out,)

    return _from_op(np.exp(x.data), (x,), "exp", backward, saved=(), saves_output=True)


def log(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g / x,)

    return _from_op(np.log(x.data), (x,), "log", backward, saved=(x,))


def sqrt(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * 0.5 / out,)

    return _from_op(np.sqrt(x.data), (x,), "sqrt", backward, saved=(), saves_output=True)


def abs(x: Tensor) -> Tensor:  # noqa: A001 (Tensor.abs)
    sign = np.sign(x.data)  # saved by the closure; released after backward

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * sign,)

    return _from_op(np.abs(x.data), (x,), "abs", backward, saved=(x,))


def tanh(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * (1.0 - out * out),)

    return _from_op(np.tanh(x.data), (x,), "tanh", backward, saved=(), saves_output=True)


def sigmoid(x: Tensor) -> Tensor:
    # exp of a negative number only, so large |x| neither overflows nor warns
    e = np.exp(-np.abs(x.data))
    data = np.where(x.data >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * out * (1.0 - out),)

    return _from_op(data, (x,), "sigmoid", backward, saved=(), saves_output=True)


def relu(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        mask = out.data > 0  # constant: relu'' = 0
        if grad_mode._grad_enabled:  # create_graph: record the product
            return (g * mask,)
        return (Tensor._from_array(np.multiply(g.data, mask)),)  # plain backward: numpy only

    return _from_op(np.maximum(x.data, 0), (x,), "relu", backward, saved=(), saves_output=True)


def leaky_relu(x: Tensor, slope: float = 0.01) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * np.where(x.data > 0, 1.0, slope).astype(x.dtype),)

    data = np.where(x.data > 0, x.data, x.data * np.asarray(slope, x.dtype))
    return _from_op(data, (x,), "leaky_relu", backward, saved=(x,), slope=slope)


_SERIES_TERMS = 45  # erf's series below is exact to float64 for |z| < 3 with 45 terms
_FRACTION_DEPTH = 30  # and erfc's continued fraction for |z| >= 3 with 30 levels


def _erf(z: np.ndarray) -> np.ndarray:
    """erf to float64 precision (numpy has none and scipy is no dependency).

    |z| < 3: erf(z) = 2/sqrt(pi) exp(-z^2) sum_n (2z^2)^n z / (1*3*...*(2n+1)), all terms
    positive, so nothing cancels. |z| >= 3: erfc(z) = exp(-z^2)/sqrt(pi) / (z + 1/2/(z + 1/(z
    + 3/2/(z + ...)))), evaluated bottom up.
    """
    z64 = np.asarray(z, dtype=np.float64)
    a = np.abs(z64)
    small = np.minimum(a, 3.0)
    term = small.copy()
    total = small.copy()
    two_z2 = 2.0 * small * small
    for n in range(1, _SERIES_TERMS):
        term *= two_z2 / (2 * n + 1)
        total += term
    series = 2.0 / math.sqrt(math.pi) * np.exp(-small * small) * total
    large = np.maximum(a, 3.0)
    fraction = large.copy()
    for k in range(_FRACTION_DEPTH, 0, -1):
        fraction = large + (k / 2.0) / fraction
    tail = 1.0 - np.exp(-large * large) / (math.sqrt(math.pi) * fraction)
    return (np.sign(z64) * np.where(a < 3.0, series, tail)).astype(np.asarray(z).dtype)


def erf(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp(),)

    return _from_op(_erf(x.data), (x,), "erf", backward, saved=(x,))


def gelu(x: Tensor) -> Tensor:
    """Exact GELU, x * Phi(x) with the normal CDF Phi written through erf (PyTorch's default)."""
    cdf = 0.5 * (1.0 + _erf(x.data * np.asarray(1 / math.sqrt(2), x.dtype)))

    def backward(g: Tensor, out: Tensor) -> tuple:
        phi = 0.5 * (1.0 + erf(x * (1 / math.sqrt(2))))
        density = (x * x * -0.5).exp() * (1 / math.sqrt(2 * math.pi))
        return (g * (phi + x * density),)

    data = (x.data * cdf).astype(x.dtype, copy=False)
    return _from_op(data, (x,), "gelu", backward, saved=(x,))


def sin(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * x.cos(),)

    return _from_op(np.sin(x.data), (x,), "sin", backward, saved=(x,))


def cos(x: Tensor) -> Tensor:
    def backward(g: Tensor, out: Tensor) -> tuple:
        return (-g * x.sin(),)

    return _from_op(np.cos(x.data), (x,), "cos", backward, saved=(x,))


def clip(x: Tensor, lo: float | None = None, hi: float | None = None) -> Tensor:
    """Clamp into [lo, hi]; the gradient passes where lo <= x <= hi (PyTorch's clamp)."""
    if lo is None and hi is None:
        raise ValueError("clip: at least one of lo and hi must be given")
    inside = np.ones(x.shape, dtype=bool)
    if lo is not None:
        inside &= x.data >= lo
    if hi is not None:
        inside &= x.data <= hi

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * inside,)

    return _from_op(np.clip(x.data, lo, hi), (x,), "clip", backward, saved=(x,), lo=lo, hi=hi)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """Cast; the gradient is cast back to the input's dtype."""
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x

    in_dtype = x.dtype

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (astype(g, in_dtype),)

    return _from_op(x.data.astype(dtype), (x,), "astype", backward, saved=(), dtype=str(dtype))


def _tie_split(a: Tensor, b: Tensor, a_wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    equal = a.data == b.data
    dtype = np.result_type(a.dtype, b.dtype)
    wa = np.where(equal, 0.5, a_wins).astype(dtype)  # ties split the gradient evenly
    return wa, (1 - wa).astype(dtype)


def maximum(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)
    data = _broadcast("maximum", np.maximum, a, b)

    def backward(g: Tensor, out: Tensor) -> tuple:
        wa, wb = _tie_split(a, b, a.data > b.data)
        return g * wa, g * wb

    return _from_op(data, (a, b), "maximum", backward, saved=(a, b))


def minimum(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)
    data = _broadcast("minimum", np.minimum, a, b)

    def backward(g: Tensor, out: Tensor) -> tuple:
        wa, wb = _tie_split(a, b, a.data < b.data)
        return g * wa, g * wb

    return _from_op(data, (a, b), "minimum", backward, saved=(a, b))


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """`a` where `condition` holds, else `b` (broadcast together)."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a)
    a, b = operands(a, b)
    try:
        data = np.where(cond, a.data, b.data)
    except ValueError:
        raise ValueError(
            f"where: shapes {cond.shape}, {a.shape} and {b.shape} cannot be broadcast together"
        ) from None

    a_needs_grad, b_needs_grad = a.requires_grad, b.requires_grad

    def backward(g: Tensor, out: Tensor) -> tuple:
        zero = np.zeros((), dtype=g.dtype)
        ga = where(cond, g, zero) if a_needs_grad else None
        gb = where(cond, zero, g) if b_needs_grad else None
        return ga, gb

    return _from_op(data, (a, b), "where", backward, saved=(cond,))


def _compare(ufunc: np.ufunc, name: str):  # noqa: ANN202
    def compare(a: Tensor, b: Any) -> Tensor:
        other = lift(b, a)
        return Tensor(_broadcast(name, ufunc, a, other))

    compare.__name__ = name
    return compare


lt = _compare(np.less, "lt")
le = _compare(np.less_equal, "le")
gt = _compare(np.greater, "gt")
ge = _compare(np.greater_equal, "ge")
eq = _compare(np.equal, "eq")
ne = _compare(np.not_equal, "ne")
