"""Tests for rnncap.fast.packing and the packed recurrences built on it: the layout
against hand-written values, gathers against plain loops, the packed RNN/LSTM against
each row run alone through the CS231n step functions (the reference path), and their
backward passes against float64 finite differences."""

import numpy as np
import pytest

from rnncap.gradcheck import numerical_input_gradients, rel_error
from rnncap.fast import (
    add_to_every_step,
    lstm_packed_backward,
    lstm_packed_forward,
    pack,
    pack_layout,
    rnn_packed_backward,
    rnn_packed_forward,
    sum_over_steps,
    unsort_rows,
)
from rnncap.layers import lstm_step_forward, rnn_step_forward

# Row lengths 2, 4, 0, 3, 4 (row 3 has a masked position before its last target).
MASK = np.array([
    [1, 1, 0, 0, 0],
    [1, 1, 1, 1, 0],
    [0, 0, 0, 0, 0],
    [1, 0, 1, 0, 0],
    [1, 1, 1, 1, 0],
], dtype=bool)

# The finite-difference check below measured largest relative errors of 8.5e-10 (rnn)
# and 8.9e-8 (lstm) (float64, h = 1e-5); the thresholds leave a margin of about 60x.
PACKED_GRAD_TOL = {"rnn": 5e-8, "lstm": 5e-6}


def test_layout_by_hand():
    lay = pack_layout(MASK)
    np.testing.assert_array_equal(lay.lengths, [2, 4, 0, 3, 4])
    np.testing.assert_array_equal(lay.order, [1, 4, 3, 0, 2])  # longest first, stable
    np.testing.assert_array_equal(lay.batch_sizes, [4, 4, 3, 2])
    np.testing.assert_array_equal(lay.offsets, [0, 4, 8, 11, 13])
    assert lay.size == 13


def test_all_masked_gives_an_empty_layout():
    lay = pack_layout(np.zeros((3, 4), dtype=bool))
    assert lay.size == 0 and len(lay.batch_sizes) == 0
    assert pack(np.ones((3, 4, 2)), lay).shape == (0, 2)


def test_pack_and_per_row_helpers_match_loops():
    rng = np.random.default_rng(0)
    lay = pack_layout(MASK)
    a = rng.standard_normal((5, 5, 3))
    packed = pack(a, lay)
    want = [a[n, t] for t in range(5) for n in lay.order if lay.lengths[n] > t]
    np.testing.assert_array_equal(packed, want)

    per_row = rng.standard_normal((5, 3))  # sorted order
    out = packed.copy()
    add_to_every_step(out, per_row, lay)
    rank = {n: i for i, n in enumerate(lay.order)}
    want = [a[n, t] + per_row[rank[n]] for t in range(5) for n in lay.order if lay.lengths[n] > t]
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-15)

    sums = sum_over_steps(packed, lay, 5)
    want = np.array([a[n, :lay.lengths[n]].sum(axis=0) for n in lay.order])
    np.testing.assert_allclose(sums, want, rtol=1e-14, atol=1e-15)

    np.testing.assert_array_equal(unsort_rows(per_row, lay)[lay.order], per_row)


def _setup(rng, gates, H=4, D=3):
    lay = pack_layout(MASK)
    G = gates * H
    a_x = rng.standard_normal((lay.size, G))
    h0 = rng.standard_normal((5, H))
    Wh = rng.standard_normal((H, G)) / 2
    return lay, a_x, h0, Wh


def _row_by_row(cell, lay, a_x, h0, Wh):
    """Each sorted row alone, through the CS231n step function (x = a_x, Wx = I, b = 0)."""
    H, G = Wh.shape
    out = np.zeros((lay.size, H))
    for i, n in enumerate(lay.order):
        h, c = h0[i:i + 1], np.zeros((1, H))
        for t in range(lay.lengths[n]):
            row = lay.offsets[t] + i
            x = a_x[row:row + 1]
            if cell == "rnn":
                h, _ = rnn_step_forward(x, h, np.eye(G), Wh, np.zeros(G))
            else:
                h, c, _ = lstm_step_forward(x, h, c, np.eye(G), Wh, np.zeros(G))
            out[row] = h[0]
    return out


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_packed_forward_equals_each_row_alone(cell):
    rng = np.random.default_rng(1)
    lay, a_x, h0, Wh = _setup(rng, 1 if cell == "rnn" else 4)
    forward = rnn_packed_forward if cell == "rnn" else lstm_packed_forward
    before = a_x.copy()
    h, _ = forward(a_x, h0, Wh, lay.batch_sizes)
    np.testing.assert_array_equal(a_x, before)  # input not modified
    np.testing.assert_allclose(h, _row_by_row(cell, lay, a_x, h0, Wh), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_packed_backward_matches_finite_differences(cell):
    rng = np.random.default_rng(2)
    lay, a_x, h0, Wh = _setup(rng, 1 if cell == "rnn" else 4)
    forward = rnn_packed_forward if cell == "rnn" else lstm_packed_forward
    backward = rnn_packed_backward if cell == "rnn" else lstm_packed_backward
    h, cache = forward(a_x, h0, Wh, lay.batch_sizes)
    dh = rng.standard_normal(h.shape)
    before = dh.copy()
    da_x, dh0, dWh = backward(dh, cache)
    np.testing.assert_array_equal(dh, before)  # upstream gradient not modified
    nums = numerical_input_gradients(lambda *a: forward(*a, lay.batch_sizes), [a_x, h0, Wh], [dh])
    for name, got, num in zip(["da_x", "dh0", "dWh"], [da_x, dh0, dWh], nums):
        err = rel_error(got, num)
        assert err <= PACKED_GRAD_TOL[cell], (name, err)
    assert not dh0[lay.batch_sizes[0]:].any()  # the row of length 0 gets no gradient


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_empty_layout_runs_and_gives_zero_gradients(cell):
    gates = 1 if cell == "rnn" else 4
    forward = rnn_packed_forward if cell == "rnn" else lstm_packed_forward
    backward = rnn_packed_backward if cell == "rnn" else lstm_packed_backward
    Wh = np.ones((3, 3 * gates))
    h, cache = forward(np.zeros((0, 3 * gates)), np.ones((2, 3)), Wh, np.zeros(0, dtype=int))
    da_x, dh0, dWh = backward(np.zeros((0, 3)), cache)
    assert h.shape == (0, 3) and da_x.shape == (0, 3 * gates)
    assert not dh0.any() and not dWh.any() and dWh.shape == Wh.shape


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_float32_stays_float32(cell):
    rng = np.random.default_rng(3)
    lay, a_x, h0, Wh = _setup(rng, 1 if cell == "rnn" else 4)
    a_x, h0, Wh = (v.astype(np.float32) for v in (a_x, h0, Wh))
    forward = rnn_packed_forward if cell == "rnn" else lstm_packed_forward
    backward = rnn_packed_backward if cell == "rnn" else lstm_packed_backward
    h, cache = forward(a_x, h0, Wh, lay.batch_sizes)
    grads = backward(np.ones_like(h), cache)
    assert h.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
