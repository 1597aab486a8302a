"""npgrad's speed benchmark: one command, one table, `benchmarks/results.md`.

    python -m benchmarks                 # from the repository root
    python -m benchmarks --repeats 5 --models mlp cnn --no-torch

Measures, in one run:

- per-op overhead: forward + backward of one op on (4, 4) float32 tensors, in µs
  (`benchmarks.ops`; for PyTorch the same cases when it is importable);
- training speed of three networks at batch 128 -- MLP 784-128-10 and 784-512-256-10 (SGD,
  momentum 0.9) and a CNN conv32-pool-conv64-pool-fc128 (Adam) -- in seconds per 10k
  training images, for npgrad, for the same networks written by hand in numpy
  (`benchmarks.numpy_reference`) and for PyTorch on the CPU with 2 threads
  (`benchmarks.torch_reference`, skipped when torch is not importable; never a dependency);
- peak training memory of each: tracemalloc's peak over model building and the first 20
  steps for numpy and npgrad (numpy reports its buffers to tracemalloc), the CPU allocator's
  peak for PyTorch (tracemalloc cannot see it).

Fairness: npgrad starts from the numpy model's weights (PyTorch too), all three see the same
float32 batches in the same order, use the same optimiser formulas and flush denormal
optimiser state on the same steps. Timing and memory are measured in separate passes
(tracemalloc slows code down). numpy and npgrad train side by side in each timed run, taking
turns every `--block` batches, so that load on the (shared) machine hits both alike; PyTorch
runs between them. The table reports the median over `--repeats` runs; a ratio is the median
over repeats of the ratio within one repeat (numpy and npgrad: within one interleaved run), so
that the machine's speed, which drifts from one repeat to the next, cancels out.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import npgrad_nets, numpy_reference, ops, sequence_nets, torch_reference

MODELS = {  # benchmark name -> table label
    "mlp": "MLP 784-128-10, SGD momentum",
    "mlp_large": "MLP 784-512-256-10, SGD momentum",
    "cnn": "CNN conv32-conv64-fc128, Adam",
}
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
RESULTS = Path(__file__).resolve().parent / "results.md"


# ----- data -----------------------------------------------------------------------------------
def load_images(dataset: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Normalised float32 training images (N, 28, 28), int64 labels, and where they came from.

    The full MNIST training split from `dataset` (read through `nn.data.load_mnist`, which
    caches decoded arrays), else the small subset shipped with the tests, else random data.
    """
    from nn.data import load_mnist

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    shipped = Path(__file__).resolve().parents[1] / "tests" / "data" / "mnist"
    images = labels = None
    for source, note in ((dataset, "MNIST training split"), (shipped, "shipped MNIST subset")):
        try:
            images, labels = load_mnist(str(source), split="train")
            source_note = f"{note} ({len(images):,} images from {source})"
            break
        except Exception as error:  # noqa: BLE001 (any failure: try the next source)
            print(f"  (could not read {source}: {type(error).__name__}; trying the next source)")
    if images is None:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(10_000, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=10_000, dtype=np.int64)
        source_note = "RANDOM images (no MNIST copy found): timings hold, losses mean nothing"
    x = images.astype(np.float32)
    x *= np.float32(1 / (255 * MNIST_STD))
    x -= np.float32(MNIST_MEAN / MNIST_STD)
    return x, labels.astype(np.int64), source_note


# ----- one measured run ---------------------------------------------------------------------
Impl = tuple[Callable[[str, int], object], Callable[[object, np.ndarray, np.ndarray], float]]


def implementations(with_torch: bool) -> dict[str, Impl]:
    impls: dict[str, Impl] = {
        "numpy": (numpy_reference.make_model, numpy_reference.train_step),
        "npgrad": (npgrad_nets.make_model, npgrad_nets.train_step),
    }
    if with_torch and torch_reference.torch_available() is not None:

        def make_torch(name: str, seed: int) -> object:
            model = torch_reference.make_model(name, seed)  # same weights as numpy's
            torch_reference.load_numpy_params(model, numpy_reference.make_model(name, seed).params)
            return model

        impls["torch"] = (make_torch, torch_reference.train_step)
    return impls


def time_runs(
    impls: dict[str, Impl], name: str, x: np.ndarray, y: np.ndarray, batches: list, block: int
) -> dict[str, dict]:
    """Train one fresh model per implementation on `batches`, all in one interleaved run.

    Each model takes one untimed warm-up step; then the implementations take turns, `block`
    batches at a time (alternating which goes first), each timed on its own turns only. So a
    burst of load from elsewhere (on a shared machine, seconds long) falls on all of them
    alike, where whole runs one after the other would catch it in one run and not the next.
    """
    models, steps = {}, {}
    for impl_name, (make, step) in impls.items():
        models[impl_name], steps[impl_name] = make(name, 0), step
        step(models[impl_name], x[batches[0]], y[batches[0]])
    gc.collect()
    seconds = dict.fromkeys(impls, 0.0)
    losses = dict.fromkeys(impls, float("nan"))
    order = list(impls)
    with numpy_reference.ContentionMeter() as meter:
        for start in range(0, len(batches), block):
            chunk = batches[start : start + block]
            for impl_name in order:
                model, step = models[impl_name], steps[impl_name]
                t0 = time.perf_counter()
                for idx in chunk:
                    losses[impl_name] = step(model, x[idx], y[idx])
                seconds[impl_name] += time.perf_counter() - t0
            order.reverse()
    return {
        i: {"seconds": seconds[i], "loss": losses[i], "others_cpu": meter.other_cpu_fraction}
        for i in impls
    }


def peak_memory(impl_name: str, impl: Impl, name: str, x, y, batches) -> float | None:
    """Peak MiB while building the model and training on `batches` (see the module doc)."""
    if impl_name == "torch":
        peak = torch_reference.peak_allocated_bytes(name, x, y, batches, seed=0)
        return None if peak is None else peak / 2**20
    make, step = impl
    warm = make(name, 0)  # lazy imports and first-call caches stay outside the measurement
    step(warm, x[batches[0]], y[batches[0]])
    del warm
    npgrad_nets.release_buffers()  # but buffers that npgrad reuses from step to step count
    gc.collect()
    tracemalloc.start()
    try:
        model = make(name, 0)
        for idx in batches:
            step(model, x[idx], y[idx])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / 2**20


# ----- the environment ------------------------------------------------------------------------
def environment(with_torch: bool, source_note: str) -> list[str]:
    blas = numpy_reference.blas_info()
    blas_text = (
        ", ".join(
            f"{b['internal_api']} {b['version']} ({b['architecture']}, {b['num_threads']} threads)"
            for b in blas
        )
        or "unknown (threadpoolctl not installed)"
    )
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    torch = torch_reference.torch_available() if with_torch else None
    torch_text = (
        f"{torch.__version__}, {torch.get_num_threads()} threads" if torch else "not measured"
    )
    return [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"numpy {np.__version__}",
        f"BLAS (threadpoolctl): {blas_text}",
        f"PyTorch: {torch_text}",
        f"data: {source_note}, normalised float32, batch 128",
    ]


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# ----- the table ------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _paired_ratio(a: list[float] | None, b: list[float] | None) -> str:
    """The median over repeats of a[r] / b[r]: each ratio between runs of the same repeat
    (interleaved for numpy and npgrad), so that the machine's speed, which drifts between
    repeats on a shared machine, cancels out."""
    if not a or not b:
        return "-"
    return f"{float(np.median([x / y for x, y in zip(a, b, strict=True)])):.2f}"


def build_table(op_rows, timing, memory, impl_names) -> list[list[str]]:
    """Rows of the one table: per-op overhead, then seconds and memory per network."""
    header = ["benchmark", *impl_names, "npgrad/numpy", "npgrad/torch"]
    rows = [header]
    for case, micros in op_rows:
        values = {"npgrad": micros.get("npgrad"), "torch": micros.get("torch")}
        rows.append(
            [f"op {case}: fwd+bwd µs"]
            + [_fmt(values.get(i), 1) for i in impl_names]
            + ["-", _ratio(values["npgrad"], values["torch"])]
        )
    for name, label in MODELS.items():
        if name not in timing:
            continue
        runs = timing[name]
        med = {i: float(np.median(runs[i])) for i in impl_names if runs.get(i)}
        rows.append(
            [f"{label}: s / 10k images"]
            + [_fmt(med.get(i)) for i in impl_names]
            + [_paired_ratio(runs.get("npgrad"), runs.get("numpy"))]
            + [_paired_ratio(runs.get("npgrad"), runs.get("torch"))]
        )
        mem = memory.get(name, {})
        rows.append(
            [f"{label}: peak MiB"]
            + [_fmt(mem.get(i), 1) for i in impl_names]
            + [_ratio(mem.get("npgrad"), mem.get("numpy"))]
            + [_ratio(mem.get("npgrad"), mem.get("torch"))]
        )
    return rows


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: B905, E501
        for r in rows
    )


# ----- per-op overhead for PyTorch --------------------------------------------------------------
def torch_op_overhead(number: int, repeat: int) -> dict[str, float]:
    """The cases of `benchmarks.ops` that PyTorch has one-to-one, same shapes, in µs."""
    torch = torch_reference.torch_available()
    if torch is None:
        return {}
    import timeit

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(ops.SHAPE, generator=gen, requires_grad=True)
    b = torch.randn(ops.SHAPE, generator=gen, requires_grad=True)
    ones = torch.ones(ops.SHAPE)
    rows = torch.tensor([0, 2, 2])
    row_grad = torch.ones((3, ops.SHAPE[1]))
    cases = {
        "add": lambda: (a + b).backward(ones),
        "mul": lambda: (a * b).backward(ones),
        "matmul": lambda: (a @ b).backward(ones),
        "sum": lambda: a.sum().backward(),
        "relu": lambda: a.relu().backward(ones),
        "exp": lambda: a.exp().backward(ones),
        "getitem": lambda: a[rows].backward(row_grad),
    }
    result = {}
    for name, case in cases.items():
        case()
        times = timeit.repeat(case, number=number, repeat=repeat, timer=time.process_time)
        result[name] = min(times) / number * 1e6  # the least disturbed, as benchmarks.ops
    return result


# ----- main -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", default=str(numpy_reference.DEFAULT_MNIST))
    every_model = [*MODELS, *sequence_nets.MODELS]
    parser.add_argument("--models", nargs="+", default=every_model, choices=every_model)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per network (>= 3)")
    parser.add_argument("--images", type=int, default=10_000, help="training images per run")
    parser.add_argument("--memory-steps", type=int, default=20)
    parser.add_argument(
        "--block", type=int, default=16, help="batches per turn when numpy and npgrad alternate"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each timed run, wait up to this many seconds for a quiet machine "
        "(< 10%% busy for 1 s; 0: don't wait)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="markdown report ('' for none)")
    args = parser.parse_args(argv)
    sequence = [m for m in args.models if m in sequence_nets.MODELS]  # timed on their own
    args.models = [m for m in args.models if m in MODELS]

    x, y, source_note = load_images(args.dataset)
    impls = implementations(with_torch=not args.no_torch)
    impl_names = list(impls)
    env = environment("torch" in impls, source_note)
    print("\n".join(env), flush=True)
    load_before = load_average()

    print("per-op overhead ...", flush=True)
    npgrad_ops = dict(ops.op_overhead(number=1000, repeat=7))
    torch_ops = torch_op_overhead(1000, 7) if "torch" in impls else {}
    op_rows = [
        (case, {"npgrad": us, "torch": torch_ops.get(case)}) for case, us in npgrad_ops.items()
    ]

    batches = numpy_reference.batch_order(len(x), args.images, 128, seed=0)
    timing: dict[str, dict[str, list[float]]] = {
        m: {i: [] for i in impl_names} for m in args.models
    }
    runs: list[str] = []
    others_cpu: list[float] = []  # other processes' CPU share during each timed run
    # numpy and npgrad interleaved block by block in each run (see `time_runs`); PyTorch in
    # runs of its own between them (its OpenMP threads keep spinning for a while after each
    # call, which would steal a core from whatever ran next)
    for repeat in range(args.repeats):
        for name in args.models:
            groups = [{i: impls[i] for i in ("numpy", "npgrad")}]
            if "torch" in impls:
                groups.insert(repeat % 2, {"torch": impls["torch"]})
            for group in groups:
                if args.quiet_wait > 0:
                    numpy_reference.wait_until_quiet(timeout=args.quiet_wait)
                for impl_name, r in time_runs(group, name, x, y, batches, args.block).items():
                    per_10k = r["seconds"] * 10_000 / args.images
                    timing[name][impl_name].append(per_10k)
                    others = "?" if r["others_cpu"] is None else f"{r['others_cpu']:.2f}"
                    if r["others_cpu"] is not None:
                        others_cpu.append(r["others_cpu"])
                    line = (
                        f"repeat {repeat + 1} {name:9s} {impl_name:6s} {per_10k:7.3f} s/10k, "
                        f"final loss {r['loss']:.5f}, others' CPU share {others}"
                    )
                    runs.append(line)
                    print(line, flush=True)

    print("peak memory ...", flush=True)
    memory: dict[str, dict[str, float | None]] = {}
    for name in args.models:
        mem_batches = batches[: args.memory_steps]
        memory[name] = {i: peak_memory(i, impls[i], name, x, y, mem_batches) for i in impl_names}
    sequence_rows, sequence_runs = sequence_nets.run(
        sequence, args.repeats, with_torch=not args.no_torch, quiet_wait=args.quiet_wait
    )
    load_after = load_average()

    rows = build_table(op_rows, timing, memory, impl_names)
    print()
    print(render(rows, markdown=False))
    if sequence:
        print(render(sequence_rows, markdown=False))
    # the load average counts this benchmark's own threads; what other processes took
    # during the timed runs is the measure of noise
    worst = max(others_cpu, default=None)
    load_note = (
        f"load average (1 min): {_fmt(load_before, 2)} before, {_fmt(load_after, 2)} after "
        f"(this benchmark included); other processes' CPU share during timed runs: "
        f"median {_fmt(float(np.median(others_cpu)) if others_cpu else None, 2)}, "
        f"max {_fmt(worst, 2)}"
    )
    if worst is not None and worst > 0.1:
        load_note += " (busy machine: timings are noisy)"
    print(load_note)
    if args.out:
        write_report(Path(args.out), env, load_note, rows, runs, args)
        sequence_nets.append_report(Path(args.out), sequence_rows, sequence_runs, render)
        print(f"wrote {args.out}")


def write_report(path: Path, env, load_note, rows, runs, args) -> None:
    text = [
        "# npgrad benchmark",
        "",
        "Written by `python -m benchmarks` (see `benchmarks/__main__.py` for the method).",
        "",
        *[f"- {line}" for line in env],
        f"- {load_note}",
        f"- {args.repeats} timed runs of {args.images:,} images per network and implementation "
        f"(numpy and npgrad taking turns every {args.block} batches, PyTorch on its own); "
        "medians. Peak memory over model building and the first "
        f"{args.memory_steps} steps.",
        "",
        render(rows, markdown=True),
        "",
        "## Runs",
        "",
        "```",
        *runs,
        "```",
        "",
    ]
    path.write_text("\n".join(text))


if __name__ == "__main__":
    main(sys.argv[1:])
