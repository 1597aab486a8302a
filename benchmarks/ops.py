"""Per-op overhead of the engine: forward + backward on tiny tensors, in µs.

On tiny tensors numpy's kernels cost next to nothing, so what is measured is the engine's own
bookkeeping: building the op result, recording the closure, walking the graph backwards,
fitting and accumulating the gradients. Each case runs `number` times per timing and the
fastest of `repeat` timings is reported: on a shared machine the others are slowed down by
whatever else runs, and the minimum is the least disturbed estimate (timeit's own advice).

    python -m benchmarks.ops
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable

import numpy as np

import autograd
from autograd import Tensor

SHAPE = (4, 4)  # tiny: the numpy kernels underneath are negligible next to the bookkeeping


def _cases() -> list[tuple[str, Callable[[], None]]]:
    """(name, one forward + backward) pairs; leaves accumulate into `.grad` in place."""
    rng = np.random.default_rng(0)

    def leaf(*shape: int) -> Tensor:
        return Tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)

    a, b = leaf(*SHAPE), leaf(*SHAPE)
    ones = np.ones(SHAPE, dtype=np.float32)
    rows = np.array([0, 2, 2], dtype=np.int64)
    row_grad = np.ones((3, SHAPE[1]), dtype=np.float32)

    x = Tensor(rng.standard_normal((4, 8)).astype(np.float32))
    w1, b1 = leaf(8, 16), leaf(16)
    w2, b2 = leaf(16, 4), leaf(4)

    def mlp_step() -> None:
        hidden = (x @ w1 + b1).relu()
        loss = ((hidden @ w2 + b2) ** 2).mean()
        loss.backward()

    return [
        ("add", lambda: (a + b).backward(ones)),
        ("mul", lambda: (a * b).backward(ones)),
        ("matmul", lambda: (a @ b).backward(ones)),
        ("sum", lambda: a.sum().backward()),
        ("relu", lambda: a.relu().backward(ones)),
        ("exp", lambda: a.exp().backward(ones)),
        ("getitem", lambda: a[rows].backward(row_grad)),
        ("mlp2 step (7 ops)", mlp_step),
    ]


def op_overhead(
    number: int = 2000, repeat: int = 7, timer: Callable[[], float] = time.process_time
) -> list[tuple[str, float]]:
    """[(case, µs per forward + backward)], the fastest of `repeat` timings of `number` runs.

    The default timer is this process's CPU time: on a shared machine other processes then
    don't inflate the figures, and for these single-threaded ops it equals wall time on a
    quiet one. Pass `timer=time.perf_counter` for wall time.
    """
    results = []
    for name, case in _cases():
        case()  # warm up (first-call imports, caches)
        times = timeit.repeat(case, number=number, repeat=repeat, timer=timer)
        results.append((name, min(times) / number * 1e6))
    return results


def main() -> None:
    print(f"forward + backward on {SHAPE} float32 tensors (CPU time, best of 7 x 2000 runs)")
    print(f"{'op':<20}{'µs':>8}")
    for name, micros in op_overhead():
        print(f"{name:<20}{micros:>8.1f}")
    print(f"(numpy {np.__version__}, autograd from {autograd.__file__})")


if __name__ == "__main__":
    main()
