"""Gradient checkpointing: memory saved and time paid, on a deep stack of tanh-Linear blocks.

    python -m benchmarks.checkpoint                  # from the repository root
    python -m benchmarks.checkpoint --blocks 16 --batch 256 --width 512 --repeats 5

One forward + backward (loss = sum of the outputs) through `--blocks` blocks
`tanh(Linear(width, width))` on a `(batch, width)` float32 input, run two ways: directly,
and with each block wrapped in `autograd.checkpoint`. For each it reports

- peak: tracemalloc's peak over forward + backward (numpy reports its buffers to
  tracemalloc), the model and the input built before tracing starts, parameters' `.grad`
  unset. The peak comes at the end of backward and includes the parameters' gradients, the
  same in both runs (16 MiB at the default sizes; the engine holds every leaf's gradient
  until the pass ends, so allocating `.grad` beforehand changes nothing);
- after forward: what is traced once the loss exists (the activations the graph keeps);
- time: the median over `--repeats` untraced runs (tracemalloc slows code down), the two
  ways taking turns so that load from other processes hits both alike.

Checkpointing keeps one output per block instead of each block's linear output and tanh
output, and recomputes one block at a time in backward: about half the activations, for about
one extra forward pass (~1.3x the time of forward + backward).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

import autograd
import nn
from autograd import Tensor


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).tanh()


def make_stack(blocks: int, width: int, seed: int = 0) -> nn.Sequential:
    autograd.manual_seed(seed)
    return nn.Sequential(*[Block(width) for _ in range(blocks)])


def forward_backward(
    stack: nn.Sequential,
    x: Tensor,
    checkpointed: bool,
    after_forward: Callable[[], None] | None = None,
) -> None:
    h = x
    for block in stack:
        h = autograd.checkpoint(block, h) if checkpointed else block(h)
    loss = h.sum()
    del h  # (the graph holds what backward needs)
    if after_forward is not None:
        after_forward()
    loss.backward()


def traced(stack: nn.Sequential, x: Tensor, checkpointed: bool) -> tuple[int, int]:
    """(peak bytes, bytes held once the loss exists) of one forward + backward, traced from
    a clean start."""
    held: list[int] = []
    gc.collect()
    tracemalloc.start()
    try:
        forward_backward(
            stack, x, checkpointed, lambda: held.append(tracemalloc.get_traced_memory()[0])
        )
        return tracemalloc.get_traced_memory()[1], held[0]
    finally:
        tracemalloc.stop()


def measure(
    blocks: int = 16, batch: int = 256, width: int = 512, repeats: int = 5
) -> dict[str, dict[str, float]]:
    stack = make_stack(blocks, width)
    x = Tensor(np.random.default_rng(1).standard_normal((batch, width), dtype=np.float32))
    results: dict[str, dict[str, float]] = {}
    for name, checkpointed in (("direct", False), ("checkpointed", True)):
        stack.zero_grad()
        peak, after_forward = traced(stack, x, checkpointed)
        results[name] = {"peak": peak, "after_forward": after_forward, "seconds": []}
    for i in range(repeats + 1):  # the first round warms up, untimed
        order = (False, True) if i % 2 == 0 else (True, False)
        for checkpointed in order:
            stack.zero_grad()
            start = time.perf_counter()
            forward_backward(stack, x, checkpointed)
            if i:
                results["checkpointed" if checkpointed else "direct"]["seconds"].append(
                    time.perf_counter() - start
                )
    for r in results.values():
        r["seconds"] = statistics.median(r["seconds"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    r = measure(args.blocks, args.batch, args.width, args.repeats)
    d, c = r["direct"], r["checkpointed"]
    mb = 2**20
    print(
        f"{args.blocks} blocks tanh(Linear({args.width}, {args.width})), input "
        f"({args.batch}, {args.width}) float32; forward + backward; time: median of "
        f"{args.repeats}\n"
    )
    columns = [  # (heading, key, scale, format)
        ("peak MiB", "peak", mb, ".1f"),
        ("after forward MiB", "after_forward", mb, ".1f"),
        ("time ms", "seconds", 1e-3, ".1f"),
    ]
    print("| " + " | ".join([" " * 12] + [h for h, *_ in columns]) + " |")
    print("|" + "|".join(["-" * 14] + ["-" * (len(h) + 2) for h, *_ in columns]) + "|")
    for name, row in r.items():
        cells = [f"{row[k] / scale:{len(h)}{fmt}}" for h, k, scale, fmt in columns]
        print("| " + " | ".join([f"{name:12}"] + cells) + " |")
    ratios = [f"{c[k] / d[k]:{len(h)}.2f}" for h, k, *_ in columns]
    print("| " + " | ".join([f"{'ratio':12}"] + ratios) + " |")
    grads = args.blocks * (args.width + 1) * args.width * 4  # float32 weights and biases
    print(f"\nboth peaks include the parameters' gradients, {grads / mb:.1f} MiB")


if __name__ == "__main__":
    main()
