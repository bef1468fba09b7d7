"""Tests for rnncap.optim: updates against hand-computed steps, CS231n defaults, dtype
and state handling, convergence on a quadratic, and global-norm clipping."""

import math

import numpy as np
import pytest

from rnncap import optim


def test_sgd_step():
    w = np.array([1.0, -2.0])
    next_w, config = optim.sgd(w, np.array([0.5, 4.0]), {"learning_rate": 0.1})
    np.testing.assert_allclose(next_w, [0.95, -2.4], rtol=1e-15)
    np.testing.assert_array_equal(w, [1.0, -2.0])  # not modified in place


def test_sgd_momentum_two_steps_by_hand():
    w, config = np.array([1.0]), {"learning_rate": 0.1, "momentum": 0.5}
    w, config = optim.sgd_momentum(w, np.array([2.0]), config)  # v = -0.2
    w, config = optim.sgd_momentum(w, np.array([1.0]), config)  # v = -0.1 - 0.1 = -0.2
    np.testing.assert_allclose(w, [0.6], rtol=1e-15)
    np.testing.assert_allclose(config["velocity"], [-0.2], rtol=1e-15)


def test_rmsprop_two_steps_by_hand():
    w, config = np.array([1.0]), {"learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 0.0}
    w, config = optim.rmsprop(w, np.array([2.0]), config)  # cache 0.4, step 0.01 * 2 / sqrt(0.4)
    w, config = optim.rmsprop(w, np.array([1.0]), config)  # cache 0.36 + 0.1
    expected = 1.0 - 0.01 * 2 / math.sqrt(0.4) - 0.01 * 1 / math.sqrt(0.46)
    np.testing.assert_allclose(w, [expected], rtol=1e-14)


def test_adam_two_steps_by_hand():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    w, config = np.array([1.0, 1.0]), {"learning_rate": lr}
    g1, g2 = np.array([3.0, -0.001]), np.array([1.0, 0.002])
    w, config = optim.adam(w, g1, config)
    np.testing.assert_allclose(w, 1 - lr * g1 / (np.abs(g1) + eps), rtol=1e-14)  # first step ~ lr * sign
    w, config = optim.adam(w, g2, config)
    for j in range(2):
        m = b1 * (1 - b1) * g1[j] + (1 - b1) * g2[j]
        v = b2 * (1 - b2) * g1[j] ** 2 + (1 - b2) * g2[j] ** 2
        step1 = lr * g1[j] / (abs(g1[j]) + eps)
        step2 = lr * (m / (1 - b1**2)) / (math.sqrt(v / (1 - b2**2)) + eps)
        assert abs(w[j] - (1 - step1 - step2)) < 1e-14
    assert config["t"] == 2 and isinstance(config["t"], int)


def test_cs231n_defaults():
    w, dw = np.zeros(2), np.ones(2)
    assert optim.sgd(w, dw)[1] == {"learning_rate": 1e-2}
    c = optim.sgd_momentum(w, dw)[1]
    assert (c["learning_rate"], c["momentum"]) == (1e-2, 0.9)
    c = optim.rmsprop(w, dw)[1]
    assert (c["learning_rate"], c["decay_rate"], c["epsilon"]) == (1e-2, 0.99, 1e-8)
    c = optim.adam(w, dw)[1]
    assert (c["learning_rate"], c["beta1"], c["beta2"], c["epsilon"], c["t"]) == (1e-3, 0.9, 0.999, 1e-8, 1)


@pytest.mark.parametrize("rule", optim.UPDATE_RULES)
def test_float32_stays_float32_even_with_numpy_scalar_hyperparameters(rule):
    w = np.ones((3, 2), np.float32)
    dw = np.full((3, 2), 0.5, np.float32)
    config = {"learning_rate": np.float64(1e-2)}
    for _ in range(2):
        w, config = getattr(optim, rule)(w, dw, config)
    assert w.dtype == np.float32
    for key, value in config.items():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32, key
        else:
            assert isinstance(value, (int, float, np.floating)), key


@pytest.mark.parametrize("rule,lr", [("sgd", 0.1), ("sgd_momentum", 0.05), ("rmsprop", 0.01), ("adam", 0.05)])
def test_every_rule_minimises_a_quadratic(rule, lr):
    rng = np.random.default_rng(0)
    target = rng.standard_normal(10)
    w, config = np.zeros(10), {"learning_rate": lr}
    for _ in range(1000):
        w, config = getattr(optim, rule)(w, 2 * (w - target), config)
    assert np.abs(w - target).max() < 0.02


def test_clip_grad_norm_scales_to_max_norm_in_place():
    grads = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([[4.0]], np.float32)}
    a = grads["a"]
    total = optim.clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(5.0)
    assert grads["a"] is a and a.dtype == np.float32
    np.testing.assert_allclose(a, [0.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(grads["b"], [[0.8]], rtol=1e-5)


def test_clip_grad_norm_leaves_small_or_nonfinite_gradients_alone():
    grads = {"a": np.array([0.3, 0.4])}
    assert optim.clip_grad_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], [0.3, 0.4])
    bad = {"a": np.array([np.inf, 1.0])}
    assert math.isinf(optim.clip_grad_norm(bad, 1.0))
    np.testing.assert_array_equal(bad["a"], [np.inf, 1.0])
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        optim.clip_grad_norm(grads, 0)
