"""Graph drawing: nodes, edges, names, clusters, colours, limits and rendering.

The DOT text is parsed back into nodes and edges, so each test checks what a reader would see.
"""

from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest

import autograd
from autograd import Tensor, draw_graph, save_graph, viz

NODE = re.compile(r"^\s*(\w+) \[(.*)\]$")
EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$")


def nodes(graph) -> dict[str, str]:
    """`{node id: its attribute text}`, for every node statement of the DOT source."""
    found = {}
    for line in graph.source.splitlines():
        m = NODE.match(line)
        if m and m.group(1) not in ("node", "edge", "graph"):
            found[m.group(1)] = m.group(2)
    return found


def edges(graph) -> list[tuple[str, str, str]]:
    """`(tail, head, label)` of the visible edges (invisible ones only steer the layout)."""
    found = []
    for line in graph.source.splitlines():
        m = EDGE.match(line)
        if m and "invis" not in (m.group(3) or ""):
            label = re.search(r'label="\s*([^"]*)"', m.group(3) or "")
            found.append((m.group(1), m.group(2), label.group(1) if label else ""))
    return found


def node_with(graph, text: str) -> str:
    """The attributes of the one node whose label contains `text`."""
    hits = [attrs for attrs in nodes(graph).values() if text in attrs]
    assert len(hits) == 1, f"{len(hits)} nodes contain {text!r}"
    return hits[0]


def fill(attrs: str) -> str:
    m = re.search(r'fillcolor="(#\w+)"', attrs)
    return m.group(1) if m else viz.TENSOR_COLOR


def tensor_ids(graph) -> list[str]:
    return [n for n in nodes(graph) if re.fullmatch(r"t\d+", n)]


def op_ids(graph) -> list[str]:
    return [n for n in nodes(graph) if re.fullmatch(r"o\d+", n)]


def abc():
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True, name="a")
    b = Tensor([4.0, 5.0, 6.0], requires_grad=True, name="b")
    c = Tensor(2.0, requires_grad=True, name="c")
    return a, b, c


# ----- structure -------------------------------------------------------------------------------
def test_counts_of_a_known_expression():
    a, b, c = abc()
    y = (a * b + c).sum()
    g = draw_graph(y)
    # tensors a, b, c, a*b, a*b+c, y; ops mul, add, sum
    assert len(tensor_ids(g)) == 6
    assert len(op_ids(g)) == 3
    assert "legend" not in nodes(g)  # nothing to show before backward
    # each op: one edge per input and one to its result
    assert len(edges(g)) == 2 + 1 + 2 + 1 + 1 + 1
    ops = {n: re.search(r"<B>(\w+)</B>", nodes(g)[n]).group(1) for n in op_ids(g)}
    assert sorted(ops.values()) == ["add", "mul", "sum"]
    by_op = {v: k for k, v in ops.items()}
    into = {op: sorted(t for t, h, _ in edges(g) if h == node) for op, node in by_op.items()}
    name_of = {n: re.search(r"<B>([^<]+)</B>", nodes(g)[n]).group(1) for n in tensor_ids(g)}
    assert sorted(name_of[t] for t in into["mul"]) == ["a", "b"]
    assert "c" in [name_of[t] for t in into["add"]]


def test_edges_follow_the_data_flow_and_the_root_is_highlighted():
    a, b, c = abc()
    y = (a * b + c).sum()
    g = draw_graph(y)
    root = next(n for n, attrs in nodes(g).items() if "peripheries=2" in attrs)
    assert root == max(tensor_ids(g), key=lambda n: int(n[1:]))  # ids in topological order
    assert not [e for e in edges(g) if e[0] == root]  # nothing flows out of the root
    sum_op = next(t for t, h, _ in edges(g) if h == root)
    assert "<B>sum</B>" in nodes(g)[sum_op]


def test_parents_that_need_no_grad_are_drawn():
    x = Tensor(np.ones((2, 3)))  # the input batch
    w = Tensor(np.ones((3, 4)), requires_grad=True)
    g = draw_graph((x @ w).sum(), params={"w": w})
    assert fill(node_with(g, "<B>(2, 3)</B>")) == viz.DATA_COLOR
    assert len(tensor_ids(g)) == 4


def test_scalar_constants_show_their_value():
    x = Tensor([1.0, 2.0], requires_grad=True)
    g = draw_graph(x * 0.5)
    constant = [attrs for attrs in nodes(g).values() if "plaintext" in attrs]
    assert constant == ["label=0.5 shape=plaintext"]


def test_op_arguments_and_broadcast_edges_are_labelled():
    x = Tensor(np.ones((2, 3)), requires_grad=True, name="x")
    bias = Tensor(np.ones(3), requires_grad=True, name="bias")
    y = (x + bias).sum(axis=1, keepdims=True)
    g = draw_graph(y)
    assert "axis=1, keepdims=True" in node_with(g, "<B>sum</B>")
    labelled = [e for e in edges(g) if e[2]]
    assert len(labelled) == 1
    tail, head, label = labelled[0]
    assert "<B>bias</B>" in nodes(g)[tail] and "<B>add</B>" in nodes(g)[head]
    assert label == "(3,) → (2, 3)"


# ----- names -----------------------------------------------------------------------------------
def test_names_from_tensor_name_then_params_then_shape():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    v = Tensor(np.ones(2), requires_grad=True, name="own name")
    x = Tensor(np.ones((4, 3)))
    g = draw_graph((x @ w + v).sum(), params={"fc.weight": w, "ignored": v})
    assert "(3, 2) float32" in node_with(g, "<B>fc.weight</B>")
    assert "<B>own name</B>" in node_with(g, "own name")
    assert "ignored" not in g.source
    assert "float32" in node_with(g, "<B>(4, 3)</B>")


def test_names_from_a_duck_typed_module():
    class Model:  # anything with named_parameters() will do
        def __init__(self) -> None:
            self.w = Tensor(np.ones(3), requires_grad=True)

        def named_parameters(self):
            yield "layer.w", self.w

    model = Model()
    g = draw_graph((model.w * 2.0).sum(), params=model)
    assert "<B>layer.w</B>" in g.source
    with pytest.raises(TypeError, match="named_parameters"):
        draw_graph(model.w, params=[model.w])


# ----- gradients -------------------------------------------------------------------------------
def test_grad_norm_and_stats_after_backward():
    a, b, c = abc()
    y = (a * b + c).sum()
    y.backward()
    g = draw_graph(y, show_grad="stats")
    # d y / d a = b = [4, 5, 6]: norm sqrt(77); d y / d c = 3 (c broadcast over 3 entries)
    assert f"grad norm {math.sqrt(77):.3g}" in node_with(g, "<B>a</B>")
    assert "min 4  mean 5  max 6" in node_with(g, "<B>a</B>")
    assert "grad norm 3" in node_with(g, "<B>c</B>")
    # intermediates keep no .grad without retain_grads: no grad line, plain fill
    for attrs in nodes(g).values():
        if "<B>(3,)</B>" in attrs:
            assert "grad" not in attrs and fill(attrs) == viz.TENSOR_COLOR
    assert "legend" in nodes(g)
    hidden = draw_graph(y, show_grad=False)
    assert "grad norm" not in hidden.source and "legend" not in nodes(hidden)


def test_retain_grads_puts_grads_on_every_node():
    a, b, c = abc()
    with autograd.retain_grads():
        y = (a * b + c).sum()
    y.backward()
    g = draw_graph(y)
    graded = [n for n in tensor_ids(g) if "grad norm" in nodes(g)[n]]
    assert len(graded) == 6
    # a*b has gradient [1, 1, 1]: norm sqrt(3)
    assert sum(f"grad norm {math.sqrt(3):.3g}" in nodes(g)[n] for n in graded) == 2


def test_colour_follows_the_log_of_the_grad_norm():
    small = Tensor([1.0], requires_grad=True, name="small")
    large = Tensor([1.0], requires_grad=True, name="large")
    y = (small * 1e-4 + large * 10.0).sum()
    y.backward()
    g = draw_graph(y)
    # norms 1e-4 and 10: five decades, the palest and the darkest colours of the scale
    assert fill(node_with(g, "<B>small</B>")) == viz.GRAD_PALETTE[0]
    assert fill(node_with(g, "<B>large</B>")) == viz.GRAD_PALETTE[-1]
    assert "1e-4 to 1e-3" in nodes(g)["legend"] and "1e0 to 1e1" in nodes(g)["legend"]


def test_nan_and_inf_grads_are_red_and_say_so():
    x = Tensor([1.0, 2.0], requires_grad=True, name="x")
    z = Tensor([1.0, 2.0], requires_grad=True, name="z")
    y = (x * float("nan")).sum() + (z * float("inf")).sum()
    y.backward()
    g = draw_graph(y)
    assert fill(node_with(g, "<B>x</B>")) == viz.NONFINITE_COLOR
    assert "grad nan" in node_with(g, "<B>x</B>")
    assert fill(node_with(g, "<B>z</B>")) == viz.NONFINITE_COLOR
    assert "grad inf" in node_with(g, "<B>z</B>")


def test_dead_relu_grad_is_grey():
    x = Tensor([[1.0, 2.0]])
    w = Tensor(-np.ones((2, 3)), requires_grad=True, name="w")  # every unit negative: dead
    live = Tensor(np.ones(3), requires_grad=True, name="live")
    y = ((x @ w).relu() + live).sum()
    y.backward()
    g = draw_graph(y)
    assert fill(node_with(g, "<B>w</B>")) == viz.ZERO_GRAD_COLOR
    assert "grad 0 (all zero)" in node_with(g, "<B>w</B>")
    assert fill(node_with(g, "<B>live</B>")) not in (viz.ZERO_GRAD_COLOR, viz.TENSOR_COLOR)


def test_parameter_without_grad_is_dashed():
    used = Tensor([1.0, 2.0], requires_grad=True, name="used")
    unused = Tensor([3.0], requires_grad=True, name="unused")
    loss, other = (used * 2.0).sum(), (unused * 3.0).sum()
    assert "dashed" not in draw_graph([loss, other]).source  # before backward: nothing to say
    loss.backward()  # `other` never gets a backward pass
    g = draw_graph([loss, other])
    assert "dashed" in node_with(g, "<B>unused</B>") and "no grad" in node_with(g, "<B>unused</B>")
    assert "dashed" not in node_with(g, "<B>used</B>")


def test_show_data_summarises_values():
    a, b, c = abc()
    g = draw_graph((a * b).sum(), show_data=True)
    assert "[1, 2, 3]" in node_with(g, "<B>a</B>")
    assert "[32]" in g.source  # 1*4 + 2*5 + 3*6
    big = Tensor(np.arange(10.0), requires_grad=True, name="big")
    assert "mean 4.5" in node_with(draw_graph(big * 1.0, show_data=True), "<B>big</B>")


# ----- modules ---------------------------------------------------------------------------------
def two_layer_net():
    """A hand-made 'Net' with module scopes pushed as nn.Module.__call__ does."""
    rng = np.random.default_rng(0)
    params = {
        "fc.weight": Tensor(rng.normal(size=(2, 3)), requires_grad=True),
        "fc.bias": Tensor(np.zeros(2), requires_grad=True),
    }
    x = Tensor(rng.normal(size=(4, 3)))
    with autograd.scope(("", "Net")):
        with autograd.scope(("fc", "Linear")):
            h = x @ params["fc.weight"].T + params["fc.bias"]
        with autograd.scope(("act", "Tanh")):
            out = h.tanh()
    return (out * out).mean(), params


def cluster_block(source: str, label: str) -> str:
    """The text of the cluster with this label, up to its closing brace."""
    start = source.index(f"label={label}" if " " not in label else f'label="{label}"')
    depth, i = 1, start
    while depth:
        i += 1
        depth += {"{": 1, "}": -1}.get(source[i], 0)
    return source[start:i]


def test_module_scopes_become_nested_labelled_clusters():
    loss, params = two_layer_net()
    g = draw_graph(loss, params=params)
    assert g.source.count("subgraph cluster_") == 3
    net = cluster_block(g.source, "Net")
    fc = cluster_block(g.source, "fc (Linear)")
    assert fc in net and cluster_block(g.source, "act (Tanh)") in net
    # the parameters sit in their module's box, with the ops of that module
    assert "<B>fc.weight</B>" in fc and "<B>fc.bias</B>" in fc
    assert "<B>matmul</B>" in fc and "<B>tanh</B>" not in fc
    # the loss is computed outside the model
    assert "<B>mean</B>" not in net


def test_collapse_draws_each_module_as_one_node():
    loss, params = two_layer_net()
    g = draw_graph(loss, params=params, collapse=True)
    fc = node_with(g, "fc (Linear)")
    assert "in (4, 3)" in fc and "out (4, 2)" in fc and "2 parameters, 8 numbers" in fc
    assert "in (4, 2)" in node_with(g, "act (Tanh)")
    assert "matmul" not in g.source and "fc.weight" not in g.source
    assert g.source.count("subgraph cluster_") == 1  # Net stays a box around them
    module_edges = [e for e in edges(g) if e[0].startswith("m") and e[1].startswith("m")]
    assert [e[:2] for e in module_edges] == [("m0", "m1")]  # fc feeds act
    # collapse=1: the root's children; the same here
    assert draw_graph(loss, params=params, collapse=1).source == g.source


def test_collapsed_module_shows_its_parameters_grad():
    loss, params = two_layer_net()
    loss.backward()
    g = draw_graph(loss, params=params, collapse=True)
    norm = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params.values()))
    assert f"grad norm {norm:.3g}" in node_with(g, "fc (Linear)")


def test_same_model_same_inputs_same_dot_text():
    first, params1 = two_layer_net()
    second, params2 = two_layer_net()
    first.backward()
    second.backward()
    source = draw_graph(first, params=params1).source
    assert source == draw_graph(second, params=params2).source
    assert not re.search(r"0x[0-9a-f]{4,}", source)
    assert str(id(first)) not in source


# ----- large graphs, freed graphs --------------------------------------------------------------
def test_max_nodes_keeps_the_nearest_and_counts_the_rest():
    x = Tensor([1.0], requires_grad=True, name="start")
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y.tanh()
    g = draw_graph(y, max_nodes=5)
    assert len(tensor_ids(g)) == 5
    assert "start" not in g.source
    assert "... 2996 more" in nodes(g)["more"]
    assert len([e for e in edges(g) if e[0] == "more"]) == 1
    assert "peripheries=2" in "".join(nodes(g).values())  # the root is among the kept
    with pytest.raises(ValueError, match="max_nodes"):
        draw_graph(y, max_nodes=0)


def test_draws_after_backward_freed_the_graph():
    a, b, c = abc()
    y = (a * b + c).sum()
    before = draw_graph(y, show_grad=False).source
    y.backward()
    product = y._parents[0]._parents[0]  # what the graph keeps of a * b
    assert product.op == "mul" and product._backward is None  # mul's saved inputs are gone
    assert draw_graph(y, show_grad=False).source == before
    assert "grad norm" in draw_graph(y).source


# ----- files -----------------------------------------------------------------------------------
def test_save_dot_needs_no_graphviz_binary(tmp_path, monkeypatch):
    a, b, c = abc()
    y = (a * b + c).sum()
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    path = save_graph(y, tmp_path / "graph.dot")
    assert path.read_text().startswith("digraph")
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        save_graph(y, tmp_path / "graph.svg")
    with pytest.raises(ValueError, match=r"\.svg"):
        save_graph(y, tmp_path / "graph.bmp")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' program not installed")
def test_renders_svg_and_displays_inline(tmp_path):
    loss, params = two_layer_net()
    loss.backward()
    path = save_graph(loss, tmp_path / "net.svg", params=params)
    svg = path.read_text()
    assert "<svg" in svg and "fc.weight" in svg and "fc (Linear)" in svg
    assert save_graph(loss, tmp_path / "net.png", collapse=True).read_bytes()[:4] == b"\x89PNG"
    bundle = draw_graph(loss)._repr_mimebundle_()  # what Jupyter calls to show it inline
    assert "<svg" in bundle["image/svg+xml"]


def test_with_nn_mlp_if_available():
    nn = pytest.importorskip("nn")
    if not hasattr(nn, "MLP"):
        pytest.skip("nn.MLP not written yet")
    autograd.manual_seed(0)
    model = nn.MLP(4, [5], 3)
    loss = model(Tensor(np.ones((2, 4)))).sum()
    loss.backward()
    g = draw_graph(loss, params=model)
    names = [name for name, _ in model.named_parameters()]
    assert all(f"<B>{name}</B>" in g.source for name in names)
    assert "label=MLP" in g.source and 'label="layers.0 (Linear)"' in g.source


def test_collapse_keeps_ops_a_container_runs_itself():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    w = Tensor(np.ones((3, 4)), requires_grad=True)
    with autograd.scope(("", "Net")):
        h = x * 2.0  # in Net.forward itself, outside any child
        with autograd.scope(("fc", "Linear")):
            out = h @ w
    g = draw_graph(out.sum(), params={"fc.weight": w}, collapse=True)
    net = cluster_block(g.source, "Net")
    assert "<B>mul</B>" in net and "<B>matmul</B>" not in g.source
    assert "in (2, 3)" in node_with(g, "fc (Linear)")
    assert "1 parameter, 12 numbers" in node_with(g, "fc (Linear)")


def test_options_are_checked_and_applied():
    a, b, c = abc()
    y = (a * b).sum()
    assert "rankdir=LR" in draw_graph(y, rankdir="LR").source
    assert "value 32" in node_with(draw_graph(y), "peripheries=2")  # a scalar root's value
    with pytest.raises(ValueError, match="show_grad"):
        draw_graph(y, show_grad="all")
    with pytest.raises(ValueError, match="rankdir"):
        draw_graph(y, rankdir="up")
    with pytest.raises(TypeError, match="Tensor"):
        draw_graph(np.ones(3))
