"""PyTorch (CPU, 2 threads) versions of the sequence benchmarks of `benchmarks.sequence_nets`.

torch is never a dependency of npgrad: it is imported lazily, and `torch_available` returns
None when it is not importable. The modules use the same names as npgrad's, so npgrad's
state dict (numpy arrays) loads into them as it is: both start from the same weights.
"""

from __future__ import annotations

import numpy as np

from .torch_reference import torch_available  # one lazy import, 2 threads, shared

__all__ = ["torch_available", "make_model"]

VOCAB, CONTEXT, WIDTH, HEADS, BLOCKS = 65, 64, 128, 4, 2
LR = 1e-3


def _modules():  # noqa: ANN202
    torch = torch_available()
    tnn, functional = torch.nn, torch.nn.functional

    class Block(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = tnn.LayerNorm(WIDTH)
            self.attn = tnn.Linear(WIDTH, 3 * WIDTH)
            self.proj = tnn.Linear(WIDTH, WIDTH)
            self.ln2 = tnn.LayerNorm(WIDTH)
            self.fc = tnn.Linear(WIDTH, 4 * WIDTH)
            self.act = tnn.GELU()
            self.fc2 = tnn.Linear(4 * WIDTH, WIDTH)

        def forward(self, x):  # noqa: ANN001, ANN202
            b, t, c = x.shape
            q, k, v = self.attn(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, HEADS, c // HEADS).transpose(1, 2) for z in (q, k, v))
            y = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
            return x + self.fc2(self.act(self.fc(self.ln2(x))))

    class CharTransformer(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = tnn.Embedding(VOCAB, WIDTH)
            self.pos = tnn.Embedding(CONTEXT, WIDTH)
            self.blocks = tnn.Sequential(*(Block() for _ in range(BLOCKS)))
            self.ln = tnn.LayerNorm(WIDTH)
            self.head = tnn.Linear(WIDTH, VOCAB)

        def forward(self, idx):  # noqa: ANN001, ANN202
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            return self.head(self.ln(self.blocks(x)))

    class LSTMLanguageModel(tnn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = tnn.Embedding(VOCAB, WIDTH)
            self.lstm = tnn.LSTM(WIDTH, WIDTH, batch_first=True)
            self.head = tnn.Linear(WIDTH, VOCAB)

        def forward(self, idx):  # noqa: ANN001, ANN202
            return self.head(self.lstm(self.emb(idx))[0])

    return {"char_transformer": CharTransformer, "lstm_lm": LSTMLanguageModel}


class TorchSequenceModel:
    def __init__(self, module) -> None:  # noqa: ANN001
        self.module = module
        self.optimizer = torch_available().optim.AdamW(
            module.parameters(), lr=LR
        )  # weight decay 0.01

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        torch = torch_available()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.module(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB), torch.from_numpy(y).reshape(-1)
        )
        loss.backward()
        self.optimizer.step()
        return loss.item()


def make_model(name: str, state: dict[str, np.ndarray]) -> TorchSequenceModel | None:
    """Benchmark model `name` with npgrad's weights `state`, or None without torch."""
    torch = torch_available()
    if torch is None:
        return None
    module = _modules()[name]()
    module.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()})
    return TorchSequenceModel(module)
