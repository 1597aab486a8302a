"""Elementwise ops: gradcheck on every op (broadcasting, 0-d, empty), second derivatives,
hand-derived values at the interesting points (kinks, ties), stability and erf's accuracy."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, gradcheck, gradgradcheck

# name -> (op, domain of the input: None for any real, else (low, high))
UNARY: dict[str, tuple[Callable[[Tensor], Tensor], tuple[float, float] | None]] = {
    "neg": (lambda x: -x, None),
    "exp": (lambda x: x.exp(), None),
    "log": (lambda x: x.log(), (0.5, 2.0)),
    "sqrt": (lambda x: x.sqrt(), (0.5, 2.0)),
    "abs": (lambda x: x.abs(), None),
    "abs_dunder": (lambda x: abs(x), None),
    "tanh": (lambda x: x.tanh(), None),
    "sigmoid": (lambda x: x.sigmoid(), None),
    "relu": (lambda x: x.relu(), None),
    "leaky_relu": (lambda x: x.leaky_relu(0.1), None),
    "gelu": (lambda x: x.gelu(), None),
    "erf": (lambda x: x.erf(), None),
    "sin": (lambda x: x.sin(), None),
    "cos": (lambda x: x.cos(), None),
    "clip": (lambda x: x.clip(-0.5, 0.5), None),
    "clip_lo": (lambda x: x.clip(lo=0.0), None),
    "pow_3": (lambda x: x**3, None),
    "pow_2": (lambda x: x**2, None),
    "pow_1": (lambda x: x**1, None),
    "pow_0": (lambda x: x**0, None),
    "pow_frac": (lambda x: x**1.5, (0.5, 2.0)),
    "pow_neg": (lambda x: x**-2, (0.5, 2.0)),
    "pow_method": (lambda x: x.pow(3), None),
    "rpow": (lambda x: 2.0**x, None),
    "rsub": (lambda x: 1.0 - x, None),
    "rdiv": (lambda x: 2.0 / x, (0.5, 2.0)),
}

# the same ops, differentiated twice; relu/abs/clip/leaky_relu have piecewise-constant
# derivatives (second derivative 0), which is checked too
SECOND_ORDER = [n for n in UNARY if n not in ("abs_dunder", "pow_method")]


def _input(shape: tuple[int, ...], domain: tuple[float, float] | None, rng) -> Tensor:  # noqa: ANN001
    data = rng.standard_normal(shape) if domain is None else rng.uniform(*domain, shape)
    return Tensor(data, requires_grad=True, dtype=np.float64)


@pytest.mark.parametrize("shape", [(2, 3), (), (0,), (2, 0)], ids=str)
@pytest.mark.parametrize("name", UNARY)
def test_unary_gradcheck(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    op, domain = UNARY[name]
    x = _input(shape, domain, rng)
    assert op(x).shape == shape
    assert gradcheck(op, [x])


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_unary_gradgradcheck(name: str, rng: np.random.Generator) -> None:
    op, domain = UNARY[name]
    assert gradgradcheck(op, [_input((2, 3), domain, rng)])


BINARY: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], bool]] = {
    # name -> (op, True when the operands must be positive)
    "add": (lambda a, b: a + b, False),
    "sub": (lambda a, b: a - b, False),
    "mul": (lambda a, b: a * b, False),
    "div": (lambda a, b: a / b, True),
    "pow": (lambda a, b: a**b, True),
    "maximum": (autograd.maximum, False),
    "minimum": (autograd.minimum, False),
    "where": (lambda a, b: autograd.where(a.data > 0, a, b), False),
}

BROADCAST_PAIRS = [
    ((2, 3), (2, 3)),
    ((2, 3), (3,)),
    ((2, 1), (1, 3)),
    ((), (2, 2)),
    ((3, 1, 2), (4, 1)),
    ((0, 3), (3,)),
]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_gradcheck_with_broadcasting(
    name: str, shapes: tuple[tuple[int, ...], tuple[int, ...]], rng: np.random.Generator
) -> None:
    op, positive = BINARY[name]
    domain = (0.5, 2.0) if positive else None
    a, b = _input(shapes[0], domain, rng), _input(shapes[1], domain, rng)
    assert op(a, b).shape == np.broadcast_shapes(*shapes)
    assert gradcheck(op, [a, b])
    assert gradcheck(lambda x, y: op(y, x), [b, a])  # and the other way round


@pytest.mark.parametrize("name", BINARY)
def test_binary_gradgradcheck(name: str, rng: np.random.Generator) -> None:
    op, positive = BINARY[name]
    domain = (0.5, 2.0) if positive else None
    a, b = _input((2, 3), domain, rng), _input((3,), domain, rng)
    assert gradgradcheck(op, [a, b])


def test_one_operand_without_grad(rng: np.random.Generator) -> None:
    a = _input((2, 3), (0.5, 2.0), rng)
    const = Tensor(rng.uniform(0.5, 2.0, 3), dtype=np.float64)
    for op, _ in BINARY.values():
        assert gradcheck(lambda x, op=op: op(x, const), [a])
        assert gradcheck(lambda x, op=op: op(const, x), [a])


def test_python_and_numpy_operands_on_either_side() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    out = (3 - x) + (x * 2) + (6 / x) + (x / 2) + (2**x) + np.array([1.0, 1.0]) * x
    # d/dx: -1 + 2 - 6/x^2 + 1/2 + 2^x ln 2 + 1
    out.sum().backward()
    expected = [-1 + 2 - 6 + 0.5 + 2 * math.log(2) + 1, -1 + 2 - 1.5 + 0.5 + 4 * math.log(2) + 1]
    np.testing.assert_allclose(x.grad, expected, rtol=1e-6)
    assert isinstance(np.ones(2) + x, Tensor)  # numpy defers to the Tensor


# ----- hand-derived values at kinks, ties and boundaries ---------------------------------------


def _grad_of(op: Callable[[Tensor], Tensor], values: list[float]) -> np.ndarray:
    x = Tensor(values, requires_grad=True)
    op(x).sum().backward()
    return x.grad


def test_relu_leaky_relu_abs_hand_values() -> None:
    values = [-2.0, 0.0, 3.0]
    np.testing.assert_array_equal(Tensor(values).relu().data, [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(_grad_of(lambda x: x.relu(), values), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(Tensor(values).leaky_relu(0.2).data, [-0.4, 0.0, 3.0])
    np.testing.assert_allclose(_grad_of(lambda x: x.leaky_relu(0.2), values), [0.2, 0.2, 1.0])
    np.testing.assert_allclose(_grad_of(lambda x: x.leaky_relu(), values), [0.01, 0.01, 1.0])
    np.testing.assert_array_equal(_grad_of(lambda x: x.abs(), values), [-1.0, 0.0, 1.0])


def test_clip_passes_gradient_inside_and_on_the_bounds() -> None:
    values = [-2.0, -1.0, 0.0, 1.0, 2.0]
    np.testing.assert_array_equal(Tensor(values).clip(-1, 1).data, [-1, -1, 0, 1, 1])
    np.testing.assert_array_equal(_grad_of(lambda x: x.clip(-1, 1), values), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(_grad_of(lambda x: x.clip(hi=0.0), values), [1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="clip"):
        Tensor(values).clip()


def test_maximum_minimum_split_ties_evenly() -> None:
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = Tensor([2.0, 2.0, 2.0], requires_grad=True)
    out = autograd.maximum(a, b)
    np.testing.assert_array_equal(out.data, [2.0, 2.0, 3.0])
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(b.grad, [1.0, 0.5, 0.0])
    a.zero_grad(), b.zero_grad()
    autograd.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(b.grad, [0.0, 0.5, 1.0])


def test_maximum_with_a_broadcast_scalar_tie() -> None:
    x = Tensor([[-1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    floor = Tensor(0.0, requires_grad=True)
    autograd.maximum(x, floor).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5], [0.5, 1.0]])
    assert floor.grad == 1.0 + 0.5 + 0.5  # summed back over the broadcast


def test_where_hand_values() -> None:
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = Tensor([10.0], requires_grad=True)
    cond = Tensor([True, False, True])
    out = autograd.where(cond, a, b)
    np.testing.assert_array_equal(out.data, [1.0, 10.0, 3.0])
    (out * Tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(b.grad, [2.0])
    assert autograd.where([True, False], 1.0, 0.0).tolist() == [1.0, 0.0]
    assert autograd.where(np.array([False, True]), a[:2], 0.0).tolist() == [0.0, 2.0]


def test_pow_tensor_exponent_hand_values() -> None:
    x = Tensor([2.0, -2.0], requires_grad=True)
    e = Tensor([3.0, 2.0], requires_grad=True)
    out = x**e
    np.testing.assert_array_equal(out.data, [8.0, 4.0])
    out.sum().backward()
    np.testing.assert_allclose(x.grad, [12.0, -4.0])  # e x^(e-1)
    # d/de = x^e ln x; no real derivative for x <= 0: 0 there, never nan
    np.testing.assert_allclose(e.grad, [8.0 * math.log(2.0), 0.0], rtol=1e-6)


def test_pow_zero_exponent_has_zero_gradient_even_at_zero() -> None:
    np.testing.assert_array_equal(_grad_of(lambda x: x**0, [0.0, 2.0]), [0.0, 0.0])


def test_astype_casts_the_gradient_back() -> None:
    x = Tensor([1.5, 2.5], requires_grad=True)
    y = x.astype(np.float64)
    assert y.dtype == np.float64 and x.astype(np.float32) is x
    (y * Tensor([2.0, 3.0], dtype=np.float64)).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 3.0])


def test_float64_tensors_meet_constants_at_full_precision() -> None:
    x = Tensor([1.0, 3.0], dtype=np.float64)
    assert (x * 0.1).data[1] == 3.0 * 0.1  # 0.1 not rounded to float32 on the way in
    assert (x + np.float64(0.1)).data[0] == 1.1
    assert (x - np.full(2, 0.1)).data[0] == 0.9
    assert (x * np.float32(0.5)).dtype == np.float64


def test_div_hand_values() -> None:
    a = Tensor([6.0], requires_grad=True)
    b = Tensor([3.0], requires_grad=True)
    (a / b).backward()
    np.testing.assert_allclose(a.grad, [1 / 3])
    np.testing.assert_allclose(b.grad, [-6 / 9])


# ----- numerical behaviour ---------------------------------------------------------------------


def test_sigmoid_is_stable_for_large_inputs() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        x = Tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0], requires_grad=True)
        y = x.sigmoid()
        y.sum().backward()
    np.testing.assert_allclose(y.data, [0.0, 1 / (1 + math.exp(30)), 0.5, 1.0, 1.0], rtol=1e-6)
    assert np.isfinite(x.grad).all() and x.grad[2] == 0.25


def test_tanh_and_exp_values() -> None:
    np.testing.assert_allclose(Tensor([0.0, 1.0]).tanh().data, [0.0, math.tanh(1.0)], rtol=1e-6)
    np.testing.assert_allclose(Tensor([0.0, 1.0]).exp().data, [1.0, math.e], rtol=1e-6)
    np.testing.assert_allclose(_grad_of(lambda x: x.sqrt(), [4.0]), [0.25])
    np.testing.assert_allclose(_grad_of(lambda x: x.log(), [4.0]), [0.25])


ERF_POINTS = [0.0, 1e-8, 0.1, -0.5, 1.0, -1.7, 2.5, 2.999, 3.0, -3.5, 4.0, 5.5, 6.0, -10.0, 30.0]


def test_erf_matches_math_erf_in_float64() -> None:
    x = Tensor(ERF_POINTS, dtype=np.float64)
    expected = [math.erf(v) for v in ERF_POINTS]
    np.testing.assert_allclose(x.erf().data, expected, rtol=1e-14, atol=1e-16)


def test_erf_matches_math_erf_in_float32() -> None:
    x = Tensor(ERF_POINTS)
    out = x.erf()
    assert out.dtype == np.float32
    expected = [math.erf(float(v)) for v in x.data]
    np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=1e-7)


def test_erf_and_gelu_derivatives_by_hand() -> None:
    points = [-2.0, -0.3, 0.0, 0.7, 3.5]
    x = Tensor(points, requires_grad=True, dtype=np.float64)
    x.erf().sum().backward()
    np.testing.assert_allclose(x.grad, [2 / math.sqrt(math.pi) * math.exp(-v * v) for v in points])
    x = Tensor(points, requires_grad=True, dtype=np.float64)
    y = x.gelu()
    y.sum().backward()

    def cdf(v: float) -> float:
        return 0.5 * (1 + math.erf(v / math.sqrt(2)))

    def pdf(v: float) -> float:
        return math.exp(-v * v / 2) / math.sqrt(2 * math.pi)

    np.testing.assert_allclose(y.data, [v * cdf(v) for v in points], rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(x.grad, [cdf(v) + v * pdf(v) for v in points], rtol=1e-12)


def test_sin_cos_second_derivatives_by_hand() -> None:
    x = Tensor([0.3], requires_grad=True, dtype=np.float64)
    (g,) = autograd.grad(x.sin().sum(), x, create_graph=True)
    (h,) = autograd.grad(g.sum(), x)
    np.testing.assert_allclose([g.item(), h.item()], [math.cos(0.3), -math.sin(0.3)])


# ----- masked_fill -------------------------------------------------------------------------------

MASKS = {
    "full": np.array([[True, False, False], [False, True, True]]),
    "row": np.array([False, True, True]),  # broadcast over the first axis
    "column": np.array([[True], [False]]),  # broadcast over the second
    "scalar": np.array(True),
}


@pytest.mark.parametrize("name", MASKS)
def test_masked_fill_values_and_gradients(name: str, rng: np.random.Generator) -> None:
    mask = MASKS[name]
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True, dtype=np.float64)
    out = x.masked_fill(mask, -7.5)
    np.testing.assert_array_equal(out.data, np.where(np.broadcast_to(mask, (2, 3)), -7.5, x.data))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, np.broadcast_to(~mask, (2, 3)).astype(np.float64))
    assert gradcheck(lambda t: t.masked_fill(mask, 2.0) * t, [x])
    assert gradgradcheck(lambda t: t.masked_fill(mask, 2.0).tanh() * t, [x])


def test_masked_fill_takes_bool_tensors_and_lists_and_keeps_dtype() -> None:
    x = Tensor([[1.0, 2.0], [3.0, 4.0]])
    out = x.masked_fill(Tensor([True, False]), float("-inf"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.data, [[-np.inf, 2.0], [-np.inf, 4.0]])
    np.testing.assert_array_equal(
        x.masked_fill([[False, True], [True, False]], 0).data, [[1, 0], [0, 4]]
    )
    ints = Tensor([1, 2, 3]).masked_fill(np.array([True, False, True]), 0.7)  # cast, as PyTorch
    assert ints.dtype == np.int64
    np.testing.assert_array_equal(ints.data, [0, 2, 0])
    np.testing.assert_array_equal(x.data, [[1, 2], [3, 4]])  # the input is untouched


def test_masked_fill_with_a_0d_tensor_value_differentiates_it(rng: np.random.Generator) -> None:
    mask = np.array([[True, False, True], [False, False, True]])
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True, dtype=np.float64)
    v = Tensor(0.3, requires_grad=True, dtype=np.float64)
    (x.masked_fill(mask, v) * 2.0).sum().backward()
    assert v.grad == 2.0 * mask.sum()  # the filled positions' gradient, summed
    assert gradcheck(lambda t, s: t.masked_fill(mask, s) ** 2, [x, v])
    assert gradgradcheck(lambda t, s: t.masked_fill(mask, s) ** 2, [x, v])


@pytest.mark.parametrize(
    ("mask", "error", "pattern"),
    [
        (np.array([1, 0, 1]), TypeError, r"masked_fill: mask must be bool, got dtype int64"),
        (np.ones(2, bool), ValueError, r"masked_fill: mask of shape \(2,\).*shape \(2, 3\)"),
        (np.ones((2, 2, 3), bool), ValueError, r"masked_fill: mask of shape \(2, 2, 3\)"),
    ],
)
def test_masked_fill_errors(mask: np.ndarray, error: type, pattern: str) -> None:
    x = autograd.ones(2, 3)
    with pytest.raises(error, match=pattern):
        x.masked_fill(mask, 0.0)
    with pytest.raises(error, match=pattern.replace("masked_fill", "masked_fill_")):
        x.masked_fill_(mask, 0.0)


def test_masked_fill_inplace() -> None:
    t = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    data = t.data
    assert t.masked_fill_(np.array([True, False, True]), -1.0) is t
    assert t.data is data  # in place
    np.testing.assert_array_equal(t.data, [[-1, 2, -1], [-1, 5, -1]])
    assert t._version == 1
    t.masked_fill_(Tensor([[False], [True]]), Tensor(9.0))
    np.testing.assert_array_equal(t.data, [[-1, 2, -1], [9, 9, 9]])
    assert t._version == 2


def test_masked_fill_inplace_refused_while_grad_is_recorded() -> None:
    w = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(
        RuntimeError, match="masked_fill_: in-place update of a tensor that requires grad"
    ):
        w.masked_fill_(np.array([True, False]), 0.0)
    with autograd.no_grad():
        w.masked_fill_(np.array([True, False]), 0.0)
    np.testing.assert_array_equal(w.data, [0.0, 2.0])
    assert w._version == 1


def test_masked_fill_inplace_of_a_saved_tensor_fails_its_backward() -> None:
    w = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    t = Tensor([4.0, 5.0, 6.0])
    loss = (w * t).sum()  # mul saves t for w's gradient
    t.masked_fill_(np.array([False, True, False]), 0.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # a piece of `split` is a view: filling it changes (the version of) the whole buffer
    s = Tensor([4.0, 5.0, 6.0, 7.0])
    loss = (w.sum() * s).sum()
    s.split(2)[1].masked_fill_(np.array([True, False]), 0.0)
    np.testing.assert_array_equal(s.data, [4.0, 5.0, 0.0, 7.0])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_masks_combine_with_and_or_xor_not() -> None:
    m = Tensor(np.array([True, True, False, False]))
    n = Tensor(np.array([True, False, True, False]))
    np.testing.assert_array_equal((m & n).data, [True, False, False, False])
    np.testing.assert_array_equal((m | n).data, [True, True, True, False])
    np.testing.assert_array_equal((m ^ n).data, [False, True, True, False])
    np.testing.assert_array_equal((~m).data, [False, False, True, True])
    np.testing.assert_array_equal((m & True).data, m.data)  # a Python bool lifts
    np.testing.assert_array_equal((np.array([False, True, True, True]) & m).data,
                                  [False, True, False, False])  # fmt: skip
    assert (m & n).dtype == np.bool_ and not (m & n).requires_grad
    ints = Tensor(np.array([6, 3]))
    np.testing.assert_array_equal((ints & 5).data, [4, 1])
    np.testing.assert_array_equal((~ints).data, [-7, -4])
    with pytest.raises(TypeError, match="bitwise_and: needs bool or integer tensors"):
        Tensor(np.ones(2), requires_grad=True) & m
    with pytest.raises(TypeError, match="bitwise_not: needs a bool or integer tensor"):
        ~Tensor(np.ones(2))
    with pytest.raises(ValueError, match="bitwise_or: shapes \\(4,\\) and \\(3,\\)"):
        m | Tensor(np.array([True, False, True]))
