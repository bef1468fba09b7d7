"""Tests for rnncap.layers.affine: values against explicit sums, gradients against
float64 finite differences."""

import numpy as np
import pytest

from rnncap.gradcheck import eval_numerical_gradient_array, rel_error
from rnncap.layers import (
    affine_backward,
    affine_forward,
    temporal_affine_backward,
    temporal_affine_forward,
)


def test_affine_forward_matches_explicit_sum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 2))  # trailing dims flatten to D = 4
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(5)
    out, _ = affine_forward(x, w, b)
    expected = np.zeros((3, 5))
    for n in range(3):
        flat = x[n].ravel()
        for m in range(5):
            expected[n, m] = sum(flat[d] * w[d, m] for d in range(4)) + b[m]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_affine_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 2))
    w = rng.standard_normal((6, 5))
    b = rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    assert dx.shape == x.shape
    assert rel_error(dx, eval_numerical_gradient_array(lambda a: affine_forward(a, w, b)[0], x, dout)) < 1e-7
    assert rel_error(dw, eval_numerical_gradient_array(lambda a: affine_forward(x, a, b)[0], w, dout)) < 1e-7
    assert rel_error(db, eval_numerical_gradient_array(lambda a: affine_forward(x, w, a)[0], b, dout)) < 1e-7


def test_temporal_affine_forward_equals_affine_at_every_step():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5))
    w = rng.standard_normal((5, 6))
    b = rng.standard_normal(6)
    out, _ = temporal_affine_forward(x, w, b)
    assert out.shape == (3, 4, 6)
    for t in range(4):
        np.testing.assert_allclose(out[:, t], affine_forward(x[:, t], w, b)[0], rtol=1e-12, atol=1e-12)


def test_temporal_affine_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(5)
    dout = rng.standard_normal((2, 3, 5))
    _, cache = temporal_affine_forward(x, w, b)
    dx, dw, db = temporal_affine_backward(dout, cache)
    f = temporal_affine_forward
    assert rel_error(dx, eval_numerical_gradient_array(lambda a: f(a, w, b)[0], x, dout)) < 1e-7
    assert rel_error(dw, eval_numerical_gradient_array(lambda a: f(x, a, b)[0], w, dout)) < 1e-7
    assert rel_error(db, eval_numerical_gradient_array(lambda a: f(x, w, a)[0], b, dout)) < 1e-7


@pytest.mark.parametrize("temporal", [False, True])
def test_float32_stays_float32(temporal):
    rng = np.random.default_rng(4)
    shape = (2, 3, 4) if temporal else (2, 4)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = np.zeros(5, np.float32)
    fwd, bwd = (temporal_affine_forward, temporal_affine_backward) if temporal else (affine_forward, affine_backward)
    out, cache = fwd(x, w, b)
    grads = bwd(np.ones_like(out), cache)
    assert out.dtype == np.float32
    assert [g.dtype for g in grads] == [np.float32] * 3
