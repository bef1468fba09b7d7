"""Vanilla (tanh) RNN: one step, and a whole sequence with backpropagation through time.

    h_t = tanh(x_t Wx + h_{t-1} Wh + b)

The step functions are CS231n's, for learners and for decoding one token at a time.
The sequence functions are built for speed from two pieces:

* the input projection `x_t Wx + b` does not depend on the recurrence, so it is ONE
  `temporal_affine_forward` over all N*T positions;
* `rnn_recurrence_forward/backward` is the pure recurrence on a precomputed input
  pre-activation `a_x` (N, T, H). It is the only place with a Python loop over time,
  and the loop holds only what the recurrence forces (one (N, H) x (H, H) product and
  one tanh per step). tanh' = 1 - tanh^2 is computed for all steps at once, and dWh,
  summed over time, is one matrix product after the loop.

Splitting them lets the model add other terms to `a_x` (e.g. an image term at every
step) without a second copy of the recurrence. This module does not know about words,
images or vocabularies, and keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncap.layers.affine import (
    TemporalAffineCache,
    temporal_affine_backward,
    temporal_affine_forward,
)


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


class RNNRecurrenceCache(NamedTuple):
    """What `rnn_recurrence_backward` needs."""

    h0: np.ndarray  # (N, H)
    Wh: np.ndarray  # (H, H)
    h: np.ndarray  # (N, T, H), the hidden states of every step


def rnn_recurrence_forward(a_x, h0, Wh):
    """The pure recurrence h_t = tanh(a_x[:, t] + h_{t-1} Wh), for t = 0..T-1.

    Args:
        a_x: input pre-activation of every step (x_t Wx + b, plus any other term that
            does not depend on h), shape (N, T, H).
        h0: initial hidden state, shape (N, H).
        Wh: hidden-to-hidden weights, shape (H, H).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `RNNRecurrenceCache`.
    """
    N, T, H = a_x.shape
    h = np.empty((N, T, H), dtype=np.result_type(a_x, h0, Wh))
    prev_h = h0
    for t in range(T):
        a = prev_h @ Wh  # (N, H)
        a += a_x[:, t]
        prev_h = np.tanh(a, out=h[:, t])
    return h, RNNRecurrenceCache(h0, Wh, h)


def rnn_recurrence_backward(dh, cache):
    """Backpropagation through time for `rnn_recurrence_forward`.

    The gradient reaching h_t is the loss's own dh[:, t] PLUS what flows back from
    step t+1 through Wh; the loop carries that second part backwards.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `RNNRecurrenceCache` from the forward pass.

    Returns:
        (da_x, dh0, dWh) with shapes (N, T, H), (N, H), (H, H).
    """
    h0, Wh, h = cache
    N, T, H = h.shape
    dtanh = 1 - h * h  # (N, T, H): tanh' of every step, all at once
    da_x = np.empty_like(dtanh)
    WhT = Wh.T
    dprev_h = np.zeros_like(h0, dtype=h.dtype)
    for t in range(T - 1, -1, -1):
        da = np.multiply(dh[:, t] + dprev_h, dtanh[:, t], out=da_x[:, t])  # (N, H)
        dprev_h = da @ WhT
    # dWh = sum_t h_{t-1}^T da_t, as one product over all N*T positions.
    h_prev = np.concatenate((h0[:, None, :].astype(h.dtype, copy=False), h[:, :-1]), axis=1)
    dWh = h_prev.reshape(N * T, H).T @ da_x.reshape(N * T, H)
    return da_x, dprev_h, dWh


class RNNCache(NamedTuple):
    """What `rnn_backward` needs: the input projection's and the recurrence's caches."""

    proj: TemporalAffineCache
    rec: RNNRecurrenceCache


def rnn_forward(x, h0, Wx, Wh, b):
    """Runs the vanilla RNN over a whole sequence.

    Args:
        x: inputs of every step, shape (N, T, D).
        h0: initial hidden state, shape (N, H).
        Wx: input-to-hidden weights, shape (D, H).
        Wh: hidden-to-hidden weights, shape (H, H).
        b: bias, shape (H,).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `RNNCache`.
    """
    a_x, proj_cache = temporal_affine_forward(x, Wx, b)  # (N, T, H), all steps at once
    h, rec_cache = rnn_recurrence_forward(a_x, h0, Wh)
    return h, RNNCache(proj_cache, rec_cache)


def rnn_backward(dh, cache):
    """Backward pass of `rnn_forward`.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `RNNCache` from the forward pass.

    Returns:
        (dx, dh0, dWx, dWh, db) with shapes (N, T, D), (N, H), (D, H), (H, H), (H,).
    """
    da_x, dh0, dWh = rnn_recurrence_backward(dh, cache.rec)
    dx, dWx, db = temporal_affine_backward(da_x, cache.proj)
    return dx, dh0, dWx, dWh, db
