"""Vanilla (tanh) RNN: one step, and a whole sequence with backpropagation through time.

    h_t = tanh(x_t Wx + h_{t-1} Wh + b)

The step functions are CS231n's, for learners and for decoding one token at a time.
The sequence functions are built for speed from two pieces:

* the input projection `x_t Wx + b` does not depend on the recurrence, so it is ONE
  `temporal_affine_forward` over all N*T positions;
* `rnn_packed_forward/backward` is the pure recurrence on a precomputed input
  pre-activation, over packed sequences (rnncap.layers.packing: time-major, padding
  dropped, each step one contiguous block). It is the only place with a Python loop
  over time, and the loop holds only what the recurrence forces (one (n_t, H) x (H, H)
  product, one add and one tanh per step, written in place). dWh, summed over time,
  is one matrix product after the loop. `rnn_recurrence_forward/backward` are the
  same recurrence on a padded (N, T, H) batch, every row alive at every step.

Splitting them lets the model add other terms to `a_x` (e.g. an image term at every
step) and skip padded positions without a second copy of the recurrence. This module does not know about words,
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
from rnncap.layers.packing import batch_major, previous_states, time_major


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
    """What `rnn_packed_backward` (and `rnn_recurrence_backward`) needs."""

    h0: np.ndarray  # (N0, H), the initial states, sorted like the packed rows
    Wh: np.ndarray  # (H, H)
    h: np.ndarray  # (P, H), the packed hidden states of every step
    batch_sizes: np.ndarray  # (T,), rows alive at each step, non-increasing


def rnn_packed_forward(a_x, h0, Wh, batch_sizes):
    """The recurrence h_t = tanh(a_x_t + h_{t-1} Wh) over packed sequences.

    Packed layout (rnncap.layers.packing): step t's rows are the block of
    `batch_sizes[t]` rows after those of steps 0..t-1; the rows alive at step t are
    the first `batch_sizes[t]` of step t-1. Per step: one (n_t, H) x (H, H) product,
    one add, one tanh, all on contiguous blocks and written straight into h.

    Args:
        a_x: input pre-activation of every packed position (x_t Wx + b, plus any
            other term that does not depend on h), shape (P, H). Not modified.
        h0: initial hidden states, shape (N0, H), N0 >= batch_sizes[0].
        Wh: hidden-to-hidden weights, shape (H, H).
        batch_sizes: (T,) non-increasing ints summing to P.

    Returns:
        (h, cache): h has shape (P, H); cache is an `RNNRecurrenceCache`.
    """
    P, H = a_x.shape
    dtype = np.result_type(a_x, h0, Wh)
    h = np.empty((P, H), dtype=dtype)
    tmp = np.empty((int(batch_sizes[0]) if len(batch_sizes) else 0, H), dtype=dtype)
    prev_h, start = h0, 0
    for n in batch_sizes:
        h_t = h[start : start + n]
        np.matmul(prev_h[:n], Wh, out=tmp[:n])  # (n, H)
        np.add(tmp[:n], a_x[start : start + n], out=h_t)
        prev_h = np.tanh(h_t, out=h_t)
        start += n
    return h, RNNRecurrenceCache(h0, Wh, h, np.asarray(batch_sizes))


def rnn_packed_backward(dh, cache):
    """Backpropagation through time for `rnn_packed_forward`.

    The gradient reaching h_t is the loss's own dh_t PLUS what flows back from step
    t+1 through Wh (only for the rows still alive at t+1). dWh, summed over time, is
    one product of the packed previous states with the packed da after the loop.

    Args:
        dh: gradient of the loss w.r.t. every packed hidden state, shape (P, H).
            Not modified.
        cache: the `RNNRecurrenceCache` from the forward pass.

    Returns:
        (da_x, dh0, dWh) with shapes (P, H), (N0, H), (H, H).
    """
    h0, Wh, h, batch_sizes = cache
    P, H = h.shape
    da_x = np.empty_like(h)
    dtanh = np.empty((int(batch_sizes[0]) if len(batch_sizes) else 0, H), dtype=h.dtype)
    # A contiguous copy of Wh^T (H, H): OpenBLAS multiplies the small per-step blocks
    # 15-25% faster by it than by the transposed view (docs/performance.md).
    WhT = np.ascontiguousarray(Wh.T)
    dprev_h = None
    end = P
    for n in batch_sizes[::-1]:
        s = slice(end - n, end)
        da = da_x[s]
        np.copyto(da, dh[s])
        if dprev_h is not None:
            da[: dprev_h.shape[0]] += dprev_h
        w = dtanh[:n]
        np.multiply(h[s], h[s], out=w)
        np.subtract(1, w, out=w)  # tanh' = 1 - tanh^2
        da *= w
        dprev_h = da @ WhT  # (n, H)
        end -= n
    dh0 = np.zeros((h0.shape[0], H), dtype=h.dtype)
    if dprev_h is not None:
        dh0[: dprev_h.shape[0]] = dprev_h
    dWh = previous_states(h0, h, batch_sizes).T @ da_x  # sum_t h_{t-1}^T da_t
    return da_x, dh0, dWh


def rnn_recurrence_forward(a_x, h0, Wh):
    """The recurrence h_t = tanh(a_x[:, t] + h_{t-1} Wh), t = 0..T-1, on a full batch.

    The padded-batch form of `rnn_packed_forward` (every row alive at every step).

    Args:
        a_x: input pre-activation of every step, shape (N, T, H).
        h0: initial hidden state, shape (N, H).
        Wh: hidden-to-hidden weights, shape (H, H).

    Returns:
        (h, cache): h has shape (N, T, H); cache is an `RNNRecurrenceCache`.
    """
    N, T, H = a_x.shape
    h, cache = rnn_packed_forward(time_major(a_x), h0, Wh, np.full(T, N))
    return batch_major(h, N, T), cache


def rnn_recurrence_backward(dh, cache):
    """Backward pass of `rnn_recurrence_forward`.

    Args:
        dh: gradient of the loss w.r.t. every hidden state, shape (N, T, H).
        cache: the `RNNRecurrenceCache` from the forward pass.

    Returns:
        (da_x, dh0, dWh) with shapes (N, T, H), (N, H), (H, H).
    """
    da_x, dh0, dWh = rnn_packed_backward(time_major(dh), cache)
    return batch_major(da_x, *dh.shape[:2]), dh0, dWh


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
