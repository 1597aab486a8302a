"""Train an MLP or a CNN on MNIST with npgrad, and evaluate checkpoints.

    python train_mnist.py [--model mlp|cnn] [--epochs N] [--batch-size B]
        [--optimizer sgd|adam] [--lr LR] [--dataset ylecun/mnist|PATH]
        [--limit N] [--seed S] [--threads N] [--out DIR] [--draw-graph FILE.svg|.png|.pdf|.dot]
    python train_mnist.py evaluate --checkpoint DIR/model.npz [--dataset ...]

MNIST comes from the copy shipped in this repository (data/mnist, the hub's parquet layout)
unless `--dataset` names a hub id (`ylecun/mnist`) or another local copy.

Every option is checked before any data is read or any file written: a bad one ends the run
with one line naming it and exit status 2. Writes DIR/model.npz after every epoch
(atomically, with the optimiser state, so an interrupted run keeps its last complete epoch
and `--resume DIR` continues it), DIR/metrics.json, DIR/curves.png, DIR/confusion.png and
DIR/misclassified.png. A run whose loss stops being finite ends at once (exit status 1),
leaving the last good checkpoint as it was.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

# OpenBLAS's idle workers spin (yielding) on the other core for ~0.1 s after every threaded
# product, which keeps autograd.parallel's kernel threads off it (autograd then runs them on
# one thread). Asleep after 2^4 cycles instead, they leave both cores to conv2d's blocks, the
# pools and ReLU: a CNN epoch (--limit 6000) measured 5.5-6.5 -> 4.4-5.3 s here, the MLP's
# (--limit 30000) 1.2-1.5 vs 1.3-1.6 s, accuracy the same. OpenBLAS reads the variable when
# numpy loads it, so it is set before the import (when run as a script: importing this module
# changes nothing); a value in the environment is kept.
if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from tqdm import tqdm

import autograd
import nn
from autograd.viz import SUFFIX_FORMATS
from nn import functional as F
from nn import optim
from nn.data import DataLoader, MnistSourceError, load_mnist

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # over the training pixels, scaled to [0, 1]
# The default data set: the copy this repository ships, found from this file, not the cwd.
SHIPPED_MNIST = Path(__file__).resolve().parent / "data" / "mnist"
# Environment variables BLAS libraries take their thread count from; one that is set wins
# over the default of --threads (but not over an explicit --threads).
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# Defaults per model, chosen by measurement (README: Results).
DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": 20, "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "shift": 0},
    "cnn": {"epochs": 8, "batch_size": 128, "optimizer": "adam", "lr": 2e-3, "shift": 2},
}
# What a resumed run takes from its checkpoint and may not be given again.
FIXED_ON_RESUME = ("model", "batch_size", "optimizer", "lr", "shift", "limit", "seed", "out")


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, truncated or of another model."""


class UsageError(Exception):
    """An option that cannot work, found only once a checkpoint is read (exit status 2)."""


class NotFinite(Exception):
    """The loss (or a weight about to be saved) became NaN or infinite."""


# ----- models ------------------------------------------------------------------------------
def build_model(name: str) -> nn.Module:
    """`mlp`: 784-512-256-10 with dropout. `cnn`: two conv-BN-ReLU-pool blocks, fc 128."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.MLP(784, [512, 256], 10, dropout=0.2))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, 10),
        )
    raise ValueError(f"unknown model {name!r}: expected 'mlp' or 'cnn'")


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28), zero mean and unit variance over MNIST."""
    x = images.astype(np.float32)[:, None]
    x *= np.float32(1 / (255 * MNIST_STD))
    x -= np.float32(MNIST_MEAN / MNIST_STD)
    return x


def random_shift(images: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    """Move each (28, 28) image by up to `max_shift` pixels each way (blank border fills in).

    One padded copy and one gather of (B, 28, 28) windows: no loop over the batch.
    """
    b, h, w = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, b))
    return windows[np.arange(b), dy, dx]


def build_optimizer(model: nn.Module, name: str, lr: float) -> optim.Optimizer:
    if name == "sgd":
        return optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    if name == "adam":
        return optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: expected 'sgd' or 'adam'")


# ----- checkpoints -------------------------------------------------------------------------
def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: optim.Optimizer,
    scheduler: Any,
    meta: dict[str, Any],
) -> None:
    """One .npz: `model.*` weights, `optimizer.*` state, and `meta` as JSON bytes.

    `nn.save` writes a temporary file and renames it, so a crash never leaves half a file.
    Raises `NotFinite` (writing nothing) if a weight is NaN or infinite.
    """
    state: dict[str, np.ndarray] = {f"model.{k}": v for k, v in model.state_dict().items()}
    for key, value in state.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise NotFinite(f"{key[len('model.') :]} holds NaN or infinite values")
    for key, value in optim.flatten_state_dict(optimizer.state_dict()).items():
        state[f"optimizer.{key}"] = value
    meta = {
        **meta,
        "scheduler": scheduler.state_dict(),
        "rng": autograd.generator().bit_generator.state,
    }
    state["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    nn.save(state, path)


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], dict]:
    """(meta, model state dict, flat optimizer state) of a checkpoint this script wrote."""
    if Path(path).is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the file, DIR/model.npz")
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = nn.load(path)
    except Exception as error:  # noqa: BLE001 (any reader error means the same to the user)
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {error}") from None
    if "meta" not in state:
        raise CheckpointError(
            f"checkpoint {path} was not written by train_mnist.py (it has no 'meta' entry)"
        )
    try:
        meta = json.loads(state.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} has unreadable metadata: {error}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} has metadata that is not a JSON object")
    weights = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    optimizer = {k[len("optimizer.") :]: v for k, v in state.items() if k.startswith("optimizer.")}
    return meta, weights, optimizer


def restore_model(meta: dict[str, Any], weights: dict[str, np.ndarray], path: Path) -> nn.Module:
    try:
        model = build_model(meta.get("model", "?"))
        model.load_state_dict(weights)
    except (KeyError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} does not fit the {meta.get('model')} model: {error}"
        ) from None
    return model


# ----- training and evaluation -------------------------------------------------------------
def run_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: optim.Optimizer | None,
    description: str,
    progress: bool,
    augment: tuple[np.random.Generator, int] | None = None,
) -> tuple[float, float, np.ndarray]:
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy, predictions).

    `augment=(rng, max_shift)` shifts each training image at random by up to max_shift pixels.
    Raises `NotFinite` at the first batch whose loss is NaN or infinite, before its step.
    """
    model.train(optimizer is not None)
    total_loss, correct, seen, predictions = 0.0, 0, 0, []
    start = time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=not progress, unit="batch")
    for step, (images, labels) in enumerate(bar, start=1):
        if augment is not None:
            images = random_shift(images, *augment)
        x = autograd.Tensor(normalise(images))
        if optimizer is None:
            with autograd.no_grad():
                logits = model(x)
                loss = F.cross_entropy(logits, labels)
        else:
            logits = model(x)
            loss = F.cross_entropy(logits, labels)
        value = loss.item()
        if not math.isfinite(value):
            split = "training" if optimizer is not None else "test"
            raise NotFinite(f"the {split} loss is {value} at step {step} of {len(loader)}")
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        predicted = logits.data.argmax(axis=1)
        predictions.append(predicted)
        total_loss += value * len(labels)
        correct += int((predicted == labels).sum())
        seen += len(labels)
        if progress:
            bar.set_postfix(
                loss=f"{total_loss / seen:.4f}",
                acc=f"{correct / seen:.4f}",
                img_s=f"{seen / (time.perf_counter() - start):.0f}",
            )
    return total_loss / seen, correct / seen, np.concatenate(predictions)


def draw_one_step(model: nn.Module, images: np.ndarray, labels: np.ndarray, path: str) -> Path:
    """Draw the graph of one training step (forward, loss, backward) with its gradients."""
    model.train()
    rng_state = autograd.generator().bit_generator.state  # dropout here must not shift training
    with autograd.retain_grads():
        loss = F.cross_entropy(model(autograd.Tensor(normalise(images))), labels)
    loss.backward()
    written = autograd.save_graph(loss, path, params=model)
    model.zero_grad()
    autograd.generator().bit_generator.state = rng_state
    return written


def load_data(source: str, limit: int | None) -> tuple[np.ndarray, ...]:
    train_x, train_y = load_mnist(source, split="train")
    test_x, test_y = load_mnist(source, split="test")
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    return train_x, train_y, test_x, test_y


def dataset_source(dataset: str | None) -> str:
    """`--dataset` as `load_mnist` takes it: unset (None) means the shipped copy."""
    return str(SHIPPED_MNIST) if dataset is None else dataset


def saved_epochs(path: Path, history: list[dict[str, Any]]) -> int | None:
    """How many epochs of this run the checkpoint on disk at `path` holds, read from the file.

    None when there is no readable checkpoint there or it belongs to another run. A
    checkpoint is this run's when its history is a prefix of `history` (timings included,
    so an earlier run's never matches). Read from disk rather than tracked: Ctrl-C while
    epoch N's checkpoint is written leaves epoch N-1's file, or N's once the rename is done.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            saved = json.loads(archive["meta"].tobytes().decode())["history"]
    except Exception:  # noqa: BLE001 (missing, unreadable, another format: none of ours)
        return None
    if not isinstance(saved, list) or not saved or saved != history[: len(saved)]:
        return None
    return len(saved)


def on_disk(path: Path, history: list[dict[str, Any]], capital: bool = False) -> str:
    """What `path` holds, for the message of a run that stops early."""
    epochs = saved_epochs(path, history)
    if epochs is not None:
        text = f"last complete checkpoint: {path} (epoch {epochs})"
    elif path.exists():
        text = f"nothing saved ({path} is an earlier run's, left as it was)"
    else:
        text = "nothing saved"
    return text[0].upper() + text[1:] if capital else text


def train(args: argparse.Namespace) -> int:
    out = Path(args.out if args.out is not None else "runs/mnist")
    checkpoint_path = out / "model.npz"
    resume = None
    if args.resume:
        out, checkpoint_path = Path(args.resume), Path(args.resume) / "model.npz"
        resume = load_checkpoint(checkpoint_path)
        resume_meta = resume[0]
        missing = {"config", "history", "rng"} - set(resume_meta)
        if missing:
            raise CheckpointError(
                f"checkpoint {checkpoint_path} cannot be resumed: its metadata lacks "
                f"{', '.join(sorted(missing))}"
            )
        config = resume_meta["config"]
        done = len(resume_meta["history"])
        if args.epochs is not None:
            if args.epochs < done:
                raise UsageError(
                    f"argument --epochs: {args.epochs} is fewer than the {done} epochs "
                    f"{checkpoint_path} already holds"
                )
            config["epochs"] = args.epochs
        if args.dataset is not None:
            config["dataset"] = args.dataset
    else:
        defaults = DEFAULTS[args.model]

        def given(name: str) -> Any:
            value = getattr(args, name)
            return defaults[name] if value is None else value

        config = {
            "model": args.model,
            "epochs": given("epochs"),
            "batch_size": given("batch_size"),
            "optimizer": given("optimizer"),
            "lr": given("lr"),
            "shift": given("shift"),
            "seed": 0 if args.seed is None else args.seed,
            "limit": args.limit,
            "dataset": args.dataset,  # None: the shipped copy, wherever the repository is
        }
    history: list[dict[str, Any]] = [] if resume is None else resume[0]["history"]
    try:
        return run_training(args, config, out, checkpoint_path, history, resume)
    except KeyboardInterrupt:
        epochs = saved_epochs(checkpoint_path, history)
        if epochs is None:
            print(f"\ninterrupted: {on_disk(checkpoint_path, history)}; start again")
        else:
            print(
                f"\ninterrupted: {on_disk(checkpoint_path, history)}; continue with --resume {out}"
            )
        return 130
    except NotFinite as error:
        hint = "start a new run with a lower --lr" if args.resume else "try a lower --lr"
        print(
            f"error: {error}. The learning rate is probably too high: {hint} (this run's: "
            f"{config['lr']:g}). {on_disk(checkpoint_path, history, capital=True)}.",
            file=sys.stderr,
        )
        return 1
    except OSError as error:  # a full disk, a folder removed under the run, ...
        print(
            f"error: {type(error).__name__}: {error}. "
            f"{on_disk(checkpoint_path, history, capital=True)}.",
            file=sys.stderr,
        )
        return 1


def run_training(
    args: argparse.Namespace,
    config: dict[str, Any],
    out: Path,
    checkpoint_path: Path,
    history: list[dict[str, Any]],
    resume: tuple[dict[str, Any], dict[str, np.ndarray], dict] | None,
) -> int:
    """The run itself; appends to `history` (one entry per epoch) as it goes.

    `resume`: (meta, weights, optimiser state) of the checkpoint to continue, or None.
    """
    train_x, train_y, test_x, test_y = load_data(dataset_source(config["dataset"]), config["limit"])
    out.mkdir(parents=True, exist_ok=True)  # after loading: a bad --dataset leaves nothing

    autograd.manual_seed(config["seed"])
    model = build_model(config["model"])
    optimizer = build_optimizer(model, config["optimizer"], config["lr"])
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    if resume is not None:
        resume_meta, weights, optimizer_state = resume
        model = restore_model(resume_meta, weights, checkpoint_path)
        optimizer = build_optimizer(model, config["optimizer"], config["lr"])
        optimizer.load_state_dict(optim.unflatten_state_dict(optimizer_state))
        # Rebuilt at its saved position rather than loaded: creating a scheduler sets the lr,
        # and `--epochs` may have stretched the schedule (T_max) since the checkpoint.
        scheduler = optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=config["epochs"], last_epoch=len(history) - 1
        )
        autograd.generator().bit_generator.state = resume_meta["rng"]
        print(f"resuming {checkpoint_path} after epoch {len(history)}")

    if args.draw_graph:
        written = draw_one_step(model, train_x[:32], train_y[:32], args.draw_graph)
        print(f"graph of one training step: {written}")

    loader = DataLoader(
        train_x, train_y, batch_size=config["batch_size"], shuffle=True, seed=config["seed"]
    )
    test_loader = DataLoader(test_x, test_y, batch_size=1000)
    progress = not args.no_progress and sys.stderr.isatty()
    print(
        f"{config['model']}: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{len(train_y):,} training and {len(test_y):,} test images, "
        f"BLAS threads: {blas_threads()}",
        flush=True,
    )
    test_predictions = np.zeros(0, dtype=np.int64)
    for epoch in range(len(history) + 1, config["epochs"] + 1):
        loader.set_epoch(epoch - 1)  # the shuffle order is a function of (seed, epoch)
        start = time.perf_counter()
        # the shifts of epoch k depend on (seed, k) only, so a resumed run repeats them
        shift = config.get("shift", 0)
        augment = (np.random.default_rng([config["seed"], epoch]), shift) if shift else None
        try:
            train_loss, train_acc, _ = run_epoch(
                model, loader, optimizer, f"epoch {epoch}/{config['epochs']}", progress, augment
            )
            seconds = time.perf_counter() - start
            test_loss, test_acc, test_predictions = run_epoch(
                model, test_loader, None, "test", progress
            )
            entry = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "lr": scheduler.get_last_lr()[0],
                "seconds": seconds,
            }
            scheduler.step()
            history.append(entry)
            save_checkpoint(
                checkpoint_path,
                model,
                optimizer,
                scheduler,
                {"model": config["model"], "config": config, "history": history},
            )
        except NotFinite as error:
            raise NotFinite(f"training stopped in epoch {epoch}: {error}") from None
        print(
            f"epoch {epoch:>2}/{config['epochs']}  train loss {train_loss:.4f}  "
            f"train acc {train_acc:.4f}  test loss {test_loss:.4f}  test acc {test_acc:.4f}  "
            f"{seconds:.1f} s ({len(train_y) / seconds:,.0f} img/s)",
            flush=True,
        )

    if len(test_predictions) != len(test_y):  # resumed a finished run: evaluate once
        _, _, test_predictions = run_epoch(model, test_loader, None, "test", progress)
    write_reports(out, config, history, test_x, test_y, test_predictions)
    final = history[-1]
    print(
        f"test accuracy: {final['test_accuracy']:.4f}  "
        f"({np.mean([h['seconds'] for h in history]):.1f} s per epoch)\n"
        f"wrote {checkpoint_path}, {out / 'metrics.json'}, {out / 'curves.png'}, "
        f"{out / 'confusion.png'}, {out / 'misclassified.png'}"
    )
    return 0


def write_reports(
    out: Path,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    test_x: np.ndarray,
    test_y: np.ndarray,
    predictions: np.ndarray,
) -> None:
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (test_y, predictions), 1)
    metrics = {
        "model": config["model"],
        "config": config,
        "test_accuracy": history[-1]["test_accuracy"],
        "epochs": len(history),
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "confusion_matrix": confusion.tolist(),
        "history": history,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_curves(history, out / "curves.png")
    plot_confusion(confusion, out / "confusion.png")
    plot_misclassified(test_x, test_y, predictions, out / "misclassified.png")


# ----- plots (matplotlib, Agg) -------------------------------------------------------------
def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        loss_ax.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
        acc_ax.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    loss_ax.set(title="cross-entropy loss", xlabel="epoch", yscale="log")
    acc_ax.set(title="accuracy", xlabel="epoch")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(confusion: np.ndarray, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(np.log1p(confusion), cmap="Blues")
    for (true, pred), count in np.ndenumerate(confusion):
        colour = "white" if count > confusion.max() / 2 else "black"
        ax.text(pred, true, str(count), ha="center", va="center", fontsize=8, color=colour)
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true")
    ax.set_title(f"test confusion matrix ({np.trace(confusion)}/{confusion.sum()} correct)")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_misclassified(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, path: Path, count: int = 40
) -> None:
    plt = _pyplot()
    wrong = np.flatnonzero(predictions != labels)[:count]
    columns = 10
    rows = max(1, -(-len(wrong) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong, strict=False):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{predictions[i]} (true {labels[i]})", fontsize=7, color="firebrick")
    fig.suptitle(f"misclassified test digits: predicted (true), {len(wrong)} shown")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----- command line ------------------------------------------------------------------------
def evaluate(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    meta, weights, _ = load_checkpoint(path)
    model = restore_model(meta, weights, path)
    test_x, test_y = load_mnist(dataset_source(args.dataset), split="test")
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        _, accuracy, _ = run_epoch(
            model, DataLoader(test_x, test_y, batch_size=1000), None, "evaluate", progress
        )
    except NotFinite as error:
        raise CheckpointError(f"checkpoint {path} has weights that give {error}") from None
    print(f"test accuracy: {accuracy:.4f}")
    return 0


def available_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity masks
        return os.cpu_count() or 1


def blas_threads() -> int | None:
    """The thread count of the first BLAS library numpy uses (None if threadpoolctl sees none)."""
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return counts[0] if counts else None


def thread_limit(threads: int | None) -> int | None:
    """BLAS threads to use: `--threads`; unset, the available cores, unless the environment
    already sets a BLAS thread count (then None: leave BLAS as it is)."""
    if threads is not None:
        return threads
    if any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        return None
    return available_cores()


# argparse `type=` checks: the message names the value, argparse adds the option
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, but every error is one line (no usage block): the option, the value, why."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def folder_problem(path: Path) -> str | None:
    """Why `path` cannot be used as an output folder (None if it is or can become one)."""
    if path.is_symlink() and not path.exists():
        return "is a broken symbolic link"
    if path.exists():
        if not path.is_dir():
            return "exists and is not a folder"
        if not os.access(path, os.W_OK | os.X_OK):
            return "is a folder this user cannot write to"
        return None
    for parent in path.absolute().parents:  # the nearest existing folder above must be writable
        if parent.exists():
            if not parent.is_dir():
                return f"cannot be created: {str(parent)!r} is a file, not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot be created: {str(parent)!r} is not writable"
            return None
    return None


def check_paths(parser: Parser, args: argparse.Namespace) -> None:
    """Checks of --out, --resume and --draw-graph that need the file system (no writes)."""
    if args.out is not None:
        problem = folder_problem(Path(args.out))
        if problem:
            parser.error(f"argument --out: {args.out!r} {problem}")
    if args.resume is not None:
        resume = Path(args.resume)
        if not resume.is_dir():
            what = "does not exist" if not resume.exists() else "is not a folder"
            parser.error(
                f"argument --resume: {args.resume!r} {what} (give the run's folder, the one "
                "holding model.npz)"
            )
        problem = folder_problem(resume)
        if problem:
            parser.error(f"argument --resume: {args.resume!r} {problem}")
        given = [name for name in FIXED_ON_RESUME if getattr(args, name) is not None]
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            parser.error(
                f"argument --resume: a resumed run keeps its own settings; drop {options} "
                "(only --epochs, --dataset, --threads, --draw-graph and --no-progress apply)"
            )
    if args.draw_graph is not None:
        graph = Path(args.draw_graph)
        suffix = graph.suffix.lower()
        if suffix not in SUFFIX_FORMATS:
            parser.error(
                f"argument --draw-graph: {args.draw_graph!r}: the suffix must be one of "
                f"{' '.join(SUFFIX_FORMATS)}"
            )
        if graph.is_dir():
            parser.error(f"argument --draw-graph: {args.draw_graph!r} is a folder")
        problem = folder_problem(graph.parent)
        if problem:
            parser.error(f"argument --draw-graph: the folder of {args.draw_graph!r} {problem}")
        if SUFFIX_FORMATS[suffix] != "dot" and shutil.which("dot") is None:
            parser.error(
                f"argument --draw-graph: writing {args.draw_graph!r} needs Graphviz's dot "
                "program, which is not on PATH (apt-get install graphviz), or draw a .dot file"
            )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse and check every option; a bad one exits with status 2 and one line."""
    common = Parser(add_help=False)
    common.add_argument(
        "--dataset",
        help="hub id (ylecun/mnist) or a local folder in the hub's parquet layout (default: "
        "the copy shipped in data/mnist; --resume: the run's own)",
    )
    common.add_argument(
        "--threads",
        type=positive_int,
        help="BLAS threads (default: the cores this process may use, here "
        f"{available_cores()}; a BLAS thread variable such as OPENBLAS_NUM_THREADS set in "
        "the environment is kept)",
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    if argv[:1] == ["evaluate"]:
        parser = Parser(prog="train_mnist.py evaluate", parents=[common])
        parser.add_argument("--checkpoint", required=True, help="DIR/model.npz")
        args = parser.parse_args(argv[1:])
        args.command = "evaluate"
        return args
    parser = Parser(
        prog="train_mnist.py",
        description="Train an MLP or a CNN on MNIST with npgrad "
        "(`train_mnist.py evaluate --checkpoint DIR/model.npz` evaluates one).",
        parents=[common],
    )
    parser.add_argument("--model", choices=sorted(DEFAULTS), help="default: mlp")
    parser.add_argument("--epochs", type=positive_int, help="default: 20 (mlp), 8 (cnn)")
    parser.add_argument("--batch-size", type=positive_int, help="default: 128")
    parser.add_argument(
        "--optimizer", choices=["sgd", "adam"], help="default: sgd (mlp), adam (cnn)"
    )
    parser.add_argument(
        "--lr",
        type=positive_finite_float,
        help="peak learning rate, cosine schedule (default: 0.05 mlp, 0.002 cnn)",
    )
    parser.add_argument(
        "--shift",
        type=non_negative_int,
        help="random shift augmentation in pixels (default: 0 mlp, 2 cnn)",
    )
    parser.add_argument("--limit", type=positive_int, help="train on the first N training images")
    parser.add_argument("--seed", type=non_negative_int, help="default: 0")
    parser.add_argument("--out", help="output folder (default: runs/mnist)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    parser.add_argument(
        "--draw-graph", metavar="FILE", help="draw one training step (.svg .png .pdf .dot)"
    )
    args = parser.parse_args(argv)
    check_paths(parser, args)
    if args.resume is None and args.model is None:
        args.model = "mlp"
    args.command = "train"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    limit = thread_limit(args.threads)
    kernel_threads = autograd.get_num_threads()
    try:
        # a context manager: an in-process caller (the tests) gets its own limits back
        with threadpool_limits(limits=limit, user_api="blas"):
            if limit is not None:  # the fused kernels' own threads (autograd.parallel) too
                autograd.set_num_threads(limit)
            return evaluate(args) if args.command == "evaluate" else train(args)
    except (MnistSourceError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except UsageError as error:
        print(f"train_mnist.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside an epoch loop: while reading a checkpoint or evaluating
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        autograd.set_num_threads(kernel_threads)


if __name__ == "__main__":
    sys.exit(main())
