"""End-to-end tests of train_mnist.py on the shipped MNIST subset (1000 train / 500 test).

`train_mnist.main(argv)` runs in-process; a subprocess only where a real process matters
(exit status and stderr of an unreachable dataset). Runs are small (a few hundred images,
1-3 epochs) and the plots, which cost seconds, are drawn in one run only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_limits

import autograd
import nn

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO / "tests" / "data" / "mnist"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import train_mnist  # noqa: E402 (the script lives at the repository root)

PLOTS = ("plot_curves", "plot_confusion", "plot_misclassified")
# A short mlp run that trains far above chance on the subset (about 0.87; chance is 0.1).
ACCURATE = ["--model", "mlp", "--epochs", "3", "--batch-size", "50", "--lr", "0.1", "--seed", "0"]
# Small runs for the checkpoint tests: 300 images, 6 steps an epoch.
SMALL = ["--model", "mlp", "--limit", "300", "--batch-size", "50", "--seed", "3"]


@pytest.fixture(scope="module", autouse=True)
def offline_cache(hf_offline: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No network, and one npgrad cache for the module so the subset is decoded once.

    BLAS runs on one thread: these matrices are small, and on a busy 2-core machine two
    OpenBLAS threads made a (50, 784) @ (784, 512) matmul ~14x slower (21 ms vs 1.5 ms).
    """
    cache = tmp_path_factory.mktemp("npgrad-cache")
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(limits=1, user_api="blas"):
        mp.setenv("NPGRAD_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def _keep_global_generator() -> Iterator[None]:
    """main() reseeds autograd's global generator: give the other tests theirs back."""
    state = autograd.generator().bit_generator.state
    yield
    autograd.generator().bit_generator.state = state


def _no_plot(*args: Any, **kwargs: Any) -> None:
    pass


def run(*argv: str, plots: bool = False) -> tuple[int, str, str]:
    """`train_mnist.main(argv)` on the subset: (exit status, stdout, stderr).

    Without `plots` the three matplotlib figures are skipped (seconds each); everything
    else, metrics.json and the checkpoint included, is written as usual.
    """
    argv_list = [*argv, "--dataset", str(SUBSET), "--no-progress"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        if not plots:
            for name in PLOTS:
                mp.setattr(train_mnist, name, _no_plot)
        stack.enter_context(contextlib.redirect_stdout(stdout))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        status = train_mnist.main(argv_list)
    return status, stdout.getvalue(), stderr.getvalue()


def evaluate(checkpoint: Path) -> tuple[int, str, str]:
    return run("evaluate", "--checkpoint", str(checkpoint))


def metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


def without_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History entries without their wall-clock time, the one thing two runs may differ in."""
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key, strict=True)


def saved_arrays(checkpoint: Path) -> dict[str, np.ndarray]:
    """Weights and optimiser state of a checkpoint (its `meta` holds timings)."""
    return {k: v for k, v in nn.load(checkpoint).items() if k != "meta"}


def saved_meta(checkpoint: Path) -> dict[str, Any]:
    return json.loads(nn.load(checkpoint)["meta"].tobytes().decode())


# ----- a real training run -----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(offline_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The one run with plots: (output folder, stdout)."""
    out = tmp_path_factory.mktemp("trained")
    status, stdout, stderr = run(*ACCURATE, "--out", str(out), plots=True)
    assert status == 0, stderr
    return out, stdout


def test_short_run_trains_far_above_chance(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    history = metrics(out)["history"]
    assert history[-1]["test_accuracy"] >= 0.85
    # it learned over the epochs, and the training loss fell from about ln 10
    assert history[-1]["train_loss"] < history[0]["train_loss"] < np.log(10) + 0.1
    assert history[-1]["test_accuracy"] > history[0]["test_accuracy"]
    # one progress line per epoch, and the final accuracy with four decimals
    assert len(re.findall(r"^epoch +\d+/3 ", stdout, flags=re.M)) == 3
    assert f"test accuracy: {history[-1]['test_accuracy']:.4f}" in stdout


def test_outputs(trained: tuple[Path, str]) -> None:
    out, _ = trained
    m = metrics(out)
    assert 0.0 <= m["test_accuracy"] <= 1.0
    assert m["test_accuracy"] == m["history"][-1]["test_accuracy"]
    assert m["epochs"] == 3 and len(m["history"]) == 3
    assert m["seconds_per_epoch"] > 0
    assert m["seconds_per_epoch"] == pytest.approx(np.mean([h["seconds"] for h in m["history"]]))
    for epoch, entry in enumerate(m["history"], start=1):
        assert entry["epoch"] == epoch
        for key in ("train_loss", "test_loss"):
            assert np.isfinite(entry[key]) and entry[key] > 0
        for key in ("train_accuracy", "test_accuracy"):
            assert 0.0 <= entry[key] <= 1.0
    # the confusion matrix agrees with the accuracy on the 500 test images
    confusion = np.array(m["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 500
    assert np.trace(confusion) / 500 == pytest.approx(m["test_accuracy"])

    checkpoint = nn.load(out / "model.npz")
    assert {"model.1.layers.0.weight", "meta"} <= set(checkpoint)
    assert checkpoint["model.1.layers.0.weight"].shape == (512, 784)
    for name in ("curves.png", "confusion.png", "misclassified.png"):
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as image:
            image.verify()  # raises on a damaged file
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 100, name


def test_evaluate_checkpoint_round_trip(trained: tuple[Path, str]) -> None:
    out, _ = trained
    status, stdout, stderr = evaluate(out / "model.npz")
    assert status == 0, stderr
    printed = re.findall(r"^test accuracy: (\d\.\d{4})$", stdout, flags=re.M)
    assert printed == [f"{metrics(out)['test_accuracy']:.4f}"]


# ----- reproducibility, resume, interruption -------------------------------------------------
def test_same_seed_same_result(tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("other", "2")):
        status, _, stderr = run(
            *SMALL, "--seed", seed, "--epochs", "1", "--out", str(tmp_path / name)
        )
        assert status == 0, stderr
        runs[name] = (metrics(tmp_path / name), saved_arrays(tmp_path / name / "model.npz"))
    (metrics_a, arrays_a), (metrics_b, arrays_b) = runs["a"], runs["b"]
    assert without_seconds(metrics_a["history"]) == without_seconds(metrics_b["history"])
    assert metrics_a["test_accuracy"] == metrics_b["test_accuracy"]
    assert_same_arrays(arrays_a, arrays_b)
    # and the seed matters: another one gives other weights
    other = runs["other"][1]["model.1.layers.0.weight"]
    assert not np.array_equal(arrays_a["model.1.layers.0.weight"], other)


@pytest.fixture(scope="module")
def straight(offline_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs in one go, the reference of the resume tests."""
    out = tmp_path_factory.mktemp("straight")
    status, _, stderr = run(*SMALL, "--epochs", "2", "--out", str(out))
    assert status == 0, stderr
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Bit-identical weights, optimiser state, scheduler, generator and history."""
    assert_same_arrays(saved_arrays(a / "model.npz"), saved_arrays(b / "model.npz"))
    meta_a, meta_b = saved_meta(a / "model.npz"), saved_meta(b / "model.npz")
    assert without_seconds(meta_a.pop("history")) == without_seconds(meta_b.pop("history"))
    assert meta_a == meta_b
    assert without_seconds(metrics(a)["history"]) == without_seconds(metrics(b)["history"])


def test_resume_extends_a_finished_run(straight: Path, tmp_path: Path) -> None:
    """1 epoch, then `--resume DIR --epochs 2`: the same run as 2 epochs straight."""
    status, _, stderr = run(*SMALL, "--epochs", "1", "--out", str(tmp_path))
    assert status == 0, stderr
    assert metrics(tmp_path)["epochs"] == 1
    status, stdout, stderr = run("--resume", str(tmp_path), "--epochs", "2")
    assert status == 0, stderr
    assert "after epoch 1" in stdout
    assert metrics(tmp_path)["epochs"] == 2
    assert_same_run(tmp_path, straight)


class _InterruptAfter:
    """A loader stand-in that raises KeyboardInterrupt (Ctrl-C) after `batches` batches."""

    def __init__(self, loader: Any, batches: int) -> None:
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for i, batch in enumerate(self.loader):
            if i == self.batches:
                raise KeyboardInterrupt
            yield batch


def test_interrupt_keeps_last_epoch_and_resumes(
    straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of epoch 2 (after some of its steps changed the weights)."""
    real_run_epoch = train_mnist.run_epoch
    calls = []

    def run_epoch(model, loader, optimizer, *args: Any) -> Any:  # noqa: ANN001
        calls.append(optimizer is not None)
        if calls == [True, False, True]:  # train 1, test 1, train 2: stop after 3 batches
            loader = _InterruptAfter(loader, 3)
        return real_run_epoch(model, loader, optimizer, *args)

    monkeypatch.setattr(train_mnist, "run_epoch", run_epoch)
    status, stdout, stderr = run(*SMALL, "--epochs", "2", "--out", str(tmp_path))
    monkeypatch.undo()
    assert status == 130, stderr
    assert "Traceback" not in stdout + stderr
    checkpoint = tmp_path / "model.npz"
    assert re.search(
        rf"last complete checkpoint: {re.escape(str(checkpoint))} \(epoch 1\)", stdout
    ), stdout
    assert f"--resume {tmp_path}" in stdout
    assert not (tmp_path / "metrics.json").exists()  # reports are written by finished runs
    assert [h["epoch"] for h in saved_meta(checkpoint)["history"]] == [1]

    # the checkpoint loads and evaluates to epoch 1's test accuracy
    status, stdout, stderr = evaluate(checkpoint)
    assert status == 0, stderr
    epoch_1 = metrics(straight)["history"][0]["test_accuracy"]
    assert f"test accuracy: {epoch_1:.4f}" in stdout

    # and resuming it gives the uninterrupted run, bit for bit
    status, stdout, stderr = run("--resume", str(tmp_path))
    assert status == 0, stderr
    assert_same_run(tmp_path, straight)


# ----- bad checkpoints and data sources ---------------------------------------------------------
def _garbage(path: Path, good: Path) -> None:
    path.write_bytes(b"not a checkpoint \x00\xff" * 500)


def _truncated(path: Path, good: Path) -> None:
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _no_meta(path: Path, good: Path) -> None:
    nn.save(train_mnist.build_model("mlp").state_dict(), path)


def _with_meta(meta: dict[str, Any]) -> Any:
    def make(path: Path, good: Path) -> None:
        state = nn.load(good)
        state["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        nn.save(state, path)

    return make


def _missing(path: Path, good: Path) -> None:
    pass


BAD_CHECKPOINTS = {
    # kind: (how to make it, a word the message must hold besides the path)
    "garbage": (_garbage, "corrupt"),
    "truncated": (_truncated, "truncated"),
    "no meta": (_no_meta, "meta"),
    "cnn meta, mlp weights": (_with_meta({"model": "cnn"}), "cnn"),
    "unknown model": (_with_meta({"model": "resnet18"}), "resnet18"),
    "missing": (_missing, "does not exist"),
}


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoint_exits_2_naming_the_path(
    kind: str, trained: tuple[Path, str], tmp_path: Path
) -> None:
    make, word = BAD_CHECKPOINTS[kind]
    path = tmp_path / "model.npz"
    make(path, trained[0] / "model.npz")
    status, stdout, stderr = evaluate(path)
    assert status == 2
    assert str(path) in stderr and word in stderr, stderr
    assert "Traceback" not in stderr and "test accuracy" not in stdout


def test_resume_from_corrupt_checkpoint_exits_2(tmp_path: Path) -> None:
    (tmp_path / "model.npz").write_bytes(b"\x00" * 1000)
    status, _, stderr = run("--resume", str(tmp_path))
    assert status == 2
    assert str(tmp_path / "model.npz") in stderr


@pytest.mark.parametrize("command", ["train", "evaluate", "resume"])
def test_unreachable_dataset_in_process(
    command: str, trained: tuple[Path, str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-mnist")
    argv = {
        "train": ["--out", str(tmp_path / "out")],
        "evaluate": ["evaluate", "--checkpoint", str(trained[0] / "model.npz")],
        "resume": ["--resume", str(trained[0])],  # read-only: fails before any epoch
    }[command]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = train_mnist.main([*argv, "--dataset", missing, "--no-progress"])
    assert status == 2
    assert repr(missing) in stderr.getvalue() and "--dataset" in stderr.getvalue()
    assert "test accuracy" not in stdout.getvalue()


def test_unreachable_dataset_exits_2_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NPGRAD_CACHE": str(tmp_path / "cache")}
    process = subprocess.run(
        [sys.executable, str(REPO / "train_mnist.py"), "--dataset", "/nonexistent"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2, process.stderr
    message = process.stderr.strip()
    assert "Traceback" not in message
    assert "'/nonexistent'" in message and "--dataset" in message
    assert "\n\n" not in message  # one paragraph


# ----- graph drawing and the cnn -----------------------------------------------------------------
def test_draw_graph_dot(tmp_path: Path) -> None:
    dot = tmp_path / "step.dot"
    status, stdout, stderr = run(
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--limit",
        "100",
        "--out",
        str(tmp_path / "out"),
        "--draw-graph",
        str(dot),
    )
    assert status == 0, stderr
    assert str(dot) in stdout
    text = dot.read_text()
    assert text.lstrip().startswith("digraph")
    assert "subgraph cluster" in text
    assert "(Linear)" in text and "cross_entropy" in text


def test_cnn_runs(tmp_path: Path) -> None:
    status, stdout, stderr = run(
        "--model", "cnn", "--epochs", "1", "--limit", "256", "--out", str(tmp_path)
    )
    assert status == 0, stderr
    m = metrics(tmp_path)
    assert m["model"] == "cnn" and m["epochs"] == 1 and len(m["history"]) == 1
    assert 0.0 <= m["test_accuracy"] <= 1.0 and np.isfinite(m["history"][0]["train_loss"])
    assert "256 training" in stdout
    assert "model.0.weight" in nn.load(tmp_path / "model.npz")  # the first conv


def test_random_shift_moves_each_image_within_bounds() -> None:
    images = np.zeros((64, 28, 28), dtype=np.uint8)
    images[:, 10:18, 12:16] = 255  # a bar well inside the frame
    shifted = train_mnist.random_shift(images, np.random.default_rng(0), 2)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    moves = set()
    for original, moved in zip(images, shifted, strict=True):
        rows, cols = np.nonzero(moved)
        dy, dx = rows.min() - 10, cols.min() - 12
        assert abs(dy) <= 2 and abs(dx) <= 2
        assert moved.sum() == original.sum()  # the bar moved whole, nothing cut off
        np.testing.assert_array_equal(np.roll(original, (dy, dx), axis=(0, 1)), moved)
        moves.add((int(dy), int(dx)))
    assert len(moves) > 10  # many different shifts, not one
