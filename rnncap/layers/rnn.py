"""Vanilla (tanh) RNN: one step, and a whole sequence with backpropagation through time.

    h_t = tanh(x_t Wx + h_{t-1} Wh + b)

These are CS231n's functions as the assignment's solution writes them, to be read line
by line next to the notebook: `rnn_forward` is a loop of `rnn_step_forward` over time,
and `rnn_backward` is a loop of `rnn_step_backward` from the last step to the first,
adding the gradient that flows back through h_{t-1} to the loss's own gradient of
h_{t-1}, and summing the weight gradients of every step.

The trainer runs the same recurrence on packed, in-place buffers instead
(rnncap.fast.rnn), tested equal to these functions.

This module knows arrays and shapes only: not words, images, vocabularies, threads;
it keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class RNNStepCache(NamedTuple):
    """What `rnn_step_backward` needs."""

    x: np.ndarray  # (N, D)
    prev_h: np.ndarray  # (N, H)
    Wx: np.ndarray  # (D, H)
    Wh: np.ndarray  # (H, H)
    next_h: np.ndarray  # (N, H); tanh' is recovered from it as 1 - next_h**2


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One time step of the vanilla RNN: next_h = tanh(x Wx + prev_h Wh + b).

    Args:
        x: inputs of this step, shape (N, D).
        prev_h: hidden state of the previous step, shape (N, H).
        Wx: input-to-hidden weights, shape (D, H).
        Wh: hidden-to-hidden weights, shape (H, H).
        b: bias, shape (H,) (anything broadcastable to (N, H) works).

    Returns:
        (next_h, cache): next_h has shape (N, H); cache is an `RNNStepCache`.
    """
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)  # (N, H)
    return next_h, RNNStepCache(x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    """Backward pass of `rnn_step_forward`.

    Args:
        dnext_h: gradient of the loss w.r.t. next_h, shape (N, H).
        cache: the `RNNStepCache` from the forward pass.

    Returns:
        (dx, dprev_h, dWx, dWh, db) with shapes (N, D), (N, H), (D, H), (H, H), (H,).
    """
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h * next_h)  # (N, H): through tanh, tanh' = 1 - tanh^2
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


class RNNCache(NamedTuple):
    """What `rnn_backward` needs: the cache of every step, in time order."""

    steps: tuple  # T RNNStepCache


def rnn_forward(x, h0, Wx, Wh, b):
    """Runs the vanilla RNN over a whole sequence: a loop of `rnn_step_forward`.

    Args:
        x: inputs of every step, shape (N, T, D).
        h0: initial hidden state, shape (N, H).
        Wx: input-to-hidden weights, shape (D, H).
        Wh: hidden-to-hidden weights, shape (H, H).
        b: bias, shape (H,).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `RNNCache`.
    """
    N, T, _ = x.shape
    h = np.empty((N, T, h0.shape[1]), dtype=np.result_type(x, h0, Wx, Wh, b))
    prev_h, steps = h0, []
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)  # (N, H)
        h[:, t] = prev_h
        steps.append(step_cache)
    return h, RNNCache(tuple(steps))


def rnn_backward(dh, cache):
    """Backward pass of `rnn_forward`: a loop of `rnn_step_backward`, last step first.

    The gradient reaching h_t is the loss's own dh[:, t] PLUS what flows back from
    step t+1 through Wh; the weights are shared by every step, so their gradients are
    summed over time.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `RNNCache` from the forward pass.

    Returns:
        (dx, dh0, dWx, dWh, db) with shapes (N, T, D), (N, H), (D, H), (H, H), (H,).
    """
    N, T, H = dh.shape
    _, _, Wx, Wh, _ = cache.steps[0]  # the weights every step shares
    dx = np.empty((N, T, Wx.shape[0]), dtype=dh.dtype)
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev_h, cache.steps[t])
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db
