"""Tests for rnncap.gradcheck against functions whose gradients are known in closed form."""

import numpy as np
import pytest

from rnncap.gradcheck import (eval_numerical_gradient, eval_numerical_gradient_array,
                              numerical_input_gradients, rel_error)


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


def test_input_gradients_of_a_two_output_layer():
    """forward(x, w) -> (x * w, sin(x), cache): d/dx of <x w, d1> + <sin x, d2> is
    w d1 + cos(x) d2, and d/dw is x d1."""
    rng = np.random.default_rng(2)
    x, w, d1, d2 = (rng.standard_normal(4) for _ in range(4))
    before = [x.copy(), w.copy()]
    gx, gw = numerical_input_gradients(lambda a, b: (a * b, np.sin(a), None), [x, w], [d1, d2])
    np.testing.assert_allclose(gx, w * d1 + np.cos(x) * d2, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gw, x * d1, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])
    # only the outputs given an upstream gradient count
    (gx1,) = numerical_input_gradients(lambda a: (np.sin(a), a * 1e6, None), [x], [d2])
    np.testing.assert_allclose(gx1, np.cos(x) * d2, rtol=1e-8, atol=1e-10)


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
