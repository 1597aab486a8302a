"""Sequence-model benchmarks: a character transformer and an LSTM language model, each built
twice in npgrad -- from `nn` layers, and from basic Tensor ops -- and timed against PyTorch's
CPU build (`benchmarks.torch_sequence`, 2 threads) when it is importable.

- `char_transformer`: nanoGPT-shaped. vocab 65, context T=64, width C=128, 4 heads, 2 blocks:
  token + position embeddings, pre-LayerNorm blocks (causal self-attention, then a 4x MLP
  with exact GELU), a final LayerNorm and a linear head; AdamW (lr 1e-3, weight decay 0.01).
- `lstm_lm`: vocab 65, Embedding 128, one LSTM layer of 128, linear head; AdamW.

Both train on random tokens (batch 16, T=64; the timing does not depend on the text), next
token cross-entropy over all positions. All three implementations start from the same weights
(the layer model's, copied) and see the same batches; `python -m benchmarks` times them side
by side in one process (see `run`) and reports ms per training step.

    model = make_model("lstm_lm", "layers", seed=0)
    loss = model.step(tokens, targets)            # int64 (16, 64) each
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable

import numpy as np

import autograd
import nn
from autograd import Tensor
from nn import functional as F
from nn import optim

from . import torch_sequence

__all__ = ["MODELS", "make_model", "batches", "run"]

MODELS = {  # benchmark name -> table label
    "char_transformer": "char transformer T=64 C=128 4 heads 2 blocks, AdamW",
    "lstm_lm": "LSTM LM hidden 128 T=64, AdamW",
}
VOCAB, CONTEXT, WIDTH, HEADS, BLOCKS, BATCH = 65, 64, 128, 4, 2, 16
LR = 1e-3


# ----- npgrad, from nn layers ----------------------------------------------------------------
class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        qkv = self.attn(self.ln1(x))
        d = c // self.heads

        def heads(part: Tensor) -> Tensor:  # (B, T, C) -> (B, heads, T, d)
            return part.reshape(b, t, self.heads, d).transpose(0, 2, 1, 3)

        q, k, v = (heads(part) for part in qkv.split(c, axis=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(0, 2, 1, 3).reshape(b, t, c))
        return x + self.fc2(self.act(self.fc(self.ln2(x))))


class CharTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.Sequential(*(Block(WIDTH, HEADS) for _ in range(BLOCKS)))
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, idx: np.ndarray) -> Tensor:
        x = self.tok(idx) + self.pos(np.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


class LSTMLanguageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, WIDTH)
        self.lstm = nn.LSTM(WIDTH, WIDTH, batch_first=True)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, idx: np.ndarray) -> Tensor:
        return self.head(self.lstm(self.emb(idx))[0])


# ----- npgrad, from basic Tensor ops (the same networks, by hand) ------------------------------
def _layer_norm(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / (var + 1e-5).sqrt() * w + b


def _basic_transformer(p: dict[str, Tensor], idx: np.ndarray) -> Tensor:
    b, t = idx.shape
    c, d = WIDTH, WIDTH // HEADS
    causal = np.tri(t, t, dtype=bool)
    x = p["tok.weight"][idx] + p["pos.weight"][np.arange(t)]
    for i in range(BLOCKS):
        q = f"blocks.{i}."
        qkv = _layer_norm(x, p[q + "ln1.weight"], p[q + "ln1.bias"]) @ p[q + "attn.weight"].T
        qkv = qkv + p[q + "attn.bias"]
        q_, k_, v_ = (
            qkv[..., j * c : (j + 1) * c].reshape(b, t, HEADS, d).transpose(0, 2, 1, 3)
            for j in range(3)
        )
        scores = (q_ @ k_.swapaxes(-1, -2)) * (1.0 / math.sqrt(d))
        att = autograd.where(causal, scores, -np.inf).softmax(axis=-1)
        y = (att @ v_).transpose(0, 2, 1, 3).reshape(b, t, c)
        x = x + y @ p[q + "proj.weight"].T + p[q + "proj.bias"]
        h = _layer_norm(x, p[q + "ln2.weight"], p[q + "ln2.bias"])
        h = h @ p[q + "fc.weight"].T + p[q + "fc.bias"]
        h = h * 0.5 * (1.0 + (h * (1.0 / math.sqrt(2.0))).erf())  # exact GELU
        x = x + h @ p[q + "fc2.weight"].T + p[q + "fc2.bias"]
    x = _layer_norm(x, p["ln.weight"], p["ln.bias"])
    return x @ p["head.weight"].T + p["head.bias"]


def _basic_lstm(p: dict[str, Tensor], idx: np.ndarray) -> Tensor:
    h_size = WIDTH
    x = p["emb.weight"][idx].swapaxes(0, 1)  # (T, B, C)
    # the input projections of all steps in one matmul
    xw = x @ p["lstm.weight_ih_l0"].T + (p["lstm.bias_ih_l0"] + p["lstm.bias_hh_l0"])
    w_hh_t = p["lstm.weight_hh_l0"].T
    h = c = Tensor(np.zeros((idx.shape[0], h_size), dtype=np.float32))
    hs = []
    for t in range(idx.shape[1]):
        a = xw[t] + h @ w_hh_t
        i, f = a[:, :h_size].sigmoid(), a[:, h_size : 2 * h_size].sigmoid()
        g, o = a[:, 2 * h_size : 3 * h_size].tanh(), a[:, 3 * h_size :].sigmoid()
        c = f * c + i * g
        h = o * c.tanh()
        hs.append(h)
    out = autograd.stack(hs, axis=1)  # (B, T, H)
    return out @ p["head.weight"].T + p["head.bias"]


def _cross_entropy_basic(logits: Tensor, targets: np.ndarray) -> Tensor:
    rows = logits.reshape(-1, VOCAB).log_softmax(axis=-1)
    flat = targets.reshape(-1)
    return -rows[np.arange(len(flat)), flat].mean()


# ----- the models ------------------------------------------------------------------------------
class SequenceModel:
    """A forward function on npgrad Tensors with its AdamW, and the numpy-facing `step`."""

    def __init__(self, forward: Callable[[np.ndarray], Tensor], params: list[Tensor],
                 loss: Callable[[Tensor, np.ndarray], Tensor]) -> None:  # fmt: skip
        self.forward, self.params, self.loss = forward, params, loss
        self.optimizer = optim.AdamW(params, lr=LR)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss = self.loss(self.forward(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()


def _cross_entropy_layers(logits: Tensor, targets: np.ndarray) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def initial_state(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The starting weights of benchmark `name` (the layer model's init for `seed`)."""
    return build_module(name, seed).state_dict()


def build_module(name: str, seed: int = 0) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown sequence model {name!r}; expected one of {sorted(MODELS)}")
    autograd.manual_seed(seed)
    return CharTransformer() if name == "char_transformer" else LSTMLanguageModel()


def make_model(name: str, kind: str, seed: int = 0) -> SequenceModel:
    """kind "layers" (nn modules) or "basic" (the same network from basic Tensor ops)."""
    module = build_module(name, seed)
    if kind == "layers":
        return SequenceModel(module, list(module.parameters()), _cross_entropy_layers)
    if kind != "basic":
        raise ValueError(f"unknown kind {kind!r}; expected 'layers' or 'basic'")
    params = {
        key: Tensor(value.copy(), requires_grad=True) for key, value in module.state_dict().items()
    }
    forward = _basic_transformer if name == "char_transformer" else _basic_lstm
    return SequenceModel(
        lambda idx: forward(params, idx), list(params.values()), _cross_entropy_basic
    )


def batches(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` batches of random tokens and their next-token targets, int64 (16, 64)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(count, BATCH, CONTEXT + 1))
    return [(t[:, :-1].copy(), t[:, 1:].copy()) for t in tokens]


# ----- timing ------------------------------------------------------------------------------------
IMPLS = ("npgrad layers", "npgrad basic ops", "torch")


def _makers(name: str, with_torch: bool) -> dict[str, Callable[[], object]]:
    makers: dict[str, Callable[[], object]] = {
        "npgrad layers": lambda: make_model(name, "layers"),
        "npgrad basic ops": lambda: make_model(name, "basic"),
    }
    if with_torch and torch_sequence.torch_available() is not None:
        makers["torch"] = lambda: torch_sequence.make_model(name, initial_state(name))
    return makers


def _timed_run(makers: dict, data: list, block: int) -> dict[str, float]:
    """Seconds per step for each implementation in `makers`, taking turns every `block`
    steps (after one untimed warm-up step each)."""
    models = {k: make() for k, make in makers.items()}
    for model in models.values():
        model.step(*data[0])
    gc.collect()
    seconds = dict.fromkeys(models, 0.0)
    order = list(models)
    for start in range(1, len(data), block):
        for k in order:
            t0 = time.perf_counter()
            for x, y in data[start : start + block]:
                models[k].step(x, y)
            seconds[k] += time.perf_counter() - t0
        order.reverse()
    return {k: s / (len(data) - 1) for k, s in seconds.items()}


def _median(times: dict[str, list[float]], k: str) -> str:
    return f"{np.median(times[k]):.2f}" if times.get(k) else "-"


def _paired_ratio(times: dict[str, list[float]], a: str, b: str) -> str:
    """The median over repeats of a's time / b's time in the same repeat."""
    if not times.get(a) or not times.get(b):
        return "-"
    return f"{np.median([x / y for x, y in zip(times[a], times[b], strict=True)]):.2f}"


def run(
    names: list[str],
    repeats: int = 5,
    steps: int = 20,
    with_torch: bool = True,
    block: int = 5,
    quiet_wait: float = 0.0,
) -> tuple[list[list[str]], list[str]]:
    """Time the sequence benchmarks `names`; returns the table rows (header first) and one
    log line per run. npgrad's two versions take turns every `block` steps within one run;
    PyTorch runs on its own (its OpenMP threads spin on after each call), before or after
    them, alternating by repeat. Ratios are medians over repeats of the ratio within a
    repeat. `quiet_wait` > 0: before each run, wait up to that many seconds for a quiet
    machine (as the image benchmarks do)."""
    if not names:
        return [], []
    from .numpy_reference import wait_until_quiet  # (imports the MNIST helpers: late)

    data = batches(steps + 1)
    rows = [["benchmark", *IMPLS, "layers/torch", "basic/torch", "layers/basic"]]
    log = []
    for name in names:
        makers = _makers(name, with_torch)
        times: dict[str, list[float]] = {k: [] for k in makers}
        for repeat in range(repeats):
            groups = [{k: makers[k] for k in makers if k != "torch"}]
            if "torch" in makers:
                groups.insert(repeat % 2, {"torch": makers["torch"]})
            for group in groups:
                if quiet_wait > 0:
                    wait_until_quiet(timeout=quiet_wait)
                for k, sec in _timed_run(group, data, block).items():
                    times[k].append(sec * 1e3)
                    log.append(f"repeat {repeat + 1} {name} {k}: {sec * 1e3:.2f} ms/step")
                    print(log[-1], flush=True)

        rows.append(
            [f"{MODELS[name]}: ms / step (batch 16)"]
            + [_median(times, k) for k in IMPLS]
            + [
                _paired_ratio(times, "npgrad layers", "torch"),
                _paired_ratio(times, "npgrad basic ops", "torch"),
                _paired_ratio(times, "npgrad layers", "npgrad basic ops"),
            ]
        )
    return rows, log


def append_report(path, rows: list[list[str]], log: list[str], render) -> None:  # noqa: ANN001
    """Add the sequence table and its runs to the markdown report at `path`."""
    if not rows:
        return
    text = [
        "## Sequence models",
        "",
        "Random tokens, batch 16, T=64, vocab 65; the same starting weights for all three "
        "(see `benchmarks/sequence_nets.py`). npgrad layers and npgrad basic ops take turns "
        "every 5 steps in one run, PyTorch (2 threads) runs on its own; medians over repeats.",
        "",
        render(rows, markdown=True),
        "",
        "```",
        *log,
        "```",
        "",
    ]
    with open(path, "a") as f:
        f.write("\n".join(text))
