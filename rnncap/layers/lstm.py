"""LSTM: one step, and a whole sequence with backpropagation through time.

The four gates are packed in one pre-activation a = x Wx + h_{t-1} Wh + b of width 4H,
in the order i, f, o, g (input, forget, output, candidate):

    i = sigmoid(a_i)  f = sigmoid(a_f)  o = sigmoid(a_o)  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

The sequence functions start from c0 = 0 and are split like the RNN's: the input
projection is one `temporal_affine_forward` over all N*T positions, and
`lstm_recurrence_forward/backward` is the pure recurrence on a precomputed input
pre-activation (N, T, 4H), the only Python loop over time. Gate derivatives that do not
depend on the backward recurrence (sigmoid' = s(1 - s), tanh' = 1 - tanh^2) are
computed for all steps at once, and dWh is one product after the loop.

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


class LSTMRecurrenceCache(NamedTuple):
    """What `lstm_recurrence_backward` needs."""

    h0: np.ndarray  # (N, H)
    Wh: np.ndarray  # (H, 4H)
    h: np.ndarray  # (N, T, H)
    c: np.ndarray  # (N, T, H)
    tanh_c: np.ndarray  # (N, T, H)
    gates: np.ndarray  # (N, T, 4H): i, f, o, g after their nonlinearities


def lstm_recurrence_forward(a_x, h0, Wh):
    """The pure LSTM recurrence on precomputed input pre-activations, with c0 = 0.

    Args:
        a_x: input pre-activation of every step (x_t Wx + b, plus any other term that
            does not depend on h), shape (N, T, 4H), gates ordered i, f, o, g.
        h0: initial hidden state, shape (N, H).
        Wh: hidden-to-hidden weights, shape (H, 4H).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `LSTMRecurrenceCache`.
    """
    N, T, H4 = a_x.shape
    H = H4 // 4
    dtype = np.result_type(a_x, h0, Wh)
    h = np.empty((N, T, H), dtype=dtype)
    c = np.empty((N, T, H), dtype=dtype)
    tanh_c = np.empty((N, T, H), dtype=dtype)
    gates = np.empty((N, T, H4), dtype=dtype)
    prev_h = h0
    prev_c = np.zeros((N, H), dtype=dtype)
    for t in range(T):
        a = prev_h @ Wh  # (N, 4H)
        a += a_x[:, t]
        gt = gates[:, t]
        gt[:, : 3 * H] = sigmoid(a[:, : 3 * H])
        np.tanh(a[:, 3 * H :], out=gt[:, 3 * H :])
        i, f, o, g = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H : 3 * H], gt[:, 3 * H :]
        prev_c = np.add(f * prev_c, i * g, out=c[:, t])
        np.tanh(prev_c, out=tanh_c[:, t])
        prev_h = np.multiply(o, tanh_c[:, t], out=h[:, t])
    return h, LSTMRecurrenceCache(h0, Wh, h, c, tanh_c, gates)


def lstm_recurrence_backward(dh, cache):
    """Backpropagation through time for `lstm_recurrence_forward`.

    Two gradients flow backwards across steps: into h_{t-1} (through Wh) and into
    c_{t-1} (through the forget gate, dc_{t-1} = dc_t * f_t).

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `LSTMRecurrenceCache` from the forward pass.

    Returns:
        (da_x, dh0, dWh) with shapes (N, T, 4H), (N, H), (H, 4H).
    """
    h0, Wh, h, c, tanh_c, gates = cache
    N, T, H = h.shape
    # Local derivatives of every gate at every step, all at once: (N, T, 4H).
    local = np.empty_like(gates)
    s = gates[:, :, : 3 * H]
    np.multiply(s, 1 - s, out=local[:, :, : 3 * H])
    g_all = gates[:, :, 3 * H :]
    np.subtract(1, g_all * g_all, out=local[:, :, 3 * H :])
    o_dtanh_c = gates[:, :, 2 * H : 3 * H] * (1 - tanh_c * tanh_c)  # dc_t/dh_t, (N, T, H)
    da_x = np.empty_like(gates)
    WhT = Wh.T
    dprev_h = np.zeros((N, H), dtype=h.dtype)
    dprev_c = np.zeros((N, H), dtype=h.dtype)
    zeros = np.zeros((N, H), dtype=h.dtype)  # c_{-1} = 0
    for t in range(T - 1, -1, -1):
        gt = gates[:, t]
        i, f, g = gt[:, :H], gt[:, H : 2 * H], gt[:, 3 * H :]
        dh_t = dh[:, t] + dprev_h
        dc = dh_t * o_dtanh_c[:, t]
        dc += dprev_c
        da = da_x[:, t]  # (N, 4H), written in place
        np.multiply(dc, g, out=da[:, :H])
        np.multiply(dc, c[:, t - 1] if t > 0 else zeros, out=da[:, H : 2 * H])
        np.multiply(dh_t, tanh_c[:, t], out=da[:, 2 * H : 3 * H])
        np.multiply(dc, i, out=da[:, 3 * H :])
        da *= local[:, t]
        dprev_h = da @ WhT
        dprev_c = dc * f
    h_prev = np.concatenate((h0[:, None, :].astype(h.dtype, copy=False), h[:, :-1]), axis=1)
    dWh = h_prev.reshape(N * T, H).T @ da_x.reshape(N * T, 4 * H)
    return da_x, dprev_h, dWh


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
