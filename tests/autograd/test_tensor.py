"""The Tensor itself: construction and dtype rules, creation helpers, attributes and methods,
in-place updates, and the error messages of the ops (op name and shapes)."""

from __future__ import annotations

import numpy as np
import pytest

import autograd
from autograd import Tensor

# ----- construction and dtype rules ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "dtype"),
    [
        (1.5, np.float32),
        ([1.0, 2.0], np.float32),
        (np.array([1.0, 2.0]), np.float32),  # float64 arrays become the default dtype too
        (np.float64(2.0), np.float32),
        (3, np.int64),
        ([1, 2], np.int64),
        (True, np.bool_),
        ([True, False], np.bool_),
    ],
)
def test_constructor_dtype(data: object, dtype: type) -> None:
    assert Tensor(data).dtype == dtype
    assert autograd.tensor(data).dtype == dtype


def test_explicit_dtype_is_kept() -> None:
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(np.ones(2, np.float64), dtype=np.float64).dtype == np.float64
    assert Tensor(1.5, dtype=np.float16).dtype == np.float16


def test_tensor_of_tensor_copies_nothing() -> None:
    source = Tensor([1.0, 2.0], requires_grad=True)
    copy = Tensor(source)
    assert copy.data is source.data
    assert not copy.requires_grad and copy.is_leaf


@pytest.mark.parametrize("data", [[1, 2], 3, [True], np.arange(3, dtype=np.int32)])
def test_requires_grad_on_non_float_data_raises(data: object) -> None:
    with pytest.raises(TypeError, match="floating"):
        Tensor(data, requires_grad=True)


def test_object_data_raises() -> None:
    with pytest.raises(TypeError, match="dict"):
        Tensor({"a": 1})


def test_set_default_dtype_float64_then_restored() -> None:
    previous = autograd.get_default_dtype()
    assert previous == np.float32
    autograd.set_default_dtype(np.float64)
    try:
        assert autograd.get_default_dtype() == np.float64
        assert Tensor(1.5).dtype == np.float64
        assert Tensor([1.0]).dtype == np.float64
        assert autograd.zeros(2).dtype == np.float64
        assert autograd.randn(2).dtype == np.float64
        assert autograd.arange(0.0, 1.0, 0.5).dtype == np.float64
        assert Tensor([1, 2]).dtype == np.int64  # integers are not affected
    finally:
        autograd.set_default_dtype(previous)
    assert Tensor(1.5).dtype == np.float32
    assert autograd.zeros(2).dtype == np.float32


def test_set_default_dtype_rejects_non_float() -> None:
    with pytest.raises(TypeError, match="floating"):
        autograd.set_default_dtype(np.int32)


FLOAT32_OPS = {
    "mul_scalar": lambda x: x * 2.0,
    "rmul_scalar": lambda x: 2.0 * x,
    "add_int": lambda x: x + 1,
    "rsub_scalar": lambda x: 1.5 - x,
    "div_scalar": lambda x: x / 3.0,
    "rdiv_scalar": lambda x: 3.0 / x,
    "pow_2": lambda x: x**2,
    "pow_half": lambda x: x**0.5,
    "rpow": lambda x: 2.0**x,
    "numpy_scalar": lambda x: x * np.float64(2.0),
    "float64_array": lambda x: x + np.ones(3),  # arrays become the default dtype
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "sqrt": lambda x: x.sqrt(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "gelu": lambda x: x.gelu(),
    "erf": lambda x: x.erf(),
    "leaky_relu": lambda x: x.leaky_relu(0.2),
    "clip": lambda x: x.clip(0.5, 2.5),
    "mean": lambda x: x.mean(),
    "var": lambda x: x.var(),
    "std": lambda x: x.std(),
    "logsumexp": lambda x: x.logsumexp(),
    "softmax": lambda x: x.softmax(),
    "log_softmax": lambda x: x.log_softmax(),
    "matmul": lambda x: x @ x,
    "where": lambda x: autograd.where(x > 2, x, 0.0),
    "maximum": lambda x: autograd.maximum(x, 2.0),
    "pad": lambda x: x.pad(((1, 1),), value=0.5),
    "int_tensor": lambda x: x * Tensor([1, 2, 3]),  # int64 meets float32: float32 (PyTorch)
    "bool_tensor": lambda x: x * Tensor([True, False, True]),
}


@pytest.mark.parametrize("name", FLOAT32_OPS)
def test_float32_in_float32_out_and_float32_grads(name: str) -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = FLOAT32_OPS[name](x)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float32


def test_integer_arithmetic_stays_int64_and_true_division_gives_float32() -> None:
    i = Tensor([1, 2, 3])
    assert (i + i).dtype == np.int64
    assert (i * 2).dtype == np.int64
    assert (i - 1).dtype == np.int64
    assert (i**2).dtype == np.int64
    np.testing.assert_array_equal((i * 2).data, [2, 4, 6])
    assert (i / 2).dtype == np.float32
    assert (i / i).dtype == np.float32
    assert (i * 2.5).dtype == np.float32  # a Python float is the default float dtype
    assert (i**0.5).dtype == np.float32
    np.testing.assert_allclose((i / 2).data, [0.5, 1.0, 1.5])


def test_bool_data_stays_bool() -> None:
    b = Tensor([True, False])
    assert b.dtype == np.bool_
    assert b.detach().dtype == np.bool_
    assert b.reshape(2, 1).dtype == np.bool_


def test_float64_meets_float32_gives_float64() -> None:
    x32 = Tensor([1.0], requires_grad=True)
    x64 = Tensor([1.0], dtype=np.float64, requires_grad=True)
    out = x32 * x64
    assert out.dtype == np.float64
    out.sum().backward()
    assert x32.grad.dtype == np.float32  # each leaf's grad has the leaf's dtype
    assert x64.grad.dtype == np.float64


# ----- creation helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [autograd.zeros, autograd.ones, autograd.randn, autograd.rand])
def test_shape_as_ints_or_tuple(make) -> None:  # noqa: ANN001
    assert make(2, 3).shape == make((2, 3)).shape == (2, 3)
    assert make([2, 3]).shape == (2, 3)
    assert make(4).shape == (4,)
    assert make().shape == ()
    assert make(2, 3).dtype == np.float32
    assert make(2, dtype=np.float64).dtype == np.float64
    assert not make(2).requires_grad
    assert make(2, requires_grad=True).requires_grad


def test_creation_values() -> None:
    np.testing.assert_array_equal(autograd.zeros(2, 3).data, np.zeros((2, 3)))
    np.testing.assert_array_equal(autograd.ones((2,)).data, [1.0, 1.0])
    np.testing.assert_array_equal(autograd.full((2, 2), 7.0).data, np.full((2, 2), 7.0))
    assert autograd.full((2, 2), 7.0).dtype == np.float32
    assert autograd.full(3, 7).dtype == np.int64
    assert autograd.full(3, 0.5, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(autograd.eye(2).data, [[1, 0], [0, 1]])
    assert autograd.eye(2, 3).shape == (2, 3)
    assert autograd.eye(2).dtype == np.float32
    u = autograd.rand(1000).data
    assert 0.0 <= u.min() and u.max() < 1.0


def test_like_helpers() -> None:
    x = Tensor(np.ones((2, 3), np.float64), dtype=np.float64)
    z = autograd.zeros_like(x)
    assert z.shape == (2, 3) and z.dtype == np.float64 and not z.data.any()
    o = autograd.ones_like(Tensor([1, 2]))
    assert o.dtype == np.int64 and o.tolist() == [1, 1]
    assert autograd.ones_like(x, dtype=np.float32).dtype == np.float32
    assert autograd.zeros_like(x, requires_grad=True).requires_grad


def test_arange_dtypes() -> None:
    assert autograd.arange(5).dtype == np.int64
    assert autograd.arange(5).tolist() == [0, 1, 2, 3, 4]
    assert autograd.arange(2, 8, 2).tolist() == [2, 4, 6]
    assert autograd.arange(2, 8, 2).dtype == np.int64
    assert autograd.arange(5.0).dtype == np.float32
    assert autograd.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_array_equal(autograd.arange(0, 1, 0.25).data, [0, 0.25, 0.5, 0.75])
    assert autograd.arange(3, dtype=np.float64).dtype == np.float64


def test_manual_seed_reproduces_randn() -> None:
    autograd.manual_seed(123)
    first = autograd.randn(3).data.copy()
    autograd.manual_seed(123)
    np.testing.assert_array_equal(autograd.randn(3).data, first)
    assert autograd.generator() is autograd.generator()


# ----- attributes and methods ------------------------------------------------------------------


def test_attributes() -> None:
    x = Tensor(np.zeros((2, 3)), requires_grad=True, name="x")
    assert x.shape == (2, 3) and x.ndim == 2 and x.dtype == np.float32
    assert x.numel() == 6
    assert x.name == "x"
    assert x.grad is None
    assert x.is_leaf
    y = x * 2
    assert not y.is_leaf and y.requires_grad and y.name is None
    assert x.T.shape == (3, 2)
    np.testing.assert_array_equal(Tensor([[1, 2, 3], [4, 5, 6]]).T.data, [[1, 4], [2, 5], [3, 6]])
    assert Tensor([1.0, 2.0]).T.shape == (2,)


def test_item() -> None:
    assert Tensor(2.5).item() == 2.5
    assert isinstance(Tensor(2.5).item(), float)
    assert Tensor([[3]]).item() == 3 and isinstance(Tensor([[3]]).item(), int)
    assert Tensor(True).item() is True
    with pytest.raises(ValueError, match=r"one-element.*\(2,\)"):
        Tensor([1.0, 2.0]).item()


def test_numpy_is_the_array_itself_and_tolist() -> None:
    x = Tensor([[1.0, 2.0]])
    assert x.numpy() is x.data
    assert np.asarray(x) is x.data
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    assert x.tolist() == [[1.0, 2.0]]
    assert Tensor(3).tolist() == 3


def test_detach_shares_data_and_cuts_the_graph() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    d = y.detach()
    assert d.data is y.data
    assert not d.requires_grad and d.is_leaf
    y.data[0] = 10.0
    assert d.data[0] == 10.0
    (d * x).sum().backward()  # d is a constant: dx = d
    np.testing.assert_array_equal(x.grad, [10.0, 6.0])


def test_retain_grad_and_zero_grad() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    assert h.retain_grad() is h
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, [6.0, 12.0])  # d(h^2)/dh = 2h
    np.testing.assert_array_equal(x.grad, [18.0, 36.0])
    x.zero_grad()
    assert x.grad is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor([1.0]).retain_grad()


def test_requires_grad_() -> None:
    x = Tensor([1.0])
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(TypeError):
        Tensor([1]).requires_grad_()
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).requires_grad_(False)


def test_len_and_iteration_over_first_axis() -> None:
    x = Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    assert len(x) == 3
    rows = list(x)
    assert [r.tolist() for r in rows] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    (rows[0] * 1.0 + rows[2] * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 1], [0, 0], [2, 2]])
    with pytest.raises(TypeError, match="0-d"):
        len(Tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(Tensor(1.0))


def test_repr_shows_data_dtype_and_origin() -> None:
    leaf = Tensor([1.5, 2.0], requires_grad=True, name="w")
    text = repr(leaf)
    assert "1.5" in text and "float32" in text and "requires_grad=True" in text and "'w'" in text
    text = repr(leaf * 2)
    assert "3." in text and "op=mul" in text
    assert "requires_grad" not in repr(Tensor([1, 2])) and "int64" in repr(Tensor([1, 2]))


def test_hash_is_identity() -> None:
    a, b = Tensor([1.0]), Tensor([1.0])
    assert hash(a) == object.__hash__(a) and hash(b) == object.__hash__(b)
    seen = {a: "a", b: "b"}
    assert seen[a] == "a" and seen[b] == "b"
    assert len({a, b, a}) == 2
    assert bool(a == b)  # `==` is elementwise, not identity


def test_comparisons_return_bool_tensors_without_grad() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    expected = {
        "lt": [True, False, False],
        "le": [True, True, False],
        "gt": [False, False, True],
        "ge": [False, True, True],
        "eq": [False, True, False],
        "ne": [True, False, True],
    }
    results = {
        "lt": x < 2,
        "le": x <= 2,
        "gt": x > 2.0,
        "ge": x >= Tensor(2.0),
        "eq": x == np.float32(2),
        "ne": x != 2,
    }
    for name, result in results.items():
        assert result.dtype == np.bool_, name
        assert not result.requires_grad and result.is_leaf, name
        assert result.tolist() == expected[name], name
    assert (2 < x).tolist() == [False, False, True]  # reflected: x > 2
    assert (Tensor([[1], [3]]) > Tensor([2, 0])).tolist() == [[False, True], [True, True]]
    with pytest.raises(ValueError, match=r"lt.*\(2,\).*\(3,\)"):
        _ = Tensor([1.0, 2.0]) < Tensor([1.0, 2.0, 3.0])


# ----- in-place updates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "update"),
    [
        ("iadd", lambda t: t.__iadd__(1.0)),
        ("isub", lambda t: t.__isub__(1.0)),
        ("imul", lambda t: t.__imul__(2.0)),
        ("itruediv", lambda t: t.__itruediv__(2.0)),
        ("setitem", lambda t: t.__setitem__(0, 5.0)),
    ],
)
def test_inplace_on_a_recorded_tensor_raises(op: str, update) -> None:  # noqa: ANN001
    w = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=f"{op}.*no_grad"):
        update(w)
    np.testing.assert_array_equal(w.data, [1.0, 2.0])


def test_inplace_plus_equals_raises_while_recording() -> None:
    w = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w += 1.0


def test_inplace_allowed_under_no_grad_and_updates_the_same_array() -> None:
    w = Tensor([1.0, 2.0], requires_grad=True)
    data = w.data
    with autograd.no_grad():
        w += Tensor([1.0, 1.0])
        w -= 0.5
        w *= 2.0
        w /= 4.0
        w[1] = 9.0
    assert w.data is data  # updated in place, not rebound
    assert w.requires_grad and w.dtype == np.float32
    np.testing.assert_array_equal(w.data, [0.75, 9.0])


def test_inplace_allowed_on_tensors_that_do_not_require_grad() -> None:
    t = Tensor([1.0, 2.0])
    t += 1.0
    t[0] = 0.0
    np.testing.assert_array_equal(t.data, [0.0, 3.0])


def test_inplace_shape_error_names_the_op() -> None:
    t = Tensor([1.0, 2.0])
    with pytest.raises(ValueError, match=r"iadd.*\(2,\).*\(3,\)"):
        t += np.ones(3)


# ----- error messages: the op and the shapes ---------------------------------------------------


def test_matmul_shape_error_names_op_and_shapes() -> None:
    with pytest.raises(ValueError) as info:
        autograd.zeros(3, 4) @ autograd.zeros(5, 6)
    message = str(info.value)
    assert "matmul" in message and "(3, 4)" in message and "(5, 6)" in message


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("add", lambda a, b: a + b),
        ("sub", lambda a, b: a - b),
        ("mul", lambda a, b: a * b),
        ("div", lambda a, b: a / b),
        ("pow", lambda a, b: a**b),
        ("maximum", autograd.maximum),
        ("minimum", autograd.minimum),
        ("where", lambda a, b: autograd.where(True, a, b)),
    ],
)
def test_broadcasting_errors_name_op_and_shapes(op: str, call) -> None:  # noqa: ANN001
    a, b = autograd.ones(2, 3), autograd.ones(4)
    with pytest.raises(ValueError) as info:
        call(a, b)
    message = str(info.value)
    assert op in message and "(2, 3)" in message and "(4,)" in message


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("sum", lambda x: x.sum(axis=2)),
        ("mean", lambda x: x.mean(axis=-3)),
        ("max", lambda x: x.max(axis=(0, 5))),
        ("min", lambda x: x.min(axis=2)),
        ("var", lambda x: x.var(axis=2)),
        ("logsumexp", lambda x: x.logsumexp(axis=-3)),
        ("softmax", lambda x: x.softmax(axis=2)),
        ("log_softmax", lambda x: x.log_softmax(axis=-3)),
        ("argmax", lambda x: x.argmax(axis=2)),
    ],
)
def test_bad_axis_names_op_axis_and_shape(op: str, call) -> None:  # noqa: ANN001
    # numpy's AxisError: an IndexError as PyTorch raises, and a ValueError as numpy's
    with pytest.raises(IndexError, match=rf"{op}: axis .* out of range for shape \(2, 3\)") as e:
        call(autograd.ones(2, 3))
    assert isinstance(e.value, ValueError)


def test_repeated_axis_raises() -> None:
    with pytest.raises(ValueError, match="repeated axis"):
        autograd.ones(2, 3).sum(axis=(1, -1))


def test_bad_reshape_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        autograd.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"view.*\(2, 3\)|reshape.*\(2, 3\)"):
        autograd.ones(2, 3).view(5)


def test_getitem_out_of_range_names_the_shape() -> None:
    x = autograd.ones(2, 3)
    with pytest.raises(IndexError, match=r"getitem.*\(2, 3\)"):
        x[5]
    with pytest.raises(IndexError, match=r"getitem.*\(2, 3\)"):
        x[0, [0, 3]]
    with pytest.raises(IndexError, match=r"getitem.*\(2, 3\)"):
        x[0, 0, 0]
