"""The slow end-to-end run: the README's main command, `python train_mnist.py`, for 2 epochs.

It trains on the full MNIST copy the repository ships (data/mnist, the default data set), run
from another folder to show that the default is found from the script, not the cwd.
Deselected by default (`pytest -m slow` selects it); `.ci/run` runs it before the unit suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MNIST = ROOT / "data" / "mnist"


@pytest.mark.slow
def test_two_epochs_of_the_default_mlp_on_the_shipped_copy_reach_97_percent(
    tmp_path: Path,
) -> None:
    for split in ("train", "test"):  # shipped, so never skipped: a missing file is a failure
        assert (SHIPPED_MNIST / "mnist" / f"{split}-00000-of-00001.parquet").is_file()
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "train_mnist.py"),
        "--epochs",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    print(result.stdout)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["dataset"] is None  # the default: the shipped copy
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert "60,000 training and 10,000 test images" in result.stdout
    assert metrics["test_accuracy"] >= 0.97, metrics["history"]
    assert "test accuracy:" in result.stdout
