"""rnncap.fast.rnn against the reference path (rnncap.layers.rnn), float64."""

import numpy as np

from rnncap.fast import rnn_cell, rnn_packed_backward, rnn_packed_forward
from rnncap.layers import rnn_backward, rnn_forward, rnn_step_forward

from ._reference import batch_major, time_major


def test_cell_equals_the_reference_step():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 6))
    want, _ = rnn_step_forward(a, np.zeros((4, 6)), np.eye(6), np.zeros((6, 6)), np.zeros(6))
    got = rnn_cell(a.copy())
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_packed_recurrence_equals_reference_sequence():
    """On a full batch (every row alive at every step) the packed recurrence is
    rnn_forward/rnn_backward with the input projection done beforehand (Wx = I, b = 0)."""
    rng = np.random.default_rng(1)
    N, T, H = 3, 5, 4
    a_x = rng.standard_normal((N, T, H))
    h0 = rng.standard_normal((N, H))
    Wh = rng.standard_normal((H, H)) / 2
    dh = rng.standard_normal((N, T, H))
    h_ref, cache = rnn_forward(a_x, h0, np.eye(H), Wh, np.zeros(H))
    da_ref, dh0_ref, _, dWh_ref, _ = rnn_backward(dh, cache)
    h, fast_cache = rnn_packed_forward(time_major(a_x), h0, Wh, np.full(T, N))
    da_x, dh0, dWh = rnn_packed_backward(time_major(dh), fast_cache)
    np.testing.assert_allclose(batch_major(h, N, T), h_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(batch_major(da_x, N, T), da_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dh0, dh0_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dWh, dWh_ref, rtol=1e-12, atol=1e-14)
