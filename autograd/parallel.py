"""Split a fused kernel's numpy work over threads.

numpy's elementwise loops run on one core, and OpenBLAS spreads only large matrix products
over its threads; a transformer step's GELU, softmax and its 64 small attention products
each ran on one of two cores while PyTorch used both. numpy releases the GIL inside its
loops, so the halves of a batch computed on two Python threads do run at once.

    parallel_for(lambda lo, hi: out[lo:hi] = work(x[lo:hi]), len(x), grain=...)

`set_num_threads(n)` (PyTorch's name) sets how many threads. The default is the cores this
process may use when OpenBLAS's idle workers sleep (`OPENBLAS_THREAD_TIMEOUT=4` in the
environment before numpy loads, or one BLAS thread), else 1: a worker spinning after each
threaded product holds the second core. (Nothing sets the variable for you: on this
project's 2-core machine whole training steps measured within noise of each other either
way, while single kernels gained 1.3-1.5x from two threads.) Python threads do not
spin while they wait, so a busy neighbour process costs no more than its share of the CPU.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "blas_single_threaded",
    "blas_threads_settable",
    "blas_workers_sleep",
    "get_num_threads",
    "one_blas_thread",
    "parallel_for",
    "set_num_threads",
]


def blas_workers_sleep(env: Mapping[str, str] = os.environ) -> bool:
    """Whether OpenBLAS leaves no worker thread spinning between calls: with one thread
    (OPENBLAS_NUM_THREADS or OMP_NUM_THREADS = 1), or OPENBLAS_THREAD_TIMEOUT (read when numpy
    loads OpenBLAS) of at most 10, i.e. 2^10 cycles. By default its idle workers spin
    (yielding) for 2^28 cycles, ~0.1 s, after every threaded product, so in a training step one
    of them is always running on the second core, and a second Python thread then shares that
    core with it. Measured in the char-transformer step (2 cores, the OpenBLAS default):
    attention fwd + bwd 8.7 ms split over 2 threads against 7.7 in one piece; with
    OPENBLAS_THREAD_TIMEOUT=4, 6.8 split against 8.2."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if env.get(name, "").strip() == "1":
            return True
    timeout = env.get("OPENBLAS_THREAD_TIMEOUT", env.get("GOTO_THREAD_TIMEOUT", "")).strip()
    return timeout.isdigit() and int(timeout) <= 10


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # (not Linux)
        return max(1, os.cpu_count() or 1)


# The default: every core this process may use, where splitting pays (see
# `blas_workers_sleep`, read once: OpenBLAS reads its settings when numpy loads it), else 1.
_num_threads = _available_cores() if blas_workers_sleep() else 1
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_in_worker = threading.local()  # a kernel called inside a worker runs inline (no nesting)
_lock = threading.Lock()


def get_num_threads() -> int:
    """The threads `parallel_for` uses (the caller's thread included)."""
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use `n` threads (>= 1) for the fused kernels that split their work."""
    global _num_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _num_threads = n


def _workers(count: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < count:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(count, thread_name_prefix="npgrad")
            _pool_size = count
        return _pool


def _run_marked(fn: Callable[[int, int], None], lo: int, hi: int) -> None:
    _in_worker.active = True
    try:
        fn(lo, hi)
    finally:
        _in_worker.active = False


def parallel_for(fn: Callable[[int, int], None], n: int, grain: int = 1) -> None:
    """Call `fn(lo, hi)` on contiguous pieces that cover range(n), on up to
    `get_num_threads()` threads at once (this one included); each piece has at least `grain`
    items, so small work runs in one call, here. `fn` must write only its own piece's output.
    The first exception raised by a piece is re-raised here, after every piece has finished.
    """
    pieces = min(_num_threads, n // max(grain, 1))
    if pieces <= 1 or getattr(_in_worker, "active", False):
        if n > 0:
            fn(0, n)
        return
    bounds = [n * k // pieces for k in range(pieces + 1)]
    pool = _workers(pieces - 1)
    futures = [pool.submit(_run_marked, fn, bounds[k], bounds[k + 1]) for k in range(1, pieces)]
    error = None
    try:
        fn(bounds[0], bounds[1])
    except BaseException as e:  # noqa: BLE001 (re-raised below, once the others are done)
        error = e
    for future in futures:
        try:
            future.result()
        except BaseException as e:  # noqa: BLE001
            error = error or e
    if error is not None:
        raise error


# ----- BLAS's own thread count, for a while -------------------------------------------------
_blas = {"libs": None, "depth": 0, "saved": []}  # see `one_blas_thread`
_blas_lock = threading.Lock()


def _blas_libs() -> list[Any]:
    """threadpoolctl's controllers of the BLAS libraries numpy uses (none without it)."""
    if _blas["libs"] is None:
        try:
            from threadpoolctl import ThreadpoolController

            controllers = ThreadpoolController().lib_controllers
            _blas["libs"] = [lib for lib in controllers if lib.user_api == "blas"]
        except Exception:  # noqa: BLE001 (no threadpoolctl, or it failed: BLAS as it is)
            _blas["libs"] = []
    return _blas["libs"]


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside (the previous counts restored after, by the outermost of
    several threads inside at once): for products split over `parallel_for`'s threads, or
    small ones that cost less than waking a sleeping BLAS worker. A few µs to enter."""
    libs = _blas_libs()
    with _blas_lock:
        if _blas["depth"] == 0:
            _blas["saved"] = [lib.get_num_threads() for lib in libs]
            for lib in libs:
                lib.set_num_threads(1)
        _blas["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["depth"] -= 1
            if _blas["depth"] == 0:
                for lib, count in zip(libs, _blas["saved"], strict=True):
                    lib.set_num_threads(count)


def blas_single_threaded() -> bool:
    """Whether every BLAS library numpy uses runs on one thread (False when none is known)."""
    libs = _blas_libs()
    return bool(libs) and all(lib.get_num_threads() == 1 for lib in libs)


def blas_threads_settable() -> bool:
    """Whether `one_blas_thread` can set BLAS's thread count (threadpoolctl found a library)."""
    return bool(_blas_libs())
