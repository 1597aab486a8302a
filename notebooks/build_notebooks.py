"""Write the tutorial notebooks from the cell lists below, then run them in place.

    python notebooks/build_notebooks.py                 # write and execute all four
    python notebooks/build_notebooks.py 03 --no-execute # write one, without outputs

The notebooks are committed with their outputs so that they read well on GitHub; their text
lives here, so a change to a notebook is a reviewable change to this file. Each notebook runs
with `notebooks/` as its working directory, in the environment the test suite gives it
(`NPGRAD_MNIST` unset, so 03 trains on the shipped MNIST subset; `HF_HUB_OFFLINE=1`).
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

    draws its graph, derives the gradient by hand and checks the engine against it and
    against finite differences. Then it grows to tensors and shows why the gradient of a
    broadcast operand is a sum.
    """),
    code("""
    import numpy as np

    import autograd as ag
    from autograd import tensor
    """),
    md(r"""
    ## 1. One number

    A tensor created with `requires_grad=True` is a *leaf* whose gradient we want: here the
    weight `w` and the bias `b`. The input `x` and the target `y` are data. `name=` only
    labels a tensor in the drawings.

    Only leaves keep their gradient after `backward()`; building the expression inside
    `ag.retain_grads()` keeps it on the intermediate results too, so that the drawing can
    show every step.
    """),
    code("""
    x = tensor(2.0, name="x")
    y = tensor(4.0, name="y")
    w = tensor(-3.0, requires_grad=True, name="w")
    b = tensor(1.0, requires_grad=True, name="b")

    with ag.retain_grads():
        xw = x * w
        p = xw + b  # the prediction
        r = y - p  # the residual
        L = r**2
    for t, name in [(xw, "x*w"), (p, "p"), (r, "r"), (L, "L")]:
        t.name = name
    L
    """),
    md(r"""
    Every result remembers the op that made it and its inputs. `draw_graph` shows that
    record: rectangles are tensors (`show_data=True` adds their values), ellipses are ops,
    arrows point the way data flows. Parameters have an orange border, the root a double one.
    """),
    code("""
    ag.draw_graph(L, show_data=True, rankdir="LR")
    """),
    md(r"""
    ## 2. Backward

    `L.backward()` starts with $\partial L/\partial L = 1$ and walks the graph in reverse
    topological order: each op turns the gradient of its output into gradients of its
    inputs. After it, the drawing shows each gradient's norm, coloured by its size.
    """),
    code("""
    L.backward()
    print(f"dL/dw = {w.grad}, dL/db = {b.grad}, x.grad = {x.grad} (x does not require grad)")
    ag.draw_graph(L, show_data=True, rankdir="LR")
    """),
    md(r"""
    ## 3. The chain rule by hand

    With the names of the drawing, $p = xw + b$, $r = y - p$, $L = r^2$. The chain rule
    multiplies the local derivatives along the path from $L$ back to each leaf:

    $$\frac{\partial L}{\partial r} = 2r,\qquad
    \frac{\partial L}{\partial p} = \frac{\partial L}{\partial r}\,
    \frac{\partial r}{\partial p} = -2r,\qquad
    \frac{\partial L}{\partial w} = \frac{\partial L}{\partial p}\,
    \frac{\partial p}{\partial w} = -2r\,x,\qquad
    \frac{\partial L}{\partial b} = -2r.$$

    At $x = 2,\ w = -3,\ b = 1,\ y = 4$: $p = -5$, $r = 9$, $L = 81$, so
    $\partial L/\partial w = -36$ and $\partial L/\partial b = -18$. The same walk in
    plain Python, one local derivative per line, right to left as `backward` does it:
    """),
    code("""
    x0, y0, w0, b0 = 2.0, 4.0, -3.0, 1.0
    r0 = y0 - (x0 * w0 + b0)
    dL_dr = 2 * r0  # L = r**2
    dL_dp = dL_dr * -1  # r = y - p
    dL_dw = dL_dp * x0  # p = x*w + b
    dL_db = dL_dp * 1

    print(f"by hand: dL/dr = {dL_dr}, dL/dp = {dL_dp}, dL/dw = {dL_dw}, dL/db = {dL_db}")
    print(f"engine:  dL/dr = {r.grad}, dL/dp = {p.grad}, dL/dw = {w.grad}, dL/db = {b.grad}")
    assert L.item() == r0**2
    for engine, hand in [(r, dL_dr), (p, dL_dp), (w, dL_dw), (b, dL_db)]:
        assert abs(engine.grad.item() - hand) < 1e-6
    """),
    md(r"""
    Gradients **accumulate**: a second backward pass adds to `.grad` instead of replacing
    it. That is what a parameter used in several places needs (see section 6), and why a
    training loop clears the gradients before each step.
    """),
    code("""
    ((y - (x * w + b)) ** 2).backward()  # the same expression: a fresh graph, same gradient
    print("after a second backward:", w.grad)
    assert w.grad.item() == 2 * dL_dw
    w.zero_grad()
    b.zero_grad()
    """),
    md(r"""
    ## 4. Finite differences

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
    def L_of(w, b, x=2.0, y=4.0):
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
    ## 5. Tensors

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
    ## 6. Broadcasting, and why its gradient is a sum

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

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_autograd_basics": NOTEBOOK_01,
    "02_building_an_mlp": NOTEBOOK_02,
    "03_mnist": NOTEBOOK_03,
    "04_higher_order": NOTEBOOK_04,
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
# (NPGRAD_MNIST unset), no network, the inline plot backend (MPLBACKEND unset), and one BLAS
# thread: the notebooks' matmuls are small, and a second thread only slows them down, by an
# order of magnitude when the cores are shared with other processes (as in a test run).
NOTEBOOK_ENV = {"HF_HUB_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1"}  # fmt: skip
NOTEBOOK_ENV_UNSET = ("NPGRAD_MNIST", "MPLBACKEND")


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
