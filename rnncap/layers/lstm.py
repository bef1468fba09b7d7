"""LSTM: one step, and a whole sequence with backpropagation through time.

The four gates are packed in one pre-activation a = x Wx + h_{t-1} Wh + b of width 4H,
in the order i, f, o, g (input, forget, output, candidate):

    i = sigmoid(a_i)  f = sigmoid(a_f)  o = sigmoid(a_o)  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

The sequence functions start from c0 = 0 and are split like the RNN's: the input
projection is one `temporal_affine_forward` over all N*T positions, and
`lstm_packed_forward/backward` is the pure recurrence on a precomputed input
pre-activation over packed sequences (rnncap.layers.packing), the only Python loop over
time; `lstm_recurrence_forward/backward` run it on a padded (N, T, 4H) batch. Every
step works in place on contiguous blocks, and dWh is one product after the loop.

This module does not know about words, images or vocabularies, and keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncap.layers.affine import (
    TemporalAffineCache,
    temporal_affine_backward,
    temporal_affine_forward,
)
from rnncap.layers.packing import batch_major, previous_states, time_major


def sigmoid(x):
    """Logistic sigmoid 1 / (1 + e^-x), stable for inputs of any magnitude.

    exp is only ever taken of -|x| <= 0, so it cannot overflow, and the negative
    branch uses the algebraically equal e^x / (1 + e^x). Keeps the input's dtype.

    Args:
        x: array of any shape.

    Returns:
        Array of x's shape and dtype, values in [0, 1].
    """
    z = np.exp(-np.abs(x))
    top = np.where(x >= 0, 1, z).astype(z.dtype, copy=False)
    return top / (1 + z)


class LSTMStepCache(NamedTuple):
    """What `lstm_step_backward` needs."""

    x: np.ndarray  # (N, D)
    prev_h: np.ndarray  # (N, H)
    prev_c: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, 4H)
    Wh: np.ndarray  # (H, 4H)
    gates: np.ndarray  # (N, 4H): i, f, o (after sigmoid) and g (after tanh)
    tanh_c: np.ndarray  # (N, H): tanh(next_c)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One time step of the LSTM.

    Args:
        x: inputs of this step, shape (N, D).
        prev_h: previous hidden state, shape (N, H).
        prev_c: previous cell state, shape (N, H).
        Wx: input-to-hidden weights, shape (D, 4H).
        Wh: hidden-to-hidden weights, shape (H, 4H).
        b: bias, shape (4H,) (anything broadcastable to (N, 4H) works).

    Returns:
        (next_h, next_c, cache): both states have shape (N, H); cache is an
        `LSTMStepCache`.
    """
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b  # (N, 4H)
    gates = np.empty_like(a)
    gates[:, : 3 * H] = sigmoid(a[:, : 3 * H])
    gates[:, 3 * H :] = np.tanh(a[:, 3 * H :])
    i, f, o, g = np.split(gates, 4, axis=1)
    next_c = f * prev_c + i * g  # (N, H)
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    return next_h, next_c, LSTMStepCache(x, prev_h, prev_c, Wx, Wh, gates, tanh_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward pass of `lstm_step_forward`.

    Args:
        dnext_h: gradient w.r.t. next_h, shape (N, H).
        dnext_c: gradient w.r.t. next_c, shape (N, H).
        cache: the `LSTMStepCache` from the forward pass.

    Returns:
        (dx, dprev_h, dprev_c, dWx, dWh, db) with shapes (N, D), (N, H), (N, H),
        (D, 4H), (H, 4H), (4H,).
    """
    x, prev_h, prev_c, Wx, Wh, gates, tanh_c = cache
    i, f, o, g = np.split(gates, 4, axis=1)
    # c_t reaches the loss directly (dnext_c) and through h_t = o * tanh(c_t).
    dc = dnext_c + dnext_h * o * (1 - tanh_c * tanh_c)  # (N, H)
    da = np.concatenate(
        (
            dc * g * i * (1 - i),  # d a_i: dc/di = g, sigmoid' = i(1 - i)
            dc * prev_c * f * (1 - f),  # d a_f: dc/df = c_{t-1}
            dnext_h * tanh_c * o * (1 - o),  # d a_o: dh/do = tanh(c_t)
            dc * i * (1 - g * g),  # d a_g: dc/dg = i, tanh' = 1 - g^2
        ),
        axis=1,
    )  # (N, 4H)
    dprev_c = dc * f
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_gates_inplace(a):
    """In place: gate pre-activations (n, 4H) -> i, f, o = sigmoid, g = tanh.

    The sigmoid is taken as 0.5 + 0.5 tanh(x / 2), which equals 1 / (1 + e^-x) and,
    like `sigmoid`, cannot overflow for any input; it needs four in-place passes over
    the array and no temporaries, which is what the recurrence and decoding loops want.
    (Tiny gate values lose relative, not absolute, precision: 1e-9 comes out as 1e-9
    plus or minus float eps.)

    Args:
        a: pre-activations, shape (n, 4H), gates ordered i, f, o, g; overwritten.

    Returns:
        a, holding the activated gates.
    """
    H = a.shape[1] // 4
    s = a[:, : 3 * H]
    s *= 0.5
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])
    return a


class LSTMRecurrenceCache(NamedTuple):
    """What `lstm_packed_backward` (and `lstm_recurrence_backward`) needs."""

    h0: np.ndarray  # (N0, H), initial states sorted like the packed rows
    Wh: np.ndarray  # (H, 4H)
    h: np.ndarray  # (P, H)
    c: np.ndarray  # (P, H)
    tanh_c: np.ndarray  # (P, H)
    gates: np.ndarray  # (P, 4H): i, f, o, g after their nonlinearities
    batch_sizes: np.ndarray  # (T,), rows alive at each step, non-increasing


def lstm_packed_forward(a_x, h0, Wh, batch_sizes):
    """The LSTM recurrence over packed sequences, with c0 = 0.

    Packed layout as in `rnn_packed_forward` (rnncap.layers.packing). Per step: one
    (n_t, H) x (H, 4H) product, the gate nonlinearities in place, and the cell and
    hidden updates written straight into the cached arrays.

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
        lstm_gates_inplace(gt)
        i, f, o, g = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H : 3 * H], gt[:, 3 * H :]
        c_t = np.multiply(i, g, out=c[s])
        if prev_c is not None:  # c_{-1} = 0
            fc = np.multiply(f, prev_c[:n], out=tmp[:n, :H])
            c_t += fc
        tc = np.tanh(c_t, out=tanh_c[s])
        prev_h = np.multiply(o, tc, out=h[s])
        prev_c = c_t
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
    # 15-25% faster by it than by the transposed view (docs/performance.md).
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


def lstm_recurrence_forward(a_x, h0, Wh):
    """The LSTM recurrence on a full padded batch, with c0 = 0.

    The padded-batch form of `lstm_packed_forward` (every row alive at every step).

    Args:
        a_x: input pre-activation of every step, shape (N, T, 4H), gates i, f, o, g.
        h0: initial hidden state, shape (N, H).
        Wh: hidden-to-hidden weights, shape (H, 4H).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `LSTMRecurrenceCache`.
    """
    N, T, _ = a_x.shape
    h, cache = lstm_packed_forward(time_major(a_x), h0, Wh, np.full(T, N))
    return batch_major(h, N, T), cache


def lstm_recurrence_backward(dh, cache):
    """Backward pass of `lstm_recurrence_forward`.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `LSTMRecurrenceCache` from the forward pass.

    Returns:
        (da_x, dh0, dWh) with shapes (N, T, 4H), (N, H), (H, 4H).
    """
    da_x, dh0, dWh = lstm_packed_backward(time_major(dh), cache)
    return batch_major(da_x, *dh.shape[:2]), dh0, dWh


class LSTMCache(NamedTuple):
    """What `lstm_backward` needs: the input projection's and the recurrence's caches."""

    proj: TemporalAffineCache
    rec: LSTMRecurrenceCache


def lstm_forward(x, h0, Wx, Wh, b):
    """Runs the LSTM over a whole sequence, starting from c0 = 0.

    Args:
        x: inputs of every step, shape (N, T, D).
        h0: initial hidden state, shape (N, H).
        Wx: input-to-hidden weights, shape (D, 4H).
        Wh: hidden-to-hidden weights, shape (H, 4H).
        b: bias, shape (4H,).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `LSTMCache`.
    """
    a_x, proj_cache = temporal_affine_forward(x, Wx, b)  # (N, T, 4H), all steps at once
    h, rec_cache = lstm_recurrence_forward(a_x, h0, Wh)
    return h, LSTMCache(proj_cache, rec_cache)


def lstm_backward(dh, cache):
    """Backward pass of `lstm_forward`.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `LSTMCache` from the forward pass.

    Returns:
        (dx, dh0, dWx, dWh, db) with shapes (N, T, D), (N, H), (D, 4H), (H, 4H), (4H,).
    """
    da_x, dh0, dWh = lstm_recurrence_backward(dh, cache.rec)
    dx, dWx, db = temporal_affine_backward(da_x, cache.proj)
    return dx, dh0, dWx, dWh, db
