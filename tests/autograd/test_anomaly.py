"""detect_anomaly(): the first backward that produces NaN names its op and the user's line."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import autograd
from autograd import Tensor, detect_anomaly

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaNs on purpose


def _line_of(marker: str) -> int:
    """The line number in this file of the line containing `marker`."""
    source, start = inspect.getsourcelines(inspect.getmodule(_line_of))
    return next(
        i for i, text in enumerate(source, start=1) if marker in text and "_line_of" not in text
    )


def test_nan_backward_names_the_op_and_the_line_that_made_it() -> None:
    x = Tensor([0.0, 1.0], requires_grad=True, dtype=np.float64)
    with detect_anomaly():
        root = x.sqrt()  # ANOMALY-SQRT: d sqrt/dx at 0 is inf, times 0 below gives NaN
        loss = (root * Tensor([0.0, 1.0], dtype=np.float64)).sum()
        with pytest.raises(RuntimeError) as info:
            loss.backward()
    message = str(info.value)
    assert "'sqrt'" in message and "NaN" in message
    assert f"test_anomaly.py:{_line_of('ANOMALY-SQRT')}" in message
    assert x.grad is None  # nothing was accumulated


def test_the_first_nan_is_reported_not_a_later_one() -> None:
    x = Tensor([-1.0], requires_grad=True, dtype=np.float64)
    with detect_anomaly(), np.errstate(invalid="ignore"):
        y = x.log()  # ANOMALY-LOG: NaN forward, but its backward 0 / x is finite
        z = y * 0.0 + x.sqrt() * 0.0  # ANOMALY-SQRT2
        with pytest.raises(RuntimeError) as info:
            z.sum().backward()
    # backward reaches sqrt (made after log) first: 0 * 0.5 / sqrt(-1) is the first NaN
    message = str(info.value)
    assert "'sqrt'" in message and "'log'" not in message
    assert f"test_anomaly.py:{_line_of('ANOMALY-SQRT2')}" in message


def test_a_users_module_line_is_reported(tmp_path) -> None:  # noqa: ANN001
    import nn

    class Model(nn.Module):
        def forward(self, x):  # noqa: ANN001, ANN202
            return (x - 2.0).sqrt()  # ANOMALY-MODULE

    x = Tensor([1.0], requires_grad=True, dtype=np.float64)
    with detect_anomaly():
        out = Model()(x)
        with pytest.raises(RuntimeError) as info:
            out.backward()
    assert f"test_anomaly.py:{_line_of('ANOMALY-MODULE')}" in str(info.value)


def test_outside_anomaly_mode_nothing_is_checked_or_recorded() -> None:
    x = Tensor([0.0], requires_grad=True, dtype=np.float64)
    y = x.sqrt()
    assert not hasattr(y, "_trace") or getattr(y, "_trace", None) is None
    (y * 0.0).backward()
    assert np.isnan(x.grad).all()  # the NaN arrives silently, as in PyTorch


def test_set_detect_anomaly_and_decorator() -> None:
    autograd.set_detect_anomaly(True)
    try:
        assert autograd.is_anomaly_enabled()
        x = Tensor([0.0], requires_grad=True, dtype=np.float64)
        with pytest.raises(RuntimeError, match="'sqrt'"):
            (x.sqrt() * 0.0).backward()
    finally:
        autograd.set_detect_anomaly(False)
    assert not autograd.is_anomaly_enabled()

    @detect_anomaly()
    def inside() -> bool:
        return autograd.is_anomaly_enabled()

    assert inside() and not autograd.is_anomaly_enabled()


def test_finite_backward_passes_in_anomaly_mode() -> None:
    x = Tensor([1.0, 4.0], requires_grad=True, dtype=np.float64)
    with detect_anomaly():
        x.sqrt().sum().backward()
    np.testing.assert_allclose(x.grad, [0.5, 0.25])


def test_a_nan_in_the_second_piece_of_a_split_is_caught_where_it_lands() -> None:
    """The engine adds a split's pieces straight into one buffer (`GradPiece`): anomaly mode
    checks that buffer after the piece that arrives second too (here a's, from a NaN output
    gradient: b, made later, is processed first)."""
    x = Tensor([4.0, 1.0], requires_grad=True, dtype=np.float64)
    with detect_anomaly():
        a, b = (x * 1.0).split(1)  # ANOMALY-SPLIT
        with pytest.raises(RuntimeError) as info:
            autograd.grad([a, b], [x], grad_outputs=[np.array([np.nan]), np.array([1.0])])
    message = str(info.value)
    assert "the backward of 'split' produced NaN in the gradient of its input 0" in message
    assert "(shape (2,))" in message
    assert f"test_anomaly.py:{_line_of('ANOMALY-SPLIT')}" in message
