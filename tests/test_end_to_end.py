"""The slow end-to-end run: `train_mnist.py --epochs 2` on the full MNIST copy beside the repo.

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
FULL_MNIST = ROOT.parent / "shared" / "mnist"


@pytest.mark.slow
@pytest.mark.skipif(not FULL_MNIST.is_dir(), reason=f"no full MNIST copy at {FULL_MNIST}")
def test_two_epochs_of_the_default_mlp_reach_97_percent(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable,
        str(ROOT / "train_mnist.py"),
        "--epochs",
        "2",
        "--dataset",
        str(FULL_MNIST),
        "--out",
        str(out),
        "--no-progress",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    print(result.stdout)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["test_accuracy"] >= 0.97, metrics["history"]
    assert "test accuracy:" in result.stdout
