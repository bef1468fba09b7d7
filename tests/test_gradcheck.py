"""Tests for rnncap.gradcheck against functions whose gradients are known in closed form."""

import numpy as np
import pytest

from rnncap.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, rel_error


def test_numerical_gradient_of_cubic():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    before = x.copy()
    grad = eval_numerical_gradient(lambda a: np.sum(a**3), x, verbose=False)
    np.testing.assert_allclose(grad, 3 * before**2, rtol=1e-8, atol=1e-9)
    np.testing.assert_array_equal(x, before)  # restored exactly


def test_numerical_gradient_array_of_elementwise_product():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5)
    w = rng.standard_normal(5)
    df = rng.standard_normal(5)
    grad = eval_numerical_gradient_array(lambda a: np.sin(a) * w, x, df)
    np.testing.assert_allclose(grad, np.cos(x) * w * df, rtol=1e-8, atol=1e-10)


def test_verbose_prints_each_index(capsys):
    eval_numerical_gradient(lambda a: float(a.sum()), np.zeros(2), verbose=True)
    assert capsys.readouterr().out.count("(") == 2


def test_rel_error_values():
    assert rel_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 2.1, rel=1e-12)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="floating-point"):
        eval_numerical_gradient(lambda a: 0.0, np.arange(3), verbose=False)
    with pytest.raises(ValueError, match="same shape"):
        rel_error(np.zeros(2), np.zeros(3))
