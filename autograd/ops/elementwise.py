"""Elementwise ops: arithmetic, comparisons and activations (broadcasting ones too)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import grad_mode
from ..grad_mode import get_default_dtype
from ..parallel import parallel_for
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


# erf by W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev approximations
# for the error function", Math. Comp. 23, 1969; the coefficients of SPECFUN's CALERF), in
# three ranges of y = |z|: erf(z) = z + z R(z^2) for y < 0.5, erfc(y) = exp(-y^2) C(y) / D(y)
# for 0.5 <= y < 4, and erfc(y) = exp(-y^2) / y (1/sqrt(pi) - t P(t) / Q(t)), t = 1/y^2, above.
# Each table lists (numerator, denominator) pairs, highest power first; every denominator
# leads with 1, so both polynomials go through one Horner loop on a (2, n) array.
# R = A/B - 1, with Cody's A: its numerator coefficients are A's minus B's, subtracted in
# decimal before rounding. Adding the correction z R (at most 13% of z) to z keeps the
# rounding of the ratio out of the leading digits: <= 1 ulp in that range, against 2-3 for z A/B.
_ERF_SMALL = np.array(
    [
        (-0.8142222938153968, 1.0),
        (-20.440167208473554, 23.6012909523441209),
        (-130.16048378339403, 244.024637934444173),
        (-905.1312883920702, 1282.61652607737228),
        (365.14075569929884, 2844.23683343917062),
    ]
)[:, :, None]
_ERFC_MID = np.array(
    [
        (2.15311535474403846e-8, 1.0),
        (5.64188496988670089e-1, 1.57449261107098347e1),
        (8.88314979438837594, 1.17693950891312499e2),
        (6.61191906371416295e1, 5.37181101862009858e2),
        (2.98635138197400131e2, 1.62138957456669019e3),
        (8.81952221241769090e2, 3.29079923573345963e3),
        (1.71204761263407058e3, 4.36261909014324716e3),
        (2.05107837782607147e3, 3.43936767414372164e3),
        (1.23033935479799725e3, 1.23033935480374942e3),
    ]
)[:, :, None]
_ERFC_TAIL = np.array(
    [
        (1.63153871373020978e-2, 1.0),
        (3.05326634961232344e-1, 2.56852019228982242),
        (3.60344899949804439e-1, 1.87295284992346047),
        (1.25781726111229246e-1, 5.27905102951428412e-1),
        (1.60837851487422766e-2, 6.05183413124413191e-2),
        (6.58749161529837803e-4, 2.33520497626869185e-3),
    ]
)[:, :, None]
_ONE_OVER_SQRT_PI = 0.56418958354775628695
# erfc(28) = exp(-784)/... is below the smallest subnormal: clipping there keeps y*y finite
_ERFC_ZERO = 28.0
# Elements per pass: temporaries of this size stay in cache and are reused by the allocator;
# whole 1M-element arrays took twice as long (page faults on every temporary).
_ERF_BLOCK = 1 << 16
_SQRT_HALF = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def _rational(t: np.ndarray, table: np.ndarray) -> np.ndarray:
    """numerator(t) / denominator(t) of a (power, 2, 1) coefficient table, by Horner's rule."""
    acc = table[0] * t  # (2, n): numerator and denominator together
    for coefficients in table[1:-1]:
        acc += coefficients
        acc *= t
    acc += table[-1]
    numerator, denominator = acc
    return np.divide(numerator, denominator, out=numerator)


def _erfc_mid(y: np.ndarray) -> np.ndarray:
    """erfc(y) for 0.5 <= y < 4."""
    ratio = _rational(y, _ERFC_MID)
    decay = np.multiply(y, y)
    np.negative(decay, out=decay)
    ratio *= np.exp(decay, out=decay)
    return ratio


def _erfc_tail(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y >= 4 (y finite, at most `_ERFC_ZERO`)."""
    y2 = np.multiply(y, y)
    decay = np.exp(np.negative(y2))
    t = np.reciprocal(y2, out=y2)
    series = _rational(t, _ERFC_TAIL)
    series *= t
    np.subtract(_ONE_OVER_SQRT_PI, series, out=series)
    series /= y
    series *= decay
    return series


def _erfc_large(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y >= 0.5 (or NaN)."""
    if y.max() < 4.0:  # the usual case (False for NaN)
        return _erfc_mid(y)
    out = np.empty_like(y)
    mid = y < 4.0
    i = np.flatnonzero(mid)
    out[i] = _erfc_mid(y[i])
    i = np.flatnonzero(~mid)
    out[i] = _erfc_tail(np.minimum(y[i], _ERFC_ZERO))  # (NaN stays NaN)
    return out


def _cody(z: np.ndarray, cdf: bool) -> np.ndarray:
    """erf(z) of a 1-D float64 block, or with `cdf` the normal CDF Phi(x) = erfc(-z) / 2 at
    x = sqrt(2) z (the erfc form keeps its relative accuracy for negative x).

    Each element takes one of the three rational functions: the ranges are gathered by index
    (a boolean mask would cost ~5x a pass, its branches mispredicted) and scattered back.
    """
    y = np.abs(z)
    small = y < 0.5
    out = np.empty_like(z)
    i = np.flatnonzero(small)
    if i.size:
        x = z[i]
        r = _rational(x * x, _ERF_SMALL)
        r *= x
        r += x
        if cdf:
            r *= 0.5
            r += 0.5
        out[i] = r
    if i.size < z.size:
        j = np.flatnonzero(~small) if i.size else slice(None)
        e = _erfc_large(y[j])
        zj = z[j]
        if cdf:  # Phi = erfc(|z|)/2 below the mean, 1 - erfc(|z|)/2 above
            e *= 0.5
            np.subtract(1.0, e, out=e, where=zj > 0)
        else:
            np.subtract(1.0, e, out=e)
            np.copysign(e, zj, out=e)
        out[j] = e
    return out


def _by_blocks(z: np.ndarray, cdf: bool) -> np.ndarray:
    """`_cody` over `z` in float64, block by block; the result in `z`'s float dtype (float32
    rounded once from float64: correctly rounded, where float32 arithmetic was 2.8 ulp off)."""
    z = np.asarray(z)
    dtype = z.dtype if z.dtype.kind == "f" else get_default_dtype()
    flat = z.reshape(-1)
    out = np.empty(flat.shape, dtype)
    for start in range(0, flat.size, _ERF_BLOCK):
        block = flat[start : start + _ERF_BLOCK]
        if cdf:  # z = x / sqrt(2), rounded in float64 whatever x's dtype
            block = np.multiply(block, _SQRT_HALF, dtype=np.float64)
        out[start : start + _ERF_BLOCK] = _cody(block.astype(np.float64, copy=False), cdf)
    return out.reshape(z.shape)


def _erf(z: np.ndarray) -> np.ndarray:
    """erf to float64 precision (numpy has none and scipy is no dependency): <= 2 ulp from
    `math.erf` in float64; float32 (and other float dtypes) keep their dtype."""
    return _by_blocks(z, cdf=False)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = (1 + erf(x / sqrt(2))) / 2, the standard normal CDF, in `x`'s float dtype
    (float32 by the table below, other dtypes by Cody's erfc in float64)."""
    x = np.asarray(x)
    if x.dtype == np.float32:
        return _cdf_float32(x, times_x=False)[0]
    return _by_blocks(x, cdf=True)


# float32 Phi by a table of local polynomials, for exact GELU's speed: Cody's rational in
# float64 (converting to and from float64) took 10-14 ms on 0.5M elements; this ~1.7 ms.
# x is rounded to x_k, the nearest multiple of h = 2^-11, by the float32 addition x + 6144
# (whose spacing in [2^12, 2^13) is h), and
#     Phi(x_k + d) = Phi(x_k) + phi(x_k) (d - x_k d^2 / 2 + (x_k^2 - 1) d^3 / 6 - ...),
# |d| <= h/2, is summed to its d^2 term from a table of (Phi(x_k), phi(x_k) / 2): one 8-byte
# gather per element, then Phi(x_k) + phi(x_k)/2 d (2 - x_k d). The first omitted term is
# relative (|x| d)^3 / 6 <= 3.5e-9 for |x| <= 11.3 (Phi >= 1e-30), 0.06 float32 ulp; the
# correction is at most 0.4% of Phi(x_k) in the left tail (its relative rounding scaled by
# that), so the error is the two roundings of Phi(x_k) and of the sum: measured <= 1.5 ulp
# of the float64 Cody value on [-14, 14], with full relative accuracy in the left tail, where
# 0.5 (1 + erf(x / sqrt 2)) in float32 (PyTorch's formula) cancels (1e-2 relative at x = -4).
# Against a fitted rational, Phi(-|x|) = exp(-x^2/2) P(|x|)/Q(|x|) in float32 (degree 4/5,
# the least that fits to 1 ulp; the exponent split so that no rounding of x^2/2 enters exp):
# 4.0 ms and 9.6 ulp, its Horner sums and numpy's float32 exp (2.4 ulp) rounding on top of
# the fit; 3.3 ms and 68 ulp without the split (benchmarks/fit_gelu_rational.py).
# Without sign branches, since the table holds Phi itself over [-15, 6]: below, Phi(x_k) and
# phi(x_k)/2 underflow to 0 in float32; above, the last row (1, 0) gives Phi = 1. Outside the
# table (and for |x| >= 2048, where the grid is coarser) the gather clips to those rows,
# whose zero slope makes the correction vanish; only x = +-inf (d = inf - inf) needs fixing.
_CDF32_STEP_BITS = 11
_CDF32_LO, _CDF32_HI = -15.0, 6.0
_CDF32_SHIFT = np.array(1.5 * 2.0 ** (23 - _CDF32_STEP_BITS), np.float32)  # 6144
# the bits of shift + x as int32 minus those of shift + LO: the row of x (an int64 0-d array,
# so that far-off x (negative shift + x) cannot overflow the int32 subtraction)
_CDF32_BASE = np.array((_CDF32_SHIFT + np.float32(_CDF32_LO)).view(np.int32), np.int64)
_ONE32, _TWO32 = np.array(1.0, np.float32), np.array(2.0, np.float32)
# Elements per block, measured fastest at 64k (16k: +15%): against cache misses on the 32
# bytes of scratch and operands per element, ~1 us for each of the 13 numpy calls a block.
_CDF32_BLOCK = 1 << 16


def _cdf32_table() -> np.ndarray:
    """(rows, 2) float32: Phi(x_k) and phi(x_k) / 2 at x_k = LO + k h, from the float64 Cody
    Phi (correctly rounded), with the end rows exactly (0, 0) and (1, 0)."""
    step = 2.0**-_CDF32_STEP_BITS
    rows = round((_CDF32_HI - _CDF32_LO) / step) + 1
    grid = _CDF32_LO + step * np.arange(rows)
    table = np.empty((rows, 2), np.float32)
    table[:, 0] = _by_blocks(grid, cdf=True)
    table[:, 1] = 0.5 * _INV_SQRT_2PI * np.exp(-0.5 * grid * grid)
    table[0] = (0.0, 0.0)
    table[-1] = (1.0, 0.0)
    return table


# as int64: one gather moves a row (numpy's take copies 8-byte items fastest)
_CDF32_ROWS = _cdf32_table().view(np.int64).reshape(-1)


def _cdf_float32(
    x: np.ndarray, times_x: bool, slope: bool = False
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(Phi(x), x Phi(x) if `times_x`, Phi(x) + x phi(x) if `slope`) of a float32 array,
    each shaped like `x`; with `slope` Phi itself is not kept (None). Block by block in
    preallocated scratch (see the table above); the blocks are shared out over
    `parallel.get_num_threads()` threads (two blocks at least each)."""
    flat = x.reshape(-1)
    size = flat.size
    cdf = None if slope else np.empty(size, np.float32)
    out = np.empty(size, np.float32) if times_x else None
    slopes = np.empty(size, np.float32) if slope else None
    block = max(1, min(_CDF32_BLOCK, size))
    invalid = np.geterr()["invalid"]  # (the caller's setting: threads have their own)

    def blocks(first: int, last: int) -> None:
        lo, hi = first * block, min(last * block, size)
        _cdf32_blocks(flat, cdf, out, slopes, block, lo, hi, invalid)

    parallel_for(blocks, -(-size // block), grain=2)
    return tuple(None if a is None else a.reshape(x.shape) for a in (cdf, out, slopes))


def _cdf32_blocks(
    flat: np.ndarray,
    cdf: np.ndarray | None,
    out: np.ndarray | None,
    slopes: np.ndarray | None,
    block: int,
    lo: int,
    hi: int,
    invalid: str,
) -> None:
    """`_cdf_float32` on flat[lo:hi], in blocks of `block` with scratch of its own.

    The slope Phi(x) + x phi(x) (gelu's derivative) takes the density from the same row:
    phi(x_k + d) = phi(x_k) (1 - x_k d + (x_k^2 - 1) d^2 / 2 - ...), to first order: the
    omitted term is relative (x d)^2 / 2 <= 5e-7 for |x| <= 4 (as float32 x^2 rounded in
    exp(-x^2 / 2) errs), 4e-6 at |x| = 11 where phi(x) < 1e-26. Four passes here save the
    backward seven, numpy's exp among them."""
    grid = np.empty(block, np.float32)  # shift + x, then x_k, then the correction
    index = np.empty(block, np.int64)
    offset = index.view(np.float32)[:block]  # d, in index's memory: dead once gathered
    rows = np.empty((block, 2), np.float32)
    rows_bits = rows.view(np.int64).reshape(-1)
    value, half_density = rows[:, 0], rows[:, 1]
    if slopes is not None:
        density = np.empty(block, np.float32)  # x phi(x) / 2
    if cdf is None:
        cdf_scratch = np.empty(block, np.float32)
    with np.errstate(invalid="ignore"):  # inf - inf at x = +-inf, fixed below
        for start in range(lo, hi, block):
            xb = flat[start : min(start + block, hi)]
            n = xb.size
            if n < block:  # the last block
                grid, index, offset = grid[:n], index[:n], offset[:n]
                rows_bits, value, half_density = rows_bits[:n], value[:n], half_density[:n]
            np.add(xb, _CDF32_SHIFT, grid)
            np.subtract(grid.view(np.int32), _CDF32_BASE, index)
            _CDF32_ROWS.take(index, out=rows_bits, mode="clip")
            np.subtract(grid, _CDF32_SHIFT, grid)  # x_k (exact)
            np.subtract(xb, grid, offset)  # d (exact)
            np.multiply(grid, offset, grid)  # x_k d
            if slopes is not None:
                xd = density[:n]
                np.subtract(_ONE32, grid, xd)
                xd *= half_density
                xd *= xb
            np.subtract(_TWO32, grid, grid)
            np.multiply(grid, offset, grid)
            np.multiply(grid, half_density, grid)
            cb = cdf[start : start + n] if cdf is not None else cdf_scratch[:n]
            np.add(grid, value, cb)
            finite = not math.isnan(np.maximum.reduce(cb))  # (NaN: x is NaN or infinite)
            if not finite:
                infinite = np.isinf(xb)
                cb[infinite] = xb[infinite] > 0
            if out is not None:
                if finite:
                    np.multiply(xb, cb, out[start : start + n])
                else:  # -inf * 0 = NaN, with numpy's warning as x * Phi(x) gives it
                    with np.errstate(invalid=invalid):
                        np.multiply(xb, cb, out[start : start + n])
            if slopes is not None:
                sb = slopes[start : start + n]
                if finite:
                    np.add(cb, xd, sb)
                    sb += xd
                else:  # as the backward's formula gives it: NaN at +-inf (inf * 0)
                    sb[...] = _gelu_slope_times(xb, cb, np.ones_like(xb))


def erf(x: Tensor) -> Tensor:
    if x.dtype.kind != "f":  # (integers cannot require grad: nothing to record)
        return Tensor(_erf(x.data), dtype=get_default_dtype())

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp(),)

    return _from_op(_erf(x.data), (x,), "erf", backward, saved=(x,))


def _cdf_op(x: Tensor, cdf: np.ndarray) -> Tensor:
    """Phi(x) as an op whose value `cdf` the caller has computed already: gelu's backward
    under create_graph differentiates through it without evaluating erf again."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        return (g * ((x * x * -0.5).exp() * _INV_SQRT_2PI),)

    return _from_op(cdf, (x,), "normal_cdf", backward, saved=(x,))


def _gelu_slope_times(x: np.ndarray, cdf: np.ndarray, g: np.ndarray) -> np.ndarray:
    """g * (Phi(x) + x phi(x)), gelu's backward, in place in one new array: over the whole
    array (1.06 ms at (16, 64, 512) float32, where blocks of 16k-64k elements took
    1.15-1.25: the passes are few, numpy's exp is 2/3), in pieces of 128k elements or more
    over `parallel.get_num_threads()` threads."""
    slope = np.empty_like(x)  # (an array for 0-d x too)
    arrays = (x, cdf, g, slope)
    if all(a.flags.c_contiguous for a in arrays):
        flat = [a.reshape(-1) for a in arrays]  # (views)
    else:  # one piece, on the arrays as they are
        flat = [a[None] for a in arrays]

    def piece(lo: int, hi: int) -> None:
        xs, cs, gs, out = (a[lo:hi] for a in flat)
        np.multiply(xs, xs, out=out)
        out *= -0.5
        np.exp(out, out=out)
        out *= xs
        out *= _INV_SQRT_2PI
        out += cs
        out *= gs

    parallel_for(piece, len(flat[0]), grain=1 << 17)
    return slope


def gelu(x: Tensor) -> Tensor:
    """Exact GELU, x * Phi(x) with the normal CDF Phi (PyTorch's default); float dtypes kept.

    float32 takes the table of `_cdf_float32` (<= 1.5 ulp, relative accuracy in the left
    tail); other float dtypes Cody's erfc in float64. x = -inf gives NaN (-inf * 0, as numpy
    computes x * Phi(x) and PyTorch returns), +inf gives inf, NaN propagates. The backward's
    slope Phi(x) + x phi(x): for float32 input that needs a gradient, computed by the
    forward from the same table rows (the backward is then one product); else from the
    forward's Phi, kept by the closure, and the density phi.
    """
    if x.dtype.kind != "f":
        x = Tensor(x.data, dtype=get_default_dtype())
    slope = None
    if x.dtype == np.float32:
        with_slope = x.requires_grad and grad_mode._grad_enabled
        cdf, data, slope = _cdf_float32(x.data, times_x=True, slope=with_slope)
    else:
        cdf = _normal_cdf(x.data)
        data = np.multiply(x.data, cdf)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: numpy, in x's dtype
            if slope is not None:
                return (Tensor._from_array(np.multiply(g.data, slope)),)
            return (Tensor._from_array(_gelu_slope_times(x.data, cdf, g.data)),)
        density = (x * x * -0.5).exp() * _INV_SQRT_2PI
        phi = _normal_cdf(x.data) if cdf is None else cdf
        return (g * (_cdf_op(x, phi) + x * density),)

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


def _fill_mask(op: str, x: Tensor, mask: Any) -> np.ndarray:
    """`mask` as a bool array that broadcasts to `x`'s shape (a bool Tensor, array or list)."""
    array = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if array.dtype != np.bool_:
        raise TypeError(f"{op}: mask must be bool, got dtype {array.dtype} (shape {array.shape})")
    try:
        fits = np.broadcast_shapes(array.shape, x.shape) == x.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{op}: mask of shape {array.shape} does not broadcast to the tensor's shape {x.shape}"
        )
    return array


def _fill_value(op: str, value: Any, x: Tensor) -> Any:
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ValueError(
                f"{op}: value must be a number or a 0-d tensor, got shape {value.shape}"
            )
        return value
    return np.asarray(value, dtype=x.dtype)  # as PyTorch: cast to the tensor's dtype


def masked_fill(x: Tensor, mask: Any, value: Any) -> Tensor:
    """`value` where `mask` (bool, broadcast to x's shape) is True, else x; x's dtype.

    A 0-d Tensor `value` gets the gradient summed over the filled positions, as in PyTorch.
    """
    keep = ~_fill_mask("masked_fill", x, mask)
    value = _fill_value("masked_fill", value, x)
    fill = value.data.astype(x.dtype, copy=False) if isinstance(value, Tensor) else value
    data = np.where(keep, x.data, fill)
    parents = (x, value) if isinstance(value, Tensor) else (x,)
    value_needs_grad = isinstance(value, Tensor) and value.requires_grad
    count = len(parents)  # (the closure holds arrays and flags only, no tensor)

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: numpy only
            gx = Tensor._from_array(np.multiply(g.data, keep))
        else:
            gx = g * keep
        if count == 1:
            return (gx,)
        # shaped like the output: the engine sums it to the 0-d value
        return gx, (g * ~keep if value_needs_grad else None)

    return _from_op(data, parents, "masked_fill", backward, saved=(keep,))


def masked_fill_(x: Tensor, mask: Any, value: Any) -> Tensor:
    """In-place `masked_fill` (allowed only where no grad is recorded for `x`, as `+=`)."""
    x._check_inplace("masked_fill_")
    where = _fill_mask("masked_fill_", x, mask)
    value = _fill_value("masked_fill_", value, x)
    fill = value.data if isinstance(value, Tensor) else value
    try:
        np.copyto(x.data, fill, casting="unsafe", where=where)
    except ValueError as error:  # (a read-only broadcast view)
        raise ValueError(f"masked_fill_: cannot fill shape {x.shape} in place: {error}") from None
    x._bump_version()
    return x


def _elementwise_constant(ufunc: np.ufunc, name: str, kinds: str = ""):  # noqa: ANN202
    """A comparison (or, with `kinds`, a logical op on those dtype kinds only): a result that
    is not differentiable, as PyTorch's."""

    def op(a: Any, b: Any) -> Tensor:
        a, b = (a, lift(b, a)) if isinstance(a, Tensor) else (lift(a, b), b)
        if kinds and (a.dtype.kind not in kinds or b.dtype.kind not in kinds):
            raise TypeError(
                f"{name}: needs bool or integer tensors, got dtypes {a.dtype} and {b.dtype}"
            )
        return Tensor(_broadcast(name, ufunc, a, b))

    op.__name__ = name
    return op


lt = _elementwise_constant(np.less, "lt")
le = _elementwise_constant(np.less_equal, "le")
gt = _elementwise_constant(np.greater, "gt")
ge = _elementwise_constant(np.greater_equal, "ge")
eq = _elementwise_constant(np.equal, "eq")
ne = _elementwise_constant(np.not_equal, "ne")
# `&`, `|`, `^` of masks (bool) or integer tensors
bitwise_and = _elementwise_constant(np.bitwise_and, "bitwise_and", "biu")
bitwise_or = _elementwise_constant(np.bitwise_or, "bitwise_or", "biu")
bitwise_xor = _elementwise_constant(np.bitwise_xor, "bitwise_xor", "biu")


def bitwise_not(x: Tensor) -> Tensor:
    """`~mask`: logical not of a bool tensor, bitwise not of an integer one."""
    if x.dtype.kind not in "biu":
        raise TypeError(f"bitwise_not: needs a bool or integer tensor, got dtype {x.dtype}")
    return Tensor(np.invert(x.data))
