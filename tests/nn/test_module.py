"""nn.Module: registration, dotted names, modes, state dicts, repr and the scope protocol."""

import copy

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor
from nn import Module, Parameter


class Affine(Module):
    """y = x * scale + shift, with a buffer counting calls (written with Tensor ops only)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = Parameter(np.arange(1, n + 1, dtype=np.float32))
        self.shift = Parameter(np.zeros(n, dtype=np.float32))
        self.register_buffer("calls", np.array(0, dtype=np.int64))

    def forward(self, x: Tensor) -> Tensor:
        self.calls.data += 1
        return x * self.scale + self.shift


class Net(Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = Affine(3)
        self.blocks = Block()
        self.head = Parameter(np.ones(3, dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return (self.blocks(self.first(x)) * self.head).sum()


class Block(Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Affine(3)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x).tanh()


def test_parameter_is_a_float32_tensor_that_requires_grad():
    p = Parameter(np.array([1.0, 2.0]))  # float64 data becomes the default float32
    assert isinstance(p, Tensor)
    assert p.requires_grad and p.is_leaf
    assert p.dtype == np.float32
    assert repr(p).startswith("Parameter containing:\ntensor(")
    with pytest.raises(TypeError):
        Parameter(np.array([1, 2]))  # integers cannot require grad


def test_registration_and_dotted_names():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == [
        "head", "first.scale", "first.shift", "blocks.inner.scale", "blocks.inner.shift",
    ]  # fmt: skip
    params = list(net.parameters())
    assert params[0] is net.head and params[1] is net.first.scale
    assert [name for name, _ in net.named_buffers()] == ["first.calls", "blocks.inner.calls"]
    assert [name for name, _ in net.named_modules()] == ["", "first", "blocks", "blocks.inner"]
    assert [name for name, _ in net.named_children()] == ["first", "blocks"]
    assert list(net.children()) == [net.first, net.blocks]
    assert list(net.modules())[-1] is net.blocks.inner
    # plain attributes are not registered
    net.note = "hello"
    net.array = np.zeros(3)
    assert "note" not in dict(net.named_parameters()) and len(list(net.buffers())) == 2


def test_reassignment_and_deletion_update_the_registry():
    net = Net()
    net.head = Parameter(np.zeros(2, dtype=np.float32))
    assert dict(net.named_parameters())["head"].shape == (2,)
    net.first = Block()  # the old Affine's parameters disappear
    assert "first.scale" not in dict(net.named_parameters())
    assert "first.inner.scale" in dict(net.named_parameters())
    assert [name for name, _ in net.named_children()] == ["first", "blocks"]  # position kept
    del net.blocks
    assert not any(name.startswith("blocks") for name, _ in net.named_parameters())
    assert not hasattr(net, "blocks")
    with pytest.raises(TypeError, match="head"):
        net.head = Tensor([1.0])  # a plain Tensor cannot replace a Parameter
    net.head = None  # ... but None can
    assert "head" not in dict(net.named_parameters())


def test_shared_parameters_and_modules_are_listed_once():
    net = Net()
    net.blocks.inner.scale = net.first.scale  # tied weight
    net.again = net.first  # the same module under a second name
    names = [name for name, _ in net.named_parameters()]
    assert names.count("first.scale") == 1
    assert "blocks.inner.scale" not in names and "again.scale" not in names
    assert len(list(net.parameters())) == len({id(p) for p in net.parameters()}) == 4
    assert [name for name, _ in net.named_modules()] == ["", "first", "blocks", "blocks.inner"]
    # the state dict names every parameter under each of its names, as PyTorch's
    state = net.state_dict()
    assert {"blocks.inner.scale", "again.scale", "first.scale"} <= set(state)


def test_forgetting_super_init_is_a_clear_error():
    class Broken(Module):
        def __init__(self) -> None:
            self.w = Parameter(np.zeros(1))

    with pytest.raises(AttributeError, match=r"super\(\).__init__"):
        Broken()


def test_train_and_eval_propagate_down_the_tree():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.blocks.train()
    assert net.blocks.inner.training and not net.first.training and not net.training
    net.train()
    assert all(m.training for m in net.modules())


def test_zero_grad_clears_every_parameter_grad():
    net = Net()
    net(Tensor(np.ones(3, dtype=np.float32))).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_forward_and_backward_values():
    net = Net()
    x = Tensor([0.5, -1.0, 2.0])
    out = net(x)
    # first: x*[1,2,3] = [.5,-2,6]; inner: same scale -> [.5,-4,18]; tanh; head ones; sum
    expected = np.tanh([0.5, -4.0, 18.0]).sum()
    assert out.item() == pytest.approx(expected, rel=1e-6)
    out.backward()
    # d/d head = tanh(inner)
    np.testing.assert_allclose(net.head.grad, np.tanh([0.5, -4.0, 18.0]), rtol=1e-6)
    assert net.first.calls.item() == 1 and net.blocks.inner.calls.item() == 1


def test_buffers_are_tensors_without_grad():
    m = Affine(2)
    assert isinstance(m.calls, Tensor) and not m.calls.requires_grad
    assert m.calls.dtype == np.int64
    m.calls = np.array(5)  # assigning to a buffer name updates the buffer
    assert isinstance(m.calls, Tensor) and dict(m.named_buffers())["calls"].item() == 5
    with pytest.raises(TypeError, match="grad"):
        m.register_buffer("bad", Tensor([1.0], requires_grad=True))
    with pytest.raises(KeyError, match="scale"):
        m.register_buffer("scale", np.zeros(1))


def test_state_dict_holds_copies_of_parameters_and_buffers():
    net = Net()
    state = net.state_dict()
    assert list(state) == [
        "head", "first.scale", "first.shift", "first.calls",
        "blocks.inner.scale", "blocks.inner.shift", "blocks.inner.calls",
    ]  # fmt: skip
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["first.scale"].dtype == np.float32 and state["first.calls"].dtype == np.int64
    before = state["first.scale"].copy()
    net.first.scale.data += 10  # training later must not change the saved dict
    net.first.calls.data += 1
    np.testing.assert_array_equal(state["first.scale"], before)
    assert state["first.calls"] == 0


def test_load_state_dict_copies_in_place_and_keeps_dtype():
    source, target = Net(), Net()
    for p in source.parameters():
        p.data[...] = np.random.default_rng(0).standard_normal(p.shape)
    source.first.calls.data[...] = 7
    weight_array = target.first.scale.data
    state = {  # float64 values are cast into the float32 parameters
        k: v.astype(np.float64) if v.dtype == np.float32 else v
        for k, v in source.state_dict().items()
    }
    result = target.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert target.first.scale.data is weight_array  # same array: optimisers keep their reference
    assert target.first.scale.dtype == np.float32
    loaded = target.state_dict()
    for name, array in source.state_dict().items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)
    assert target.first.calls.item() == 7


def test_load_state_dict_strict_errors_name_the_keys():
    net = Net()
    state = net.state_dict()
    del state["first.shift"]
    state["extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"first\.shift") as info:
        net.load_state_dict(state)
    assert "extra.weight" in str(info.value)
    # non-strict: loads what matches, reports the rest
    state["head"] = np.full(3, 4.0, dtype=np.float32)
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["first.shift"] and result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(net.head.data, [4, 4, 4])


def test_load_state_dict_shape_mismatch_names_key_and_shapes_and_copies_nothing():
    net = Net()
    state = net.state_dict()
    state["head"] = np.full(3, 9.0, dtype=np.float32)
    state["blocks.inner.scale"] = np.zeros((4, 3), dtype=np.float32)
    before = net.head.data.copy()
    with pytest.raises(ValueError, match=r"blocks\.inner\.scale.*\(4, 3\).*\(3,\)"):
        net.load_state_dict(state)
    np.testing.assert_array_equal(net.head.data, before)  # checked before copying anything


def test_repr_is_nested_like_pytorch():
    class Leaf(Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def extra_repr(self) -> str:
            return f"n={self.n}"

    class Mid(Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = Leaf(1)
            self.b = Leaf(2)

    class Top(Module):
        def __init__(self) -> None:
            super().__init__()
            self.mid = Mid()
            self.last = Leaf(3)

    assert repr(Leaf(5)) == "Leaf(n=5)"
    assert repr(Top()) == (
        "Top(\n  (mid): Mid(\n    (a): Leaf(n=1)\n    (b): Leaf(n=2)\n  )\n  (last): Leaf(n=3)\n)"
    )


# ----- scope protocol ------------------------------------------------------------------------
def test_scope_records_dotted_names_relative_to_the_called_root():
    net = Net()
    out = net(Tensor(np.ones(3, dtype=np.float32)))
    assert out._scope == (("", "Net"),)  # the final sum ran in Net.forward itself
    scopes = {t._scope for t in autograd.topological_order([out]) if t._op}
    assert (("", "Net"), ("first", "Affine")) in scopes
    assert (("", "Net"), ("blocks", "Block"), ("blocks.inner", "Affine")) in scopes
    tanh = next(t for t in autograd.topological_order([out]) if t._op == "tanh")
    assert tanh._scope == (("", "Net"), ("blocks", "Block"))
    assert autograd.grad_mode.current_scope() == ()  # popped after the call


def test_calling_a_submodule_directly_makes_it_the_root():
    net = Net()
    y = net.blocks(Tensor(np.ones(3, dtype=np.float32)))
    assert y._scope == (("", "Block"),)
    inner_op = y._parents[0]
    assert inner_op._scope == (("", "Block"), ("inner", "Affine"))


def test_scope_names_follow_reassigned_submodules():
    net = Net()
    net(Tensor(np.ones(3, dtype=np.float32)))  # builds and caches the name table
    net.blocks.inner = Affine(3)  # a deep change must invalidate the root's cache
    out = net(Tensor(np.ones(3, dtype=np.float32)))
    scopes = {t._scope for t in autograd.topological_order([out]) if t._op}
    assert (("", "Net"), ("blocks", "Block"), ("blocks.inner", "Affine")) in scopes
    # a deep copy gets its own table, not the original's ids
    twin = copy.deepcopy(net)
    out = twin(Tensor(np.ones(3, dtype=np.float32)))
    scopes = {t._scope for t in autograd.topological_order([out]) if t._op}
    assert (("", "Net"), ("blocks", "Block"), ("blocks.inner", "Affine")) in scopes


def test_a_module_outside_the_tree_starts_its_own_naming():
    helper = Affine(3)

    class UsesHelper(Module):
        def __init__(self) -> None:
            super().__init__()
            self.own = Affine(3)

        def forward(self, x: Tensor) -> Tensor:
            return helper(self.own(x))

    out = UsesHelper()(Tensor(np.ones(3, dtype=np.float32)))
    assert out._scope == (("", "UsesHelper"), ("", "Affine"))


def test_scope_is_restored_when_forward_raises():
    class Fails(Module):
        def forward(self, x: Tensor) -> Tensor:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        Fails()(Tensor([1.0]))
    assert autograd.grad_mode.current_scope() == ()
    assert Net()(Tensor(np.ones(3, dtype=np.float32)))._scope == (("", "Net"),)


def test_module_without_forward_says_so():
    with pytest.raises(NotImplementedError, match="Module"):
        Module()(Tensor([1.0]))


def test_nn_exports():
    for name in ("Parameter", "Module", "save", "load", "init"):
        assert hasattr(nn, name)
