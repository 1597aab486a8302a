"""erf (Cody's rational approximations) against `math.erf` on a dense grid, in ulp, and at its
extremes; float32 correctly rounded; exact GELU's values, gradients and second derivatives, and
its backward reusing the forward's CDF."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck
from autograd.ops import elementwise

_math_erf = np.frompyfunc(math.erf, 1, 1)


def _grid() -> np.ndarray:
    """2M points in [-6, 6] and log-spaced tails down to 1e-300 and out to 1e300, both signs."""
    tails = np.concatenate([np.geomspace(1e-300, 6, 20_000), np.geomspace(6, 1e300, 2_000)])
    return np.concatenate([np.linspace(-6, 6, 2_000_001), tails, -tails])


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the last place of `exact` in `got`'s dtype."""
    ulp = np.spacing(np.abs(exact).astype(got.dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / ulp


def test_erf_within_2_ulp_of_math_erf_in_float64() -> None:
    x = _grid()
    exact = _math_erf(x).astype(np.float64)
    err = _ulps(Tensor(x, dtype=np.float64).erf().data, exact)
    worst = int(np.argmax(err))
    # measured: 2 ulp (near |x| = 0.92; 0.05 ulp on average)
    assert err.max() <= 2, f"max error {err.max()} ulp at x = {x[worst]!r}"
    assert err.mean() < 0.1


def test_erf_correctly_rounded_in_float32() -> None:
    x = _grid()
    x = np.unique(x[np.abs(x) < 1e38].astype(np.float32))
    exact = _math_erf(x.astype(np.float64)).astype(np.float64)
    got = Tensor(x).erf().data
    assert got.dtype == np.float32
    err = _ulps(got, exact)
    # computed in float64 and rounded once: every value is the float32 nearest to erf(x)
    assert err.max() <= 0.5 + 1e-6, f"max error {err.max()} ulp at x = {x[np.argmax(err)]!r}"
    np.testing.assert_array_equal(got, exact.astype(np.float32))


EXTREMES = [0.0, -0.0, 1e-300, -1e-300, 5e-324, 6.0, -6.0, 30.0, -30.0, 1e300, np.inf, -np.inf]


def test_erf_at_its_extremes() -> None:
    x = Tensor(EXTREMES + [np.nan], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in y*y, no 0*inf
        out = x.erf().data
    np.testing.assert_array_equal(out[:-1], [math.erf(v) for v in EXTREMES])
    assert np.isnan(out[-1])
    assert np.signbit(out[1]) and not np.signbit(out[0])  # erf(-0.0) = -0.0
    assert out[2] == 1.1283791670955126e-300  # 2/sqrt(pi) * 1e-300, not flushed to zero


def test_erf_float32_extremes_and_dtypes() -> None:
    values = [0.0, 1e-30, -1e-45, 6.0, -30.0, np.inf, -np.inf, np.nan]
    out = Tensor(values).erf().data
    assert out.dtype == np.float32
    expected = [math.erf(float(np.float32(v))) if not math.isnan(v) else v for v in values]
    np.testing.assert_array_equal(out, np.float32(expected))
    assert Tensor([0.5], dtype=np.float16).erf().dtype == np.float16
    ints = Tensor([0, 1, -2]).erf()  # integers: the default float dtype, not truncated
    assert ints.dtype == np.float32
    np.testing.assert_allclose(ints.data, [0.0, math.erf(1), math.erf(-2)], rtol=1e-7)


def test_erf_shapes_and_blocks() -> None:
    """More elements than one block, a non-contiguous view, 0-d and empty inputs."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (3, 50_000))[:, ::2]  # 75,000 elements, strided
    out = Tensor(x, dtype=np.float64).erf().data
    assert out.shape == x.shape
    np.testing.assert_allclose(out, _math_erf(x).astype(np.float64), rtol=5e-16, atol=0)
    assert Tensor(0.5, dtype=np.float64).erf().item() == math.erf(0.5)
    assert Tensor(np.zeros((0, 3))).erf().shape == (0, 3)


def test_erf_gradients() -> None:
    x = Tensor(np.linspace(-3, 3, 7), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda t: t.erf(), [x])
    assert gradgradcheck(lambda t: t.erf(), [x])


# ----- GELU --------------------------------------------------------------------------------------

GELU_POINTS = [-10.0, -4.0, -3.0, -1.5, -0.7, -0.3, -1e-8, 0.0, 0.2, 0.6, 1.0, 2.5, 4.5, 10.0]


def _cdf(v: float) -> float:
    return 0.5 * (1 + math.erf(v / math.sqrt(2)))


def _pdf(v: float) -> float:
    return math.exp(-v * v / 2) / math.sqrt(2 * math.pi)


def test_gelu_values_and_gradient_by_hand() -> None:
    x = Tensor(GELU_POINTS, requires_grad=True, dtype=np.float64)
    y = x.gelu()
    y.sum().backward()
    np.testing.assert_allclose(y.data, [v * _cdf(v) for v in GELU_POINTS], rtol=1e-14, atol=1e-16)
    expected = [_cdf(v) + v * _pdf(v) for v in GELU_POINTS]
    np.testing.assert_allclose(x.grad, expected, rtol=1e-13, atol=1e-16)


def test_gelu_left_tail_keeps_relative_accuracy() -> None:
    """Phi is computed as erfc(-x/sqrt 2)/2, so x * Phi(x) does not round to 0 (or lose its
    digits) below x = -5, where 1 + erf(x / sqrt 2) cancels."""
    points = [-5.0, -8.0, -15.0, -30.0, -37.0]
    out = Tensor(points, dtype=np.float64).gelu().data
    expected = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in points]
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert Tensor([-40.0], dtype=np.float64).gelu().item() == 0.0  # Phi underflows


def test_gelu_float32_keeps_dtype() -> None:
    x = Tensor(GELU_POINTS, requires_grad=True)
    y = x.gelu()
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    v = x.data.astype(np.float64)
    exact = [a * 0.5 * math.erfc(-a / math.sqrt(2)) for a in v]  # (no cancellation at -10)
    np.testing.assert_allclose(y.data, exact, rtol=2e-7, atol=0)
    np.testing.assert_allclose(x.grad, [_cdf(a) + a * _pdf(a) for a in v], rtol=1e-6, atol=1e-7)


def test_gelu_gradcheck_and_gradgradcheck(rng: np.random.Generator) -> None:
    x = Tensor(rng.uniform(-5, 5, (3, 4)), requires_grad=True, dtype=np.float64)
    assert gradcheck(lambda t: t.gelu(), [x])
    assert gradgradcheck(lambda t: t.gelu(), [x])
    assert gradgradcheck(lambda t: (t.gelu() * t).gelu(), [x])  # g depends on x too


def test_gelu_third_derivative_by_hand() -> None:
    # gelu' = Phi + x phi, gelu'' = (2 - x^2) phi, gelu''' = x (x^2 - 4) phi
    x = Tensor([0.8], requires_grad=True, dtype=np.float64)
    (d1,) = autograd.grad(x.gelu().sum(), x, create_graph=True)
    (d2,) = autograd.grad(d1.sum(), x, create_graph=True)
    (d3,) = autograd.grad(d2.sum(), x)
    v = 0.8
    np.testing.assert_allclose(d1.item(), _cdf(v) + v * _pdf(v), rtol=1e-14)
    np.testing.assert_allclose(d2.item(), (2 - v * v) * _pdf(v), rtol=1e-14)
    np.testing.assert_allclose(d3.item(), v * (v * v - 4) * _pdf(v), rtol=1e-13)


def test_gelu_backward_reuses_the_forward_cdf(monkeypatch: pytest.MonkeyPatch) -> None:
    x = Tensor(np.linspace(-3, 3, 9), requires_grad=True, dtype=np.float64)
    y = x.gelu()
    z = x.gelu()

    def no_erf(*args: object) -> None:
        raise AssertionError("erf evaluated again in gelu's backward")

    for name in ("_erf", "_normal_cdf", "_by_blocks", "erf"):
        monkeypatch.setattr(elementwise, name, no_erf)
    y.sum().backward()  # plain backward
    (g,) = autograd.grad(z.sum(), x, create_graph=True)  # the graph of the backward
    (h,) = autograd.grad(g.sum(), x)
    v = x.data
    pdf = np.exp(-v * v / 2) / math.sqrt(2 * math.pi)
    np.testing.assert_allclose(x.grad, g.data, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(h.data, (2 - v * v) * pdf, rtol=1e-13, atol=1e-16)


# ----- float32 Phi and GELU by the table of local polynomials ----------------------------------


def _float32_grid() -> np.ndarray:
    """2M float32 points on [-14, 14], log-spaced tails down to 1e-38 (both signs), and the
    grid's neighbours: points on and halfway between the table's rows at x = -9.7."""
    tails = np.geomspace(1e-38, 14, 50_000)
    rows = -9.7 + np.arange(-8, 8) * 2.0**-12  # (the table's step is 2^-11)
    points = np.concatenate([np.linspace(-14, 14, 2_000_001), tails, -tails, rows])
    return points.astype(np.float32)


def test_float32_cdf_within_2_ulp_of_the_float64_cdf() -> None:
    x = _float32_grid()
    exact = elementwise._by_blocks(x.astype(np.float64), cdf=True)
    got = elementwise._normal_cdf(x)
    assert got.dtype == np.float32
    err = _ulps(got, exact)
    # measured: 1.47 ulp (at x = -9.74; 0.2 on average), relative in the left tail down to
    # subnormal Phi (x = -13); the spacing of the float32 nearest `exact` everywhere else
    worst = int(np.argmax(err))
    assert err.max() <= 2, f"max error {err.max()} ulp at x = {x[worst]!r}"
    assert err[exact >= 1e-30].mean() < 0.3


def test_float32_gelu_within_3_ulp_of_x_times_the_float64_cdf() -> None:
    x = _float32_grid()
    x64 = x.astype(np.float64)
    exact = x64 * elementwise._by_blocks(x64, cdf=True)
    got = Tensor(x).gelu().data
    assert got.dtype == np.float32
    keep = np.abs(exact) >= 1e-30
    err = _ulps(got[keep], exact[keep])
    # measured: 2.3 ulp (Phi's 1.5 and the product's rounding)
    assert err.max() <= 3, f"max error {err.max()} ulp at x = {x[keep][np.argmax(err)]!r}"


def test_float32_gelu_keeps_relative_accuracy_in_the_left_tail() -> None:
    """0.5 x (1 + erf(x / sqrt 2)) in float32 cancels to 1e-2 relative at x = -4 and to 0
    below x = -5.8; the table holds Phi itself, relative to the last place."""
    points = [-4.0, -5.0, -8.0, -10.0, -11.3]
    got = Tensor(points).gelu().data
    v = np.float32(points).astype(np.float64)  # (Phi(-11.3) moves 2e-6 with x's rounding)
    expected = [a * 0.5 * math.erfc(-a / math.sqrt(2)) for a in v]
    np.testing.assert_allclose(got, expected, rtol=2.5e-7, atol=0)
    assert got[-1] < 0  # gelu(-11.3) = -7.4e-29, not 0


FLOAT32_EXTREMES = [0.0, -0.0, 1e-30, -1e-30, 6.0, -6.0, 30.0, -30.0, np.inf, -np.inf, np.nan]


def test_float32_cdf_and_gelu_at_their_extremes() -> None:
    x = np.float32(FLOAT32_EXTREMES)
    phi_6 = np.float32(0.5 * math.erfc(6 / math.sqrt(2)))  # Phi(-6) = 9.87e-10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no inf - inf, no 0 * inf in Phi
        cdf = elementwise._normal_cdf(x)
        gelu = Tensor(x[:-2]).gelu().data
    expected = [0.5, 0.5, 0.5, 0.5, 1.0, phi_6, 1.0, 0.0, 1.0, 0.0]
    np.testing.assert_array_equal(cdf[:-1], np.float32(expected))
    assert np.isnan(cdf[-1])
    np.testing.assert_array_equal(
        gelu,
        np.float32([0.0, -0.0, 5e-31, -5e-31, 6.0, np.float32(-6.0) * phi_6, 30.0, -0.0, np.inf]),
    )
    assert not np.signbit(gelu[0]) and np.signbit(gelu[1]) and np.signbit(gelu[7])
    # gelu(-inf) = -inf * Phi(-inf) = -inf * 0: NaN with numpy's warning, as x * Phi(x) gives
    # it in numpy (PyTorch returns NaN too); NaN propagates
    with pytest.warns(RuntimeWarning, match="invalid value"):
        out = Tensor(x[-2:]).gelu().data
    assert np.isnan(out).all()


def test_float32_cdf_far_from_the_table() -> None:
    """Beyond the table's [-15, 6], and beyond |x| = 2048 where x + 6144 rounds to a coarser
    grid (or turns negative), Phi is exactly 0 or 1 and gelu is x or -0."""
    x = np.float32([-16.0, -2047.5, -3000.3, -7000.7, -1e10, -3e38, 6.5, 2047.9, 3000.3, 1e10])
    cdf = elementwise._normal_cdf(x)
    np.testing.assert_array_equal(cdf, np.float32([0] * 6 + [1] * 4))
    gelu = Tensor(x).gelu().data
    np.testing.assert_array_equal(gelu, np.where(x > 0, x, np.float32(-0.0)))


def test_float32_gelu_blocks_shapes_and_views() -> None:
    """More elements than a block (65,536), a strided view, 0-d and empty inputs."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (3, 100_000)).astype(np.float32)[:, ::2]  # 150,000 elements, strided
    x[1, 7] = np.inf  # a fixed infinity in the second block, the others untouched
    got = Tensor(x).gelu().data
    assert got.shape == x.shape and got.dtype == np.float32
    x64 = x.astype(np.float64)
    exact = x64 * elementwise._by_blocks(x64, cdf=True)
    keep = np.isfinite(x) & (np.abs(exact) >= 1e-30)
    assert _ulps(got[keep], exact[keep]).max() <= 3
    assert got[1, 7] == np.inf
    y = Tensor(np.float32(-1.5)).gelu()
    assert y.shape == () and y.dtype == np.float32
    np.testing.assert_allclose(y.item(), -1.5 * _cdf(-1.5), rtol=3e-7)
    assert Tensor(np.zeros((0, 3), np.float32)).gelu().shape == (0, 3)


def test_float32_gelu_evaluates_no_float64_erf(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the table: float32 never converts to float64 for Cody's erfc."""

    def no_cody(*args: object, **kwargs: object) -> None:
        raise AssertionError("float32 gelu went through the float64 erf")

    monkeypatch.setattr(elementwise, "_by_blocks", no_cody)
    x = Tensor(np.linspace(-5, 5, 11), requires_grad=True)
    y = x.gelu()
    y.sum().backward()
    v = x.data.astype(np.float64)
    np.testing.assert_allclose(y.data, [a * _cdf(a) for a in v], rtol=3e-7, atol=1e-30)
    np.testing.assert_allclose(x.grad, [_cdf(a) + a * _pdf(a) for a in v], rtol=1e-6, atol=1e-7)
    with pytest.raises(AssertionError, match="float64 erf"):
        Tensor(np.linspace(-1, 1, 3), dtype=np.float64).gelu()  # float64: Cody's path


def test_float32_gelu_is_the_same_on_one_thread_and_two() -> None:
    """The blocks of Phi and the pieces of the backward are shared out over threads: the
    values must not depend on how (each element is computed the same way either way)."""
    rng = np.random.default_rng(5)
    values = rng.standard_normal(300_000).astype(np.float32) * 4  # several blocks
    values[[7, 100_000, 250_001]] = [np.inf, np.nan, -30.0]
    g = rng.standard_normal(values.shape).astype(np.float32)
    results = []
    before = autograd.get_num_threads()
    try:
        for threads in (1, 2):
            autograd.set_num_threads(threads)
            x = Tensor(values, requires_grad=True)
            with np.errstate(invalid="ignore"):
                y = elementwise.gelu(x)
                y.backward(g)
            results.append((y.data.copy(), x.grad.copy()))
    finally:
        autograd.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert np.isnan(results[0][1][100_000]) and results[0][0][7] == np.inf


def test_float32_gelu_gradient_from_the_forward_table() -> None:
    """float32 gelu that needs a gradient computes its slope Phi + x phi in the forward pass
    (first-order density from the table row); against the float64 slope on the grid."""
    x = _float32_grid()
    x = x[np.abs(x) <= 14]
    x64 = x.astype(np.float64)
    exact = elementwise._by_blocks(x64, cdf=True) + x64 * np.exp(-x64 * x64 / 2) / math.sqrt(
        2 * math.pi
    )
    t = Tensor(x, requires_grad=True)
    t.gelu().backward(np.ones_like(x))
    assert t.grad.dtype == np.float32
    err = np.abs(t.grad.astype(np.float64) - exact)
    # measured (the backward's exp formula before it in brackets): 1.9e-7 (1.5e-7) absolute,
    # 1.6 ulp of the slope's largest value, 1.08; relative 5.5e-7 (5.5e-7) where
    # |slope| >= 0.1, away from its zero at x = -0.75; 3.7e-6 (2.1e-6) in the left tail,
    # phi to first order there: (x d)^2 / 2 <= 4e-6
    assert err.max() <= 2.5e-7, f"max error {err.max()} at x = {x[np.argmax(err)]!r}"
    away = np.abs(exact) >= 0.1
    assert (err[away] / np.abs(exact[away])).max() <= 7e-7
    tail = (x64 < -4) & (x64 > -11)
    assert (err[tail] / np.abs(exact[tail])).max() <= 5e-6


def test_float32_gelu_gradient_at_the_extremes_and_twice() -> None:
    x = np.float32([0.0, 30.0, -30.0, 6.0, -6.0, np.inf, -np.inf, np.nan])
    t = Tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # -inf * 0 in the forward's value
        t.gelu().backward(np.ones_like(x))
    v = x[:5].astype(np.float64)
    slope = [
        0.5 * math.erfc(-a / math.sqrt(2)) + a * math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        for a in v
    ]
    np.testing.assert_allclose(t.grad[:5], slope, rtol=1e-6, atol=1e-30)
    assert np.isnan(t.grad[5:]).all()  # x phi(x) = inf * 0 at +-inf, as PyTorch's formula
    # create_graph: the slope's Phi is not kept, the recorded backward recomputes it
    y = Tensor(np.float32([-1.5, 0.3, 2.0]), requires_grad=True)
    (d1,) = autograd.grad(y.gelu().sum(), y, create_graph=True)
    (d2,) = autograd.grad(d1.sum(), y)
    w = y.data.astype(np.float64)
    pdf = np.exp(-w * w / 2) / math.sqrt(2 * math.pi)
    cdf = np.array([0.5 * math.erfc(-a / math.sqrt(2)) for a in w])
    np.testing.assert_allclose(d1.data, cdf + w * pdf, rtol=1e-6)
    np.testing.assert_allclose(d2.data, (2 - w * w) * pdf, rtol=1e-5)
