"""Tests for nn/convolution.py's kernels (conv2d, max_pool2d, avg_pool2d) and the memory
layouts they work in, and for batch_norm's layout handling: values against the definitions
written out in plain numpy loops, gradients by finite differences (float64), the
first-maximum rule for pooling ties, every im2col path (transposed and row-major matrix,
blocks of whole output rows and pieces of one row)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import autograd
from autograd import Tensor, gradcheck
from autograd.parallel import parallel_for
from nn import convolution
from nn import functional as F

RNG = np.random.default_rng(2024)


def rand(*shape: int, requires_grad: bool = True) -> Tensor:
    return Tensor(RNG.standard_normal(shape), requires_grad=requires_grad, dtype=np.float64)


def weights_like(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(7).standard_normal(shape)


def hwnc(a: np.ndarray) -> np.ndarray:
    """The same NCHW array stored as (H, W, N, C), conv2d's output layout."""
    return np.ascontiguousarray(a.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def axis_order(a: np.ndarray) -> tuple[int, ...]:
    """a's axes of length > 1, outermost in memory first (a length-1 axis has no place)."""
    axes = [axis for axis in range(a.ndim) if a.shape[axis] > 1]
    return tuple(sorted(axes, key=lambda axis: -a.strides[axis]))


def longer_than_one(order: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(axis for axis in order if shape[axis] > 1)


LAYOUTS = {"nchw": np.ascontiguousarray, "nhwc": nhwc, "hwnc": hwnc}
# storage order of each layout: the NCHW view is storage.transpose(argsort(order))
ORDERS = {"nchw": (0, 1, 2, 3), "nhwc": (0, 2, 3, 1), "hwnc": (2, 3, 0, 1)}


def stored(values: np.ndarray, layout: str) -> Tensor:
    """A contiguous leaf holding `values` (NCHW) in `layout`'s storage order. gradcheck
    perturbs its leaves through a flat view, so a leaf must be contiguous; `viewed` gives
    the NCHW tensor (a transpose op: a strided view of the leaf's memory)."""
    return Tensor(values.transpose(ORDERS[layout]).copy(), requires_grad=True, dtype=np.float64)


def viewed(leaf: Tensor, layout: str) -> Tensor:
    return leaf.transpose(*np.argsort(ORDERS[layout]))


# ----- definitions, in loops ----------------------------------------------------------------
def conv_by_definition(x, w, b, stride, padding):  # noqa: ANN001, ANN201
    """out[n, o, y, x] = b[o] + sum_{c, i, j} xpad[n, c, y*sh + i, x*sw + j] w[o, c, i, j]."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, hp, wp = xp.shape
    o, _, kh, kw = w.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out = np.zeros((n, o, ho, wo))
    for y in range(ho):
        for x_ in range(wo):
            patch = xp[:, :, y * sh : y * sh + kh, x_ * sw : x_ * sw + kw]
            out[:, :, y, x_] = np.einsum("ncij,ocij->no", patch, w)
    return out if b is None else out + b[None, :, None, None]


def max_pool_by_definition(x, g, kernel, stride, padding):  # noqa: ANN001, ANN201
    """Values and input gradient of max pooling, window by window: each window's gradient
    goes to its first maximum in row-major order; padding is -inf."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    n, c, hp, wp = xp.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out, dxp = np.zeros((n, c, ho, wo)), np.zeros(xp.shape)
    for a, b, y, x_ in itertools.product(range(n), range(c), range(ho), range(wo)):
        window = xp[a, b, y * sh : y * sh + kh, x_ * sw : x_ * sw + kw]
        i, j = divmod(int(np.argmax(window)), kw)  # argmax: the first maximum, row-major
        out[a, b, y, x_] = window[i, j]
        dxp[a, b, y * sh + i, x_ * sw + j] += g[a, b, y, x_]
    return out, dxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """im2col and col2im in blocks of a few hundred bytes: many blocks, pieces of rows."""
    monkeypatch.setattr(convolution, "_CHUNK_BYTES", 300)


# ----- conv2d ---------------------------------------------------------------------------------
CONV_CASES = [  # (n, c, h, w), (o, kh, kw), stride, padding
    ((2, 1, 5, 7), (3, 3, 3), (1, 1), (1, 1)),  # one channel: the transposed im2col
    ((1, 5, 6, 5), (2, 3, 2), (2, 1), (1, 0)),  # batch 1, non-square kernel, mixed stride
    ((2, 4, 7, 6), (2, 2, 3), (2, 3), (0, 2)),  # row-major im2col, stride > 1 both ways
    ((2, 2, 4, 4), (3, 1, 1), (1, 1), (0, 0)),  # 1x1
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES)
def test_conv2d_values_and_gradcheck(shape, kernel, stride, padding, layout) -> None:  # noqa: ANN001
    n, c, h, w = shape
    o, kh, kw = kernel
    values = RNG.standard_normal(shape)
    leaf, weight, bias = stored(values, layout), rand(o, c, kh, kw), rand(o)
    x = viewed(leaf, layout)
    assert axis_order(x.data) == longer_than_one(ORDERS[layout], shape)
    out = F.conv2d(x, weight, bias, stride, padding)
    expected = conv_by_definition(values, weight.data, bias.data, stride, padding)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    # HWNC memory behind the NCHW view
    assert axis_order(out.data) == longer_than_one((2, 3, 0, 1), out.shape)
    weights = weights_like(out.shape)

    def fn(leaf: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return F.conv2d(viewed(leaf, layout), w, b, stride, padding) * weights

    assert gradcheck(fn, [leaf, weight, bias])


def conv_results(x, weight, bias, stride, padding, g) -> list[np.ndarray]:  # noqa: ANN001
    for t in (x, weight, bias):
        if t is not None:
            t.grad = None
    out = F.conv2d(x, weight, bias, stride, padding)
    out.backward(g)
    return [out.data.copy(), x.grad, weight.grad] + ([] if bias is None else [bias.grad])


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES)
def test_conv2d_in_small_blocks_matches_one_block(
    monkeypatch: pytest.MonkeyPatch,
    shape,
    kernel,
    stride,
    padding,
    with_bias,  # noqa: ANN001
) -> None:
    o, kh, kw = kernel
    x, weight = rand(*shape), rand(o, shape[1], kh, kw)
    bias = rand(o) if with_bias else None
    g = RNG.standard_normal(F.conv2d(x, weight, bias, stride, padding).shape)
    whole = conv_results(x, weight, bias, stride, padding, g)
    monkeypatch.setattr(convolution, "_CHUNK_BYTES", 300)  # many blocks, pieces of rows
    for first, second in zip(whole, conv_results(x, weight, bias, stride, padding, g), strict=True):
        np.testing.assert_allclose(first, second, rtol=1e-12, atol=1e-12)


def test_conv2d_both_im2col_layouts_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    x, weight, bias = rand(2, 3, 6, 5), rand(4, 3, 3, 2), rand(4)
    g = RNG.standard_normal((2, 4, 3, 3))
    results = []
    for below in (1, 100):  # row-major matrix for every C, then transposed for every C
        monkeypatch.setattr(convolution, "_TRANSPOSED_BELOW_C", below)
        results.append(conv_results(x, weight, bias, 2, 1, g))
    for first, second in zip(*results, strict=True):
        np.testing.assert_allclose(first, second, rtol=1e-12, atol=1e-12)


def test_conv2d_hand_values_and_float32() -> None:
    x = Tensor(np.arange(9.0).reshape(1, 1, 3, 3), requires_grad=True)
    w = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    b = Tensor([0.5], requires_grad=True)
    y = F.conv2d(x, w, b)
    np.testing.assert_allclose(y.data, [[[[8.5, 12.5], [20.5, 24.5]]]])
    y.sum().backward()
    np.testing.assert_allclose(x.grad[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_allclose(w.grad[0, 0], [[8, 12], [20, 24]])
    np.testing.assert_allclose(b.grad, [4.0])
    assert y.dtype == x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    assert w.grad.flags.c_contiguous


@pytest.mark.parametrize("wanted", ["weight", "bias", "input"])
def test_conv2d_gradients_only_where_needed(wanted: str) -> None:
    x = rand(2, 3, 5, 5, requires_grad=wanted == "input")
    weight = rand(2, 3, 3, 3, requires_grad=wanted == "weight")
    bias = rand(2, requires_grad=wanted == "bias")
    g = RNG.standard_normal((2, 2, 5, 5))
    F.conv2d(x, weight, bias, padding=1).backward(g)
    assert (x.grad is not None, weight.grad is not None, bias.grad is not None) == (
        wanted == "input",
        wanted == "weight",
        wanted == "bias",
    )
    if wanted == "bias":  # the matrix-vector path: sum of g over n, y, x
        np.testing.assert_allclose(bias.grad, g.sum(axis=(0, 2, 3)), rtol=1e-12)


def test_conv2d_huge_batch_pieces_of_rows(small_chunks: None) -> None:
    # with 300-byte blocks one output row (Wo x N rows of the matrix) is split in pieces
    x, weight = rand(7, 2, 3, 4), rand(3, 2, 2, 2)
    out = F.conv2d(x, weight, padding=(0, 1))
    np.testing.assert_allclose(
        out.data, conv_by_definition(x.data, weight.data, None, (1, 1), (0, 1)), rtol=1e-10
    )
    assert gradcheck(
        lambda x, w: F.conv2d(x, w, padding=(0, 1)) * weights_like(out.shape), [x, weight]
    )


def test_conv2d_saves_the_input_only_when_it_reads_it() -> None:
    # unpadded HWNC input: im2col reads x's own memory, so changing x before backward is an
    # error; padded, conv2d works on its own copy and the change does not matter
    values = RNG.standard_normal((2, 3, 4, 4))
    weight = rand(2, 3, 3, 3)
    x = Tensor(hwnc(values), dtype=np.float64)
    y = F.conv2d(x, weight)
    x += 1.0
    with pytest.raises(RuntimeError, match="conv2d"):
        y.sum().backward()
    x = Tensor(hwnc(values), dtype=np.float64)
    y = F.conv2d(x, weight, padding=1)
    x += 1.0
    y.sum().backward()
    reference = rand(2, 3, 3, 3)
    reference.data[...] = weight.data
    F.conv2d(Tensor(values, dtype=np.float64), reference, padding=1).sum().backward()
    assert x.data[0, 0, 0, 0] == values[0, 0, 0, 0] + 1.0
    np.testing.assert_allclose(weight.grad, reference.grad, rtol=1e-12)


def test_conv2d_double_backward_raises() -> None:
    x, w = rand(1, 2, 4, 4), rand(3, 2, 3, 3)
    (gx,) = autograd.grad(F.conv2d(x, w).sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError, match="conv2d"):
        (gx * gx).sum().backward()


def test_interleaved_convolutions_share_work_buffers_safely() -> None:
    # two convolutions of different shapes: forward both, then backward in reverse order;
    # each backward recomputes its im2col into the same per-thread work buffer
    x1, w1 = rand(2, 1, 6, 6), rand(4, 1, 3, 3)
    w2 = rand(3, 4, 2, 2)
    y = F.conv2d(F.conv2d(x1, w1, padding=1).relu(), w2, stride=2)
    weights = weights_like(y.shape)
    assert gradcheck(
        lambda x, a, b: F.conv2d(F.conv2d(x, a, padding=1).relu(), b, stride=2) * weights,
        [x1, w1, w2],
    )


# ----- max_pool2d -----------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kernel", [(2, 2), (3, 3), (2, 3)])
def test_max_pool_all_equal_windows_route_to_the_first_element(layout: str, kernel) -> None:  # noqa: ANN001
    # every window is a tie (all zeros, as on MNIST's blank background): the gradient goes
    # to the window's top-left element, nowhere else; 7x8 leaves remainder rows/columns
    x = Tensor(LAYOUTS[layout](np.zeros((2, 3, 7, 8))), requires_grad=True, dtype=np.float64)
    y = F.max_pool2d(x, kernel)
    g = RNG.standard_normal(y.shape)
    y.backward(g)
    kh, kw = kernel
    expected = np.zeros((2, 3, 7, 8))
    expected[:, :, : y.shape[2] * kh : kh, : y.shape[3] * kw : kw] = g
    np.testing.assert_array_equal(x.grad, expected)


def test_max_pool_partial_ties_hand_example() -> None:
    # one 4x4 channel, 2x2 windows; the second channel is the first one negated
    top = np.array(
        [
            [0.0, 5.0, 1.0, 1.0],
            [5.0, 2.0, 1.0, 1.0],
            [0.0, 0.0, 3.0, 7.0],
            [0.0, 0.0, 7.0, 7.0],
        ]
    )
    values = np.stack([top, -top])[None]
    for layout in LAYOUTS.values():
        x = Tensor(layout(values), requires_grad=True, dtype=np.float64)
        y = F.max_pool2d(x, 2)
        np.testing.assert_array_equal(y.data[0, 0], [[5, 1], [0, 7]])
        np.testing.assert_array_equal(y.data[0, 1], [[0, -1], [0, -3]])
        y.backward(np.arange(1.0, 9.0).reshape(1, 2, 2, 2))
        # channel 0: 5s at (0,1),(1,0) -> (0,1); 1s -> (0,2); 0s -> (2,0); 7s -> (2,3)
        # channel 1: max 0 at (0,0); -1s -> (0,2); 0s -> (2,0); -3 at (2,2)
        expected = np.zeros((2, 4, 4))
        expected[0, 0, 1], expected[0, 0, 2], expected[0, 2, 0], expected[0, 2, 3] = 1, 2, 3, 4
        expected[1, 0, 0], expected[1, 0, 2], expected[1, 2, 0], expected[1, 2, 2] = 5, 6, 7, 8
        np.testing.assert_array_equal(x.grad[0], expected)


POOL_CASES = [  # kernel, stride, padding
    ((2, 2), (2, 2), (0, 0)),  # tiled, the fast path
    ((3, 2), (3, 2), (1, 1)),  # tiled with padding
    ((3, 3), (1, 1), (1, 1)),  # overlapping
    ((2, 3), (1, 2), (1, 1)),  # overlapping, non-square
    ((2, 2), (3, 3), (0, 0)),  # gaps between windows
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_max_pool_matches_definition_with_ties(kernel, stride, padding, layout) -> None:  # noqa: ANN001
    values = RNG.integers(0, 3, size=(2, 3, 7, 6)).astype(np.float64)  # ties everywhere
    values[1, 2] = 0.0
    x = Tensor(LAYOUTS[layout](values), requires_grad=True, dtype=np.float64)
    y = F.max_pool2d(x, kernel, stride, padding)
    g = RNG.standard_normal(y.shape)
    expected_out, expected_grad = max_pool_by_definition(values, g, kernel, stride, padding)
    np.testing.assert_array_equal(y.data, expected_out)
    y.backward(g)
    np.testing.assert_allclose(x.grad, expected_grad, rtol=1e-12, atol=1e-12)
    assert axis_order(y.data) == axis_order(x.data)  # the output keeps the input's layout


@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_max_pool_gradcheck(kernel, stride, padding) -> None:  # noqa: ANN001
    # distinct values spaced far apart: finite differences never cross a tie
    values = RNG.permutation(2 * 2 * 5 * 7).reshape(2, 2, 5, 7) * 0.1
    leaf = stored(values, "hwnc")
    weights = weights_like(F.max_pool2d(viewed(leaf, "hwnc"), kernel, stride, padding).shape)

    def fn(leaf: Tensor) -> Tensor:
        return F.max_pool2d(viewed(leaf, "hwnc"), kernel, stride, padding) * weights

    assert gradcheck(fn, [leaf])


def test_max_pool_gradient_in_another_layout() -> None:
    # after flatten the upstream gradient is NCHW while the pooled output is HWNC
    values = RNG.integers(0, 2, size=(3, 4, 6, 6)).astype(np.float64)
    g = RNG.standard_normal((3, 4, 3, 3))
    grads = []
    for g_layout in (np.ascontiguousarray, hwnc):
        x = Tensor(hwnc(values), requires_grad=True, dtype=np.float64)
        F.max_pool2d(x, 2).backward(g_layout(g))
        grads.append(x.grad)
    np.testing.assert_array_equal(*grads)
    np.testing.assert_array_equal(
        grads[0], max_pool_by_definition(values, g, (2, 2), (2, 2), (0, 0))[1]
    )


def test_max_pool_one_channel_batch_one_and_unbatched() -> None:
    values = RNG.standard_normal((1, 1, 5, 5))
    x = Tensor(values, requires_grad=True, dtype=np.float64)
    y = F.max_pool2d(x, 2)
    y.sum().backward()
    np.testing.assert_array_equal(
        y.data, max_pool_by_definition(values, np.ones((1, 1, 2, 2)), (2, 2), (2, 2), (0, 0))[0]
    )
    assert x.grad.sum() == 4 and x.grad[0, 0, 4].sum() == 0 and x.grad[0, 0, :, 4].sum() == 0
    assert F.max_pool2d(rand(3, 4, 4), 2).shape == (3, 2, 2)
    assert F.max_pool2d(Tensor(np.ones((1, 1, 2, 2))), 1).shape == (1, 1, 2, 2)


# ----- avg_pool2d -----------------------------------------------------------------------------
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_avg_pool_values_and_gradcheck(kernel, stride, padding, layout) -> None:  # noqa: ANN001
    values = RNG.standard_normal((2, 2, 5, 7))
    leaf = stored(values, layout)
    y = F.avg_pool2d(viewed(leaf, layout), kernel, stride, padding)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(values, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for a, b in itertools.product(range(y.shape[2]), range(y.shape[3])):
        window = xp[:, :, a * sh : a * sh + kh, b * sw : b * sw + kw]
        np.testing.assert_allclose(y.data[:, :, a, b], window.mean(axis=(2, 3)), rtol=1e-12)
    assert axis_order(y.data) == longer_than_one(ORDERS[layout], y.shape)
    weights = weights_like(y.shape)

    def fn(leaf: Tensor) -> Tensor:
        return F.avg_pool2d(viewed(leaf, layout), kernel, stride, padding) * weights

    assert gradcheck(fn, [leaf])


# ----- batch_norm in every layout -------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, order",
    [
        ((4, 3, 2, 3), ORDERS["hwnc"]),
        ((4, 3, 2, 3), ORDERS["nhwc"]),
        ((4, 3, 2, 3), ORDERS["nchw"]),
        ((4, 3, 2, 3), (3, 2, 1, 0)),  # channels neither outermost nor innermost: a copy
        ((5, 3), (0, 1)),
        ((5, 3), (1, 0)),
        ((3, 2, 4), (0, 1, 2)),  # BatchNorm1d's (N, C, L)
    ],
)
def test_batch_norm_training_layouts(shape, order) -> None:  # noqa: ANN001
    values = RNG.standard_normal(shape) * 2 + 3
    leaf = Tensor(values.transpose(order).copy(), requires_grad=True, dtype=np.float64)
    back = tuple(np.argsort(order))
    w, b = rand(shape[1]), rand(shape[1])
    running_mean, running_var = np.zeros(shape[1]), np.ones(shape[1])
    x = leaf.transpose(*back)
    assert axis_order(x.data) == longer_than_one(order, shape)
    y = F.batch_norm(x, running_mean, running_var, w, b, training=True, momentum=0.5)
    axes = (0,) + tuple(range(2, len(shape)))
    channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    mean, var = values.mean(axis=axes), values.var(axis=axes)
    expected = (values - mean.reshape(channel)) / np.sqrt(var.reshape(channel) + 1e-5)
    expected = expected * w.data.reshape(channel) + b.data.reshape(channel)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)
    count = values.size // shape[1]
    np.testing.assert_allclose(running_mean, 0.5 * mean, rtol=1e-12)
    np.testing.assert_allclose(running_var, 0.5 + 0.5 * var * count / (count - 1), rtol=1e-12)
    weights = weights_like(shape)

    def fn(leaf: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return F.batch_norm(leaf.transpose(*back), None, None, w, b, training=True) * weights

    assert gradcheck(fn, [leaf, w, b])


def test_batch_norm_gradient_in_another_layout() -> None:
    values = RNG.standard_normal((4, 3, 2, 2))
    g = RNG.standard_normal((4, 3, 2, 2))
    grads = []
    for g_layout in (np.ascontiguousarray, hwnc):
        x = Tensor(hwnc(values), requires_grad=True, dtype=np.float64)
        F.batch_norm(x, None, None, training=True).backward(g_layout(g))
        grads.append(x.grad)
    np.testing.assert_allclose(*grads, rtol=1e-12)


@pytest.mark.parametrize(
    "op",
    [
        lambda x, w: F.conv2d(x, w, padding=1),
        lambda x, w: F.max_pool2d(F.conv2d(x, w), 2),
        lambda x, w: F.max_pool2d(F.conv2d(x, w), 2, 1),
        lambda x, w: F.avg_pool2d(F.conv2d(x, w), 2),
    ],
)
def test_second_backward_with_retain_graph_doubles_the_gradients(op) -> None:  # noqa: ANN001
    x, w = rand(2, 3, 6, 6), rand(4, 3, 3, 3)
    y = op(x, w)
    g = RNG.standard_normal(y.shape)
    y.backward(g, retain_graph=True)
    first = (x.grad.copy(), w.grad.copy())
    y.backward(g)
    np.testing.assert_allclose(x.grad, 2 * first[0], rtol=1e-12)
    np.testing.assert_allclose(w.grad, 2 * first[1], rtol=1e-12)


# ----- results in reused memory --------------------------------------------------------------
def test_a_later_step_leaves_earlier_gradients_alone() -> None:
    # two training steps: the second step's results (in reused work buffers and memory
    # malloc hands out again) must not clobber the first's .grad
    convolution.release_buffers()
    x1, x2 = rand(8, 4, 16, 16), rand(8, 4, 16, 16)
    w = rand(64, 4, 3, 3)
    g = RNG.standard_normal((8, 64, 8, 8))
    F.max_pool2d(F.conv2d(x1, w, padding=1), 2).backward(g)
    grad1 = x1.grad.copy()
    F.max_pool2d(F.conv2d(x2, w, padding=1), 2).backward(g)
    np.testing.assert_array_equal(x1.grad, grad1)
    reference = rand(64, 4, 3, 3)
    reference.data[...] = w.data
    x1.grad = None
    F.max_pool2d(F.conv2d(x1, reference, padding=1), 2).backward(g)
    np.testing.assert_allclose(x1.grad, grad1, rtol=1e-12)


def test_relu_keeps_the_layout() -> None:
    values = RNG.standard_normal((8, 16, 32, 32))
    x = Tensor(hwnc(values), requires_grad=True, dtype=np.float64)
    y = F.relu(x)
    np.testing.assert_array_equal(y.data, np.maximum(values, 0))
    assert axis_order(y.data) == (2, 3, 0, 1)
    g = RNG.standard_normal(values.shape)
    y.backward(hwnc(g))
    np.testing.assert_array_equal(x.grad, g * (values > 0))
    leaf = stored(values[:1, :2, :4, :4].copy(), "hwnc")
    assert autograd.gradgradcheck(lambda t: F.relu(viewed(t, "hwnc")) ** 2, [leaf])


# ----- autograd threads: the same results on one and on two -----------------------------------
@pytest.fixture
def split_small(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Pieces of a few elements (test-sized arrays are split too); yields the piece counts of
    every parallel_for call; restores the thread count."""
    monkeypatch.setattr(convolution, "_GRAIN_ELEMENTS", 8)
    monkeypatch.setattr(F, "_GRAIN_ELEMENTS", 8)  # (relu's own import of it)
    pieces: list[int] = []

    def counting(fn, n, grain=1):  # noqa: ANN001, ANN202
        pieces.append(min(autograd.get_num_threads(), n // max(grain, 1)))
        return parallel_for(fn, n, grain)

    monkeypatch.setattr(convolution, "parallel_for", counting)
    monkeypatch.setattr(F, "parallel_for", counting)
    before = autograd.get_num_threads()
    yield pieces
    autograd.set_num_threads(before)


def on_threads(count: int, run) -> list[np.ndarray]:  # noqa: ANN001
    autograd.set_num_threads(count)
    return [np.array(a) for a in run()]


def float32_with_ties(shape: tuple[int, ...], layout: str) -> Tensor:
    """Small integers (ties in most pooling windows, zeros for ReLU) in `layout`'s memory."""
    values = np.random.default_rng(3).integers(-3, 4, shape).astype(np.float32)
    return Tensor(LAYOUTS[layout](values), requires_grad=True)


POOL_CASES = [  # op, kernel, stride, padding
    ("max", 2, None, 0),  # tiled, covering the input
    ("max", (2, 3), None, 0),  # remainder rows and columns: the zero fill
    ("max", 3, 2, 1),  # overlapping, padded
    ("avg", 2, None, 0),
    ("avg", 3, 1, 1),  # overlapping, padded
]


@pytest.mark.parametrize("layout", ["hwnc", "nchw"])
@pytest.mark.parametrize("op, kernel, stride, padding", POOL_CASES)
def test_pools_same_on_one_and_two_threads(
    split_small: list[int],
    op: str,
    kernel,
    stride,
    padding,
    layout: str,  # noqa: ANN001
    same_results: Callable[..., None],
) -> None:
    pool = F.max_pool2d if op == "max" else F.avg_pool2d

    def run() -> list[np.ndarray]:
        x = float32_with_ties((4, 3, 7, 8), layout)
        y = pool(x, kernel, stride, padding)
        g = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
        y.backward(Tensor(g))  # (NCHW: the HWNC output's gradient is copied into its layout)
        return [y.data, x.grad]

    one = on_threads(1, run)
    assert max(split_small) == 1
    split_small.clear()
    two = on_threads(2, run)
    assert max(split_small) == 2  # the pieces did run on two threads
    same_results(one, two, np.float32)
    if op == "max":  # and they are the definition's (first maximum of each window)
        values = float32_with_ties((4, 3, 7, 8), "nchw").data.astype(np.float64)
        g = np.random.default_rng(5).standard_normal(one[0].shape).astype(np.float32)
        kernel2 = _pair(kernel)
        out, grad = max_pool_by_definition(
            values, g.astype(np.float64), kernel2, _pair(stride or kernel2), _pair(padding)
        )
        np.testing.assert_array_equal(two[0], out)
        np.testing.assert_allclose(two[1], grad, rtol=1e-6, atol=1e-6)


def _pair(v) -> tuple[int, int]:  # noqa: ANN001
    return (v, v) if isinstance(v, int) else tuple(v)


def test_max_pool_two_threads_first_maximum_hand_example(split_small: list[int]) -> None:
    # every 2x2 window of a tied plane routes its gradient to its top-left element, in each
    # piece of the split: rows 0-1 and rows 2-3 of the output go to different threads
    autograd.set_num_threads(2)
    x = Tensor(hwnc(np.zeros((2, 2, 8, 8), np.float32)), requires_grad=True)
    y = F.max_pool2d(x, 2)
    y.backward(Tensor(hwnc(np.ones((2, 2, 4, 4), np.float32))))
    expected = np.zeros((8, 8), np.float32)
    expected[::2, ::2] = 1
    np.testing.assert_array_equal(x.grad, np.broadcast_to(expected, (2, 2, 8, 8)))
    assert max(split_small) == 2


def test_relu_same_on_one_and_two_threads(
    split_small: list[int], same_results: Callable[..., None]
) -> None:
    def run() -> list[np.ndarray]:
        x = float32_with_ties((4, 3, 6, 5), "hwnc")
        y = F.relu(x)
        g = hwnc(np.random.default_rng(5).standard_normal(y.shape).astype(np.float32))
        y.backward(Tensor(g))
        return [y.data, x.grad, g]

    one = on_threads(1, run)
    split_small.clear()
    two = on_threads(2, run)
    assert max(split_small) == 2
    values = float32_with_ties((4, 3, 6, 5), "hwnc").data
    np.testing.assert_array_equal(two[0], np.maximum(values, 0))
    np.testing.assert_array_equal(two[1], two[2] * (values > 0))  # zeros pass nothing
    assert two[0].dtype == two[1].dtype == np.float32
    assert axis_order(two[0]) == axis_order(two[1]) == (2, 3, 0, 1)
    same_results(one, two)


@pytest.mark.parametrize("shape, kernel, stride, padding", CONV_CASES)
def test_conv2d_same_on_one_and_two_threads(
    split_small: list[int],
    monkeypatch: pytest.MonkeyPatch,
    shape,
    kernel,
    stride,
    padding,  # noqa: ANN001
) -> None:
    # many blocks and col2im bands, one BLAS thread: bit for bit the same on 1 and 2 threads
    monkeypatch.setattr(convolution, "_CHUNK_BYTES", 300)
    monkeypatch.setattr(convolution, "_COL2IM_BYTES", 200)
    shared: list[int] = []
    share_out = convolution._share_out
    monkeypatch.setattr(
        convolution,
        "_share_out",
        lambda count, task: (shared.append(count), share_out(count, task)),
    )
    o, kh, kw = kernel
    rng = np.random.default_rng(11)
    values = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((o, shape[1], kh, kw)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)

    def run() -> list[np.ndarray]:
        x = Tensor(values.copy(), requires_grad=True)
        weight, bias = Tensor(w.copy(), requires_grad=True), Tensor(b.copy(), requires_grad=True)
        y = F.conv2d(x, weight, bias, stride, padding)
        y.backward(Tensor(np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)))
        return [y.data, x.grad, weight.grad, bias.grad]

    with threadpool_limits(limits=1, user_api="blas"):
        one = on_threads(1, run)
        assert not shared
        two = on_threads(2, run)
    assert shared and max(shared) > 1  # blocks and bands shared out
    for a, b_ in zip(one, two, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b_)
    expected = conv_by_definition(values, w, b, stride, padding)
    np.testing.assert_allclose(two[0], expected, rtol=1e-4, atol=1e-4)


def test_conv2d_gradcheck_on_two_threads(
    split_small: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the shared blocks and the bands of input rows (stride 2: every other row has no term
    # from some kernel rows), against finite differences
    monkeypatch.setattr(convolution, "_CHUNK_BYTES", 300)
    monkeypatch.setattr(convolution, "_COL2IM_BYTES", 100)
    autograd.set_num_threads(2)
    x, weight, bias = rand(2, 4, 7, 6), rand(3, 4, 3, 2), rand(3)
    weights = weights_like(F.conv2d(x, weight, bias, (2, 1), (1, 1)).shape)
    assert gradcheck(lambda a, w, b: F.conv2d(a, w, b, (2, 1), (1, 1)) * weights, [x, weight, bias])


def test_col2im_sums_do_not_depend_on_the_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n, c, o, ho, wo = 3, 4, 5, 6, 4
    d = rng.standard_normal((ho * wo * n, o)).astype(np.float32)
    w_blocks = rng.standard_normal((3, 3, c, o)).astype(np.float32)
    padded = (2 * ho + 1, wo + 2, n, c)  # stride (2, 1) over 3x3, padding (0, 1) folded in
    results = []
    for band_bytes in (1 << 30, 1000, 1):  # one band, a few, one input row each
        monkeypatch.setattr(convolution, "_COL2IM_BYTES", band_bytes)
        results.append(convolution._col2im(d, w_blocks, padded, (2, 1), (ho, wo)))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_conv2d_on_two_threads_restores_the_blas_threads(split_small: list[int]) -> None:
    if not threadpool_info():
        pytest.skip("threadpoolctl finds no BLAS library")
    autograd.set_num_threads(2)
    x, weight = rand(2, 3, 9, 9), rand(4, 3, 3, 3)
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(convolution, "_CHUNK_BYTES", 300)
            F.conv2d(x, weight, padding=1).sum().backward()
        assert {b["num_threads"] for b in threadpool_info() if b["user_api"] == "blas"} == {2}
