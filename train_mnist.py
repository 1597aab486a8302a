"""Train an MLP or a CNN on MNIST with npgrad, and evaluate checkpoints.

    python train_mnist.py [--model mlp|cnn] [--epochs N] [--batch-size B]
        [--optimizer sgd|adam] [--lr LR] [--dataset ylecun/mnist|PATH]
        [--limit N] [--seed S] [--out DIR] [--draw-graph FILE.svg|.png|.dot]
    python train_mnist.py evaluate --checkpoint DIR/model.npz [--dataset ...]

Writes DIR/model.npz after every epoch (atomically, with the optimiser state, so an
interrupted run keeps its last complete epoch and `--resume DIR` continues it),
DIR/metrics.json, DIR/curves.png, DIR/confusion.png and DIR/misclassified.png.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import autograd
import nn
from nn import functional as F
from nn import optim
from nn.data import DataLoader, MnistSourceError, load_mnist

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # over the training pixels, scaled to [0, 1]

# Defaults per model, chosen by measurement (README: Results).
DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": 20, "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "shift": 0},
    "cnn": {"epochs": 8, "batch_size": 128, "optimizer": "adam", "lr": 2e-3, "shift": 2},
}


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, truncated or of another model."""


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
    """
    state: dict[str, np.ndarray] = {f"model.{k}": v for k, v in model.state_dict().items()}
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
    """
    model.train(optimizer is not None)
    total_loss, correct, seen, predictions = 0.0, 0, 0, []
    start = time.perf_counter()
    bar = tqdm(loader, desc=description, leave=False, disable=not progress, unit="batch")
    for images, labels in bar:
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
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        predicted = logits.data.argmax(axis=1)
        predictions.append(predicted)
        total_loss += loss.item() * len(labels)
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
    if limit:
        train_x, train_y = train_x[:limit], train_y[:limit]
    return train_x, train_y, test_x, test_y


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    checkpoint_path = out / "model.npz"
    resume_meta = None
    if args.resume:
        out, checkpoint_path = Path(args.resume), Path(args.resume) / "model.npz"
        resume_meta, weights, optimizer_state = load_checkpoint(checkpoint_path)
        missing = {"config", "history", "rng"} - set(resume_meta)
        if missing:
            raise CheckpointError(
                f"checkpoint {checkpoint_path} cannot be resumed: its metadata lacks "
                f"{', '.join(sorted(missing))}"
            )
        config = resume_meta["config"]
        config["epochs"] = args.epochs or config["epochs"]
        config["dataset"] = args.dataset or config.get("dataset") or "ylecun/mnist"
    else:
        defaults = DEFAULTS[args.model]
        config = {
            "model": args.model,
            "epochs": args.epochs or defaults["epochs"],
            "batch_size": args.batch_size or defaults["batch_size"],
            "optimizer": args.optimizer or defaults["optimizer"],
            "lr": args.lr or defaults["lr"],
            "shift": defaults["shift"] if args.shift is None else args.shift,
            "seed": args.seed,
            "limit": args.limit,
            "dataset": args.dataset or "ylecun/mnist",
        }
    train_x, train_y, test_x, test_y = load_data(config["dataset"], config["limit"])
    out.mkdir(parents=True, exist_ok=True)  # after loading: a bad --dataset leaves nothing

    autograd.manual_seed(config["seed"])
    model = build_model(config["model"])
    optimizer = build_optimizer(model, config["optimizer"], config["lr"])
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config["epochs"])
    history: list[dict[str, Any]] = []
    if resume_meta is not None:
        model = restore_model(resume_meta, weights, checkpoint_path)
        optimizer = build_optimizer(model, config["optimizer"], config["lr"])
        optimizer.load_state_dict(optim.unflatten_state_dict(optimizer_state))
        history = resume_meta["history"]
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
        f"{len(train_y):,} training and {len(test_y):,} test images"
    )
    test_predictions = np.zeros(0, dtype=np.int64)
    try:
        for epoch in range(len(history) + 1, config["epochs"] + 1):
            loader.set_epoch(epoch - 1)  # the shuffle order is a function of (seed, epoch)
            start = time.perf_counter()
            # the shifts of epoch k depend on (seed, k) only, so a resumed run repeats them
            shift = config.get("shift", 0)
            augment = (np.random.default_rng([config["seed"], epoch]), shift) if shift else None
            train_loss, train_acc, _ = run_epoch(
                model, loader, optimizer, f"epoch {epoch}/{config['epochs']}", progress, augment
            )
            seconds = time.perf_counter() - start
            test_loss, test_acc, test_predictions = run_epoch(
                model, test_loader, None, "test", progress
            )
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "train_accuracy": train_acc,
                    "test_loss": test_loss,
                    "test_accuracy": test_acc,
                    "lr": scheduler.get_last_lr()[0],
                    "seconds": seconds,
                }
            )
            scheduler.step()
            save_checkpoint(
                checkpoint_path,
                model,
                optimizer,
                scheduler,
                {"model": config["model"], "config": config, "history": history},
            )
            print(
                f"epoch {epoch:>2}/{config['epochs']}  train loss {train_loss:.4f}  "
                f"train acc {train_acc:.4f}  test loss {test_loss:.4f}  test acc {test_acc:.4f}  "
                f"{seconds:.1f} s ({len(train_y) / seconds:,.0f} img/s)"
            )
    except KeyboardInterrupt:
        done = len(history)
        where = f"{checkpoint_path} (epoch {done})" if done else "none (no epoch finished)"
        print(f"\ninterrupted: last complete checkpoint: {where}; continue with --resume {out}")
        return 130

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
    test_x, test_y = load_mnist(args.dataset or "ylecun/mnist", split="test")
    progress = not args.no_progress and sys.stderr.isatty()
    _, accuracy, _ = run_epoch(
        model, DataLoader(test_x, test_y, batch_size=1000), None, "evaluate", progress
    )
    print(f"test accuracy: {accuracy:.4f}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dataset",
        help="hub id, or a local folder in the hub's parquet layout (default: ylecun/mnist; "
        "--resume: the run's own)",
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    if argv[:1] == ["evaluate"]:
        parser = argparse.ArgumentParser(prog="train_mnist.py evaluate", parents=[common])
        parser.add_argument("--checkpoint", required=True, help="DIR/model.npz")
        args = parser.parse_args(argv[1:])
        args.command = "evaluate"
        return args
    parser = argparse.ArgumentParser(
        description="Train an MLP or a CNN on MNIST with npgrad "
        "(`train_mnist.py evaluate --checkpoint DIR/model.npz` evaluates one).",
        parents=[common],
    )
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="mlp")
    parser.add_argument("--epochs", type=int, help="default: 20 (mlp), 8 (cnn)")
    parser.add_argument("--batch-size", type=int, help="default: 128")
    parser.add_argument(
        "--optimizer", choices=["sgd", "adam"], help="default: sgd (mlp), adam (cnn)"
    )
    parser.add_argument("--lr", type=float, help="peak learning rate (cosine schedule)")
    parser.add_argument(
        "--shift", type=int, help="random shift augmentation in pixels (default: 0 mlp, 2 cnn)"
    )
    parser.add_argument("--limit", type=int, help="train on the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/mnist", help="output folder")
    parser.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    parser.add_argument(
        "--draw-graph", metavar="FILE", help="draw one training step (.svg .png .dot)"
    )
    args = parser.parse_args(argv)
    args.command = "train"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return evaluate(args) if args.command == "evaluate" else train(args)
    except MnistSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
