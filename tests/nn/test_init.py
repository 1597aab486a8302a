"""nn.init: PyTorch's formulas for bounds and standard deviations, in place, dtype kept."""

import math

import numpy as np
import pytest

import autograd
from nn import Parameter, init


def _weight(*shape: int) -> Parameter:
    return Parameter(np.zeros(shape, dtype=np.float32))


def test_calculate_gain_matches_pytorch_table():
    assert init.calculate_gain("linear") == 1
    assert init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="swish"):
        init.calculate_gain("swish")


def test_fans_of_linear_and_conv_weights():
    assert init.calculate_fan_in_and_fan_out(_weight(10, 100)) == (100, 10)
    assert init.calculate_fan_in_and_fan_out(_weight(32, 3, 5, 5)) == (75, 800)
    with pytest.raises(ValueError, match=r"\(7,\)"):
        init.calculate_fan_in_and_fan_out(_weight(7))


def test_init_is_in_place_and_keeps_dtype_and_array():
    w = _weight(20, 30)
    array = w.data
    assert init.kaiming_uniform_(w) is w
    assert w.data is array and w.dtype == np.float32 and np.any(array != 0)
    init.zeros_(w)
    assert np.all(array == 0)
    init.ones_(w)
    assert np.all(array == 1)
    init.constant_(w, 0.25)
    assert np.all(array == np.float32(0.25))


def test_kaiming_uniform_bound_with_pytorch_linear_slope():
    # a = sqrt(5): gain sqrt(2 / 6), bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
    w = _weight(200, 100)
    init.kaiming_uniform_(w, a=math.sqrt(5), rng=np.random.default_rng(0))
    assert np.abs(w.data).max() <= 0.1
    assert np.abs(w.data).max() > 0.099  # fills the interval
    assert w.data.std() == pytest.approx(0.1 / math.sqrt(3), rel=0.03)
    assert abs(w.data.mean()) < 0.003


def test_kaiming_uniform_relu_and_fan_out():
    w = _weight(50, 200)
    init.kaiming_uniform_(w, mode="fan_out", nonlinearity="relu", rng=np.random.default_rng(1))
    bound = math.sqrt(2) * math.sqrt(3 / 50)
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform_(w, mode="fan_avg")


def test_kaiming_normal_std():
    w = _weight(64, 3, 7, 7)  # fan_in 147
    init.kaiming_normal_(w, nonlinearity="relu", rng=np.random.default_rng(2))
    assert w.data.std() == pytest.approx(math.sqrt(2 / 147), rel=0.03)


def test_xavier_uniform_and_normal():
    w = _weight(300, 100)
    init.xavier_uniform_(w, gain=2.0, rng=np.random.default_rng(3))
    bound = 2.0 * math.sqrt(6 / 400)
    assert np.abs(w.data).max() <= bound and np.abs(w.data).max() > 0.99 * bound
    init.xavier_normal_(w, rng=np.random.default_rng(4))
    assert w.data.std() == pytest.approx(math.sqrt(2 / 400), rel=0.03)


def test_normal_and_uniform_parameters():
    w = _weight(100, 100)
    init.normal_(w, mean=3.0, std=0.5, rng=np.random.default_rng(5))
    assert w.data.mean() == pytest.approx(3.0, abs=0.02)
    assert w.data.std() == pytest.approx(0.5, rel=0.03)
    init.uniform_(w, -2.0, -1.0, rng=np.random.default_rng(6))
    assert w.data.min() >= -2.0 and w.data.max() <= -1.0
    assert w.data.mean() == pytest.approx(-1.5, abs=0.01)


def test_global_generator_is_used_and_seedable():
    a, b = _weight(4, 5), _weight(4, 5)
    autograd.manual_seed(123)
    init.kaiming_uniform_(a)
    autograd.manual_seed(123)
    init.kaiming_uniform_(b)
    np.testing.assert_array_equal(a.data, b.data)
    init.kaiming_uniform_(b)
    assert not np.array_equal(a.data, b.data)


def test_float64_tensors_stay_float64():
    w = Parameter(np.zeros((3, 4)))
    w.data = w.data.astype(np.float64)
    init.xavier_uniform_(w)
    assert w.dtype == np.float64
