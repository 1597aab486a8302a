"""End-to-end tests of train_mnist.py on the MNIST subset in tests/data (1000 train / 500 test).

`train_mnist.main(argv)` runs in-process; a subprocess only where a real process matters
(exit status and stderr of bad options and an unreachable dataset, SIGINT). Runs are small
(a few hundred images, 1-3 epochs) and the plots, which cost seconds, are drawn in one run only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
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
    if "--threads" not in argv:  # small matrices: one BLAS thread (see offline_cache)
        argv_list += ["--threads", "1"]
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


# ----- bad options: refused at start-up, nothing touched (issue 16) -----------------------------
# The command a new user tries, plus one option (argparse lets the last of a repeat win).
BASE = ["--model", "mlp", "--dataset", str(SUBSET), "--limit", "100", "--epochs", "1"]


def subprocess_env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "NPGRAD_CACHE": str(cache),
    }


@pytest.fixture(scope="module")
def good_run(offline_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one good checkpoint of BASE's run, made once for the module."""
    out = tmp_path_factory.mktemp("good")
    status, _, stderr = run(*BASE, "--out", str(out))
    assert status == 0, stderr
    return out


@pytest.fixture
def earlier(good_run: Path, tmp_path: Path) -> tuple[Path, bytes]:
    """A copy of the good run to point a new run at: (folder, its checkpoint's bytes)."""
    folder = tmp_path / "D"
    shutil.copytree(good_run, folder)
    return folder, (folder / "model.npz").read_bytes()


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# (option, value, a phrase of the reason); a value of "FILE" is replaced by an existing file
BAD_OPTIONS = [
    # the rows of issue 16's table
    ("--epochs", "0", "positive integer"),
    ("--epochs", "-1", "positive integer"),
    ("--batch-size", "0", "positive integer"),
    ("--lr", "nan", "finite number > 0"),
    ("--lr", "-1", "finite number > 0"),
    ("--limit", "-5", "positive integer"),
    ("--out", "FILE", "not a folder"),
    ("--draw-graph", "step.xyz", "suffix"),
    # and their neighbours
    ("--threads", "0", "positive integer"),
    ("--lr", "inf", "finite number > 0"),
    ("--lr", "0", "finite number > 0"),
    ("--limit", "0", "positive integer"),
    ("--batch-size", "1.5", "positive integer"),
    ("--seed", "-1", ">= 0"),
    ("--shift", "-2", ">= 0"),
    ("--model", "resnet", "invalid choice"),
    ("--optimizer", "lbfgs", "invalid choice"),
    ("--out", "FILE/run", "is a file"),
]


@pytest.mark.parametrize(
    ("option", "value", "reason"), BAD_OPTIONS, ids=[f"{o} {v}" for o, v, _ in BAD_OPTIONS]
)
def test_bad_option_exits_2_at_start_up_touching_nothing(
    option: str,
    value: str,
    reason: str,
    earlier: tuple[Path, bytes],
    offline_cache: Path,
    tmp_path: Path,
) -> None:
    folder, checkpoint = earlier
    before = listing(folder)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    value = value.replace("FILE", str(a_file))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    process = subprocess.run(
        [sys.executable, str(REPO / "train_mnist.py"), *BASE, "--out", str(folder)]
        + ["--no-progress", option, value],
        cwd=cwd,
        env=subprocess_env(offline_cache),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2, process.stderr
    message = process.stderr.strip()
    assert "Traceback" not in message and "\n" not in message, message  # one line
    assert f"argument {option}:" in message and repr(value) in message, message
    assert reason in message, message
    assert process.stdout == ""  # no training started
    # the earlier checkpoint (and everything beside it) is as it was, and nothing was written
    assert (folder / "model.npz").read_bytes() == checkpoint
    assert listing(folder) == before
    assert list(cwd.iterdir()) == [] and a_file.read_text() == "not a folder"


def test_explicit_values_are_not_defaults(tmp_path: Path) -> None:
    """`--epochs 1 --batch-size 1 --shift 0 --seed 0` are honoured as given, never replaced."""
    status, stdout, stderr = run(
        *BASE, "--batch-size", "100", "--shift", "0", "--seed", "0", "--out", str(tmp_path)
    )
    assert status == 0, stderr
    config = metrics(tmp_path)["config"]
    assert config["epochs"] == 1 and config["batch_size"] == 100 and config["limit"] == 100
    assert config["shift"] == 0 and config["seed"] == 0
    assert len(re.findall(r"^epoch +\d+/1 ", stdout, flags=re.M)) == 1


def test_resume_refuses_settings_it_would_ignore(good_run: Path) -> None:
    err = io.StringIO()
    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(err):
        train_mnist.parse_args(["--resume", str(good_run), "--lr", "0.5", "--batch-size", "7"])
    assert info.value.code == 2
    message = err.getvalue().strip()
    assert "argument --resume:" in message and "drop --batch-size, --lr" in message, message
    assert "\n" not in message


def test_resume_with_fewer_epochs_than_done_exits_2(good_run: Path, tmp_path: Path) -> None:
    status, _, stderr = run(*SMALL, "--epochs", "2", "--out", str(tmp_path))
    assert status == 0, stderr
    checkpoint = (tmp_path / "model.npz").read_bytes()
    status, stdout, stderr = run("--resume", str(tmp_path), "--epochs", "1")
    assert status == 2
    assert "--epochs" in stderr and "1 is fewer than the 2 epochs" in stderr, stderr
    assert (tmp_path / "model.npz").read_bytes() == checkpoint


def test_default_dataset_is_the_shipped_copy_found_from_the_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the cwd must not matter
    args = train_mnist.parse_args([])
    assert args.dataset is None
    assert train_mnist.dataset_source(args.dataset) == str(REPO / "data" / "mnist")
    assert (REPO / "data" / "mnist" / "mnist" / "train-00000-of-00001.parquet").is_file()
    assert train_mnist.dataset_source("ylecun/mnist") == "ylecun/mnist"


def test_threads_default_and_option(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in train_mnist.BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert train_mnist.thread_limit(None) == len(os.sched_getaffinity(0))
    assert train_mnist.thread_limit(3) == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert train_mnist.thread_limit(None) is None  # the environment's choice is kept
    assert train_mnist.thread_limit(2) == 2  # an explicit --threads wins


def test_script_lets_idle_blas_workers_sleep_unless_told_otherwise(tmp_path: Path) -> None:
    """Run as a script, train_mnist sets OPENBLAS_THREAD_TIMEOUT=4 before numpy loads (so
    autograd's kernels use every core); a value in the environment is kept; importing the
    module changes nothing."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, runpy, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "sys.argv = ['train_mnist.py', '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / 'train_mnist.py')!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import autograd\n"
        "print('TIMEOUT', os.environ.get('OPENBLAS_THREAD_TIMEOUT'), autograd.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT",)}
    for name in train_mnist.BLAS_THREAD_VARIABLES:
        env.pop(name, None)

    def probe_run(**extra: str) -> str:
        out = subprocess.run(
            [sys.executable, str(probe)], env={**env, **extra}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()[-1]

    cores = len(os.sched_getaffinity(0))
    assert probe_run() == f"TIMEOUT 4 {cores}"
    assert probe_run(OPENBLAS_THREAD_TIMEOUT="20") == "TIMEOUT 20 1"  # spinning: one thread
    code = "import os, train_mnist; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    imported = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "None"


def test_threads_option_sets_blas_threads_for_the_run(tmp_path: Path) -> None:
    if train_mnist.blas_threads() is None:
        pytest.skip("threadpoolctl finds no BLAS library")
    status, stdout, stderr = run(*BASE, "--out", str(tmp_path))  # run() passes --threads 1
    assert status == 0, stderr
    assert "BLAS threads: 1" in stdout
    status, stdout, stderr = run(*BASE, "--out", str(tmp_path), "--threads", "2")
    assert status == 0, stderr
    assert "BLAS threads: 2" in stdout
    assert train_mnist.blas_threads() == 1  # the caller's limit (this module's) is back


# ----- a loss that stops being finite ------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_diverging_run_stops_at_once_and_keeps_the_earlier_checkpoint(
    earlier: tuple[Path, bytes],
) -> None:
    folder, checkpoint = earlier
    # lr 1e30: the first step's update overflows float32, so step 2's loss is NaN
    status, stdout, stderr = run(*BASE, "--batch-size", "10", "--lr", "1e30", "--out", str(folder))
    assert status == 1
    assert "Traceback" not in stderr
    assert re.search(r"stopped in epoch 1: the training loss is nan at step 2 of 10", stderr)
    assert "lower --lr" in stderr and "1e+30" in stderr
    assert "earlier run's, left as it was" in stderr, stderr
    assert (folder / "model.npz").read_bytes() == checkpoint
    assert "epoch  1/1" not in stdout  # no epoch was reported as done


def test_nan_in_epoch_2_keeps_epoch_1s_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NaN injected into the inputs after epoch 1 (3 training and 1 test batch an epoch)."""
    real_normalise, calls = train_mnist.normalise, []

    def normalise(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        x = real_normalise(images)
        if len(calls) == 4 + 2:  # epoch 2, its second training batch
            x[0, 0, 5, 5] = np.nan
        return x

    monkeypatch.setattr(train_mnist, "normalise", normalise)
    argv = [*BASE, "--epochs", "2", "--limit", "150", "--batch-size", "50"]
    status, stdout, stderr = run(*argv, "--out", str(tmp_path))
    assert status == 1
    assert "stopped in epoch 2: the training loss is nan at step 2 of 3" in stderr, stderr
    checkpoint = tmp_path / "model.npz"
    assert f"Last complete checkpoint: {checkpoint} (epoch 1)" in stderr, stderr
    assert [h["epoch"] for h in saved_meta(checkpoint)["history"]] == [1]
    saved = saved_arrays(checkpoint)
    assert all(np.isfinite(v).all() for v in saved.values())
    # its weights are epoch 1's of the same run without the NaN (a 1-epoch run: the same
    # steps, only the cosine schedule's length, hence the saved lr, differs)
    monkeypatch.undo()
    reference = tmp_path / "reference"
    status, _, stderr = run(*BASE, "--limit", "150", "--batch-size", "50", "--out", str(reference))
    assert status == 0, stderr
    expected = saved_arrays(reference / "model.npz")
    model_only = lambda arrays: {k: v for k, v in arrays.items() if k.startswith("model.")}  # noqa: E731
    assert len(model_only(saved)) == 6
    assert_same_arrays(model_only(saved), model_only(expected))


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    model = train_mnist.build_model("mlp")
    optimizer = train_mnist.build_optimizer(model, "sgd", 0.1)
    scheduler = nn.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    next(iter(model.parameters())).data[3, 4] = np.inf
    path = tmp_path / "model.npz"
    with pytest.raises(train_mnist.NotFinite, match="1.layers.0.weight"):
        train_mnist.save_checkpoint(path, model, optimizer, scheduler, {"model": "mlp"})
    assert list(tmp_path.iterdir()) == []


# ----- Ctrl-C: the message says what is on disk ------------------------------------------------
# Runs train_mnist.main in a real process that stops at a chosen point, prints a marker line
# and waits there for the test's SIGINT.
INTERRUPTIBLE = r"""
import signal, sys, time
# a process started with SIGINT ignored (a background job) would not get KeyboardInterrupt
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, sys.argv[1])
import train_mnist
import nn.serialization

def wait_for_sigint(marker):
    print(marker, flush=True)
    time.sleep(120)
    sys.exit("no SIGINT came")

where, calls = sys.argv[2], []
if where == "step":  # the third training batch of epoch 1
    real_normalise = train_mnist.normalise
    def normalise(images):
        calls.append(1)
        if len(calls) == 3:
            wait_for_sigint("PAUSED in epoch 1")
        return real_normalise(images)
    train_mnist.normalise = normalise
else:  # "save 2": inside nn.save of epoch 2's checkpoint, its temporary file open
    real_write = nn.serialization._write_npz
    def write(f, arrays):
        calls.append(1)
        if len(calls) == 2:
            wait_for_sigint("PAUSED writing epoch 2")
        real_write(f, arrays)
    nn.serialization._write_npz = write
sys.exit(train_mnist.main(sys.argv[3:]))
"""


def interrupt(where: str, argv: list[str], cache: Path) -> tuple[int, str, str]:
    """Run `train_mnist.py argv` until it pauses at `where`, send SIGINT, return its end."""
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, str(REPO), where, *argv]
        + ["--dataset", str(SUBSET), "--no-progress"],
        env=subprocess_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    try:
        for line in process.stdout:  # ends at EOF if the process dies before its marker
            seen.append(line)
            if line.startswith("PAUSED"):
                process.send_signal(signal.SIGINT)
                break
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert any(line.startswith("PAUSED") for line in seen), "".join(seen) + process.stderr.read()
    return process.returncode, "".join(seen) + stdout, stderr


def test_ctrl_c_before_any_checkpoint_says_nothing_saved(
    offline_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    status, stdout, stderr = interrupt(
        "step", [*SMALL, "--epochs", "2", "--out", str(out)], offline_cache
    )
    assert status == 130, stderr
    assert "Traceback" not in stdout + stderr
    assert "interrupted: nothing saved; start again" in stdout, stdout
    assert "--resume" not in stdout
    assert not (out / "model.npz").exists()


def test_ctrl_c_while_epoch_2_is_saved_names_epoch_1(offline_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    status, stdout, stderr = interrupt(
        "save 2", [*SMALL, "--epochs", "3", "--out", str(out)], offline_cache
    )
    assert status == 130, stderr
    assert "Traceback" not in stdout + stderr
    checkpoint = out / "model.npz"
    assert f"interrupted: last complete checkpoint: {checkpoint} (epoch 1); " in stdout, stdout
    assert f"continue with --resume {out}" in stdout
    # the file on disk agrees, and the interrupted write left no temporary file behind
    assert [h["epoch"] for h in saved_meta(checkpoint)["history"]] == [1]
    assert sorted(p.name for p in out.iterdir()) == ["model.npz"]
