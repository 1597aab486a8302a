"""The sequence benchmarks compare like with like: npgrad's layer models and the same
networks written from basic Tensor ops start from the same weights and follow the same
trajectory; the timing harness produces its table (timings themselves are never checked)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import sequence_nets


@pytest.mark.parametrize("name", list(sequence_nets.MODELS))
def test_layers_and_basic_ops_follow_the_same_trajectory(name: str) -> None:
    layers = sequence_nets.make_model(name, "layers")
    basic = sequence_nets.make_model(name, "basic")
    for a, b in zip(layers.params, basic.params, strict=True):
        assert np.array_equal(a.data, b.data)  # the same starting point
    for step, (x, y) in enumerate(sequence_nets.batches(2)):
        x, y = x[:4], y[:4]  # (a few sequences keep the test fast)
        assert layers.step(x, y) == pytest.approx(basic.step(x, y), rel=1e-5), step
        for a, b in zip(layers.params, basic.params, strict=True):  # this step's gradients
            scale = np.abs(b.grad).max()
            np.testing.assert_allclose(a.grad, b.grad, rtol=1e-3, atol=1e-4 * scale)
    assert not np.array_equal(
        layers.params[0].data, sequence_nets.make_model(name, "layers").params[0].data
    )


def test_run_writes_the_sequence_table(tmp_path) -> None:  # noqa: ANN001
    from benchmarks.__main__ import render

    rows, log = sequence_nets.run(["lstm_lm"], repeats=1, steps=2, with_torch=False, block=1)
    assert rows[0][:4] == ["benchmark", "npgrad layers", "npgrad basic ops", "torch"]
    assert rows[1][0].startswith("LSTM LM") and float(rows[1][1]) > 0 and rows[1][3] == "-"
    assert len(log) == 2
    report = tmp_path / "results.md"
    report.write_text("# npgrad benchmark\n")
    sequence_nets.append_report(report, rows, log, render)
    assert "| LSTM LM hidden 128 T=64, AdamW: ms / step (batch 16) |" in report.read_text()
    with pytest.raises(ValueError, match="unknown sequence model"):
        sequence_nets.make_model("gpt2", "layers")
