"""LSTM: one step, and a whole sequence with backpropagation through time.

The four gates are packed in one pre-activation a = x Wx + h_{t-1} Wh + b of width 4H,
in the order i, f, o, g (input, forget, output, candidate):

    i = sigmoid(a_i)  f = sigmoid(a_f)  o = sigmoid(a_o)  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)

These are CS231n's functions as the assignment's solution writes them: `lstm_forward`
is a loop of `lstm_step_forward` from c0 = 0, and `lstm_backward` is a loop of
`lstm_step_backward`, last step first. The trainer and the decoders run the same cell
on packed, in-place buffers instead (rnncap.fast.lstm), tested equal to these
functions.

This module knows arrays and shapes only: not words, images, vocabularies, threads;
it keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


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


class LSTMCache(NamedTuple):
    """What `lstm_backward` needs: the cache of every step, in time order."""

    steps: tuple  # T LSTMStepCache


def lstm_forward(x, h0, Wx, Wh, b):
    """Runs the LSTM over a whole sequence from c0 = 0: a loop of `lstm_step_forward`.

    Args:
        x: inputs of every step, shape (N, T, D).
        h0: initial hidden state, shape (N, H).
        Wx: input-to-hidden weights, shape (D, 4H).
        Wh: hidden-to-hidden weights, shape (H, 4H).
        b: bias, shape (4H,).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `LSTMCache`.
    """
    N, T, _ = x.shape
    h = np.empty((N, T, h0.shape[1]), dtype=np.result_type(x, h0, Wx, Wh, b))
    prev_h, prev_c, steps = h0, np.zeros_like(h0), []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        steps.append(step_cache)
    return h, LSTMCache(tuple(steps))


def lstm_backward(dh, cache):
    """Backward pass of `lstm_forward`: a loop of `lstm_step_backward`, last step first.

    Two gradients flow back across steps: into h_{t-1} (added to the loss's own
    dh[:, t-1]) and into c_{t-1}. The shared weights' gradients are summed over time.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `LSTMCache` from the forward pass.

    Returns:
        (dx, dh0, dWx, dWh, db) with shapes (N, T, D), (N, H), (D, 4H), (H, 4H), (4H,).
    """
    N, T, H = dh.shape
    Wx, Wh = cache.steps[0].Wx, cache.steps[0].Wh  # the weights every step shares
    dx = np.empty((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(4 * H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dprev_c = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t] + dprev_h, dprev_c, cache.steps[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db
