"""The LSTM of the fast path: packed sequences, in place.

Gates packed i, f, o, g in one pre-activation of width 4H, as in rnncap.layers.lstm:

    i, f, o = sigmoid(a_i, a_f, a_o)   g = tanh(a_g)
    c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)

`lstm_cell` is this cell, written once for the fast path: the training recurrence
(`lstm_packed_forward`) and the decoding step (CaptioningRNN.decoder_step) both call it.
It takes the sigmoid as 0.5 + 0.5 tanh(x / 2), which equals 1 / (1 + e^-x), cannot
overflow, and needs four in-place passes and no temporaries; the reference path's
`rnncap.layers.sigmoid` uses the e^-|x| form instead, which keeps full relative
precision for tiny values (sigmoid(-20) to 1e-14) at the cost of temporaries.

`lstm_packed_forward/backward` run the recurrence over packed sequences
(rnncap.fast.packing), the only Python loop over time; every step works in place on
contiguous blocks, and dWh is one product after the loop.

Tested equal to rnncap.layers.lstm (the reference path) in float64. This module knows
arrays and shapes only: not words, images, threads; it keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncap.fast.packing import previous_states


def activate_gates(a):
    """In place: gate pre-activations (n, 4H) -> i, f, o = sigmoid, g = tanh.

    sigmoid(x) = 0.5 + 0.5 tanh(x / 2): four in-place passes, no temporaries. (Tiny
    gate values lose relative, not absolute, precision: 1e-9 comes out as 1e-9 plus or
    minus float eps.)
    """
    H = a.shape[1] // 4
    s = a[:, : 3 * H]
    s *= 0.5
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])
    return a


def lstm_cell(a, prev_c, h, c, tanh_c, scratch):
    """One LSTM step from its pre-activation, in place.

    Args:
        a: pre-activation x Wx + h_{t-1} Wh + b, shape (n, 4H), gates i, f, o, g;
            overwritten with the activated gates.
        prev_c: previous cell state (n, H), or None for c_{-1} = 0.
        h, c, tanh_c: (n, H) arrays the new hidden state, cell state and tanh(c) are
            written into.
        scratch: an (n, H) work array.

    Returns:
        (h, c).
    """
    H = a.shape[1] // 4
    activate_gates(a)
    i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    np.multiply(i, g, out=c)
    if prev_c is not None:
        c += np.multiply(f, prev_c, out=scratch)
    np.tanh(c, out=tanh_c)
    np.multiply(o, tanh_c, out=h)
    return h, c


class LSTMRecurrenceCache(NamedTuple):
    """What `lstm_packed_backward` needs."""

    h0: np.ndarray  # (N0, H), initial states sorted like the packed rows
    Wh: np.ndarray  # (H, 4H)
    h: np.ndarray  # (P, H)
    c: np.ndarray  # (P, H)
    tanh_c: np.ndarray  # (P, H)
    gates: np.ndarray  # (P, 4H): i, f, o, g after their nonlinearities
    batch_sizes: np.ndarray  # (T,), rows alive at each step, non-increasing


def lstm_packed_forward(a_x, h0, Wh, batch_sizes):
    """The LSTM recurrence over packed sequences, with c0 = 0.

    Packed layout as in `rnn_packed_forward` (rnncap.fast.packing). Per step: one
    (n_t, H) x (H, 4H) product, then `lstm_cell` writes the gates, the cell and the
    hidden state straight into the cached arrays.

    Args:
        a_x: input pre-activation of every packed position (x_t Wx + b, plus any other
            term that does not depend on h), shape (P, 4H), gates ordered i, f, o, g.
            Not modified.
        h0: initial hidden states, shape (N0, H), N0 >= batch_sizes[0].
        Wh: hidden-to-hidden weights, shape (H, 4H).
        batch_sizes: (T,) non-increasing ints summing to P.

    Returns:
        (h, cache): h has shape (P, H); cache is an `LSTMRecurrenceCache`.
    """
    P, H4 = a_x.shape
    H = H4 // 4
    dtype = np.result_type(a_x, h0, Wh)
    h = np.empty((P, H), dtype=dtype)
    c = np.empty((P, H), dtype=dtype)
    tanh_c = np.empty((P, H), dtype=dtype)
    gates = np.empty((P, H4), dtype=dtype)
    tmp = np.empty((int(batch_sizes[0]) if len(batch_sizes) else 0, H4), dtype=dtype)
    prev_h, prev_c, start = h0, None, 0
    for n in batch_sizes:
        s = slice(start, start + n)
        gt = gates[s]
        np.matmul(prev_h[:n], Wh, out=tmp[:n])  # (n, 4H)
        np.add(tmp[:n], a_x[s], out=gt)
        c_prev = None if prev_c is None else prev_c[:n]  # c_{-1} = 0
        prev_h, prev_c = lstm_cell(gt, c_prev, h[s], c[s], tanh_c[s], tmp[:n, :H])
        start += n
    return h, LSTMRecurrenceCache(h0, Wh, h, c, tanh_c, gates, np.asarray(batch_sizes))


def lstm_packed_backward(dh, cache):
    """Backpropagation through time for `lstm_packed_forward`.

    Two gradients flow backwards across steps, for the rows still alive at t+1: into
    h_t (through Wh) and into c_t (through the forget gate, dc_t += dc_{t+1} * f_{t+1}).
    Gate derivatives (sigmoid' = s(1 - s), tanh' = 1 - tanh^2) are taken step by step
    while the step's rows are in cache; dWh is one product after the loop.

    Args:
        dh: gradient of the loss w.r.t. every packed hidden state, shape (P, H).
            Not modified.
        cache: the `LSTMRecurrenceCache` from the forward pass.

    Returns:
        (da_x, dh0, dWh) with shapes (P, 4H), (N0, H), (H, 4H).
    """
    h0, Wh, h, c, tanh_c, gates, batch_sizes = cache
    P, H = h.shape
    da_x = np.empty_like(gates)
    n0 = int(batch_sizes[0]) if len(batch_sizes) else 0
    dh_t_buf = np.empty((n0, H), dtype=h.dtype)
    dc_buf = np.empty((n0, H), dtype=h.dtype)
    # A contiguous copy of Wh^T (4H, H): OpenBLAS multiplies the small per-step blocks
    # faster by it than by the transposed view (measured in docs/performance.md).
    WhT = np.ascontiguousarray(Wh.T)
    dprev_h = dprev_c = None
    offsets = np.concatenate(([0], np.cumsum(batch_sizes)))
    for t in range(len(batch_sizes) - 1, -1, -1):
        n = int(batch_sizes[t])
        s = slice(int(offsets[t]), int(offsets[t + 1]))
        gt = gates[s]
        i, f, o, g = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H : 3 * H], gt[:, 3 * H :]
        tc = tanh_c[s]
        dh_t = dh_t_buf[:n]
        np.copyto(dh_t, dh[s])
        if dprev_h is not None:
            dh_t[: dprev_h.shape[0]] += dprev_h
        # c_t reaches the loss through h_t = o tanh(c_t) and through c_{t+1}.
        dc = dc_buf[:n]
        np.multiply(tc, tc, out=dc)
        np.subtract(1, dc, out=dc)
        dc *= o
        dc *= dh_t
        if dprev_c is not None:
            dc[: dprev_c.shape[0]] += dprev_c
        da = da_x[s]  # (n, 4H), written block by block
        da_i, da_f, da_o, da_g = da[:, :H], da[:, H : 2 * H], da[:, 2 * H : 3 * H], da[:, 3 * H :]
        np.subtract(1, i, out=da_i)  # d a_i = dc * g * i(1 - i)
        da_i *= i
        da_i *= g
        da_i *= dc
        if t > 0:  # d a_f = dc * c_{t-1} * f(1 - f); c_{-1} = 0
            np.subtract(1, f, out=da_f)
            da_f *= f
            da_f *= c[int(offsets[t - 1]) : int(offsets[t - 1]) + n]
            da_f *= dc
        else:
            da_f[...] = 0
        np.subtract(1, o, out=da_o)  # d a_o = dh * tanh(c_t) * o(1 - o)
        da_o *= o
        da_o *= tc
        da_o *= dh_t
        np.multiply(g, g, out=da_g)  # d a_g = dc * i * (1 - g^2)
        np.subtract(1, da_g, out=da_g)
        da_g *= i
        da_g *= dc
        dprev_h = da @ WhT  # (n, H)
        dprev_c = dc * f
    dh0 = np.zeros((h0.shape[0], H), dtype=h.dtype)
    if dprev_h is not None:
        dh0[: dprev_h.shape[0]] = dprev_h
    dWh = previous_states(h0, h, batch_sizes).T @ da_x  # sum_t h_{t-1}^T da_t
    return da_x, dh0, dWh
