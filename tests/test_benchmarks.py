"""The benchmarks compare like with like: these tests check the work, never the timings.

- the hand-written numpy reference's backward passes finite differences, its optimisers
  follow the textbook formulas;
- npgrad, started from the reference's weights and fed the same batches, follows the same
  trajectory (losses and parameters equal to float32 rounding), so a speed ratio between
  the two compares the same arithmetic;
- `python -m benchmarks` runs end to end on a few batches and writes its table.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import __main__ as bench
from benchmarks import npgrad_nets, numpy_reference


def test_numpy_reference_backward_matches_finite_differences() -> None:
    worst = numpy_reference.check_gradients(verbose=False)
    assert set(worst) >= {"mlp", "cnn", "conv2d", "maxpool_ties"}
    assert all(err < 1e-4 for err in worst.values()), worst


def test_numpy_reference_optimizers_follow_the_textbook_formulas() -> None:
    numpy_reference._check_optimizers()  # SGD momentum and Adam vs float64 formulas; raises


@pytest.mark.parametrize("name", ["mlp", "mlp_large", "cnn"])
def test_npgrad_follows_the_numpy_reference(name: str) -> None:
    rng = np.random.default_rng(0)
    steps, batch = (3, 16) if name == "cnn" else (5, 32)
    x = rng.standard_normal((steps * batch, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=steps * batch)
    reference, model = numpy_reference.make_model(name, 0), npgrad_nets.make_model(name, 0)
    for p_ref, p in zip(reference.params, model.module.parameters(), strict=True):
        assert np.array_equal(p_ref, p.data)  # the same starting point
    for i in range(steps):
        xs, ys = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        loss_ref = numpy_reference.train_step(reference, xs, ys)
        loss = npgrad_nets.train_step(model, xs, ys)
        assert loss == pytest.approx(loss_ref, rel=1e-5), f"step {i}"
    assert loss_ref != pytest.approx(np.log(10), rel=1e-3)  # it trained: not still at chance
    # Adam (the CNN's) divides by sqrt(v) + 1e-8: a gradient that is float32 rounding noise
    # (|g| ~ 1e-9, where the two sum in different orders) still moves its weight by up to a
    # fraction of lr = 1e-3, in a direction the rounding decides; SGD moves it by lr * g
    atol = 2e-4 if name == "cnn" else 1e-5
    for p_ref, p in zip(reference.params, model.module.parameters(), strict=True):
        np.testing.assert_allclose(p.data, p_ref, rtol=1e-4, atol=atol)


def test_benchmark_command_writes_its_table(hf_offline, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NPGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bench.ops, "op_overhead", lambda **_: [("add", 1.0)])  # (slow part)
    out = tmp_path / "results.md"
    bench.main(
        ["--models", "mlp", "--repeats", "1", "--images", "256", "--memory-steps", "2"]
        + ["--no-torch", "--quiet-wait", "0", "--dataset", str(tmp_path / "missing")]
        + ["--out", str(out)]
    )
    text = out.read_text()
    assert "| MLP 784-128-10, SGD momentum: s / 10k images |" in text
    row = next(line for line in text.splitlines() if "784-128-10, SGD momentum: peak" in line)
    numpy_mib, npgrad_mib = (float(cell) for cell in row.split("|")[2:4])
    assert 0 < numpy_mib and 0 < npgrad_mib
    assert "shipped MNIST subset" in text  # the missing folder fell back to the test subset


def test_unknown_benchmark_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet'.*cnn"):
        npgrad_nets.make_model("resnet")
