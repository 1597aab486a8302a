"""Write the tutorial notebooks from the cell lists below, then run them in place.

    python notebooks/build_notebooks.py                 # write and execute all six
    python notebooks/build_notebooks.py 03 --no-execute # write one, without outputs

The notebooks are committed with their outputs so that they read well on GitHub; their text
lives here, so a change to a notebook is a reviewable change to this file. Each notebook runs
with `notebooks/` as its working directory, in the environment the test suite gives it
(`NPGRAD_MNIST` unset, so 03 trains on the shipped MNIST subset; `NPGRAD_NAMES_SCALE` and
`NPGRAD_NAMES_DROPOUT` unset, so 06 trains its short runs; `HF_HUB_OFFLINE=1`). 06 reads the
census names of the `names` package (`pip install -e ".[notebooks]"`) through
`notebooks/namesdata.py`.
`tests/test_notebooks.py` executes them again, and checks that the committed files hold
exactly these cells.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 120  # per cell, here and in tests/test_notebooks.py
KERNEL = "python3"

Cell = tuple[str, str]  # ("markdown" | "code", source)


def md(source: str) -> Cell:
    return ("markdown", textwrap.dedent(source).strip())


def code(source: str) -> Cell:
    return ("code", textwrap.dedent(source).strip())


# In every notebook that plots: small inline PNGs keep the committed files small.
PLOT_SETUP = 'plt.rcParams.update({"figure.dpi": 72, "figure.figsize": (6, 3.5)})'

# ============================================================================================
NOTEBOOK_01: list[Cell] = [
    md(r"""
    # 01 · Autograd basics: from one number to tensors

    npgrad's `autograd` records every operation on a `Tensor` as a node of a graph;
    `backward()` walks that graph from the output back to the inputs and applies the chain
    rule at each node. This notebook takes the smallest interesting example, the squared
    error of a one-weight linear model,

    $$L = \big(y - (x\,w + b)\big)^2,$$

    draws its graph, derives the gradient by hand and checks the engine against it, takes a
    few steps of gradient descent, and checks the gradient against finite differences. Then
    it grows to tensors and shows why the gradient of a broadcast operand is a sum.
    """),
    code("""
    import numpy as np

    import autograd as ag
    from autograd import tensor
    """),
    md(r"""
    ## 1. One number

    The example worked by hand in many introductions to backpropagation, written one
    operation per line so that every intermediate result has a name:

    $$z_1 = x\,w,\qquad z_2 = z_1 + b,\qquad z_3 = y - z_2,\qquad L = z_3^2,$$

    with the input $x = 2$, the target $y = 2.5$, the weight $w = 0.5$ and the bias
    $b = 0.23$, so that $z_1 = 1$, $z_2 = 1.23$, $z_3 = 1.27$ and $L = 1.6129$.

    A tensor created with `requires_grad=True` is a *leaf* whose gradient we want: the
    weight and the bias, and here the target $y$ too, only so that the engine reports
    $\partial L/\partial y$ as well. The input `x` is data. `name=` only labels a tensor in
    the drawings; float64 keeps the printed digits exact.

    Only leaves keep their gradient after `backward()`; building the expression inside
    `ag.retain_grads()` keeps it on the intermediate results too, so that the drawing can
    show every step.
    """),
    code("""
    f64 = np.float64
    x = tensor(2.0, dtype=f64, name="x")
    y = tensor(2.5, dtype=f64, requires_grad=True, name="y")
    w = tensor(0.5, dtype=f64, requires_grad=True, name="w")
    b = tensor(0.23, dtype=f64, requires_grad=True, name="b")

    with ag.retain_grads():
        z1 = x * w
        z2 = z1 + b
        z3 = y - z2
        L = z3**2
    for t, name in [(z1, "z1"), (z2, "z2"), (z3, "z3"), (L, "L")]:
        t.name = name
    print(f"z1 = {z1.item():.2f}, z2 = {z2.item():.2f}, z3 = {z3.item():.2f}, L = {L.item():.4f}")
    """),
    md(r"""
    Every result remembers the op that made it and its inputs. `draw_graph` shows that
    record: rectangles are tensors (`show_data=True` adds their values), ellipses are ops,
    arrows point the way data flows. Tensors that require grad have an orange border, the
    root a double one.
    """),
    code("""
    ag.draw_graph(L, show_data=True, rankdir="LR")
    """),
    md(r"""
    ## 2. Backward

    `L.backward()` starts with $\partial L/\partial L = 1$ and walks the graph in reverse
    topological order: each op turns the gradient of its output into gradients of its
    inputs.

    A plain `backward()` also frees the graph's memory as it goes: each intermediate array
    is released as soon as backward has passed it (a real network's activations are most of
    its memory), and a drawing made afterwards says "data released" on those nodes.
    `retain_graph=True` keeps them, so that this drawing can show every node's value *and*
    its gradient. A node shows its gradient's norm, $|g|$ for a number, coloured by its size;
    `show_grad="stats"` adds the line min / mean / max, which for a number is the gradient
    itself, sign included.
    """),
    code("""
    L.backward(retain_graph=True)
    for t in (z3, y, z2, z1, b, w):
        print(f"dL/d{t.name} = {t.grad.item():.2f}")
    print("x.grad =", x.grad, "(x does not require grad)")
    ag.draw_graph(L, show_data=True, show_grad="stats", rankdir="LR")
    """),
    md(r"""
    ## 3. The chain rule by hand

    The chain rule multiplies the local derivatives along the path from $L$ back to each
    variable, one step per op, right to left:

    $$\begin{aligned}
    \frac{\partial L}{\partial z_3} &= 2 z_3 = 2.54, &
    \frac{\partial L}{\partial y} &= \frac{\partial L}{\partial z_3}\cdot
      \frac{\partial z_3}{\partial y} = 2.54 \cdot 1 = 2.54,\\
    \frac{\partial L}{\partial z_2} &= \frac{\partial L}{\partial z_3}\cdot
      \frac{\partial z_3}{\partial z_2} = 2.54 \cdot (-1) = -2.54, &
    \frac{\partial L}{\partial b} &= \frac{\partial L}{\partial z_2}\cdot
      \frac{\partial z_2}{\partial b} = -2.54 \cdot 1 = -2.54,\\
    \frac{\partial L}{\partial z_1} &= \frac{\partial L}{\partial z_2}\cdot
      \frac{\partial z_2}{\partial z_1} = -2.54, &
    \frac{\partial L}{\partial w} &= \frac{\partial L}{\partial z_1}\cdot
      \frac{\partial z_1}{\partial w} = -2.54 \cdot x = -5.08.
    \end{aligned}$$

    The same walk in plain Python, one local derivative per line, beside what the engine
    computed:
    """),
    code("""
    x0, y0, w0, b0 = 2.0, 2.5, 0.5, 0.23
    z3_ = y0 - (x0 * w0 + b0)
    dL_dz3 = 2 * z3_  # L = z3**2
    dL_dy = dL_dz3 * 1  # z3 = y - z2
    dL_dz2 = dL_dz3 * -1
    dL_dz1 = dL_dz2 * 1  # z2 = z1 + b
    dL_db = dL_dz2 * 1
    dL_dw = dL_dz1 * x0  # z1 = x * w

    print("           by hand   engine")
    for hand, t in [(dL_dz3, z3), (dL_dy, y), (dL_dz2, z2), (dL_dz1, z1), (dL_db, b), (dL_dw, w)]:
        print(f"dL/d{t.name:<3}   {hand:7.2f}  {t.grad.item():7.2f}")
        assert abs(t.grad.item() - hand) < 1e-12
    assert f"{dL_dz3:.2f} {dL_dz2:.2f} {dL_dw:.2f}" == "2.54 -2.54 -5.08"
    """),
    md(r"""
    Gradients **accumulate**: a second backward pass adds to `.grad` instead of replacing
    it. That is what a variable used in several places needs (see section 7), and why a
    training loop clears the gradients before each step.
    """),
    code("""
    ((y - (x * w + b)) ** 2).backward()  # the same expression: a fresh graph, same gradient
    print("after a second backward:", w.grad)
    assert np.isclose(w.grad.item(), 2 * dL_dw)
    for t in (w, b, y):
        t.zero_grad()
    """),
    md(r"""
    ## 4. Going downhill

    The gradient points the way $L$ grows fastest, so a small step against it lowers the
    loss: $w \leftarrow w - \eta\,\partial L/\partial w$, and the same for $b$, with the
    learning rate $\eta$. The update changes `w.data`, the numpy array inside the tensor,
    so that it is not itself recorded as part of a graph. The target is data again from
    here on.

    For this model the steps can be worked out too: each one changes $z_2$ by
    $\eta\,(x^2 + 1)\cdot 2 z_3$, so $z_3$ shrinks by the factor $1 - 2\eta(x^2 + 1)$
    ($0.8$ with $\eta = 0.02$) and $L$ by its square, $0.64$, at every step.
    """),
    code("""
    y.requires_grad_(False)
    lr = 0.02
    losses = []
    for step in range(6):
        L = (y - (x * w + b)) ** 2
        L.backward()
        losses.append(L.item())
        print(f"step {step}: w = {w.item():.4f}  b = {b.item():.4f}  L = {L.item():.4f}")
        w.data -= lr * w.grad
        b.data -= lr * b.grad
        w.zero_grad()
        b.zero_grad()
    assert np.allclose(np.array(losses[1:]) / losses[:-1], (1 - 2 * lr * (2.0**2 + 1)) ** 2)
    """),
    md(r"""
    With $\eta = 0.1$ the factor is $0$: one step lands exactly on $L = 0$. With
    $\eta > 0.2$ it is below $-1$ and every step overshoots further: the loss grows. Too
    large a learning rate diverges, a fact every training loop lives with.

    ## 5. Finite differences

    The definition of the derivative gives a check that shares no code with the engine:
    nudge $w$ by $\pm h$ and see how $L$ moves,
    $\ \partial L/\partial w \approx \big(L(w+h) - L(w-h)\big) / 2h$.
    The same Python function computes $L$ from floats and from Tensors.

    $L$ is quadratic in $w$, so the central difference has no truncation error here; all of
    its error is rounding, about $\epsilon_{\text{machine}} \cdot L / h$. In float32
    ($\epsilon \approx 10^{-7}$) that is already visible, which is why gradient checks run
    in float64.
    """),
    code("""
    def L_of(w, b, x=2.0, y=2.5):
        return (y - (x * w + b)) ** 2


    for dtype in (np.float32, np.float64):
        h = dtype(1e-3)
        numeric = (L_of(dtype(w0) + h, dtype(b0)) - L_of(dtype(w0) - h, dtype(b0))) / (2 * h)
        error = abs(numeric - dL_dw)
        print(f"{dtype.__name__}: (L(w+h) - L(w-h)) / 2h = {numeric:.9f}, error {error:.1e}")
    """),
    md(r"""
    `ag.gradcheck(fn, inputs)` does this for every element of every input that requires
    grad, in float64, and raises an `AssertionError` naming the input and the index at the
    first disagreement. The test suite runs it on every op of the engine.
    """),
    code("""
    assert ag.gradcheck(L_of, [w, b])
    """),
    md(r"""
    ## 6. Tensors

    The same model on a batch: $X$ is $(N, 3)$, one sample per row, $w$ is $(3,)$,
    $b$ a scalar, and the loss is the mean squared error

    $$L = \frac{1}{N}\sum_i r_i^2,\qquad r = y - (Xw + b).$$

    Every op now works on whole arrays, and the chain rule reads the same with matrices:
    $\partial L/\partial r = 2r/N$, so
    $\partial L/\partial w = -\tfrac{2}{N} X^\top r$ and
    $\partial L/\partial b = -\tfrac{2}{N} \sum_i r_i$.

    (In the drawing, `X @ W` with a vector `W` appears as `reshape`, `matmul`, `squeeze`:
    numpy's rule for a 1-D operand, made a column for the product, written out as ops.)
    """),
    code("""
    rng = np.random.default_rng(0)
    X = tensor(rng.normal(size=(8, 3)), name="X")
    Y = tensor(rng.normal(size=8), name="Y")
    W = tensor(rng.normal(size=3), requires_grad=True, name="W")
    B = tensor(0.5, requires_grad=True, name="B")

    loss = ((Y - (X @ W + B)) ** 2).mean()
    loss.backward()

    r_np = Y.numpy() - (X.numpy() @ W.numpy() + B.numpy())  # the residual, in plain numpy
    N = len(r_np)
    print("W.grad", W.grad, "  by hand", -2 / N * X.numpy().T @ r_np)
    print("B.grad", B.grad, "  by hand", -2 / N * r_np.sum())
    assert np.allclose(W.grad, -2 / N * X.numpy().T @ r_np, atol=1e-5)
    assert np.isclose(B.grad, -2 / N * r_np.sum(), atol=1e-5)
    assert ag.gradcheck(lambda X, Y, W, B: ((Y - (X @ W + B)) ** 2).mean(), [X, Y, W, B])
    ag.draw_graph(loss, rankdir="LR")
    """),
    md(r"""
    ## 7. Broadcasting, and why its gradient is a sum

    In `X @ W + B` the scalar `B` was added to all $N$ entries: numpy *broadcasts* it,
    as if it were copied $N$ times. The same happens to a bias vector $c$ of shape $(3,)$
    added to a $(4, 3)$ matrix: each $c_j$ is used once per row.

    A variable used in several places affects the loss through each of them, and the chain
    rule adds up those paths: $\partial L/\partial c_j = \sum_i \partial L/\partial
    \text{out}_{ij}$. Nudge $c_0$ by $h$ and all four entries of column 0 move by $h$, so
    $L$ moves by $h$ times the sum of their gradients. The engine does exactly this: after
    each op it sums a gradient over the axes its operand was broadcast along. (`B.grad`
    above is the same rule: $-\tfrac{2}{N}\sum_i r_i$ is a sum over the batch.)

    Below, `out.backward(G)` feeds in an arbitrary upstream gradient $G =
    \partial L/\partial \text{out}$, as if `out` went on into some loss.
    """),
    code("""
    X = tensor(np.arange(12.0).reshape(4, 3), name="X")
    c = tensor([1.0, 2.0, 3.0], requires_grad=True, name="c")
    G = rng.normal(size=(4, 3))

    out = X + c  # c (3,) is broadcast to (4, 3)
    out.backward(G)
    print("c.grad        ", c.grad)
    print("G.sum(axis=0) ", G.sum(axis=0))
    assert np.allclose(c.grad, G.sum(axis=0), atol=1e-6)
    """),
    md(r"""
    The drawing labels the edge where a shape changes. Writing the broadcast out as an op,
    `c.expand(4, 3)`, gives the same gradient: `expand`'s backward *is* the sum.
    """),
    code("""
    c.zero_grad()
    (X + c.expand(4, 3)).backward(G)
    assert np.allclose(c.grad, G.sum(axis=0), atol=1e-6)
    ag.draw_graph(out, rankdir="LR")
    """),
    md(r"""
    ## Summary

    - A `Tensor` records the op that made it and its inputs; `draw_graph` shows the record,
      before and after `backward()`.
    - `backward()` is the chain rule applied node by node, output to inputs; it matched the
      derivation by hand to float precision.
    - Gradients accumulate; clear them with `zero_grad()`.
    - A small step against the gradient, `w.data -= lr * w.grad`, lowers the loss; too
      large a step overshoots.
    - Finite differences check any gradient independently (`ag.gradcheck`, in float64).
    - A broadcast operand is used many times, so its gradient is the sum over the broadcast
      axes.

    Next: [02 · Building an MLP](02_building_an_mlp.ipynb) puts these tensors into modules
    and trains them.
    """),
]

# ============================================================================================
NOTEBOOK_02: list[Cell] = [
    md(r"""
    # 02 · Building an MLP

    `nn` packages tensors that require grad into **modules**. This notebook writes a linear
    layer by hand, then uses `nn.Linear` and `nn.MLP`, trains a small network on a 2-D data
    set made with numpy, and looks inside: the decision boundary it learnt, the graph of one
    training step drawn module by module, and the gradient norm of each layer over training.
    """),
    code(
        f"""
    import matplotlib.pyplot as plt
    import numpy as np

    import autograd as ag
    import nn
    from nn import functional as F
    from nn import optim

    {PLOT_SETUP}
    """
    ),
    md(r"""
    ## Data: two moons

    Two interleaved half circles with a little noise: not linearly separable, so a model
    needs a hidden layer to get them right. A second draw with another seed is the test set.
    """),
    code("""
    def two_moons(n, noise=0.15, seed=0):
        \"\"\"n points (n, 2) float32 on two interleaved half circles; labels (n,) in {0, 1}.\"\"\"
        rng = np.random.default_rng(seed)
        label = rng.integers(0, 2, n)
        angle = rng.uniform(0, np.pi, n)
        x = np.where(label == 0, np.cos(angle), 1 - np.cos(angle))
        y = np.where(label == 0, np.sin(angle), 0.5 - np.sin(angle))
        points = np.stack([x, y], axis=1) + rng.normal(0, noise, (n, 2))
        return points.astype(np.float32), label


    X_train, y_train = two_moons(400, seed=0)
    X_test, y_test = two_moons(400, seed=1)
    plt.scatter(*X_train.T, c=y_train, cmap="coolwarm", s=8)
    plt.gca().set_aspect("equal")
    """),
    md(r"""
    ## Modules

    A `Module` registers every `Parameter` (and every sub-module) assigned as an attribute,
    so `parameters()` can hand them to an optimiser. A linear layer takes five lines:
    """),
    code("""
    class MyLinear(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.weight = nn.Parameter(ag.randn(n_out, n_in) / n_in**0.5)
            self.bias = nn.Parameter(ag.zeros(n_out))

        def forward(self, x):  # x (N, n_in) -> (N, n_out)
            return x @ self.weight.T + self.bias


    layer = MyLinear(2, 3)
    print([(name, p.shape) for name, p in layer.named_parameters()])
    print(layer(ag.tensor(X_train[:5])).shape)
    """),
    md(r"""
    `nn.Linear` is that layer with PyTorch's initialisation (and a fused op, one graph node
    instead of three). `nn.MLP(2, [16, 16], 2)` stacks `Linear` layers with an activation
    between them in a `Sequential`, whose children are named `0`, `1`, ... The output is two
    logits, one per class.
    """),
    code("""
    ag.manual_seed(0)  # the initialisation draws from autograd's generator
    model = nn.MLP(2, [16, 16], 2, activation="tanh")
    print(model)
    print("parameters:", sum(p.numel() for p in model.parameters()))
    """),
    md(r"""
    ## Training

    Every training loop has the same four steps: forward pass, loss, backward pass (after
    clearing the old gradients), optimiser step. `DataLoader` deals out shuffled
    mini-batches of the numpy arrays. Along the way we record the loss and, for each
    `Linear` layer, the norm of its weight's gradient.
    """),
    code("""
    opt = optim.Adam(model.parameters(), lr=0.01)
    loader = nn.data.DataLoader(X_train, y_train, batch_size=50, shuffle=True, seed=0)
    weights = {name: p for name, p in model.named_parameters() if name.endswith("weight")}
    initial_norms = {name: np.linalg.norm(p.numpy()) for name, p in weights.items()}
    losses, grad_norms = [], {name: [] for name in weights}


    @ag.no_grad()
    def accuracy(X, y):
        return float((model(ag.tensor(X)).numpy().argmax(axis=1) == y).mean())


    for _epoch in range(50):
        for xb, yb in loader:
            loss = F.cross_entropy(model(ag.tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            for name, p in weights.items():
                grad_norms[name].append(float(np.linalg.norm(p.grad)))

    train_acc, test_acc = accuracy(X_train, y_train), accuracy(X_test, y_test)
    print(f"train accuracy {train_acc:.3f}, test accuracy {test_acc:.3f}")
    assert train_acc > 0.97 and test_acc > 0.95
    plt.plot(losses)
    plt.yscale("log")
    plt.xlabel("step")
    plt.ylabel("cross-entropy");
    """),
    md(r"""
    ## The decision boundary

    Evaluate the model on a grid of points (under `no_grad()`: no graph needed) and colour
    each by the predicted probability of class 1; the black line is where it is 0.5. The dots
    are the test set, which the model never saw.
    """),
    code("""
    xx, yy = np.meshgrid(np.linspace(-1.6, 2.6, 150), np.linspace(-1.1, 1.6, 100))
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    with ag.no_grad():
        prob = F.softmax(model(ag.tensor(grid)), axis=1).numpy()[:, 1].reshape(xx.shape)

    plt.contourf(xx, yy, prob, levels=20, cmap="coolwarm", alpha=0.7)
    plt.contour(xx, yy, prob, levels=[0.5], colors="k")
    plt.scatter(*X_test.T, c=y_test, cmap="coolwarm", s=8, edgecolors="k", linewidths=0.3)
    plt.gca().set_aspect("equal")
    """),
    md(r"""
    ## The graph of one step

    Each module call records which module it ran in, so `draw_graph` can box the ops of
    each layer into a cluster labelled with its dotted name and class, and label parameters
    with their names (`params=model`). One batch of 4 points, built inside
    `retain_grads()` so that every node shows its gradient norm after `backward()`.
    """),
    code("""
    with ag.retain_grads():
        loss = F.cross_entropy(model(ag.tensor(X_train[:4], name="x")), y_train[:4])
    loss.name = "loss"
    model.zero_grad()
    loss.backward()
    graph = ag.draw_graph(loss, params=model)
    assert "layers.0 (Linear)" in graph.source and "layers.4.weight" in graph.source
    graph
    """),
    md(r"""
    `collapse=True` folds each layer into one node with its input and output shapes, its
    parameter count, and the norm of its parameters' gradient: a model summary that is
    also a picture of the gradient flow.
    """),
    code("""
    ag.draw_graph(loss, params=model, collapse=True, rankdir="LR")
    """),
    md(r"""
    ## Gradient norms per layer over training

    The norms recorded in the training loop, one line per `Linear` layer (a running mean
    over an epoch smooths the mini-batch noise). The output layer's gradient falls steadily
    with the loss; the earlier layers' do not. Their gradients are the error passed back
    *through the weights above them*, and those weights grow as the network sharpens its
    boundary, while the error concentrates on the few points left near the boundary. So a
    falling loss does not mean small gradients everywhere, and it is the per-layer view
    that shows it: the same plot is the first thing to look at when a deeper model does not
    train (vanishing gradients in the first layers, exploding ones, or a layer that gets
    none).
    """),
    code("""
    steps_per_epoch = len(loader)
    for name, norms in grad_norms.items():
        smooth = np.convolve(norms, np.ones(steps_per_epoch) / steps_per_epoch, mode="valid")
        plt.plot(smooth, label=name)
    plt.yscale("log")
    plt.xlabel("step")
    plt.ylabel("gradient norm")
    plt.legend()

    first_epoch = {name: np.mean(norms[:steps_per_epoch]) for name, norms in grad_norms.items()}
    last_epoch = {name: np.mean(norms[-steps_per_epoch:]) for name, norms in grad_norms.items()}
    for name, p in weights.items():
        print(f"{name}: weight norm {initial_norms[name]:.1f} -> {np.linalg.norm(p.numpy()):.1f}")
    assert last_epoch["layers.4.weight"] < first_epoch["layers.4.weight"] / 3
    assert all(np.isfinite(norms).all() and min(norms) > 0 for norms in grad_norms.values())
    """),
    md(r"""
    Next: [03 · MNIST](03_mnist.ipynb) trains the same kind of model on handwritten digits.
    """),
]

# ============================================================================================
NOTEBOOK_03: list[Cell] = [
    md(r"""
    # 03 · MNIST

    Handwritten digits, 28×28 grey pixels, ten classes. This notebook loads them with
    `nn.data.load_mnist`, trains an MLP, and looks at what it learnt: loss and accuracy
    curves, the confusion matrix, the digits it gets wrong, and the weights of its first
    layer seen as images.

    **Data.** By default the notebook uses the small real subset shipped with the
    repository in `tests/data/mnist` (the first 1,000 training and 500 test digits), so it
    runs offline in seconds; the test suite executes it that way. To use the full
    60,000 / 10,000 digits, start Jupyter with the environment variable `NPGRAD_MNIST` set to
    a local copy in the Hugging Face hub's parquet layout (a path relative to the
    repository root, e.g. `NPGRAD_MNIST=../shared/mnist`) or to the hub id `ylecun/mnist`
    (downloaded once, then cached); nothing else changes. `python train_mnist.py` is the
    full-size script.
    """),
    code(
        f"""
    import os
    from pathlib import Path

    import matplotlib.pyplot as plt
    import numpy as np

    import autograd as ag
    import nn
    from nn import functional as F
    from nn import optim
    from nn.data import DataLoader, load_mnist

    {PLOT_SETUP}
    """
    ),
    code("""
    ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "pyproject.toml").exists())
    os.chdir(ROOT)  # paths from here on, NPGRAD_MNIST's too, are relative to the repository root
    SOURCE = os.environ.get("NPGRAD_MNIST", "tests/data/mnist")
    FULL = "NPGRAD_MNIST" in os.environ

    train_images, train_labels = load_mnist(SOURCE, split="train")
    test_images, test_labels = load_mnist(SOURCE, split="test")
    print(f"{SOURCE}: train {train_images.shape} {train_images.dtype}, test {test_images.shape}")
    print(f"labels {train_labels.dtype}, digits 0-9 counted: {np.bincount(train_labels)}")
    """),
    code("""
    fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
    for ax, image, label in zip(axes.flat, train_images, train_labels, strict=False):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(int(label))
        ax.axis("off")
    """),
    md(r"""
    ## Preparing the inputs

    An MLP sees a digit as a vector of 784 numbers. Scaling the pixels to zero mean and unit
    variance (MNIST's mean 0.1307 and standard deviation 0.3081 on the $[0, 1]$ scale)
    keeps the first layer's pre-activations in a range where training starts well.
    """),
    code("""
    def prepare(images):  # uint8 (N, 28, 28) -> float32 (N, 784)
        return ((images.reshape(len(images), -1) / 255 - 0.1307) / 0.3081).astype(np.float32)


    x_train, x_test = prepare(train_images), prepare(test_images)
    """),
    md(r"""
    ## Training

    `MLP(784, [128], 10)`: one hidden layer of 128 ReLU units, ten logits out, trained with
    SGD with momentum on the cross-entropy loss. After each epoch we evaluate on both sets in
    `eval()` mode and under `no_grad()`.
    """),
    code("""
    EPOCHS = 5 if FULL else 15
    ag.manual_seed(0)
    model = nn.MLP(784, [128], 10)
    initial_weight = model.layers[0].weight.numpy().copy()  # for a look at what training changed
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(x_train, train_labels, batch_size=64, shuffle=True, seed=0)


    @ag.no_grad()
    def evaluate(x, labels):
        \"\"\"(mean loss, accuracy, predicted classes) of the model on x (N, 784).\"\"\"
        model.eval()
        logits = model(ag.tensor(x))
        predicted = logits.numpy().argmax(axis=1)
        accuracy = float((predicted == labels).mean())
        return F.cross_entropy(logits, labels).item(), accuracy, predicted


    history = {"train loss": [], "test loss": [], "train accuracy": [], "test accuracy": []}
    print("epoch  loss train / test  accuracy train / test")
    for epoch in range(1, EPOCHS + 1):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(ag.tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_loss, train_acc, _ = evaluate(x_train, train_labels)
        test_loss, test_acc, predicted = evaluate(x_test, test_labels)
        for key, value in zip(history, [train_loss, test_loss, train_acc, test_acc], strict=True):
            history[key].append(value)
        print(f"{epoch:5d}  {train_loss:.3f} / {test_loss:.3f}    {train_acc:.3f} / {test_acc:.3f}")

    assert history["test accuracy"][-1] > (0.95 if FULL else 0.80)
    """),
    md(r"""
    ## Curves

    On the subset the model soon fits all 1,000 training digits (training loss near zero,
    accuracy 100%), while the test loss stops improving after a few epochs and the test
    accuracy levels off below 90%: with so few examples it memorises rather than
    generalises. On the full set (`NPGRAD_MNIST`), five epochs reach about 97% test
    accuracy, and the gap between the curves is much smaller.
    """),
    code("""
    epochs = range(1, EPOCHS + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3))
    for split in ("train", "test"):
        ax_loss.plot(epochs, history[f"{split} loss"], "o-", label=split)
        ax_acc.plot(epochs, history[f"{split} accuracy"], "o-", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_acc.legend()
    fig.tight_layout()
    """),
    md(r"""
    ## Confusion matrix

    Row = true digit, column = predicted digit; the diagonal holds the correct answers, so
    its sum divided by the total is the accuracy.
    """),
    code("""
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (test_labels, predicted), 1)
    assert confusion.sum() == len(test_labels)
    assert np.isclose(np.trace(confusion) / confusion.sum(), history["test accuracy"][-1])

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            color = "white" if n > confusion.max() / 2 else "black"
            ax.text(j, i, n, ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10))
    ax.grid(False)
    """),
    md(r"""
    ## Misclassified digits

    The first test digits the model gets wrong, titled *true → predicted*. Some are
    genuinely ambiguous; others show what a model that sees only pixels, not strokes,
    confuses.
    """),
    code("""
    wrong = np.flatnonzero(predicted != test_labels)
    fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(test_images[i], cmap="gray_r")
        ax.set_title(f"{test_labels[i]} → {predicted[i]}", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    """),
    md(r"""
    ## What the first layer looks for

    Each hidden unit computes a weighted sum of the 784 pixels, so its row of the first
    weight matrix, `layers.0.weight` of shape (128, 784), reshaped to 28×28, shows which
    pixels push it up (red) or down (blue). The top row shows a few units as they are now:
    mostly the random initialisation, since a thousand digits and a few hundred steps move
    them little (on the full set, strokes show through). The bottom rows show what training
    *changed*, the weight minus its initial value, for the units that changed most: strokes
    and blobs over the centre, where the digits are. Pixels that are blank in every training
    digit (most of the border) feed every unit the same value in every example, so each
    unit's weights on them change by one common amount: the flat frame around each picture.
    Together they act as one more bias.
    """),
    code("""
    weight = model.layers[0].weight.numpy()
    change = weight - initial_weight
    assert weight.shape == (128, 784)
    blank = (train_images == 0).all(axis=0).ravel()  # pixels blank in every training digit
    assert np.allclose(change[:, blank], change[:, blank][:, :1], atol=1e-6)

    most_changed = np.argsort(-np.linalg.norm(change, axis=1))
    rows = [weight[:10]] + [change[most_changed[k : k + 10]] for k in (0, 10)]
    fig, axes = plt.subplots(3, 10, figsize=(8, 2.6))
    for row_axes, row in zip(axes, rows, strict=True):
        for ax, w in zip(row_axes, row, strict=True):
            limit = np.abs(w).max()
            ax.imshow(w.reshape(28, 28), cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.axis("off")
    """),
    md(r"""
    Next: [04 · Higher-order gradients](04_higher_order.ipynb) differentiates gradients.
    """),
]

# ============================================================================================
NOTEBOOK_04: list[Cell] = [
    md(r"""
    # 04 · Higher-order gradients

    `ag.grad(outputs, inputs)` returns gradients without touching `.grad`. With
    `create_graph=True` the backward pass is itself recorded: the gradients it returns are
    ordinary tensors with a graph of their own, so they can be differentiated again. This
    notebook uses that for second (and third) derivatives, for Jacobians, Hessians and
    Hessian-vector products (`autograd.functional`, checked against closed forms and finite
    differences), and for a gradient penalty.

    Everything here runs in float64, so that the finite-difference checks have the digits
    they need.
    """),
    code(
        f"""
    import matplotlib.pyplot as plt
    import numpy as np

    import autograd as ag
    import nn
    from autograd import functional
    from nn import functional as F
    from nn import optim

    ag.set_default_dtype(np.float64)
    {PLOT_SETUP}
    """
    ),
    md(r"""
    ## Second derivatives

    For $y = \tanh x$: $y' = 1 - \tanh^2 x$, $y'' = -2\tanh x\,(1 - \tanh^2 x)$ and
    $y''' = -2(1 - \tanh^2 x)(1 - 3\tanh^2 x)$. Each `ag.grad` call differentiates the
    previous result; the last one needs no graph.
    """),
    code("""
    x = ag.tensor(0.5, requires_grad=True, name="x")
    y = x.tanh()
    (dy,) = ag.grad(y, x, create_graph=True)
    (d2y,) = ag.grad(dy, x, create_graph=True)
    (d3y,) = ag.grad(d2y, x)

    t = np.tanh(0.5)
    by_hand = [1 - t**2, -2 * t * (1 - t**2), -2 * (1 - t**2) * (1 - 3 * t**2)]
    print("engine ", [f"{d.item():.12f}" for d in (dy, d2y, d3y)])
    print("by hand", [f"{d:.12f}" for d in by_hand])
    assert np.allclose([dy.item(), d2y.item(), d3y.item()], by_hand, rtol=1e-12)
    """),
    md(r"""
    The derivative `dy` is a graph like any other: the ops that `tanh`'s backward ran,
    $1 \cdot (1 - y \cdot y)$ with the incoming gradient $1$ and the forward result
    $y = \tanh x$, recorded because of `create_graph=True`.
    """),
    code("""
    ag.draw_graph(dy, show_data=True, rankdir="LR")
    """),
    md(r"""
    For an elementwise function, the gradient of the *sum* of its outputs is the derivative
    at every point, so derivatives of a whole curve take one call each.
    """),
    code("""
    xs = ag.tensor(np.linspace(-3, 3, 121), requires_grad=True)
    ys = xs.tanh()
    (d1,) = ag.grad(ys.sum(), xs, create_graph=True)
    (d2,) = ag.grad(d1.sum(), xs)
    assert np.allclose(d2.numpy(), -2 * np.tanh(xs.numpy()) * (1 - np.tanh(xs.numpy()) ** 2))

    for curve, label in [(ys, "tanh x"), (d1, "first derivative"), (d2, "second derivative")]:
        plt.plot(xs.numpy(), curve.numpy(), label=label)
    plt.xlabel("x")
    plt.legend(loc="upper left");
    """),
    md(r"""
    ## Jacobians

    `functional.jacobian(f, x)` stacks one backward pass per output element into the full
    matrix, shaped `output.shape + input.shape` (tuples of inputs or outputs give tuples of
    blocks, as in `torch.autograd.functional`). The softmax $p = \operatorname{softmax}(z)$
    has the closed form $\partial p_i / \partial z_j = p_i (\delta_{ij} - p_j)$, i.e.
    $J = \operatorname{diag}(p) - p p^\top$:
    """),
    code("""
    z = ag.tensor([1.0, 2.0, 0.5, -1.0])
    J = functional.jacobian(lambda z: z.softmax(), z)
    p = np.exp(z.numpy()) / np.exp(z.numpy()).sum()
    print(J.numpy().round(4))
    assert J.shape == (4, 4)
    assert np.allclose(J.numpy(), np.diag(p) - np.outer(p, p), rtol=1e-12)
    """),
    md(r"""
    Its columns sum to zero (the probabilities always sum to one, whatever $z$), and row
    $i$ is the gradient of output $i$: the vector-Jacobian product $e_i^\top J$ that one
    backward pass computes, `functional.vjp(f, z, e_i)`.
    """),
    code("""
    print("largest |column sum|", np.abs(J.numpy().sum(axis=0)).max())
    assert np.allclose(J.numpy().sum(axis=0), 0, atol=1e-15)
    _, row = functional.vjp(lambda z: z.softmax(), z, ag.tensor([0.0, 1.0, 0.0, 0.0]))
    assert np.allclose(row.numpy(), J.numpy()[1])
    """),
    md(r"""
    ## Hessian-vector products

    For a scalar function of many parameters, $f: \mathbb{R}^n \to \mathbb{R}$, the
    Hessian $H$ has $n^2$ entries, too many to form for a real model. But its product with a
    vector is cheap:

    $$H v = \nabla_w \big(\nabla_w f(w) \cdot v\big),$$

    one gradient with `create_graph=True`, a dot product, and one more gradient: about the
    cost of two backward passes, whatever $n$. Newton-type optimisers, curvature estimates
    and influence functions are built on it. `functional.vhp(f, w, v)` computes exactly
    that ($v^\top H$, the same as $Hv$ since $H$ is symmetric); `functional.hvp(f, w, v)`
    computes $Hv$ as the Jacobian-vector product of the gradient, by the "double-vjp
    trick", one backward pass more. Both return `(f(w), product)`.

    Our $f$ is the logistic-regression loss on random data, $f(w) = \frac{1}{N}\sum_i
    \log\big(1 + e^{-t_i\, x_i \cdot w}\big)$ with labels $t_i = \pm 1$. Its Hessian
    has a closed form, $H = \frac{1}{N} X^\top \operatorname{diag}\big(\sigma(z)(1 -
    \sigma(z))\big) X$ with $z = Xw$, to check against.
    """),
    code("""
    rng = np.random.default_rng(0)
    X = ag.tensor(rng.normal(size=(50, 5)))
    t = ag.tensor(rng.choice([-1.0, 1.0], size=50))
    w = ag.tensor(rng.normal(size=5), requires_grad=True)
    v = ag.tensor(rng.normal(size=5))


    def f(w):
        return (1 + (-t * (X @ w)).exp()).log().mean()


    loss, Hv = functional.hvp(f, w, v)
    Hv = Hv.numpy()
    s = 1 / (1 + np.exp(-X.numpy() @ w.numpy()))
    H = (X.numpy().T * (s * (1 - s))) @ X.numpy() / len(s)  # the closed form
    print(f"f(w) = {loss.item():.6f}")
    print("Hv, engine     ", Hv)
    print("Hv, closed form", H @ v.numpy())
    assert np.allclose(Hv, H @ v.numpy(), rtol=1e-10)
    assert np.allclose(functional.vhp(f, w, v)[1].numpy(), Hv, rtol=1e-10)
    """),
    md(r"""
    With only 5 parameters the whole Hessian is small: `functional.hessian(f, w)` (the
    Jacobian of the gradient, one backward pass per row) matches the closed form entry by
    entry.
    """),
    code("""
    H_engine = functional.hessian(f, w).numpy()
    print(H_engine.round(4))
    print("largest difference from the closed form", np.abs(H_engine - H).max())
    assert np.allclose(H_engine, H, rtol=1e-10)
    """),
    md(r"""
    The finite-difference check needs no formula: the directional derivative of the
    gradient along $v$,
    $\ H v \approx \big(\nabla f(w + hv) - \nabla f(w - hv)\big) / 2h$.
    """),
    code("""
    def gradient_at(w_values):
        w_ = ag.tensor(w_values, requires_grad=True)
        return ag.grad(f(w_), w_)[0].numpy()


    h = 1e-5
    plus, minus = gradient_at(w.numpy() + h * v.numpy()), gradient_at(w.numpy() - h * v.numpy())
    numeric = (plus - minus) / (2 * h)
    print("Hv, finite differences", numeric)
    print("largest difference    ", np.abs(numeric - Hv).max())
    assert np.allclose(Hv, numeric, atol=1e-8)
    """),
    md(r"""
    A use: the largest eigenvalue of $H$ (the sharpest curvature, which bounds the
    learning rates plain gradient descent tolerates: $\eta < 2/\lambda_{\max}$) by power
    iteration, using only Hessian-vector products.
    """),
    code("""
    def hvp(u):
        return functional.hvp(f, w, u)[1]


    u = ag.tensor(rng.normal(size=5))
    for _ in range(30):
        Hu = hvp(u)
        u = Hu / (Hu * Hu).sum().sqrt()
    top = (u * hvp(u)).sum().item()  # the Rayleigh quotient u.Hu with |u| = 1
    print(f"power iteration {top:.8f}, numpy eigvalsh {np.linalg.eigvalsh(H)[-1]:.8f}")
    assert np.isclose(top, np.linalg.eigvalsh(H)[-1], rtol=1e-6)
    """),
    md(r"""
    `ag.gradgradcheck(fn, inputs)` automates this kind of check for any function: it
    gradchecks the first gradients (contracted with fixed random weights) against finite
    differences.
    """),
    code("""
    assert ag.gradgradcheck(f, [w])
    """),
    md(r"""
    ## A gradient penalty

    Some losses contain a gradient. WGAN-GP asks a critic network $f$ to have input
    gradients of norm 1, $\ P = \operatorname{mean}_i \big(\lVert \nabla_x f(x_i)
    \rVert - 1\big)^2$; "double backpropagation" penalises $\lVert\nabla_x
    \text{loss}\rVert$ to make a classifier less sensitive to its input. Training on such a
    loss needs the gradient of $P$ with respect to the parameters: the derivative of a
    derivative.

    Since each output $f(x_i)$ depends only on its own point $x_i$, one `ag.grad` of the
    summed outputs gives $\nabla_x f$ at every point at once.
    """),
    code("""
    ag.manual_seed(0)
    critic = nn.MLP(2, [32, 32], 1, activation="tanh")
    points = ag.tensor(rng.normal(size=(128, 2)), requires_grad=True)


    def input_gradient_norms(model, points):  # (N, 2) -> (N,), a graph when create_graph
        (g,) = ag.grad(model(points).sum(), points, create_graph=True)
        return (g * g).sum(axis=1).sqrt()


    def penalty(model, points):
        return ((input_gradient_norms(model, points) - 1) ** 2).mean()


    P = penalty(critic, points)
    critic.zero_grad()
    P.backward()
    print(f"penalty {P.item():.4f}")
    """),
    md(r"""
    `P.backward()` filled every parameter's `.grad`. A finite-difference check on a few
    entries of the first weight matrix:
    """),
    code("""
    weight = critic.layers[0].weight
    for index in [(0, 0), (5, 1), (31, 0)]:
        original = weight.data[index]
        weight.data[index] = original + 1e-6
        plus = penalty(critic, points).item()
        weight.data[index] = original - 1e-6
        minus = penalty(critic, points).item()
        weight.data[index] = original
        numeric = (plus - minus) / 2e-6
        print(f"dP/dweight{list(index)}: engine {weight.grad[index]:+.8f}, numeric {numeric:+.8f}")
        assert abs(weight.grad[index] - numeric) < 1e-6
    """),
    md(r"""
    Minimising the penalty alone drives the critic's input-gradient norms towards 1 at the
    sample points:
    """),
    code("""
    before = input_gradient_norms(critic, points).numpy()
    opt = optim.Adam(critic.parameters(), lr=0.01)
    for _ in range(150):
        P = penalty(critic, points)
        opt.zero_grad()
        P.backward()
        opt.step()
    after = input_gradient_norms(critic, points).numpy()

    gap_before, gap_after = np.abs(before - 1).mean(), np.abs(after - 1).mean()
    print(f"mean |norm - 1| at the sample points: before {gap_before:.3f}, after {gap_after:.4f}")
    assert gap_after < 0.05
    plt.hist([before, after], bins=30, label=["before", "after"])
    plt.xlabel("‖∇ₓ f(x)‖ at the sample points")
    plt.legend();
    """),
    md(r"""
    ## Where the chain ends

    Every op of the `Tensor` API can be differentiated any number of times. A few fused
    kernels of `nn.functional` (`conv2d`, `max_pool2d`, `avg_pool2d`) compute their backward
    directly in numpy for speed: their first gradient works, also under
    `create_graph=True`, but differentiating it again raises an error that names the op,
    rather than returning a wrong number.
    """),
    code("""
    image = ag.randn(1, 1, 6, 6, requires_grad=True)
    kernel = ag.randn(1, 1, 3, 3, requires_grad=True)
    (g,) = ag.grad(F.conv2d(image, kernel).sum(), image, create_graph=True)
    try:
        ag.grad((g * g).sum(), kernel)
    except RuntimeError as error:
        print("RuntimeError:", error)
    else:
        raise AssertionError("conv2d's gradient should refuse a second differentiation")
    """),
    md(r"""
    ## Summary

    - `ag.grad(..., create_graph=True)` returns gradients that are graphs; differentiate
      them again for second, third, ... derivatives.
    - `autograd.functional` packages the usual transforms: `jacobian` (the softmax's
      matched $\operatorname{diag}(p) - pp^\top$), `hessian`, `vjp`, `jvp`, `hvp`, `vhp`.
    - A Hessian-vector product costs two or three backward passes; it matched the closed
      form and finite differences, and power iteration on it found the top eigenvalue.
    - A gradient penalty is a loss with a gradient inside; its parameter gradients matched
      finite differences, and minimising it made the input-gradient norms 1.
    """),
]

# ============================================================================================
NOTEBOOK_05: list[Cell] = [
    md(r"""
    # 05 · Your own op, and the tools for when gradients go wrong

    Every op of the engine is a forward computation and a backward rule beside it.
    `autograd.Function` lets you write both for an op of your own, as
    `torch.autograd.Function` does: here a numerically stable softplus and logsumexp, and
    a rounding whose gradient is a deliberate lie (the straight-through estimator). We
    check them with `gradcheck` and `gradgradcheck`, find them in the graph drawing, and
    take their Jacobian and Hessian.

    Then the tools for when training misbehaves: `register_hook` to watch (and change)
    gradients as backward computes them, `detect_anomaly()` to find the op that made a
    NaN, and the error that stops a backward pass through a tensor changed in place.

    Everything runs in float64, the precision the gradient checks need.
    """),
    code(
        f"""
    import linecache

    import matplotlib.pyplot as plt
    import numpy as np

    import autograd as ag
    import nn
    from autograd import Function, functional
    from autograd.function import once_differentiable
    from nn import optim

    ag.set_default_dtype(np.float64)
    {PLOT_SETUP}
    """
    ),
    md(r"""
    ## 1. A stable softplus

    $\operatorname{softplus}(x) = \log(1 + e^x)$ is a smooth ReLU. Written as it reads it
    overflows: $e^{1000}$ is `inf` in floating point, so the value is `inf` and the
    derivative $e^x / (1 + e^x)$ is `inf / inf`, NaN.
    """),
    code("""
    x = ag.tensor([-1000.0, -2.0, 0.0, 2.0, 1000.0], requires_grad=True)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = (x.exp() + 1).log()
        naive.sum().backward()
    print("softplus, naive:", naive.numpy())
    print("its gradient:   ", x.grad)
    """),
    md(r"""
    The same function, rearranged so that no exponential ever exceeds 1:
    $\operatorname{softplus}(x) = \max(x, 0) + \log(1 + e^{-|x|})$. Its derivative is
    the sigmoid, $\sigma(x) = 1 / (1 + e^{-x})$, which is bounded.

    A `Function` has two static methods. `forward(ctx, *inputs)` computes the result
    (recording is off inside it: it becomes one node of the graph, however many ops it
    uses) and stores on `ctx` what backward will need; `ctx.save_for_backward` is the
    place for tensors, so that the engine can check them for in-place changes and free
    them after backward. `backward(ctx, grad)` gets the gradient of the output and returns
    one gradient per input. `Softplus.apply(x)` runs it.
    """),
    code("""
    class Softplus(Function):
        \"\"\"log(1 + e^x), elementwise, stable for any x.\"\"\"

        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return ag.maximum(x, 0.0) + ((-x.abs()).exp() + 1.0).log()

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x.sigmoid()  # Tensor ops: this backward can be differentiated too


    x.zero_grad()
    y = Softplus.apply(x)
    y.sum().backward()
    print("softplus, stable:", y.numpy())
    print("its gradient:    ", x.grad)
    assert np.isfinite(y.numpy()).all() and np.isfinite(x.grad).all()
    assert np.allclose(y.numpy(), np.logaddexp(0.0, x.numpy()))
    """),
    md(r"""
    A backward rule written by hand is a place for mistakes, so check it against finite
    differences. `gradcheck` compares the gradient with central differences;
    `gradgradcheck` does the same for the gradient of the gradient, which works here
    because `backward` computed with Tensor ops (`sigmoid`, `*`), and those record a graph
    under `ag.grad(..., create_graph=True)`.
    """),
    code("""
    x = ag.randn(6, requires_grad=True) * 3
    print("gradcheck:", ag.gradcheck(Softplus.apply, [x]))
    print("gradgradcheck:", ag.gradgradcheck(Softplus.apply, [x]))
    """),
    md(r"""
    A backward written in numpy is fine for a first derivative, but the engine cannot see
    through numpy. Decorate it with `once_differentiable`: a second derivative then raises
    an error naming the op, instead of returning a silently wrong zero.
    """),
    code("""
    class SoftplusNumpy(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return ag.tensor(np.logaddexp(0.0, x.numpy()))

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad.numpy() / (1 + np.exp(-x.numpy()))  # numpy arrays are fine here


    print("gradcheck:", ag.gradcheck(SoftplusNumpy.apply, [x]))
    try:
        ag.gradgradcheck(SoftplusNumpy.apply, [x])
    except RuntimeError as error:
        print("gradgradcheck: RuntimeError:", error)
    """),
    md(r"""
    ## 2. logsumexp

    $\operatorname{logsumexp}(x) = \log \sum_j e^{x_j}$ (the log of a softmax's
    denominator) overflows the same way; subtracting the largest entry $m$ first fixes it,
    $\ m + \log\sum_j e^{x_j - m}$. Its gradient is the softmax,
    $e^{x_j - \operatorname{logsumexp}(x)}$, so backward needs the input and the output:
    both are saved. (A saved *output* comes back in backward as the recorded output, a
    function of $x$, so the second derivative sees through it.)
    """),
    code("""
    class LogSumExp(Function):
        \"\"\"log(sum(exp(x))) over the last axis: (..., n) -> (...).\"\"\"

        @staticmethod
        def forward(ctx, x):
            peak = x.max(axis=-1, keepdims=True)
            out = ((x - peak).exp().sum(axis=-1, keepdims=True).log() + peak).squeeze(-1)
            ctx.save_for_backward(x, out)
            return out

        @staticmethod
        def backward(ctx, grad):
            x, out = ctx.saved_tensors
            return grad.unsqueeze(-1) * (x - out.unsqueeze(-1)).exp()  # grad * softmax(x)


    z = ag.tensor([[1000.0, 1000.0, 999.0], [1.0, 2.0, 3.0]], requires_grad=True)
    lse = LogSumExp.apply(z)
    lse.sum().backward()
    print("logsumexp:", lse.numpy())
    print("gradient (each row a softmax):")
    print(z.grad.round(4))
    assert np.allclose(lse.numpy(), np.logaddexp.reduce(z.numpy(), axis=-1))
    assert np.allclose(z.grad, z.softmax(axis=-1).numpy())

    z = ag.randn(3, 4, requires_grad=True)
    assert ag.gradcheck(LogSumExp.apply, [z]) and ag.gradgradcheck(LogSumExp.apply, [z])
    """),
    md(r"""
    ## 3. A straight-through estimator

    Rounding is flat almost everywhere: its true derivative is 0 (and undefined at the
    jumps), so a model that rounds its weights, as quantised networks do, gets no gradient
    through them and never learns. The *straight-through estimator* rounds in the forward
    pass and pretends, in the backward pass, that rounding was the identity: it passes the
    gradient straight on. `gradcheck` rightly rejects it (it is not the derivative), and
    says where:
    """),
    code("""
    class RoundSTE(Function):
        \"\"\"Round to the nearest integer; backward passes the gradient through unchanged.\"\"\"

        @staticmethod
        def forward(ctx, x):
            return ag.tensor(np.round(x.numpy()))

        @staticmethod
        def backward(ctx, grad):
            return grad


    class Round(Function):
        \"\"\"Round with its true derivative, 0.\"\"\"

        @staticmethod
        def forward(ctx, x):
            return ag.tensor(np.round(x.numpy()))

        @staticmethod
        def backward(ctx, grad):
            return grad * 0.0


    try:
        ag.gradcheck(RoundSTE.apply, [ag.tensor([0.2, 0.7, -1.6], requires_grad=True)])
    except AssertionError as error:
        print("AssertionError:", error)
    """),
    md(r"""
    What it is for: weights that may only take multiples of $1/4$,
    $q(w) = \operatorname{round}(4w)/4$, fitted to data made with the quarter-step weights
    $(0.75, -1.5, 0.25)$. With the true derivative the weights never move; with the
    straight-through gradient, plain gradient descent on the real-valued $w$ finds them.
    """),
    code("""
    rng = np.random.default_rng(0)
    X = ag.tensor(rng.normal(size=(64, 3)))
    target = X @ ag.tensor([0.75, -1.5, 0.25])

    for rounding in (Round, RoundSTE):
        w = ag.tensor([0.1, 0.1, 0.1], requires_grad=True)
        losses = []
        for _ in range(100):
            quantised = rounding.apply(w * 4) / 4
            loss = ((X @ quantised - target) ** 2).mean()
            w.zero_grad()
            loss.backward()
            w.data -= 0.05 * w.grad
            losses.append(loss.item())
        print(f"{rounding.__name__:8s}: q(w) = {quantised.numpy()}, loss {losses[-1]:.4f}")
        plt.plot(losses, label=rounding.__name__)
    assert np.allclose(quantised.numpy(), [0.75, -1.5, 0.25]) and losses[-1] == 0
    plt.xlabel("step")
    plt.ylabel("mean squared error")
    plt.legend();
    """),
    md(r"""
    ## 4. In the graph

    A `Function` is one node named after its class, however many numpy operations its
    forward ran: here the quantised weights go through `Softplus` and `LogSumExp`.
    """),
    code("""
    w = ag.tensor([0.3, -0.6, 1.1], requires_grad=True, name="w")
    with ag.retain_grads():
        q = RoundSTE.apply(w * 4) / 4
        loss = LogSumExp.apply(Softplus.apply(q))
    loss.name = "loss"
    loss.backward(retain_graph=True)  # keep the values for the drawing
    graph = ag.draw_graph(loss, show_data=True, rankdir="LR")
    assert all(name in graph.source for name in ("RoundSTE", "Softplus", "LogSumExp"))
    graph
    """),
    md(r"""
    ## 5. Jacobian and Hessian of the new ops

    `autograd.functional` works on any function built from differentiable ops, ours
    included. Softplus acts elementwise, so its Jacobian is diagonal, $J =
    \operatorname{diag}(\sigma(x))$. The Hessian of logsumexp is the Jacobian of the
    softmax, $\operatorname{diag}(p) - p p^\top$ with $p = \operatorname{softmax}(x)$; it
    needs `LogSumExp.backward` to be differentiable, which `gradgradcheck` already said.
    """),
    code("""
    v = ag.tensor([-2.0, 0.0, 1.0, 3.0])
    J = functional.jacobian(Softplus.apply, v).numpy()
    sigma = 1 / (1 + np.exp(-v.numpy()))
    print("Jacobian of softplus:")
    print(J.round(4))
    assert np.allclose(J, np.diag(sigma), atol=1e-15)

    H = functional.hessian(LogSumExp.apply, v).numpy()
    p = np.exp(v.numpy()) / np.exp(v.numpy()).sum()
    print("Hessian of logsumexp:")
    print(H.round(4))
    assert np.allclose(H, np.diag(p) - np.outer(p, p), atol=1e-15)
    """),
    md(r"""
    ## 6. Watching gradients: `register_hook`

    `t.register_hook(fn)` calls `fn(grad)` when backward has computed the gradient of `t`
    (for a parameter: before it is added to `.grad`). Returning nothing only watches;
    returning a tensor replaces the gradient from there on. A module's
    `register_forward_hook(fn)` calls `fn(module, inputs, output)` after every forward;
    together they reach the gradient of every layer's *output* too, which nothing else
    keeps.

    A narrow, deep tanh MLP fitting a smooth surface, with hooks that record, at every
    step, the norm of each `Linear` layer's weight gradient and of the gradient arriving
    at its output:
    """),
    code("""
    ag.manual_seed(0)
    model = nn.MLP(2, [16, 16, 16, 16], 1, activation="tanh")
    points = ag.tensor(rng.uniform(-2, 2, size=(256, 2)))
    heights = ag.tensor(np.sin(points.numpy()[:, :1]) * np.cos(points.numpy()[:, 1:]))
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    weight_norms = {name: [] for name in linears}
    output_norms = {name: [] for name in linears}


    def norm(g):
        return float(np.linalg.norm(g.numpy()))


    def watch_output(name):
        def hook(module, inputs, output):  # runs in the forward pass ...
            output.register_hook(lambda g: output_norms[name].append(norm(g)))  # ... and backward

        return hook


    handles = []
    for name, layer in linears.items():
        record = weight_norms[name].append
        handles.append(layer.weight.register_hook(lambda g, record=record: record(norm(g))))
        handles.append(layer.register_forward_hook(watch_output(name)))

    opt = optim.Adam(model.parameters(), lr=0.005)
    for _ in range(150):
        loss = ((model(points) - heights) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"final loss {loss.item():.5f}")
    for handle in handles:
        handle.remove()  # the hooks stay until removed

    fig, (ax_w, ax_out) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for name in linears:
        ax_w.plot(weight_norms[name], label=name)
        ax_out.plot(output_norms[name], label=name)
    ax_w.set(title="‖∂L/∂weight‖ per layer", xlabel="step", yscale="log")
    ax_out.set(title="‖∂L/∂output‖ per layer", xlabel="step")
    ax_out.legend(fontsize=8)
    fig.tight_layout()
    assert all(len(n) == 150 for n in [*weight_norms.values(), *output_norms.values()])
    """),
    md(r"""
    The gradient arriving at a layer's output is the error of the layers above it, passed
    back through their weights and tanh derivatives; each layer down multiplies it again,
    which is how gradients vanish or explode in deep networks, and these per-layer curves
    are where it shows.

    **Changing a gradient.** A hook that returns a tensor replaces the gradient. Here one
    layer's weight gradient is clipped to norm 0.001 as backward computes it, while the
    other layers' gradients stay as they were. (`nn.utils.clip_grad_norm_` instead
    rescales all gradients together, after backward.)
    """),
    code("""
    def clip_norm(max_norm):
        def hook(g):
            return g * min(1.0, max_norm / max(norm(g), 1e-30))

        return hook


    def gradients():
        model.zero_grad()
        ((model(points) - heights) ** 2).mean().backward()
        return {name: layer.weight.grad.copy() for name, layer in linears.items()}


    before = gradients()
    handle = linears["layers.0"].weight.register_hook(clip_norm(1e-3))
    after = gradients()
    handle.remove()
    for name in linears:
        print(f"{name}: ‖grad‖ {np.linalg.norm(before[name]):.4f}", end=" -> ")
        print(f"{np.linalg.norm(after[name]):.4f}")
    assert np.linalg.norm(before["layers.0"]) > 1e-3
    assert np.isclose(np.linalg.norm(after["layers.0"]), 1e-3)
    assert all(np.array_equal(before[n], after[n]) for n in linears if n != "layers.0")
    """),
    md(r"""
    ## 7. Finding a NaN: `detect_anomaly()`

    A loss that spreads points apart, minus the sum of their pairwise distances. The
    loss is a perfectly good number, and every gradient is NaN:
    """),
    code("""
    def spread(points):
        diff = points[:, None, :] - points[None, :, :]  # (n, n, 2): every pair
        squared = (diff**2).sum(axis=-1)
        return -squared.sqrt().sum()


    cloud = ag.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]], requires_grad=True)
    loss = spread(cloud)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss.backward()
    print("loss", loss.item())
    print("gradient", cloud.grad.tolist())
    """),
    md(r"""
    Inside `with ag.detect_anomaly():` the engine notes where each op was created, and the
    first backward step that produces a NaN raises a `RuntimeError` naming the op and
    that line (in a script: `script.py:LINE`). In a notebook the file is the kernel's
    temporary file for the cell that holds the line (`/tmp/ipykernel_.../....py`, printed
    below as `<cell>`), and `linecache` finds the source line it points at.
    """),
    code("""
    cloud.zero_grad()
    try:
        with ag.detect_anomaly(), np.errstate(divide="ignore", invalid="ignore"):
            loss = spread(cloud)
            loss.backward()
    except RuntimeError as error:
        message = str(error)
        filename, line = message.rsplit(" created at ", 1)[1].rsplit(":", 1)
        print(message.replace(filename, "<cell>"))
        source_line = linecache.getline(filename, int(line)).strip()
        print(f"line {line} of the cell that made it: {source_line}")
    assert "'pow'" in message and cloud.grad is None  # nothing was accumulated
    """),
    md(r"""
    The culprit is not where the NaN appeared but just above it. The distance of each
    point to *itself* is $\sqrt{0}$, and $\frac{d}{ds}\sqrt{s} = \frac{1}{2\sqrt{s}}$ is
    `inf` at 0. That `inf` flows back to `diff**2`, whose backward multiplies it by
    $2\,\text{diff} = 0$: $0 \cdot \infty$ is NaN. The fix is to leave the diagonal out
    (or to add a small $\epsilon$ under the square root):
    """),
    code("""
    def spread(points):
        diff = points[:, None, :] - points[None, :, :]
        eye = ag.tensor(np.eye(points.shape[0]))  # sqrt(0 + 1) - 1 = 0 on the diagonal
        return -(((diff**2).sum(axis=-1) + eye).sqrt() - eye).sum()


    with ag.detect_anomaly():
        loss = spread(cloud)
        loss.backward()
    print("loss", loss.item())
    print("gradient", cloud.grad.round(4).tolist())
    assert np.isfinite(cloud.grad).all()
    """),
    md(r"""
    ## 8. The in-place error, and why it protects you

    An op's backward often needs its inputs: the gradient of $x \cdot w$ with respect to
    $x$ is $w$, the value $w$ had *in the forward pass*. If $w$ changes in place before
    backward, the closure would read the new value and return the gradient of a function
    that was never computed, silently. Every tensor has a version counter, bumped by each
    in-place change (`+=`, `t[i] = ...`, `optimizer.step()`, `nn.init.*_`), and backward
    checks the versions of what each op saved:
    """),
    code("""
    x = ag.tensor([1.0, 2.0], requires_grad=True)
    w = ag.tensor([2.0, 2.0], requires_grad=True)
    y = (x * w).sum()  # mul saves w: dy/dx = w = [2, 2]
    with ag.no_grad():
        w += 1.0  # w is now [3, 3]; its version went from 0 to 1
    try:
        y.backward()  # would read w = [3, 3] and say dy/dx = [3, 3]
    except RuntimeError as error:
        print("RuntimeError:", error)
    assert x.grad is None
    """),
    md(r"""
    The classic way to meet it is a GAN-style loop: the discriminator's optimiser step
    runs between the generator's forward pass and its backward pass. The generator's loss
    went through the discriminator, whose `linear` op saved the weight that `opt_d.step()`
    then changes in place:
    """),
    code("""
    ag.manual_seed(0)
    generator, discriminator = nn.Linear(3, 4), nn.Linear(4, 1)
    opt_d = optim.SGD(discriminator.parameters(), lr=0.1)
    noise = ag.randn(8, 3)

    fake = generator(noise)
    loss_g = -discriminator(fake).mean()  # the generator wants its fakes scored high
    loss_d = discriminator(fake.detach()).mean()  # the discriminator wants them low
    loss_d.backward()
    opt_d.step()  # changes discriminator.weight in place ...
    try:
        loss_g.backward()  # ... which loss_g's graph needs: d loss_g / d fake = -weight / 8
    except RuntimeError as error:
        print("RuntimeError:", error)
    """),
    md(r"""
    Without the check, `generator.weight.grad` would have been computed with the
    discriminator's *new* weight: a plausible-looking, wrong gradient, and a GAN that
    trains a little worse for reasons nobody can find. The fix is to finish each backward
    before the step that changes what it saved (or to recompute the forward pass after
    the step):
    """),
    code("""
    opt_g = optim.SGD(generator.parameters(), lr=0.1)
    fake = generator(noise)
    seen = []
    fake.register_hook(lambda g: seen.append(g.numpy().copy()))  # d loss_g / d fake
    loss_g = -discriminator(fake).mean()
    opt_g.zero_grad()
    loss_g.backward()  # first the generator's backward, with the weights of its forward ...
    assert np.allclose(seen[0], -discriminator.weight.numpy() / 8)  # every row: -weight / 8
    opt_d.zero_grad()
    discriminator(fake.detach()).mean().backward()
    opt_d.step()  # ... then the discriminator's step
    opt_g.step()
    print("d loss_g / d fake, first row:", seen[0][0].round(4))
    """),
    md(r"""
    ## Summary

    - `autograd.Function`: `forward(ctx, ...)` computes, `ctx.save_for_backward` keeps
      what `backward(ctx, grad)` needs, `apply` runs it as one graph node. A backward
      written with Tensor ops is differentiable again; a numpy one belongs under
      `once_differentiable`.
    - `gradcheck` / `gradgradcheck` check first and second derivatives; they reject the
      straight-through estimator, which is the point of it.
    - `autograd.functional.jacobian` / `hessian` work on your ops as on built-in ones.
    - `register_hook` watches or replaces a gradient during backward; with a forward hook
      it reaches every layer's output.
    - `detect_anomaly()` names the op and the line behind the first NaN gradient.
    - Changing a saved tensor in place before backward raises instead of giving a wrong
      gradient.

    Next: [06 · Attention](06_attention.ipynb) builds a language model of names.
    """),
]

# ============================================================================================
NOTEBOOK_06: list[Cell] = [
    md(r"""
    # 06 · Attention: a language model of names, from counts to a transformer

    A character-level language model reads a name one letter at a time and gives, at each
    step, a probability for every possible next letter (or for the end of the name).
    Trained on real names, it can then *invent* names: draw a letter from its prediction,
    feed it back in, repeat. This notebook builds such models in steps, each seeing more
    of what came before:

    1. **bigram counts**: the next letter given the previous one, by counting;
    2. **an MLP on a context window**: the previous 4 letters, embedded and fed to a
       hidden layer (Bengio et al., 2003);
    3. **attention**, written out by hand, then with `F.scaled_dot_product_attention` and
       `nn.MultiheadAttention`;
    4. **a small transformer**: embeddings, causal self-attention, LayerNorm, residual
       connections, every earlier letter in view;
    5. **an LSTM** on the same data, for comparison.

    Each is scored the same way, by its loss on names it never saw in training, and each
    writes a few names of its own. The models are kept small so that the whole notebook
    runs in well under a minute; the end says what longer training reaches.

    **Data.** The first names of the 1990 US census, as the PyPI package `names` ships
    them (public domain; installed by `pip install -e ".[notebooks]"`, no network needed
    at run time). `namesdata.load_names` (in this folder) reads them, or any text file
    with one name per line: `load_names("my_names.txt")`.
    """),
    code(
        f"""
    import os
    import time

    import matplotlib.pyplot as plt
    import numpy as np
    from namesdata import load_names  # notebooks/namesdata.py

    import autograd as ag
    import nn
    from nn import functional as F
    from nn import optim

    {PLOT_SETUP}
    # the longer run at the end: NPGRAD_NAMES_SCALE=3 (steps x 3), NPGRAD_NAMES_DROPOUT=0.1
    SCALE = float(os.environ.get("NPGRAD_NAMES_SCALE", "1"))
    DROPOUT = float(os.environ.get("NPGRAD_NAMES_DROPOUT", "0"))  # in the transformer and LSTM
    """
    ),
    code("""
    names = load_names()  # lower case, each name once
    lengths = np.array([len(name) for name in names])
    print(f"{len(names)} names, {lengths.min()} to {lengths.max()} letters, e.g. {names[:6]}")

    rng = np.random.default_rng(0)
    names = [names[i] for i in rng.permutation(len(names))]
    held_out, train = names[: len(names) // 10], names[len(names) // 10 :]
    print(f"training on {len(train)} names, {len(held_out)} held out")
    """),
    md(r"""
    ## The task, in numbers

    The alphabet is the 26 letters plus `.`, which marks both the start and the end of a
    name: 27 symbols. Each name becomes an input row $x$, `.` followed by the name, and a
    target row $y$, the name followed by `.`: at every position the target is the symbol
    that comes next. Rows are padded to a common length $T$ (the longest name plus one);
    the padding's targets are $-1$, "no target".

    The score of a model is the **mean negative log-likelihood per symbol** on the held-out
    names, in nats: $-\frac{1}{M}\sum \log p(\text{true next symbol})$ over all their
    letters and end marks. Guessing uniformly scores $\log 27 = 3.30$; a perfect
    predictor would score 0.
    """),
    code("""
    itos = ["."] + sorted(set("".join(names)))  # index -> symbol
    stoi = {ch: i for i, ch in enumerate(itos)}
    V = len(itos)
    T = int(lengths.max()) + 1


    def encode(words):
        \"\"\"Inputs x (N, T): "." then the name; targets y (N, T): the name, ".", then -1.\"\"\"
        x = np.zeros((len(words), T), dtype=np.int64)
        y = np.full((len(words), T), -1, dtype=np.int64)
        for row, word in enumerate(words):
            ids = [stoi[ch] for ch in word]
            x[row, 1 : len(ids) + 1] = ids
            y[row, : len(ids)] = ids
            y[row, len(ids)] = 0
        return x, y


    x_train, y_train = encode(train)
    x_held, y_held = encode(held_out)
    print(f"{V} symbols, T = {T}; {(y_held >= 0).sum()} held-out targets")
    print(f"{train[0]!r}: x = {x_train[0]}\\n{' ' * len(repr(train[0]))}  y = {y_train[0]}")
    print(f"uniform guessing: {np.log(V):.4f} nats")
    """),
    md(r"""
    One sampler serves every model: `next_probs(x)` maps the inputs so far, `(n, t)`
    symbol ids starting with `.`, to the probabilities of the next symbol, `(n, V)`; the
    sampler draws from them until each name has drawn its end mark. Samples that also
    appear in the training list are marked with a `*`; the rest are new.
    """),
    code("""
    def sample(next_probs, n=12, seed=0):
        rng = np.random.default_rng(seed)
        x = np.zeros((n, 1), dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        for _ in range(T):
            p = next_probs(x)
            drawn = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)  # one draw per row
            drawn[done] = 0
            done |= drawn == 0
            x = np.concatenate([x, drawn[:, None]], axis=1)
            if done.all():
                break
        return ["".join(itos[i] for i in row[1:]).split(".")[0] for row in x]


    train_set = set(train)


    def show(samples):
        print("  ".join(s + ("*" if s in train_set else "") for s in samples))
        return samples
    """),
    md(r"""
    ## 1. Bigram counts

    The simplest model looks only at the previous symbol: count how often each symbol
    follows each other one in the training names, and turn each row of counts into
    probabilities. Adding 1 to every count ("add-one smoothing") keeps a pair never seen
    in training from getting probability 0, and an infinite loss.
    """),
    code("""
    counts = np.zeros((V, V), dtype=np.int64)
    keep = y_train >= 0
    np.add.at(counts, (x_train[keep], y_train[keep]), 1)  # counts[previous, next]
    bigram_probs = (counts + 1) / (counts + 1).sum(axis=1, keepdims=True)


    def bigram_loss(x, y):
        keep = y >= 0
        return float(-np.log(bigram_probs[x[keep], y[keep]]).mean())


    results = {}  # model -> its row of the comparison table at the end
    results["bigram"] = {
        "held-out": bigram_loss(x_held, y_held),
        "train": bigram_loss(x_train, y_train),
        "parameters": V * V,
        "context": "1 symbol",
        "seconds": 0.0,
    }
    print(f"bigram: held-out loss {results['bigram']['held-out']:.4f}")
    assert results["bigram"]["held-out"] < 2.45

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.imshow(np.log1p(counts), cmap="Blues")
    ax.set(xticks=range(V), yticks=range(V), xlabel="next", ylabel="previous",
           title="log(1 + count) of each pair")  # fmt: skip
    ax.set_xticklabels(itos)
    ax.set_yticklabels(itos);
    """),
    md(r"""
    The first row is how names start, the first column how they end (most often after
    `a`, `e`, `n` or `y`). The dark columns are the vowels: after almost any letter a
    vowel is likely. Names drawn from it have plausible pairs of letters and no plan
    beyond them:
    """),
    code("""
    bigram_samples = show(sample(lambda x: bigram_probs[x[:, -1]]))
    """),
    md(r"""
    **The same model, learnt by gradient descent.** The counts maximise the likelihood of
    the training pairs (the unsmoothed counts exactly). A table of logits $W$, one row per
    previous symbol, trained by minimising the cross-entropy, must find the same
    probabilities and the same lowest training loss: a neural network with one weight
    matrix and no hidden layer. The loss over the 32,448 training pairs is a sum over the
    729 kinds of pair, each weighted by its count, which makes each step cheap:
    $\ L = -\frac{1}{M}\sum_{a,b} N_{ab} \log \operatorname{softmax}(W_a)_b$.
    """),
    code("""
    W = ag.zeros(V, V, requires_grad=True)  # logits: row a scores the symbols after a
    opt = optim.Adam([W], lr=0.3)
    for _ in range(200):
        loss = -(ag.tensor(counts) * F.log_softmax(W, axis=1)).sum() / counts.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    keep = counts > 0
    seen = counts / counts.sum(axis=1, keepdims=True)  # the unsmoothed counts' probabilities
    best = float(-(counts[keep] * np.log(seen[keep])).sum() / counts.sum())
    print(f"gradient descent: training loss {loss.item():.4f}; the counts' minimum {best:.4f}")
    assert loss.item() - best < 0.005
    """),
    md(r"""
    ## 2. An MLP on a context window

    One previous symbol is not much to go on. The model of Bengio et al. (2003) looks at
    the previous $K = 4$: each symbol is mapped to a learnt vector (an `nn.Embedding`, a
    27 × 16 table), the four vectors are concatenated and go through a tanh hidden layer
    to 27 logits. Symbols that behave alike can get similar vectors, so that what the
    model learns about one carries over to the others.

    Every target of every training name, with the $K$ symbols before it (padded with `.`
    at the start), is one training example:
    """),
    code("""
    K = 4


    def windows(x, y):
        \"\"\"Each target with the K symbols before it: contexts (M, K) and targets (M,).\"\"\"
        padded = np.concatenate([np.zeros((len(x), K - 1), dtype=np.int64), x], axis=1)
        contexts = np.stack([padded[:, j : j + T] for j in range(K)], axis=-1)  # (N, T, K)
        keep = y >= 0
        return contexts[keep], y[keep]


    c_train, t_train = windows(x_train, y_train)
    c_held, t_held = windows(x_held, y_held)
    for context, target in zip(c_train[:5], t_train[:5], strict=True):
        print("".join(itos[i] for i in context), "->", itos[target])
    """),
    code("""
    class MLPLanguageModel(nn.Module):
        def __init__(self, context=K, width=16, hidden=128):
            super().__init__()
            self.embed = nn.Embedding(V, width)
            self.hidden = nn.Linear(context * width, hidden)
            self.out = nn.Linear(hidden, V)

        def forward(self, contexts):  # (N, K) symbol ids -> (N, V) logits
            vectors = self.embed(contexts)  # (N, K, width)
            return self.out(self.hidden(vectors.reshape(len(contexts), -1)).tanh())
    """),
    md(r"""
    One training loop serves this model and the two after it: AdamW on random
    mini-batches, the learning rate annealed to zero along a cosine, and the held-out loss
    measured every few steps (in `eval()` mode, without a graph). `report` fills one row of
    the comparison table at the end; its training loss is measured on the first 1,000
    training names, enough for a comparison with the held-out loss.
    """),
    code("""
    @ag.no_grad()
    def evaluate(model, loss):
        model.eval()
        return loss().item()


    def fit(model, batch_loss, held_loss, n_examples, steps, batch_size, lr):
        \"\"\"Train `model`: batch_loss(indices) is the loss on those training examples,
        held_loss() the loss on the held-out names. Returns [(step, held-out loss)], seconds.\"\"\"
        steps = int(steps * SCALE)
        opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        schedule = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        rng = np.random.default_rng(1)
        history = []
        start = time.perf_counter()
        for step in range(steps):
            model.train()
            loss = batch_loss(rng.integers(0, n_examples, batch_size))
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            if step % max(steps // 20, 1) == 0 or step == steps - 1:
                history.append((step + 1, evaluate(model, held_loss)))
        return history, time.perf_counter() - start


    SOME = 1000  # training names for the training loss in `report`


    def report(name, model, held_loss, train_loss, context, seconds):
        results[name] = {
            "held-out": evaluate(model, held_loss),
            "train": evaluate(model, train_loss),
            "parameters": sum(p.numel() for p in model.parameters()),
            "context": context,
            "seconds": seconds,
        }
        print(f"{name}: held-out loss {results[name]['held-out']:.4f}, "
              f"training loss {results[name]['train']:.4f} ({seconds:.1f} s)")  # fmt: skip
        return results[name]["held-out"]
    """),
    code("""
    ag.manual_seed(0)
    mlp = MLPLanguageModel()
    mlp_history, seconds = fit(
        mlp,
        lambda i: F.cross_entropy(mlp(c_train[i]), t_train[i]),
        lambda: F.cross_entropy(mlp(c_held), t_held),
        len(c_train), steps=3000, batch_size=64, lr=3e-3,
    )  # fmt: skip
    c_some, t_some = windows(x_train[:SOME], y_train[:SOME])
    held = report(
        "MLP",
        mlp,
        lambda: F.cross_entropy(mlp(c_held), t_held),
        lambda: F.cross_entropy(mlp(c_some), t_some),
        f"{K} symbols",
        seconds,
    )
    assert held < results["bigram"]["held-out"] - 0.2


    @ag.no_grad()
    def mlp_next(x):
        mlp.eval()
        padded = np.concatenate([np.zeros((len(x), K), dtype=np.int64), x], axis=1)
        return F.softmax(mlp(padded[:, -K:]), axis=1).numpy()


    mlp_samples = show(sample(mlp_next))
    """),
    md(r"""
    ## 3. Attention, written out

    The MLP sees a fixed window. Attention lets every position look at *all* the
    positions before it and decide, from their content, how much of each to take. At each
    position $t$ three vectors are computed from the input $x_t$ by three linear maps: a
    **query** $q_t$ (what am I looking for?), a **key** $k_t$ (what do I hold?) and a
    **value** $v_t$ (what do I pass on?). Position $t$ scores every position $s$ by
    $q_t \cdot k_s / \sqrt{d}$ (the $\sqrt{d}$ keeps the scores' spread independent of
    the vector size $d$), turns the scores into weights with a softmax, and outputs the
    weighted average of the values:

    $$\text{out}_t = \sum_{s \le t}
      \operatorname{softmax}_s\!\Big(\frac{q_t \cdot k_s}{\sqrt d}\Big)\, v_s.$$

    A language model must not peek at the symbol it is predicting, so position $t$ may
    only attend to $s \le t$: the **causal mask** sets the scores above the diagonal to
    $-\infty$ before the softmax (`ag.tril` gives the lower triangle, `masked_fill` puts
    $-\infty$ where it is 0), so their weights are exactly 0. One head, on a random input
    of 5 positions:
    """),
    code("""
    ag.manual_seed(0)
    B_, T_, C_ = 2, 5, 8  # batch, positions, width of the toy example
    x = ag.randn(B_, T_, C_, requires_grad=True)
    to_q, to_k, to_v = nn.Linear(C_, C_), nn.Linear(C_, C_), nn.Linear(C_, C_)

    q, k, v = to_q(x), to_k(x), to_v(x)  # (B, T, C) each
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(C_)  # (B, T, T): row t scores every position
    causal = ag.tril(ag.ones(T_, T_))  # 1 on and below the diagonal
    scores = scores.masked_fill(causal == 0, float("-inf"))
    weights = scores.softmax(axis=-1)  # each row sums to 1, zero above the diagonal
    by_hand = weights @ v  # (B, T, C): each position's weighted average of the values
    print(weights.numpy()[0].round(2))
    assert np.allclose(weights.numpy().sum(axis=-1), 1) and not np.triu(weights.numpy()[0], 1).any()
    """),
    md(r"""
    `F.scaled_dot_product_attention(q, k, v, is_causal=True)` is the same computation as
    one fused op (one graph node, and a backward that computes less); the values and the
    gradients agree:
    """),
    code("""
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    (g_hand,) = ag.grad((by_hand**2).sum(), x, retain_graph=True)  # q, k, v are used again
    (g_fused,) = ag.grad((fused**2).sum(), x)
    print(f"largest difference: values {np.abs(fused.numpy() - by_hand.numpy()).max():.1e}, "
          f"gradients {np.abs(g_fused.numpy() - g_hand.numpy()).max():.1e}")  # fmt: skip
    assert np.allclose(fused.numpy(), by_hand.numpy(), atol=1e-6)
    assert np.allclose(g_fused.numpy(), g_hand.numpy(), atol=1e-5)
    """),
    md(r"""
    **Several heads.** One softmax can only focus one way at a time. Multi-head attention
    splits the width $C$ into $H$ heads of $d = C/H$ dimensions, runs attention in each
    (the heads' own queries can look for different things: the previous letter, the
    last vowel, the start of the name), concatenates their outputs and mixes them with one
    more linear map. `nn.MultiheadAttention` stores the three input maps as one
    `in_proj_weight` (3C, C) and the output map as `out_proj`; written out with its
    weights, the computation gives its result exactly. (Careful with the masks: its
    boolean `attn_mask` marks positions that may *not* be attended to, the opposite of
    `scaled_dot_product_attention`'s; `is_causal=True` avoids the question.)
    """),
    code("""
    H_ = 2
    mha = nn.MultiheadAttention(C_, H_, batch_first=True)
    out, head_weights = mha(x, x, x, is_causal=True, average_attn_weights=False)


    def split_heads(t):  # (B, T, C) -> (B, H, T, d)
        return t.reshape(B_, T_, H_, C_ // H_).transpose(0, 2, 1, 3)


    W, b = mha.in_proj_weight, mha.in_proj_bias  # rows: the query, key and value maps
    rows = [slice(i * C_, (i + 1) * C_) for i in range(3)]
    q, k, v = (split_heads(x @ W[r].T + b[r]) for r in rows)
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d)
    mine = mha.out_proj(heads.transpose(0, 2, 1, 3).reshape(B_, T_, C_))  # heads side by side
    print("output", out.shape, "weights", head_weights.shape, "(batch, head, query, key)")
    difference = np.abs(mine.numpy() - out.numpy()).max()
    print(f"largest difference from nn.MultiheadAttention: {difference:.1e}")
    assert np.allclose(mine.numpy(), out.numpy(), atol=1e-6)
    """),
    md(r"""
    ## 4. A small transformer

    A transformer **block** lets the positions communicate (attention), then lets each
    position think on its own (a two-layer MLP applied at every position), and wraps both
    in two devices that make deep stacks trainable:

    - **residual connections**: each part *adds* its output to its input, $x + f(x)$, so
      the gradient reaches early layers through the sums unchanged;
    - **LayerNorm** before each part: every position's vector is normalised to zero mean
      and unit variance (then scaled and shifted by learnt parameters), which keeps the
      inputs of attention and MLP in a range where they train well.

    Attention alone does not know the order of its inputs (it is a weighted average), so
    a learnt **position embedding** is added to each symbol's embedding. The MLP in the
    block uses GELU, a smooth ReLU ($x\,\Phi(x)$; its tanh form here). Two blocks of width
    32 with 4 heads; the output of the last one, normalised, goes to 27 logits at every
    position. Every target of a name is predicted at once, each from the symbols before
    it, so one name gives as many training examples as it has targets.

    `dropout` (0 here; the longer run at the end uses 0.1) zeroes a random fraction of the
    attention weights and of the MLP's outputs while training, so that the model cannot
    lean on any one of them: a standard guard against memorising the training set.
    `model.eval()` turns it off. `keep_weights` makes a block ask its attention for the
    weights (`need_weights=True`, the explicit softmax; training uses the fused op) and
    keep them for the pictures below.
    """),
    code("""
    class Block(nn.Module):
        \"\"\"Pre-LayerNorm transformer block: x + attention(ln1(x)), then x + mlp(ln2(x)).\"\"\"

        def __init__(self, width, heads, dropout=0.0):
            super().__init__()
            self.ln1 = nn.LayerNorm(width)
            self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
            self.ln2 = nn.LayerNorm(width)
            self.mlp = nn.Sequential(
                nn.Linear(width, 4 * width),
                nn.GELU(approximate="tanh"),
                nn.Linear(4 * width, width),
                nn.Dropout(dropout),
            )
            self.keep_weights, self.weights = False, None

        def forward(self, x):  # (N, t, width) -> (N, t, width)
            h = self.ln1(x)
            attended, weights = self.attn(
                h, h, h, is_causal=True, need_weights=self.keep_weights, average_attn_weights=False
            )
            if self.keep_weights:
                self.weights = weights.numpy()  # (N, heads, t, t)
            x = x + attended
            return x + self.mlp(self.ln2(x))


    class Transformer(nn.Module):
        def __init__(self, width=32, heads=4, blocks=2, dropout=DROPOUT):
            super().__init__()
            self.tok = nn.Embedding(V, width)
            self.pos = nn.Embedding(T, width)
            self.blocks = nn.Sequential(*(Block(width, heads, dropout) for _ in range(blocks)))
            self.ln = nn.LayerNorm(width)
            self.head = nn.Linear(width, V)

        def forward(self, idx):  # (N, t) symbol ids, t <= T -> (N, t, V) logits
            x = self.tok(idx) + self.pos(np.arange(idx.shape[1]))
            return self.head(self.ln(self.blocks(x)))


    def sequence_loss(logits, y):
        \"\"\"Cross-entropy over the positions that have a target (y >= 0).\"\"\"
        flat = y.reshape(-1)
        keep = np.flatnonzero(flat >= 0)
        return F.cross_entropy(logits.reshape(-1, V)[keep], flat[keep])
    """),
    code("""
    ag.manual_seed(0)
    transformer = Transformer()
    transformer_history, seconds = fit(
        transformer,
        lambda i: sequence_loss(transformer(x_train[i]), y_train[i]),
        lambda: sequence_loss(transformer(x_held), y_held),
        len(x_train), steps=1000, batch_size=32, lr=5e-3,
    )  # fmt: skip
    held = report("transformer", transformer, lambda: sequence_loss(transformer(x_held), y_held),
                  lambda: sequence_loss(transformer(x_train[:SOME]), y_train[:SOME]), "all before",
                  seconds)  # fmt: skip
    assert held < results["bigram"]["held-out"] - 0.25


    @ag.no_grad()
    def transformer_next(x):
        transformer.eval()
        return F.softmax(transformer(x)[:, -1], axis=-1).numpy()


    transformer_samples = show(sample(transformer_next))
    """),
    md(r"""
    **What the heads look at.** The attention weights of both blocks for a held-out
    name; row $t$ is the position predicting the symbol after the $t$-th input, its
    columns the inputs it attends to (each row sums to 1; above the diagonal is masked).
    Some heads keep to the latest letter or two, like an n-gram model (block 1, head 2);
    some fix on one letter that matters for the rest of the name (the `y` of "maryellen"
    in block 0, head 1 and block 1, head 0); several seem to rest on the start mark `.`
    when nothing else is worth looking at.
    """),
    code("""
    word = next(name for name in held_out if len(name) >= 8)
    x_word, _ = encode([word])
    for block in transformer.blocks:
        block.keep_weights = True
    with ag.no_grad():
        transformer.eval()
        transformer(x_word)
    for block in transformer.blocks:
        block.keep_weights = False

    heads = transformer.blocks[0].attn.num_heads
    n = len(word) + 1  # the inputs: "." and the letters
    labels = ["."] + list(word)
    fig, axes = plt.subplots(len(transformer.blocks), heads, figsize=(8, 4.4))
    for b, block in enumerate(transformer.blocks):
        for h in range(heads):
            ax = axes[b, h]
            ax.imshow(block.weights[0, h, :n, :n], cmap="Greys", vmin=0, vmax=1)
            ax.set_xticks(range(n), labels, fontsize=7)
            ax.set_yticks(range(n), labels, fontsize=7)
            ax.set_title(f"block {b}, head {h}", fontsize=8)
    fig.suptitle(f"attention weights reading {word!r} (rows: query, columns: key)", fontsize=9)
    fig.tight_layout()
    assert np.allclose(transformer.blocks[0].weights.sum(axis=-1), 1, atol=1e-5)
    """),
    md(r"""
    **One block's graph.** One block applied to a 5-position input, drawn with
    `collapse=True`: each innermost module (the LayerNorms, `out_proj`, the MLP's
    layers) is one node with its input and output shapes and its parameters' gradient
    norm. The multi-head attention shows its plumbing: one projection for queries, keys
    and values, their split into heads (`reshape`, `transpose`), the fused attention op
    with its causal mask, the heads put side by side again. The two `add` nodes are the
    residual connections; the edges that skip past each part are the paths by which the
    gradient bypasses it.
    """),
    code("""
    block = transformer.blocks[0]
    x5 = ag.tensor(transformer.tok(x_held[:1, :5]).numpy(), requires_grad=True, name="x")
    with ag.retain_grads():
        y5 = block(x5)
    (y5**2).mean().backward()
    graph = ag.draw_graph(y5, params=block, collapse=True)
    assert "ln1 (LayerNorm)" in graph.source and "scaled_dot_product_attention" in graph.source
    graph
    """),
    md(r"""
    ## 5. An LSTM, for comparison

    Before attention, recurrent networks were the way to read a sequence: an LSTM carries
    a state from one position to the next and updates it with gates that decide what to
    keep, forget and output. `nn.LSTM` runs a whole layer as one op; embedding 32, state
    64, the same training loop and budget as the transformer.
    """),
    code("""
    class LSTMLanguageModel(nn.Module):
        def __init__(self, width=32, hidden=64, dropout=DROPOUT):
            super().__init__()
            self.embed = nn.Embedding(V, width)
            self.lstm = nn.LSTM(width, hidden, batch_first=True)
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, V)

        def forward(self, idx):  # (N, t) symbol ids -> (N, t, V) logits
            states, _ = self.lstm(self.drop(self.embed(idx)))  # (N, t, hidden): after each input
            return self.head(self.drop(states))


    ag.manual_seed(0)
    lstm = LSTMLanguageModel()
    lstm_history, seconds = fit(
        lstm,
        lambda i: sequence_loss(lstm(x_train[i]), y_train[i]),
        lambda: sequence_loss(lstm(x_held), y_held),
        len(x_train), steps=1000, batch_size=32, lr=1e-2,
    )  # fmt: skip
    held = report("LSTM", lstm, lambda: sequence_loss(lstm(x_held), y_held),
                  lambda: sequence_loss(lstm(x_train[:SOME]), y_train[:SOME]), "all before",
                  seconds)  # fmt: skip
    assert held < results["bigram"]["held-out"] - 0.25


    @ag.no_grad()
    def lstm_next(x):
        lstm.eval()
        return F.softmax(lstm(x)[:, -1], axis=-1).numpy()


    lstm_samples = show(sample(lstm_next))
    """),
    md(r"""
    ## 6. Side by side
    """),
    code("""
    columns = ["parameters", "context", "train", "held-out", "seconds"]
    print(f"{'model':12s}" + "".join(f"{c:>12s}" for c in columns))
    for name, r in results.items():
        values = [f"{r['parameters']:d}", r["context"], f"{r['train']:.4f}", f"{r['held-out']:.4f}"]
        print(f"{name:12s}" + "".join(f"{v:>12s}" for v in [*values, f"{r['seconds']:.1f}"]))

    # a step of the MLP sees 64 targets, one of the sequence models 32 names' worth
    per_step = {"MLP": 64, "transformer": 32 * (y_train >= 0).sum() / len(y_train)}
    per_step["LSTM"] = per_step["transformer"]
    plt.axhline(results["bigram"]["held-out"], color="gray", ls="--", label="bigram")
    histories = {"MLP": mlp_history, "transformer": transformer_history, "LSTM": lstm_history}
    for name, history in histories.items():
        steps, losses = zip(*history, strict=True)
        plt.plot(np.array(steps) * per_step[name] / 1000, losses, "o-", ms=3, label=name)
    plt.ylim(1.8, 2.8)
    plt.xlabel("training targets seen (thousands)")
    plt.ylabel("held-out loss (nats / symbol)")
    plt.legend();
    """),
    md(r"""
    Each step of context helps: from one previous symbol (bigram) to four (MLP) is the
    biggest gain, and seeing the whole name (transformer, LSTM) adds more. On this little
    data set (4,647 names of at most 11 letters) and a budget of 1,000 steps, the LSTM
    comes out ahead of the transformer: its recurrence builds in that the recent letters
    matter most, which the transformer has to learn from data, while the transformer's
    strengths, long contexts and training every position in parallel, barely matter at
    12 positions. The gaps between training and held-out losses show the models starting
    to memorise their training names.

    **A longer run.** With `NPGRAD_NAMES_SCALE=3 NPGRAD_NAMES_DROPOUT=0.1` in the
    environment, every model trains three times as many steps, the transformer and the
    LSTM with dropout 0.1. Measured once, the whole notebook then took 49 s on this
    project's 2-core machine:

    | model | training loss | held-out loss |
    |---|---|---|
    | bigram | 2.3412 | 2.3658 |
    | MLP | 1.7269 | 1.9718 |
    | transformer | 1.6811 | 1.9600 |
    | LSTM | 1.6644 | 1.9102 |

    More steps alone are not the answer on 4,647 names: ten times the steps without
    dropout took the transformer's training loss down to 1.33 and its held-out loss *up*
    to 2.27, a model memorising its training set. The MLP, which has no dropout, gains the
    most from the longer run and already shows the same gap. What would help most is more
    names.

    The samples, for comparison (each marked `*` is a name of the training list):
    """),
    code("""
    every_sample = {"bigram": bigram_samples, "MLP": mlp_samples,
                    "transformer": transformer_samples, "LSTM": lstm_samples}  # fmt: skip
    for name, samples in every_sample.items():
        print(f"{name:12s}", end="")
        show(samples)
    """),
    md(r"""
    ## Summary

    - A language model is a classifier of the next symbol; its loss on held-out text
      (nats per symbol) compares models of any kind.
    - Counting pairs is a bigram model, and gradient descent on a table of logits finds
      the same probabilities.
    - Embeddings and a hidden layer over a window of symbols: four symbols of context
      instead of one, and a much lower loss.
    - Attention: queries score keys, a softmax turns the scores into weights, the output
      averages the values; a causal mask keeps the future out. `F.scaled_dot_product_attention`
      and `nn.MultiheadAttention` are the same computation, checked against the version by
      hand.
    - A transformer block is attention and an MLP, each behind a LayerNorm and inside a
      residual connection; position embeddings tell it the order.
    """),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_autograd_basics": NOTEBOOK_01,
    "02_building_an_mlp": NOTEBOOK_02,
    "03_mnist": NOTEBOOK_03,
    "04_higher_order": NOTEBOOK_04,
    "05_your_own_op": NOTEBOOK_05,
    "06_attention": NOTEBOOK_06,
}


# ============================================================================================
def make_notebook(name: str) -> nbformat.NotebookNode:
    """The notebook `name` without outputs. Cell ids are fixed, so rebuilding changes nothing."""
    cells = []
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = (
            nbformat.v4.new_code_cell(source)
            if kind == "code"
            else nbformat.v4.new_markdown_cell(source)
        )
        cell["id"] = f"cell-{i:02d}"
        cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# The environment the notebooks run in, here and in the tests: the shipped MNIST subset
# (NPGRAD_MNIST unset), 06's short training runs (NPGRAD_NAMES_* unset), no network, the
# inline plot backend (MPLBACKEND unset), and one BLAS thread: the notebooks' matmuls are
# small, and a second thread only slows them down, by an order of magnitude when the cores
# are shared with other processes (as in a test run).
NOTEBOOK_ENV = {"HF_HUB_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1"}  # fmt: skip
NOTEBOOK_ENV_UNSET = ("NPGRAD_MNIST", "NPGRAD_NAMES_SCALE", "NPGRAD_NAMES_DROPOUT", "MPLBACKEND")


def notebook_environment() -> dict[str, str]:
    """This process's environment as the notebooks get it (see NOTEBOOK_ENV)."""
    env = {k: v for k, v in os.environ.items() if k not in NOTEBOOK_ENV_UNSET}
    env.update(NOTEBOOK_ENV)
    return env


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run `nb` in place with notebooks/ as the working directory (as the tests do)."""
    from nbclient import NotebookClient

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(notebook_environment())  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT_S,
            kernel_name=KERNEL,
            resources={"metadata": {"path": str(HERE)}},
            record_timing=False,  # no timestamps in the committed files
            coalesce_streams=True,  # one stdout block per cell, however often it flushed
        )
        client.execute()
        drop_address_reprs(nb)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


ADDRESS_REPR = re.compile(r"<[\w.]+ (object )?at 0x[0-9a-f]+>")


def drop_address_reprs(nb: nbformat.NotebookNode) -> None:
    """Drop text such as `<graphviz.graphs.Digraph at 0x7f...>` from outputs that also carry
    an image: it says nothing, and its address would change the file on every run."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = data.get("text/plain", "")
            if len(data) > 1 and ADDRESS_REPR.fullmatch(text.strip()):
                del data["text/plain"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help="notebooks to build (a prefix such as 03); all by default"
    )
    parser.add_argument("--no-execute", action="store_true", help="write the cells without outputs")
    args = parser.parse_args()
    names = [n for n in NOTEBOOKS if not args.names or any(n.startswith(a) for a in args.names)]
    if not names:
        sys.exit(f"no notebook matches {args.names}; choose from {list(NOTEBOOKS)}")
    for name in names:
        nb = make_notebook(name)
        start = time.perf_counter()
        if not args.no_execute:
            execute(nb)
        nbformat.validate(nb)
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        seconds = time.perf_counter() - start
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB, {seconds:.1f} s")


if __name__ == "__main__":
    main()
