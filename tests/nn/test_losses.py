"""Loss modules: values derived by hand, options passed through, gradients by finite
differences (float64)."""

import math

import numpy as np
import pytest

import autograd
import nn
from autograd import Tensor

LOGITS = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
TARGET = np.array([0, 2])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_cross_entropy_loss_values_and_reductions():
    per_sample = -_log_softmax(LOGITS)[[0, 1], TARGET]
    # by hand for the first row: log(e^2 + 1 + e^-1) - 2
    assert per_sample[0] == pytest.approx(math.log(math.e**2 + 1 + math.exp(-1)) - 2)
    logits = Tensor(LOGITS)
    mean = nn.CrossEntropyLoss()(logits, TARGET)
    assert mean.item() == pytest.approx(per_sample.mean(), rel=1e-6)
    total = nn.CrossEntropyLoss("sum")(logits, TARGET)
    assert total.item() == pytest.approx(per_sample.sum(), rel=1e-6)
    none = nn.CrossEntropyLoss(reduction="none")(logits, Tensor(TARGET))
    np.testing.assert_allclose(none.data, per_sample, rtol=1e-6)
    assert none.dtype == np.float32


def test_cross_entropy_label_smoothing():
    eps = 0.2
    q = np.full((2, 3), eps / 3)
    q[[0, 1], TARGET] += 1 - eps
    expected = -(q * _log_softmax(LOGITS)).sum(axis=1).mean()
    loss = nn.CrossEntropyLoss(label_smoothing=eps)(Tensor(LOGITS), TARGET)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_n():
    logits = Tensor(LOGITS, requires_grad=True)
    nn.CrossEntropyLoss()(logits, TARGET).backward()
    expected = np.exp(_log_softmax(LOGITS))
    expected[[0, 1], TARGET] -= 1
    np.testing.assert_allclose(logits.grad, expected / 2, rtol=1e-5, atol=1e-7)


def test_nll_loss_picks_the_target_log_probabilities():
    log_probs = Tensor(_log_softmax(LOGITS))
    assert nn.NLLLoss()(log_probs, TARGET).item() == pytest.approx(
        -(log_probs.data[0, 0] + log_probs.data[1, 2]) / 2, rel=1e-6
    )
    np.testing.assert_allclose(
        nn.NLLLoss(reduction="none")(log_probs, TARGET).data,
        [-log_probs.data[0, 0], -log_probs.data[1, 2]],
    )


def test_mse_loss():
    a, b = Tensor([[1.0, 2.0], [3.0, 4.0]]), Tensor([[0.0, 2.0], [5.0, 1.0]])
    assert nn.MSELoss()(a, b).item() == pytest.approx((1 + 0 + 4 + 9) / 4)
    assert nn.MSELoss(reduction="sum")(a, b).item() == pytest.approx(14.0)
    np.testing.assert_allclose(nn.MSELoss(reduction="none")(a, b).data, [[1, 0], [4, 9]])


def test_bce_with_logits_loss_is_stable_and_correct():
    x = Tensor([0.0, 2.0, -3.0, 1000.0, -1000.0])
    t = Tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    # -[t log s(x) + (1-t) log(1-s(x))]: log 2, softplus(2), softplus(3), 0, 0
    expected = [math.log(2), math.log1p(math.exp(2)), math.log1p(math.exp(3)), 0.0, 0.0]
    loss = nn.BCEWithLogitsLoss(reduction="none")(x, t)
    np.testing.assert_allclose(loss.data, expected, rtol=1e-6, atol=1e-7)
    assert np.isfinite(nn.BCEWithLogitsLoss()(x, t).item())


@pytest.mark.parametrize(
    ("loss", "make_target"),
    [
        (nn.CrossEntropyLoss(), lambda: TARGET),
        (nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1), lambda: TARGET),
        (nn.NLLLoss(reduction="sum"), lambda: TARGET),
        (nn.MSELoss(), lambda: Tensor(np.ones((2, 3)))),
        (nn.BCEWithLogitsLoss(), lambda: Tensor(np.array([[1.0, 0, 0.5], [0, 1, 1]]))),
    ],
    ids=lambda v: type(v).__name__,
)
def test_loss_gradcheck(loss, make_target):
    target = make_target()
    assert autograd.gradcheck(lambda z: loss(z, target), [Tensor(LOGITS, requires_grad=True)])


def test_invalid_reduction_and_targets_are_clear_errors():
    with pytest.raises(ValueError, match="'avg'"):
        nn.MSELoss(reduction="avg")
    with pytest.raises((IndexError, ValueError), match="3"):
        nn.CrossEntropyLoss()(Tensor(LOGITS), np.array([0, 3]))


def test_loss_reprs():
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.CrossEntropyLoss("sum", 0.1)) == (
        "CrossEntropyLoss(reduction='sum', label_smoothing=0.1)"
    )
    assert repr(nn.MSELoss(reduction="none")) == "MSELoss(reduction='none')"
