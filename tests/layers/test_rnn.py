"""Tests for rnncap.layers.rnn: values against a plain-Python formula, the sequence
against a loop of steps, every backward against float64 finite differences."""

import math

import numpy as np
import pytest

from rnncap.gradcheck import numerical_input_gradients, rel_error
from rnncap.layers import (
    rnn_backward,
    rnn_forward,
    rnn_step_backward,
    rnn_step_forward,
)


def _params(rng, N=3, T=5, D=4, H=6, dtype=np.float64):
    x = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    Wx = rng.standard_normal((D, H)) / math.sqrt(D)
    Wh = rng.standard_normal((H, H)) / math.sqrt(H)
    b = rng.standard_normal(H) * 0.1
    return [a.astype(dtype) for a in (x, h0, Wx, Wh, b)]


def test_step_forward_matches_plain_python():
    rng = np.random.default_rng(0)
    x, h, Wx, Wh, b = _params(rng)
    x = x[:, 0]
    next_h, _ = rnn_step_forward(x, h, Wx, Wh, b)
    for n in range(x.shape[0]):
        for j in range(h.shape[1]):
            a = sum(x[n, d] * Wx[d, j] for d in range(x.shape[1]))
            a += sum(h[n, k] * Wh[k, j] for k in range(h.shape[1])) + b[j]
            assert abs(next_h[n, j] - math.tanh(a)) < 1e-12


def test_step_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, h, Wx, Wh, b = _params(rng)
    args = [x[:, 0], h, Wx, Wh, b]
    next_h, cache = rnn_step_forward(*args)
    dnext_h = rng.standard_normal(next_h.shape)
    grads = rnn_step_backward(dnext_h, cache)
    nums = numerical_input_gradients(rnn_step_forward, args, [dnext_h])
    for name, got, num in zip(["dx", "dprev_h", "dWx", "dWh", "db"], grads, nums):
        err = rel_error(got, num)
        assert err <= 1e-7, (name, err)


def test_sequence_forward_equals_loop_of_steps():
    rng = np.random.default_rng(2)
    x, h0, Wx, Wh, b = _params(rng)
    h, _ = rnn_forward(x, h0, Wx, Wh, b)
    prev = h0
    for t in range(x.shape[1]):
        prev, _ = rnn_step_forward(x[:, t], prev, Wx, Wh, b)
        np.testing.assert_allclose(h[:, t], prev, rtol=1e-12, atol=1e-12)


def test_sequence_backward_equals_loop_of_step_backwards():
    rng = np.random.default_rng(3)
    x, h0, Wx, Wh, b = _params(rng)
    h, cache = rnn_forward(x, h0, Wx, Wh, b)
    dh = rng.standard_normal(h.shape)
    dx, dh0, dWx, dWh, db = rnn_backward(dh, cache)
    caches, prev = [], h0
    for t in range(x.shape[1]):
        prev, c = rnn_step_forward(x[:, t], prev, Wx, Wh, b)
        caches.append(c)
    ref = [np.zeros_like(dx), None, np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
    dprev = np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        dxt, dprev, dWxt, dWht, dbt = rnn_step_backward(dh[:, t] + dprev, caches[t])
        ref[0][:, t] = dxt
        ref[2] += dWxt
        ref[3] += dWht
        ref[4] += dbt
    ref[1] = dprev
    for got, want in zip([dx, dh0, dWx, dWh, db], ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_sequence_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    args = _params(rng, N=2, T=4, D=3, H=5)
    h, cache = rnn_forward(*args)
    dh = rng.standard_normal(h.shape)
    grads = rnn_backward(dh, cache)
    nums = numerical_input_gradients(rnn_forward, args, [dh])
    for name, got, num in zip(["dx", "dh0", "dWx", "dWh", "db"], grads, nums):
        err = rel_error(got, num)
        assert err <= 5e-8, (name, err)  # measured: 5.9e-10; a margin of about 60x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    rng = np.random.default_rng(5)
    args = _params(rng, dtype=dtype)
    h, cache = rnn_forward(*args)
    assert h.dtype == dtype
    assert all(g.dtype == dtype for g in rnn_backward(np.ones_like(h), cache))
    next_h, step_cache = rnn_step_forward(args[0][:, 0], *args[1:])
    assert next_h.dtype == dtype
    assert all(g.dtype == dtype for g in rnn_step_backward(np.ones_like(next_h), step_cache))
