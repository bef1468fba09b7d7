"""Tests for rnncap.layers.lstm: the stable sigmoid, values against a plain-Python
formula, the sequence against a loop of steps, every backward against float64 finite
differences."""

import math

import numpy as np
import pytest

from rnncap.gradcheck import numerical_input_gradients, rel_error
from rnncap.layers import (
    lstm_backward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    sigmoid,
)


def _params(rng, N=3, T=5, D=4, H=6, dtype=np.float64):
    x = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    Wx = rng.standard_normal((D, 4 * H)) / math.sqrt(D)
    Wh = rng.standard_normal((H, 4 * H)) / math.sqrt(H)
    b = rng.standard_normal(4 * H) * 0.1
    return [a.astype(dtype) for a in (x, h0, Wx, Wh, b)]


def _py_sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_huge_inputs(dtype):
    x = np.array([-1e30, -1000.0, -30.0, 0.0, 30.0, 1000.0, 1e30], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(x)
    assert s.dtype == dtype
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    np.testing.assert_allclose(s[2], math.exp(-30) / (1 + math.exp(-30)), rtol=1e-6)
    np.testing.assert_allclose(s[4], 1 / (1 + math.exp(-30)), rtol=1e-6)


def test_sigmoid_matches_formula():
    x = np.linspace(-20, 20, 81)
    np.testing.assert_allclose(sigmoid(x), [_py_sigmoid(v) for v in x], rtol=1e-14)


def test_step_forward_matches_plain_python():
    rng = np.random.default_rng(0)
    x, h, Wx, Wh, b = _params(rng)
    x = x[:, 0]
    c = rng.standard_normal(h.shape)
    next_h, next_c, _ = lstm_step_forward(x, h, c, Wx, Wh, b)
    H = h.shape[1]
    for n in range(x.shape[0]):
        a = [
            sum(x[n, d] * Wx[d, j] for d in range(x.shape[1])) + sum(h[n, k] * Wh[k, j] for k in range(H)) + b[j]
            for j in range(4 * H)
        ]
        for j in range(H):
            i, f, o, g = _py_sigmoid(a[j]), _py_sigmoid(a[H + j]), _py_sigmoid(a[2 * H + j]), math.tanh(a[3 * H + j])
            cj = f * c[n, j] + i * g
            assert abs(next_c[n, j] - cj) < 1e-12
            assert abs(next_h[n, j] - o * math.tanh(cj)) < 1e-12


def test_step_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, h, Wx, Wh, b = _params(rng)
    c = rng.standard_normal(h.shape)
    args = [x[:, 0], h, c, Wx, Wh, b]
    next_h, next_c, cache = lstm_step_forward(*args)
    dnext_h = rng.standard_normal(next_h.shape)
    dnext_c = rng.standard_normal(next_c.shape)
    grads = lstm_step_backward(dnext_h, dnext_c, cache)
    nums = numerical_input_gradients(lstm_step_forward, args, [dnext_h, dnext_c])
    for name, got, num in zip(["dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"], grads, nums):
        err = rel_error(got, num)
        assert err <= 1e-7, (name, err)


def test_sequence_forward_equals_loop_of_steps_from_zero_cell():
    rng = np.random.default_rng(2)
    x, h0, Wx, Wh, b = _params(rng)
    h, _ = lstm_forward(x, h0, Wx, Wh, b)
    prev_h, prev_c = h0, np.zeros_like(h0)
    for t in range(x.shape[1]):
        prev_h, prev_c, _ = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        np.testing.assert_allclose(h[:, t], prev_h, rtol=1e-12, atol=1e-12)


def test_sequence_backward_equals_loop_of_step_backwards():
    rng = np.random.default_rng(3)
    x, h0, Wx, Wh, b = _params(rng)
    h, cache = lstm_forward(x, h0, Wx, Wh, b)
    dh = rng.standard_normal(h.shape)
    dx, dh0, dWx, dWh, db = lstm_backward(dh, cache)
    caches, prev_h, prev_c = [], h0, np.zeros_like(h0)
    for t in range(x.shape[1]):
        prev_h, prev_c, c = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        caches.append(c)
    ref_dx, ref_dWx, ref_dWh, ref_db = np.zeros_like(dx), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dprev_h, dprev_c = np.zeros_like(h0), np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        dxt, dprev_h, dprev_c, dWxt, dWht, dbt = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, caches[t])
        ref_dx[:, t] = dxt
        ref_dWx += dWxt
        ref_dWh += dWht
        ref_db += dbt
    for got, want in zip([dx, dh0, dWx, dWh, db], [ref_dx, dprev_h, ref_dWx, ref_dWh, ref_db]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_sequence_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    args = _params(rng, N=2, T=4, D=3, H=5)
    h, cache = lstm_forward(*args)
    dh = rng.standard_normal(h.shape)
    grads = lstm_backward(dh, cache)
    nums = numerical_input_gradients(lstm_forward, args, [dh])
    for name, got, num in zip(["dx", "dh0", "dWx", "dWh", "db"], grads, nums):
        err = rel_error(got, num)
        assert err <= 1e-6, (name, err)  # measured: 1.6e-8; a margin of about 60x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    rng = np.random.default_rng(5)
    args = _params(rng, dtype=dtype)
    h, cache = lstm_forward(*args)
    assert h.dtype == dtype
    assert all(g.dtype == dtype for g in lstm_backward(np.ones_like(h), cache))
    x0, h0 = args[0][:, 0], args[1]
    next_h, next_c, step_cache = lstm_step_forward(x0, h0, np.zeros_like(h0), *args[2:])
    assert next_h.dtype == dtype and next_c.dtype == dtype
    assert all(g.dtype == dtype for g in lstm_step_backward(np.ones_like(next_h), np.ones_like(next_c), step_cache))
