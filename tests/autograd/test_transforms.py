"""`autograd.functional`: vjp, jvp, jacobian, hessian, hvp, vhp against closed forms and
finite differences, the nesting of their results, `create_graph`, the user's tensors left
alone, and the errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import autograd
from autograd import Tensor, functional
from nn import functional as F


def t64(data: np.ndarray, requires_grad: bool = False) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, dtype=np.float64)


def numeric_jacobian(fn: Callable[..., Tensor], xs: list[np.ndarray], j: int, eps=1e-6):
    """d fn / d xs[j] by central differences of the forward pass alone (no backward),
    shaped output.shape + xs[j].shape."""
    with autograd.no_grad():
        out_shape = fn(*[t64(x) for x in xs]).shape
        x = xs[j]
        jac = np.zeros(out_shape + x.shape)
        for k in range(x.size):
            idx = np.unravel_index(k, x.shape)
            plus, minus = [a.copy() for a in xs], [a.copy() for a in xs]
            plus[j][idx] += eps
            minus[j][idx] -= eps
            diff = fn(*[t64(a) for a in plus]).data - fn(*[t64(a) for a in minus]).data
            jac[(...,) + idx] = diff / (2 * eps)
    return jac


def numeric_hessian(fn: Callable[[Tensor], Tensor], x: np.ndarray, h=1e-4) -> np.ndarray:
    """Second central differences of the scalar fn (forward passes only)."""
    n = x.size
    hess = np.zeros((n, n))

    def f(a: np.ndarray) -> float:
        with autograd.no_grad():
            return float(fn(t64(a.reshape(x.shape))).data)

    flat = x.reshape(-1)
    for i in range(n):
        for j in range(n):
            ei, ej = np.eye(n)[i] * h, np.eye(n)[j] * h
            hess[i, j] = (
                f(flat + ei + ej) - f(flat + ei - ej) - f(flat - ei + ej) + f(flat - ei - ej)
            ) / (4 * h * h)
    return hess.reshape(x.shape + x.shape)


# a smooth function of two inputs with two outputs, used for the finite-difference checks
def two_by_two(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    return (x.sin() * y[:3]).tanh(), (x * x).sum() * y.exp()


def first(x: Tensor, y: Tensor) -> Tensor:
    return two_by_two(x, y)[0]


def second(x: Tensor, y: Tensor) -> Tensor:
    return two_by_two(x, y)[1]


def scalar(x: Tensor) -> Tensor:
    return (x.sin() * x.sum()).sum() + (x**3).sum() * 0.1


@pytest.fixture
def xy(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal(3), rng.standard_normal(4)


# ----- closed forms ---------------------------------------------------------------------------
def test_jacobian_of_a_matrix_product_is_the_matrix(rng: np.random.Generator) -> None:
    a = rng.standard_normal((3, 4))
    x = t64(rng.standard_normal(4))
    for strategy in ("reverse-mode", "forward-mode"):
        jac = functional.jacobian(lambda x: t64(a) @ x, x, strategy=strategy)
        assert isinstance(jac, Tensor) and jac.shape == (3, 4)
        np.testing.assert_allclose(jac.numpy(), a, rtol=1e-12)
    # a matrix input: d (A @ X)[i, k] / d X[j, l] = A[i, j] delta_kl
    xm = t64(rng.standard_normal((4, 2)))
    jac = functional.jacobian(lambda x: t64(a) @ x, xm)
    np.testing.assert_allclose(jac.numpy(), np.einsum("ij,kl->ikjl", a, np.eye(2)), rtol=1e-12)


def test_hessian_of_a_quadratic_form_is_a_plus_a_transpose(rng: np.random.Generator) -> None:
    a = rng.standard_normal((4, 4))
    x = t64(rng.standard_normal(4))
    for strategy in ("reverse-mode", "forward-mode"):
        h = functional.hessian(lambda x: x @ (t64(a) @ x), x, outer_jacobian_strategy=strategy)
        np.testing.assert_allclose(h.numpy(), a + a.T, rtol=1e-12)


def test_hessian_of_the_mean_logistic_loss(rng: np.random.Generator) -> None:
    x_data = rng.standard_normal((20, 3))
    t = rng.choice([-1.0, 1.0], size=20)
    w = rng.standard_normal(3)

    def loss(w: Tensor) -> Tensor:
        return (1 + (-t64(t) * (t64(x_data) @ w)).exp()).log().mean()

    p = 1 / (1 + np.exp(-x_data @ w))
    by_hand = x_data.T @ np.diag(p * (1 - p)) @ x_data / len(p)
    np.testing.assert_allclose(functional.hessian(loss, t64(w)).numpy(), by_hand, rtol=1e-10)
    v = rng.standard_normal(3)
    for transform in (functional.hvp, functional.vhp):
        value, product = transform(loss, t64(w), t64(v))
        np.testing.assert_allclose(product.numpy(), by_hand @ v, rtol=1e-10)
        np.testing.assert_allclose(value.item(), np.log1p(np.exp(-t * (x_data @ w))).mean())


def test_vjp_and_jvp_of_a_matrix_product(rng: np.random.Generator) -> None:
    a = rng.standard_normal((3, 4))
    x, u, v = t64(rng.standard_normal(4)), rng.standard_normal(3), rng.standard_normal(4)
    out, uj = functional.vjp(lambda x: t64(a) @ x, x, t64(u))
    np.testing.assert_allclose(out.numpy(), a @ x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(uj.numpy(), u @ a, rtol=1e-12)
    out, jv = functional.jvp(lambda x: t64(a) @ x, x, v)  # v may be an array
    np.testing.assert_allclose(jv.numpy(), a @ v, rtol=1e-12)


def test_scalar_input_and_output_need_no_v() -> None:
    x = t64(np.array(0.5))
    for transform, expected in [
        (functional.vjp, np.cos(0.5)),
        (functional.jvp, np.cos(0.5)),
        (functional.hvp, -np.sin(0.5)),
        (functional.vhp, -np.sin(0.5)),
    ]:
        value, product = transform(lambda x: x.sin(), x)
        np.testing.assert_allclose(value.item(), np.sin(0.5))
        np.testing.assert_allclose(product.item(), expected, rtol=1e-12)


# ----- finite differences ---------------------------------------------------------------------
def test_jacobian_matches_finite_differences(xy) -> None:
    xs = list(xy)
    jac = functional.jacobian(two_by_two, (t64(xs[0]), t64(xs[1])))
    forward = functional.jacobian(two_by_two, (t64(xs[0]), t64(xs[1])), strategy="forward-mode")
    for i, fn in enumerate((first, second)):
        for j in range(2):
            numeric = numeric_jacobian(fn, xs, j)
            assert jac[i][j].shape == numeric.shape
            np.testing.assert_allclose(jac[i][j].numpy(), numeric, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(forward[i][j].numpy(), jac[i][j].numpy(), rtol=1e-12)


def test_vjp_and_jvp_match_finite_differences(xy, rng: np.random.Generator) -> None:
    xs = list(xy)
    j = [[numeric_jacobian(fn, xs, k) for k in range(2)] for fn in (first, second)]
    u = (rng.standard_normal(3), rng.standard_normal(4))
    v = (rng.standard_normal(3), rng.standard_normal(4))
    outs, uj = functional.vjp(two_by_two, (t64(xs[0]), t64(xs[1])), tuple(map(t64, u)))
    for k in range(2):  # u^T J summed over the outputs
        by_fd = sum(np.tensordot(u[i], j[i][k], axes=u[i].ndim) for i in range(2))
        np.testing.assert_allclose(uj[k].numpy(), by_fd, rtol=1e-6, atol=1e-8)
    outs, jv = functional.jvp(two_by_two, (t64(xs[0]), t64(xs[1])), tuple(map(t64, v)))
    for i in range(2):  # J v summed over the inputs
        by_fd = sum(np.tensordot(j[i][k], v[k], axes=v[k].ndim) for k in range(2))
        np.testing.assert_allclose(jv[i].numpy(), by_fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(outs[1].numpy(), second(t64(xs[0]), t64(xs[1])).numpy())


def test_hessian_hvp_vhp_match_finite_differences(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 2))
    numeric = numeric_hessian(scalar, x)
    h = functional.hessian(scalar, t64(x))
    assert h.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(h.numpy(), numeric, rtol=1e-5, atol=1e-6)
    v = rng.standard_normal((2, 2))
    by_fd = np.tensordot(numeric, v, axes=2)
    for transform in (functional.hvp, functional.vhp):
        _, product = transform(scalar, t64(x), t64(v))
        np.testing.assert_allclose(product.numpy(), by_fd, rtol=1e-5, atol=1e-6)


# ----- nesting --------------------------------------------------------------------------------
def test_nesting_follows_the_arguments(rng: np.random.Generator) -> None:
    x, y = t64(rng.standard_normal((2, 3))), t64(rng.standard_normal(4))
    # Tensor in, Tensor out: a Tensor
    assert functional.jacobian(lambda x: x * 2, x).shape == (2, 3, 2, 3)
    # tuple in, Tensor out: per input
    jac = functional.jacobian(lambda x, y: x.sum() * y, (x, y))
    assert isinstance(jac, tuple) and [j.shape for j in jac] == [(4, 2, 3), (4, 4)]
    # Tensor in, tuple out: per output
    jac = functional.jacobian(lambda x: (x.sum(), x.T), x)
    assert isinstance(jac, tuple) and [j.shape for j in jac] == [(2, 3), (3, 2, 2, 3)]
    # tuple in, tuple out: per output, then per input
    jac = functional.jacobian(lambda x, y: (x.sum() * y, x * y.sum()), (x, y))
    shapes = [[j.shape for j in row] for row in jac]
    assert shapes == [[(4, 2, 3), (4, 4)], [(2, 3, 2, 3), (2, 3, 4)]]
    # a one-element tuple or a list of inputs still nests
    assert [j.shape for j in functional.jacobian(lambda x: x * 2, [y])] == [(4, 4)]
    # hessian: per input, per input
    h = functional.hessian(lambda x, y: (x * x).sum() * (y * y).sum(), (x, y))
    assert [[b.shape for b in row] for row in h] == [
        [(2, 3, 2, 3), (2, 3, 4)],
        [(4, 2, 3), (4, 4)],
    ]
    # the mixed block by hand: d^2 / dx dy of |x|^2 |y|^2 = 4 x y
    np.testing.assert_allclose(h[0][1].numpy(), 4 * np.multiply.outer(x.numpy(), y.numpy()))
    # vjp: outputs as func returns them, products per input
    outs, prods = functional.vjp(lambda x, y: (x.sum(), y * 3), (x, y), (t64(1.0), t64(np.ones(4))))
    assert isinstance(outs, tuple) and isinstance(prods, tuple) and len(prods) == 2
    np.testing.assert_array_equal(prods[0].numpy(), np.ones((2, 3)))
    np.testing.assert_array_equal(prods[1].numpy(), np.full(4, 3.0))
    # jvp: products per output
    outs, prods = functional.jvp(lambda x, y: (x.sum(), y * 3), (x, y), (t64(np.ones((2, 3))), y))
    assert [p.shape for p in prods] == [(), (4,)]
    np.testing.assert_allclose(prods[0].item(), 6.0)
    np.testing.assert_allclose(prods[1].numpy(), 3 * y.numpy())
    # hvp / vhp: per input
    _, prods = functional.vhp(lambda x, y: (x * y[:3]).sum(), (x[0], y), (t64(np.ones(3)), y))
    np.testing.assert_allclose(prods[0].numpy(), y.numpy()[:3])  # H_xy v_y
    np.testing.assert_allclose(prods[1].numpy(), np.r_[np.ones(3), 0.0])  # H_yx v_x


def test_an_unused_input_gets_zeros_or_an_error_with_strict(rng: np.random.Generator) -> None:
    x, y = t64(rng.standard_normal(2)), t64(rng.standard_normal(3))
    jac = functional.jacobian(lambda x, y: x * 2, (x, y))
    np.testing.assert_array_equal(jac[1].numpy(), np.zeros((2, 3)))
    _, (gx, gy) = functional.vjp(lambda x, y: x.sum(), (x, y))
    np.testing.assert_array_equal(gy.numpy(), np.zeros(3))
    # an output that depends on no input at all
    np.testing.assert_array_equal(functional.jacobian(lambda x: t64(np.ones(2)), x).numpy(), 0)
    with pytest.raises(RuntimeError, match=r"jacobian: .*input 1 \(shape \(3,\)\).*strict"):
        functional.jacobian(lambda x, y: x * 2, (x, y), strict=True)
    # a linear function: its Hessian is zero
    np.testing.assert_array_equal(functional.hessian(lambda x: x.sum() * 2, x).numpy(), 0)


def test_float32_stays_float32(rng: np.random.Generator) -> None:
    x = Tensor(rng.standard_normal(3).astype(np.float32))
    assert functional.jacobian(lambda x: x.tanh(), x).dtype == np.float32
    assert functional.hessian(lambda x: (x**3).sum(), x).dtype == np.float32
    assert functional.hvp(lambda x: (x**3).sum(), x, x)[1].dtype == np.float32
    assert functional.jvp(lambda x: x.exp(), x, x)[1].dtype == np.float32


# ----- create_graph ---------------------------------------------------------------------------
def test_results_carry_a_graph_only_with_create_graph(rng: np.random.Generator) -> None:
    x = t64(rng.standard_normal(3), requires_grad=True)
    for create_graph in (False, True):
        out, prod = functional.vjp(lambda x: x.sin(), x, t64(np.ones(3)), create_graph)
        jac = functional.jacobian(lambda x: x.sin(), x, create_graph)
        hess = functional.hessian(lambda x: x.sin().sum(), x, create_graph)
        for result in (out, prod, jac, hess):
            assert result.requires_grad is create_graph


def test_create_graph_results_differentiate_again_to_the_users_inputs(
    rng: np.random.Generator,
) -> None:
    data = rng.standard_normal(3)
    x = t64(data, requires_grad=True)
    # H of sum(x^4) is diag(12 x^2); d/dx of sum(H) = 24 x
    h = functional.hessian(lambda x: (x**4).sum(), x, create_graph=True)
    h.sum().backward()
    np.testing.assert_allclose(x.grad, 24 * data, rtol=1e-12)
    # vjp with v: v cos x; its gradient -v sin x
    v = rng.standard_normal(3)
    _, prod = functional.vjp(lambda x: x.sin(), x, t64(v), create_graph=True)
    (g,) = autograd.grad(prod.sum(), x)
    np.testing.assert_allclose(g.numpy(), -v * np.sin(data), rtol=1e-12)
    # jvp and hvp, differentiated once more: third derivatives of sum(x^4)/4 along v: 6 x v^2
    _, hv = functional.hvp(lambda x: (x**4).sum() / 4, x, t64(v), create_graph=True)
    (g,) = autograd.grad((hv * t64(v)).sum(), x)
    np.testing.assert_allclose(g.numpy(), 6 * data * v**2, rtol=1e-12)
    _, jv = functional.jvp(lambda x: x.exp(), x, t64(v), create_graph=True)
    (g,) = autograd.grad(jv.sum(), x)
    np.testing.assert_allclose(g.numpy(), v * np.exp(data), rtol=1e-12)
    # the result is also differentiable with respect to v when v requires grad
    vt = t64(v, requires_grad=True)
    _, jv = functional.jvp(lambda x: x.exp(), x, vt, create_graph=True)
    (gv,) = autograd.grad(jv.sum(), vt)
    np.testing.assert_allclose(gv.numpy(), np.exp(data), rtol=1e-12)


def test_gradgradcheck_through_hessian_vector_products(rng: np.random.Generator) -> None:
    v = rng.standard_normal(3)

    def hv(x: Tensor) -> Tensor:
        return functional.vhp(lambda x: (x.sin() * x).sum(), x, t64(v), create_graph=True)[1]

    assert autograd.gradcheck(hv, [t64(rng.standard_normal(3), requires_grad=True)])


# ----- the user's tensors ---------------------------------------------------------------------
@pytest.mark.parametrize("create_graph", [False, True])
def test_the_users_tensors_are_left_alone(rng: np.random.Generator, create_graph: bool) -> None:
    leaf = t64(rng.standard_normal(3), requires_grad=True)
    plain = t64(rng.standard_normal(3))
    made = leaf * 2.0  # an intermediate of the user's graph
    before = [t.numpy().copy() for t in (leaf, plain, made)]
    calls = []  # hooks see any backward pass that reaches the user's graph
    leaf.register_hook(lambda g: calls.append("leaf"))
    made.register_hook(lambda g: calls.append("made"))

    def f(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        return (a * b * c).sum()

    functional.hessian(f, (leaf, plain, made), create_graph=create_graph)
    functional.jacobian(f, (leaf, plain, made), create_graph=create_graph)
    functional.hvp(f, (leaf, plain, made), (plain, plain, plain), create_graph=create_graph)
    functional.jvp(f, (leaf, plain, made), (plain, plain, plain), create_graph=create_graph)
    for t, data in zip((leaf, plain, made), before, strict=True):
        np.testing.assert_array_equal(t.numpy(), data)
        assert t.grad is None
    assert not plain.requires_grad and leaf.is_leaf and made.op is not None
    # the transforms never ran a backward pass into the user's graph, which still works
    assert calls == []
    made.sum().backward()
    np.testing.assert_array_equal(leaf.grad, np.full(3, 2.0))
    assert calls == ["made", "leaf"]


def test_works_under_no_grad(rng: np.random.Generator) -> None:
    x = t64(rng.standard_normal(3))
    with autograd.no_grad():
        h = functional.hessian(lambda x: (x**3).sum(), x)
        assert not autograd.is_grad_enabled()
    np.testing.assert_allclose(h.numpy(), np.diag(6 * x.numpy()), rtol=1e-12)


# ----- errors ---------------------------------------------------------------------------------
def test_hessian_of_a_non_scalar_function() -> None:
    with pytest.raises(RuntimeError, match=r"hessian: .*one-element.*shape \(3,\)"):
        functional.hessian(lambda x: x * x, t64(np.ones(3)))
    with pytest.raises(RuntimeError, match=r"hvp: .*shapes? \(\), \(\)"):
        functional.hvp(lambda x: (x.sum(), x.sum()), t64(np.ones(3)), t64(np.ones(3)))


def test_v_of_the_wrong_shape() -> None:
    x = t64(np.ones(3))
    with pytest.raises(ValueError, match=r"vjp: v of shape \(2,\) for the output of shape \(3,\)"):
        functional.vjp(lambda x: x * 2, x, t64(np.ones(2)))
    with pytest.raises(ValueError, match=r"jvp: v of shape \(4,\) for the input of shape \(3,\)"):
        functional.jvp(lambda x: x * 2, x, t64(np.ones(4)))
    with pytest.raises(ValueError, match=r"vjp: v of shape \(3,\) for output 1 of shape \(\)"):
        functional.vjp(lambda x: (x, x.sum()), x, (x, t64(np.ones(3))))
    with pytest.raises(ValueError, match=r"hvp: v has 1 Tensors for 2 inputs"):
        functional.hvp(lambda x, y: (x * y).sum(), (x, x), (x,))
    with pytest.raises(RuntimeError, match=r"vjp: v can be left out only .* shape \(3,\)"):
        functional.vjp(lambda x: x * 2, x)


def test_hessian_through_a_fused_op_differentiable_once() -> None:
    image = t64(np.random.default_rng(0).standard_normal((1, 1, 5, 5)))
    kernel = t64(np.random.default_rng(1).standard_normal((1, 1, 3, 3)))
    # the first derivative is fine
    jac = functional.jacobian(lambda k: F.conv2d(image, k).sum(), kernel)
    assert jac.shape == (1, 1, 3, 3)
    with pytest.raises(RuntimeError, match=r"hessian: conv2d: double backward"):
        functional.hessian(lambda k: (F.conv2d(image, k) ** 2).sum(), kernel)
    with pytest.raises(RuntimeError, match=r"hvp: conv2d: double backward"):
        functional.hvp(lambda x: (F.conv2d(x, kernel) ** 2).sum(), image, image)


def test_bad_arguments() -> None:
    x = t64(np.ones(2))
    with pytest.raises(TypeError, match=r"jacobian: func must return a Tensor .* got float"):
        functional.jacobian(lambda x: 1.0, x)
    with pytest.raises(TypeError, match=r"vjp: inputs must be a Tensor or a tuple .* list"):
        functional.vjp(lambda x: x, [[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"jacobian: input 0 .* int64"):
        functional.jacobian(lambda x: x * 2, Tensor([1, 2]))
    with pytest.raises(ValueError, match=r"jacobian: strategy must be"):
        functional.jacobian(lambda x: x * 2, x, strategy="sideways")
