"""Peak traced memory of one training step while last step's `loss` is still alive vs deleted.

Before the graph released its intermediates after backward, the live `loss` kept last step's
whole graph (every activation) while this step's forward ran: the loop held two graphs.

    python -m benchmarks.graph_memory
"""

from __future__ import annotations

import gc
import tracemalloc

import autograd
import nn
from nn import functional as F


def step_peak(keep_last_loss: bool, batch: int = 128) -> float:
    """Peak traced MiB (everything alive, not only what the step allocates) during the
    second of two steps of an MLP 784-512-256-10 at `batch`."""
    gc.collect()
    tracemalloc.start()
    autograd.manual_seed(0)
    model = nn.MLP(784, [512, 256], 10)
    x = autograd.randn(batch, 784)
    target = (autograd.rand(batch).data * 10).astype("int64")
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    if not keep_last_loss:
        del loss
    gc.collect()
    tracemalloc.reset_peak()
    step = F.cross_entropy(model(x), target)
    model.zero_grad()
    step.backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    alive, deleted = step_peak(True), step_peak(False)
    print("MLP 784-512-256-10, batch 128: peak traced MiB of one training step")
    print(f"{'last loss alive':<20}{alive:>8.2f}")
    print(f"{'last loss deleted':<20}{deleted:>8.2f}")


if __name__ == "__main__":
    main()
