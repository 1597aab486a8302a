"""nn layers: values derived by hand, gradients by finite differences (float64), PyTorch's
default initialisation, containers, reprs, train/eval behaviour and the module scopes."""

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
import nn
from autograd import Tensor


def randn(*shape: int, seed: int = 0, requires_grad: bool = False) -> Tensor:
    data = np.random.default_rng(seed).standard_normal(shape)
    return Tensor(data, requires_grad=requires_grad)


def check_layer(
    layer: nn.Module, *inputs: Tensor, before: Callable[[], None] | None = None
) -> None:
    """gradcheck `layer(*inputs)` with respect to its inputs and all its parameters.

    gradcheck hands `fn` float64 copies of what it checks; we swap the copies in for the
    layer's parameters for the duration of the call (writing the instance attribute that
    `forward` reads, without re-registering) and put the originals back afterwards.
    `before` runs before every evaluation (to re-seed dropout, say).
    """
    named = list(layer.named_parameters())
    owners = []
    for name, _ in named:
        *path, attr = name.split(".")
        owner = layer
        for part in path:
            owner = getattr(owner, part)
        owners.append((owner, attr))

    def fn(*args: Tensor) -> Tensor:
        xs, params = args[: len(inputs)], args[len(inputs) :]
        saved = [owner.__dict__[attr] for owner, attr in owners]
        for (owner, attr), p in zip(owners, params, strict=True):
            owner.__dict__[attr] = p
        try:
            if before is not None:
                before()
            return layer(*xs)
        finally:
            for (owner, attr), p in zip(owners, saved, strict=True):
                owner.__dict__[attr] = p

    assert autograd.gradcheck(fn, [*inputs, *(p for _, p in named)])


# ----- Linear -------------------------------------------------------------------------------------
def test_linear_shapes_values_and_gradients():
    layer = nn.Linear(3, 2)
    assert layer.weight.shape == (2, 3) and layer.bias.shape == (2,)
    layer.weight.data[...] = [[1, 2, 3], [0, -1, 0.5]]
    layer.bias.data[...] = [0.5, -0.5]
    y = layer(Tensor([[1.0, 1.0, 2.0]]))
    np.testing.assert_allclose(y.data, [[1 + 2 + 6 + 0.5, -1 + 1 - 0.5]])
    assert y.dtype == np.float32
    y.sum().backward()
    np.testing.assert_allclose(layer.weight.grad, [[1, 1, 2], [1, 1, 2]])
    np.testing.assert_allclose(layer.bias.grad, [1, 1])
    assert layer.weight.grad.dtype == np.float32
    check_layer(nn.Linear(3, 2), randn(4, 3, requires_grad=True))
    check_layer(nn.Linear(3, 2, bias=False), Tensor(randn(2, 5, 3).data, requires_grad=True))


def test_linear_without_bias_and_shape_error():
    layer = nn.Linear(4, 3, bias=False)
    assert layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert repr(layer) == "Linear(in_features=4, out_features=3, bias=False)"
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        layer(randn(2, 5))


def test_linear_default_init_is_pytorchs():
    autograd.manual_seed(0)
    layer = nn.Linear(100, 10)
    w, b = layer.weight.data, layer.bias.data
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(w).max() <= 0.1 and np.abs(b).max() <= 0.1
    assert np.abs(w).max() > 0.098  # the whole interval is used
    assert w.std() == pytest.approx(0.1 / math.sqrt(3), rel=0.06)
    assert abs(w.mean()) < 0.01
    wide = nn.Linear(400, 300)  # bias bound is 1/sqrt(in), too
    assert np.abs(wide.bias.data).max() <= 0.05 and np.abs(wide.bias.data).max() > 0.045


def test_init_follows_the_seed_and_default_dtype():
    autograd.manual_seed(7)
    a = nn.Linear(5, 4)
    autograd.manual_seed(7)
    b = nn.Linear(5, 4)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    autograd.set_default_dtype(np.float64)
    try:
        layer = nn.Linear(5, 4)
        bn = nn.BatchNorm1d(3)
    finally:
        autograd.set_default_dtype(np.float32)
    assert layer.weight.dtype == np.float64 and bn.running_mean.dtype == np.float64


# ----- MLP and containers -------------------------------------------------------------------------
def test_mlp_structure_names_and_repr():
    model = nn.MLP(784, [128, 64], 10)
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias",
        "layers.4.weight", "layers.4.bias",
    ]  # fmt: skip
    assert isinstance(model.layers, nn.Sequential) and len(model.layers) == 5
    assert repr(model) == (
        "MLP(\n"
        "  (layers): Sequential(\n"
        "    (0): Linear(in_features=784, out_features=128, bias=True)\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in_features=128, out_features=64, bias=True)\n"
        "    (3): ReLU()\n"
        "    (4): Linear(in_features=64, out_features=10, bias=True)\n"
        "  )\n"
        ")"
    )


def test_mlp_activation_and_dropout_options():
    model = nn.MLP(4, [8], 2, activation="gelu", dropout=0.25)
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["Linear", "GELU", "Dropout", "Linear"]
    assert model.layers[2].p == 0.25
    for name, cls in [("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid), ("leaky_relu", nn.LeakyReLU)]:
        assert isinstance(nn.MLP(2, [3, 3], 1, activation=name).layers[3], cls)
    assert [type(m).__name__ for m in nn.MLP(3, [], 2).layers] == ["Linear"]
    with pytest.raises(ValueError, match="swish"):
        nn.MLP(2, [3], 1, activation="swish")


def test_mlp_forward_matches_numpy_and_gradcheck():
    model = nn.MLP(3, [4], 2, activation="tanh")
    x = randn(5, 3)
    w0, b0 = model.layers[0].weight.data, model.layers[0].bias.data
    w2, b2 = model.layers[2].weight.data, model.layers[2].bias.data
    expected = np.tanh(x.data @ w0.T + b0) @ w2.T + b2
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-5, atol=1e-6)
    check_layer(model, randn(5, 3, requires_grad=True))


def test_mlp_with_dropout_gradcheck_under_a_fixed_mask():
    model = nn.MLP(3, [6], 2, dropout=0.5)
    check_layer(model, randn(4, 3, requires_grad=True), before=lambda: autograd.manual_seed(3))


def test_sequential_indexing_slicing_and_iteration():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and list(seq) == [a, b, c]
    assert seq[0] is a and seq[-1] is c
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and list(head) == [b, c]
    assert [name for name, _ in head.named_children()] == ["1", "2"]  # names kept, as PyTorch
    with pytest.raises(IndexError, match="3"):
        seq[3]
    x = randn(4, 2)
    np.testing.assert_allclose(seq(x).data, c(b(a(x))).data)
    named = nn.Sequential({"fc": nn.Linear(2, 2), "act": nn.Tanh()})
    assert [name for name, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and isinstance(seq[3], nn.Sigmoid)


def test_module_list_registers_its_items():
    blocks = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    blocks.append(nn.Linear(2, 1))
    assert len(blocks) == 3
    assert [name for name, _ in blocks.named_parameters()][-2:] == ["2.weight", "2.bias"]
    blocks[0] = nn.Identity()
    assert isinstance(blocks[0], nn.Identity) and len(list(blocks.parameters())) == 4
    assert isinstance(blocks[1:], nn.ModuleList) and len(blocks[1:]) == 2
    with pytest.raises(NotImplementedError):
        blocks(randn(1, 2))


# ----- activations --------------------------------------------------------------------------------
def _erf(values: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(values)


ACTIVATIONS = [
    (nn.ReLU(), lambda v: np.maximum(v, 0)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda v: 1 / (1 + np.exp(-v))),
    (nn.GELU(), lambda v: v * 0.5 * (1 + _erf(v / math.sqrt(2)))),
    (nn.LeakyReLU(), lambda v: np.where(v > 0, v, 0.01 * v)),
    (nn.LeakyReLU(0.2), lambda v: np.where(v > 0, v, 0.2 * v)),
    (nn.Softmax(axis=0), lambda v: np.exp(v) / np.exp(v).sum(axis=0)),
    (nn.Softmax(), lambda v: np.exp(v) / np.exp(v).sum(axis=-1, keepdims=True)),
    (nn.LogSoftmax(), lambda v: v - np.log(np.exp(v).sum(axis=-1, keepdims=True))),
    (nn.Identity(), lambda v: v),
]


@pytest.mark.parametrize(("layer", "reference"), ACTIVATIONS, ids=lambda a: repr(a)[:20])
def test_activation_values_and_gradients(layer, reference):
    x = randn(3, 4, seed=1)
    y = layer(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.data, reference(x.data.astype(np.float64)), rtol=1e-5, atol=1e-6)
    check_layer(layer, randn(3, 4, seed=2, requires_grad=True))


def test_activation_reprs():
    assert repr(nn.ReLU()) == "ReLU()"
    assert repr(nn.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.Softmax(axis=1)) == "Softmax(axis=1)"
    assert repr(nn.LogSoftmax()) == "LogSoftmax(axis=-1)"
    assert repr(nn.Flatten()) == "Flatten(start_axis=1)"
    assert repr(nn.Dropout(0.2)) == "Dropout(p=0.2)"


def test_flatten():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4), requires_grad=True)
    y = nn.Flatten()(x)
    assert y.shape == (2, 12)
    np.testing.assert_array_equal(y.data[1], np.arange(12.0, 24.0))
    assert nn.Flatten(0)(x).shape == (24,)
    assert nn.Flatten(2)(x).shape == (2, 3, 4)
    check_layer(nn.Flatten(), randn(2, 3, 2, requires_grad=True))


# ----- Dropout ------------------------------------------------------------------------------------
def test_dropout_statistics_in_training():
    autograd.manual_seed(0)
    layer = nn.Dropout(0.3)
    x = Tensor(np.ones((200, 100), dtype=np.float32), requires_grad=True)
    y = layer(x)
    kept = y.data != 0
    assert kept.mean() == pytest.approx(0.7, abs=0.01)
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)  # survivors scaled by 1/(1-p)
    assert y.data.mean() == pytest.approx(1.0, abs=0.02)  # expectation preserved
    y.sum().backward()
    np.testing.assert_allclose(x.grad, y.data)  # gradient flows through the same mask
    assert not np.array_equal(layer(x).data, y.data)  # a fresh mask each call


def test_dropout_is_identity_in_eval_and_validates_p():
    layer = nn.Dropout(0.9).eval()
    x = randn(5, 5)
    np.testing.assert_array_equal(layer(x).data, x.data)
    assert np.all(nn.Dropout(1.0)(x).data == 0)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).data, x.data)
    with pytest.raises(ValueError, match="1.5"):
        nn.Dropout(1.5)


# ----- convolution and pooling --------------------------------------------------------------------
def _conv_reference(x, w, b, stride, padding):
    n, c, h, width = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (width + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w) + b
    return out


def test_conv2d_values_shapes_and_repr():
    autograd.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    assert conv.weight.shape == (3, 2, 3, 3) and conv.bias.shape == (3,)
    x = randn(2, 2, 5, 6)
    y = conv(x)
    assert y.shape == (2, 3, 3, 3) and y.dtype == np.float32
    expected = _conv_reference(x.data, conv.weight.data, conv.bias.data, 2, 1)
    np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-5)
    assert repr(conv) == "Conv2d(2, 3, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"
    assert repr(nn.Conv2d(1, 4, (3, 5), bias=False)) == (
        "Conv2d(1, 4, kernel_size=(3, 5), stride=(1, 1), bias=False)"
    )
    with pytest.raises(ValueError, match=r"Conv2d.*\(2, 3, 5, 5\)"):
        conv(randn(2, 3, 5, 5))


def test_conv2d_default_init_bound():
    conv = nn.Conv2d(4, 8, 5)  # fan_in = 4 * 25 = 100: bound 0.1 for weight and bias
    assert np.abs(conv.weight.data).max() <= 0.1 and np.abs(conv.weight.data).max() > 0.095
    assert np.abs(conv.bias.data).max() <= 0.1
    assert conv.weight.data.std() == pytest.approx(0.1 / math.sqrt(3), rel=0.1)


def test_conv2d_gradcheck():
    check_layer(nn.Conv2d(2, 3, 3, stride=2, padding=1), randn(2, 2, 4, 5, requires_grad=True))
    check_layer(nn.Conv2d(1, 2, (2, 3), bias=False), randn(1, 1, 3, 4, requires_grad=True))


def test_max_pool_values_and_first_maximum_gradient():
    x = Tensor(
        [[[[1.0, 3.0, 2.0, 0.0],
           [3.0, 0.0, 1.0, 5.0],
           [0.0, 0.0, 7.0, 7.0],
           [0.0, 0.0, 7.0, 7.0]]]],
        requires_grad=True,
    )  # fmt: skip
    pool = nn.MaxPool2d(2)
    assert repr(pool) == "MaxPool2d(kernel_size=2, stride=2, padding=0)"
    y = pool(x)
    np.testing.assert_array_equal(y.data, [[[[3, 5], [0, 7]]]])
    y.sum().backward()
    # ties: the first maximum in row-major order of each window gets the gradient
    np.testing.assert_array_equal(
        x.grad[0, 0], [[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]]
    )
    check_layer(nn.MaxPool2d(2, stride=1), randn(1, 2, 4, 4, requires_grad=True))


def test_avg_pool_values_and_gradcheck():
    x = Tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    pool = nn.AvgPool2d(2)
    assert repr(pool) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    np.testing.assert_allclose(pool(x).data, [[[[2.5, 4.5], [10.5, 12.5]]]])
    check_layer(nn.AvgPool2d(3, stride=2, padding=1), randn(2, 1, 5, 5, requires_grad=True))


# ----- normalisation ------------------------------------------------------------------------------
def test_batchnorm2d_training_statistics_and_running_buffers():
    bn = nn.BatchNorm2d(3)
    assert repr(bn) == "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True)"
    x = randn(4, 3, 2, 5, seed=3)
    y = bn(x)
    per_channel = y.data.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.var(axis=1), 1, rtol=1e-3)
    xs = x.data.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * xs.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.data, 0.9 + 0.1 * xs.var(axis=1, ddof=1), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 1
    assert list(bn.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked",
    ]  # fmt: skip


def test_batchnorm_eval_uses_running_statistics():
    bn = nn.BatchNorm1d(2, eps=0.0)
    bn.running_mean.data[...] = [1.0, -2.0]
    bn.running_var.data[...] = [4.0, 0.25]
    bn.weight.data[...] = [2.0, 1.0]
    bn.bias.data[...] = [0.0, 3.0]
    bn.eval()
    y = bn(Tensor([[3.0, -1.0], [1.0, -2.0]]))
    np.testing.assert_allclose(y.data, [[2.0, 5.0], [0.0, 3.0]])
    assert bn.num_batches_tracked.item() == 0  # eval changes no buffer
    np.testing.assert_array_equal(bn.running_mean.data, [1.0, -2.0])


def test_batchnorm_momentum_none_keeps_the_cumulative_average():
    """PyTorch's momentum=None: the n-th training batch enters with weight 1/n, so the running
    statistics are the plain mean of the batches' means and unbiased variances."""
    rng = np.random.default_rng(3)
    batches = [rng.normal(loc, 1.0 + loc, size=(5, 2)) for loc in (0.0, 2.0, -1.0)]
    bn = nn.BatchNorm1d(2, momentum=None)
    for b in batches:
        bn(Tensor(b))
    means = [b.mean(axis=0) for b in batches]
    variances = [b.var(axis=0, ddof=1) for b in batches]
    np.testing.assert_allclose(bn.running_mean.data, np.mean(means, axis=0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.data, np.mean(variances, axis=0), rtol=1e-6)
    assert bn.num_batches_tracked.item() == 3
    assert "momentum=None" in repr(bn)
    with pytest.raises(ValueError, match=r"BatchNorm2d: momentum must be in \[0, 1\] or None"):
        nn.BatchNorm2d(2, momentum=1.5)
    with pytest.raises(TypeError, match="batch_norm: momentum must be a number, got None"):
        nn.functional.batch_norm(randn(3, 2), np.zeros(2), np.ones(2), training=True, momentum=None)


def test_batchnorm_gradcheck_train_and_eval():
    check_layer(nn.BatchNorm1d(3), randn(5, 3, requires_grad=True))
    check_layer(nn.BatchNorm1d(2), randn(4, 2, 3, requires_grad=True))
    check_layer(nn.BatchNorm2d(2), randn(3, 2, 2, 2, requires_grad=True))
    bn = nn.BatchNorm2d(2)
    bn(randn(3, 2, 2, 2))
    check_layer(bn.eval(), randn(2, 2, 2, 2, requires_grad=True))


def test_batchnorm_without_affine_and_shape_errors():
    bn = nn.BatchNorm1d(4, affine=False)
    assert list(bn.parameters()) == [] and len(list(bn.buffers())) == 3
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\).*\(2, 3\)"):
        bn(randn(2, 3))
    with pytest.raises(ValueError, match=r"BatchNorm2d.*\(2, 3\)"):
        nn.BatchNorm2d(3)(randn(2, 3))


def test_layernorm_values_and_gradcheck():
    ln = nn.LayerNorm(4)
    assert repr(ln) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
    x = randn(3, 4).data.astype(np.float64)
    y = ln(Tensor(x))
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    np.testing.assert_allclose(y.data, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-6)
    ln2 = nn.LayerNorm((2, 3))
    ln2.weight.data[...] = np.random.default_rng(1).standard_normal((2, 3))
    check_layer(ln2, randn(2, 2, 3, requires_grad=True))
    assert list(nn.LayerNorm(3, elementwise_affine=False).parameters()) == []


def test_embedding_lookup_init_and_gradient():
    autograd.manual_seed(2)
    big = nn.Embedding(1000, 20)
    assert big.weight.data.std() == pytest.approx(1.0, rel=0.03)  # N(0, 1), PyTorch's init
    emb = nn.Embedding(5, 3)
    assert repr(emb) == "Embedding(5, 3)"
    idx = np.array([[0, 4], [4, 1]])
    y = emb(idx)
    assert y.shape == (2, 2, 3)
    np.testing.assert_array_equal(y.data[1, 0], emb.weight.data[4])
    y.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [1, 1, 0, 0, 2])  # repeats add up
    check_layer(emb, Tensor(idx))


# ----- modes, state and scopes across real layers -------------------------------------------------
def test_train_eval_switches_dropout_and_batchnorm_inside_a_model():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    x = randn(8, 4)
    model.eval()
    first, second = model(x).data, model(x).data
    np.testing.assert_array_equal(first, second)  # deterministic in eval
    assert model[1].num_batches_tracked.item() == 0
    model.train()
    model(x)
    assert model[1].num_batches_tracked.item() == 1


def test_state_dict_round_trip_through_a_cnn():
    def make() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)
        )

    source = make()
    source(randn(4, 1, 4, 4))  # moves the running statistics
    target = make()
    target.load_state_dict(source.state_dict())
    source.eval(), target.eval()
    x = randn(2, 1, 4, 4, seed=5)
    np.testing.assert_array_equal(source(x).data, target(x).data)
    assert "1.running_var" in source.state_dict()


def test_scope_of_ops_inside_mlp_layers():
    model = nn.MLP(6, [5], 3)
    out = model(randn(2, 6))
    ops = [t for t in autograd.topological_order([out]) if t._op]
    weight = model.layers[0].weight
    uses_weight = next(t for t in ops if any(p is weight for p in t._parents))
    assert uses_weight._scope == (("", "MLP"), ("layers", "Sequential"), ("layers.0", "Linear"))
    relu = next(t for t in ops if t._op == "relu")
    assert relu._scope == (("", "MLP"), ("layers", "Sequential"), ("layers.1", "ReLU"))
    assert out._scope == (("", "MLP"), ("layers", "Sequential"), ("layers.2", "Linear"))
    loss = nn.CrossEntropyLoss()(out, np.array([0, 2]))
    assert loss._scope == (("", "CrossEntropyLoss"),)


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 4),
    sizes=st.lists(st.integers(1, 5), min_size=2, max_size=4),
    activation=st.sampled_from(["relu", "gelu", "tanh", "sigmoid", "leaky_relu"]),
)
def test_mlp_any_sizes_shapes_and_float32(batch, sizes, activation):
    model = nn.MLP(sizes[0], sizes[1:-1], sizes[-1], activation=activation)
    x = Tensor(np.random.default_rng(batch).standard_normal((batch, sizes[0])))
    out = model(x)
    assert out.shape == (batch, sizes[-1]) and out.dtype == np.float32
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and p.grad.dtype == np.float32, name
