"""rnncap.fast.lstm against the reference path (rnncap.layers.lstm), float64."""

import numpy as np

from rnncap.fast import lstm_cell, lstm_packed_backward, lstm_packed_forward
from rnncap.layers import lstm_backward, lstm_forward, lstm_step_forward

from ._reference import batch_major, time_major


def test_cell_equals_the_reference_step_including_huge_inputs():
    rng = np.random.default_rng(0)
    n, H = 5, 3
    a = rng.standard_normal((n, 4 * H)) * 3
    a[0] = [-800, 800, -30, 30, 0, 1e30, -1e30, 5, -5, 20, -20, 700]  # saturating gates
    prev_c = rng.standard_normal((n, H))
    want_h, want_c, _ = lstm_step_forward(a, np.zeros((n, H)), prev_c, np.eye(4 * H),
                                          np.zeros((H, 4 * H)), np.zeros(4 * H))
    h, c, tanh_c = (np.empty((n, H)) for _ in range(3))
    with np.errstate(over="raise", invalid="raise"):
        lstm_cell(a.copy(), prev_c, h, c, tanh_c, scratch=tanh_c)
    np.testing.assert_allclose(h, want_h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(c, want_c, rtol=1e-13, atol=1e-15)


def test_packed_recurrence_equals_reference_sequence():
    """On a full batch the packed recurrence is lstm_forward/lstm_backward with the input
    projection done beforehand (Wx = I, b = 0), from c0 = 0."""
    rng = np.random.default_rng(1)
    N, T, H = 3, 5, 4
    a_x = rng.standard_normal((N, T, 4 * H))
    h0 = rng.standard_normal((N, H))
    Wh = rng.standard_normal((H, 4 * H)) / 2
    dh = rng.standard_normal((N, T, H))
    h_ref, cache = lstm_forward(a_x, h0, np.eye(4 * H), Wh, np.zeros(4 * H))
    da_ref, dh0_ref, _, dWh_ref, _ = lstm_backward(dh, cache)
    h, fast_cache = lstm_packed_forward(time_major(a_x), h0, Wh, np.full(T, N))
    da_x, dh0, dWh = lstm_packed_backward(time_major(dh), fast_cache)
    np.testing.assert_allclose(batch_major(h, N, T), h_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(batch_major(da_x, N, T), da_ref, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(dh0, dh0_ref, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(dWh, dWh_ref, rtol=1e-11, atol=1e-14)
