"""The vanilla RNN of the fast path: packed sequences, in place.

    h_t = tanh(a_x_t + h_{t-1} Wh),   a_x_t = x_t Wx + b (+ any term that does not depend on h)

The trainer computes the input pre-activation a_x for every position at once (one
matrix product) and runs only the recurrence here, over packed sequences
(rnncap.fast.packing: time-major, padding dropped, each step one contiguous block).
`rnn_packed_forward/backward` hold the only Python loop over time, and the loop holds
only what the recurrence forces (one (n_t, H) x (H, H) product, one add and one tanh per
step, written in place). dWh, summed over time, is one matrix product after the loop.
`rnn_cell` is the cell's one nonlinearity, shared with the decoding step.

Tested equal to rnncap.layers.rnn (the reference path) in float64. This module knows
arrays and shapes only: not words, images, threads; it keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncap.fast.packing import previous_states


def rnn_cell(a):
    """In place: the pre-activation (n, H) becomes the new hidden state tanh(a)."""
    return np.tanh(a, out=a)


class RNNRecurrenceCache(NamedTuple):
    """What `rnn_packed_backward` needs."""

    h0: np.ndarray  # (N0, H), the initial states, sorted like the packed rows
    Wh: np.ndarray  # (H, H)
    h: np.ndarray  # (P, H), the packed hidden states of every step
    batch_sizes: np.ndarray  # (T,), rows alive at each step, non-increasing


def rnn_packed_forward(a_x, h0, Wh, batch_sizes):
    """The recurrence h_t = tanh(a_x_t + h_{t-1} Wh) over packed sequences.

    Packed layout (rnncap.fast.packing): step t's rows are the block of
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
        prev_h = rnn_cell(h_t)
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
    # faster by it than by the transposed view (measured in docs/performance.md).
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
