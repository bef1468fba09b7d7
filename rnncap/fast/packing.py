"""Packed sequences: a padded batch without its padding, time step after time step.

A caption batch (N, T) is padded with <NULL> after each caption's end. Nothing at a
padded position reaches the loss: its target is masked, and the hidden states after a
caption's last target only feed later, also masked, positions. So the recurrence, the
input and output projections and the softmax only need each row's first L_n steps,
where L_n is one past its last unmasked target.

The packed layout (the one cuDNN and PyTorch's PackedSequence use) sorts the rows by
length, longest first, and stores step 0 of every live row, then step 1 of every
still-live row, and so on:

    packed[offsets[t] + i] = padded[order[i], t]   for i < batch_sizes[t]

Because the rows are sorted, the rows alive at step t are the first batch_sizes[t]
of those alive at step t-1: every step reads a contiguous block, and the recurrence's
previous state is a prefix of the previous block. All work then scales with the
number of real tokens, sum(L_n), instead of N*T (docs/performance.md measures the gain).

This module knows index bookkeeping only: not cells, not words, not which id is <NULL>
(the caller builds the mask), not threads.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PackedLayout(NamedTuple):
    """Where each (row, step) of a padded batch lives in the packed arrays.

    Attributes:
        order: (N,) int, the padded rows sorted by length, longest first (stable).
        lengths: (N,) int, L_n of every padded row (in the original order).
        batch_sizes: (T',) int, non-increasing, rows alive at each step; T' = max L_n.
        offsets: (T' + 1,) int, where each step's block starts; offsets[-1] = P.
    """

    order: np.ndarray
    lengths: np.ndarray
    batch_sizes: np.ndarray
    offsets: np.ndarray

    @property
    def size(self):
        """P, the number of packed positions."""
        return int(self.offsets[-1])

    def block(self, t):
        """Slice of step t's rows in a packed array."""
        return slice(int(self.offsets[t]), int(self.offsets[t + 1]))


def _lengths(mask):
    """One past each row's last True (0 for a row with none): bool (N, T) -> (N,)."""
    return np.where(mask.any(axis=1), mask.shape[1] - np.argmax(mask[:, ::-1], axis=1), 0)


def pack_layout(mask):
    """Packed layout keeping every position up to each row's last True in `mask`.

    Args:
        mask: bool (N, T), True where a position counts (e.g. its target is not <NULL>).
            A False before a row's last True is kept (and stays masked by the caller).

    Returns:
        PackedLayout.
    """
    mask = np.asarray(mask, dtype=bool)
    N, T = mask.shape
    lengths = _lengths(mask)  # (N,)
    order = np.argsort(-lengths, kind="stable")
    steps = int(lengths.max()) if N else 0
    batch_sizes = (lengths[:, None] > np.arange(steps)[None, :]).sum(axis=0)  # (T',)
    offsets = np.zeros(steps + 1, dtype=np.int64)
    np.cumsum(batch_sizes, out=offsets[1:])
    return PackedLayout(order, lengths, batch_sizes, offsets)


def pack(a, layout):
    """Gathers a padded array into the packed layout.

    Args:
        a: padded array, shape (N, T, ...) (T at least the layout's T').
        layout: a PackedLayout of the same N.

    Returns:
        Packed array, shape (P, ...), same dtype.
    """
    out = np.empty((layout.size,) + a.shape[2:], dtype=a.dtype)
    for t, n in enumerate(layout.batch_sizes):
        out[layout.block(t)] = a[layout.order[:n], t]
    return out


def add_to_every_step(packed, per_row, layout):
    """In place: packed[block t] += per_row[:batch_sizes[t]] for every step t.

    Broadcasts one vector per (sorted) row over that row's time steps, e.g. an image
    term that enters every step's input.

    Args:
        packed: packed array (P, M), modified in place.
        per_row: (N, M), rows in the layout's sorted order.
        layout: the PackedLayout.
    """
    for t, n in enumerate(layout.batch_sizes):
        packed[layout.block(t)] += per_row[:n]


def sum_over_steps(packed, layout, n_rows):
    """Per (sorted) row, the sum of its packed rows over time: the backward pass of
    `add_to_every_step`.

    Args:
        packed: packed array (P, M).
        layout: the PackedLayout.
        n_rows: N, rows of the result (rows of length 0 get zeros).

    Returns:
        (N, M) array in the layout's sorted row order.
    """
    out = np.zeros((n_rows,) + packed.shape[1:], dtype=packed.dtype)
    for t, n in enumerate(layout.batch_sizes):
        out[:n] += packed[layout.block(t)]
    return out


def previous_states(h0, h, batch_sizes):
    """The state each packed position starts from: h0 at step 0, else the same row's
    state one step earlier (the first batch_sizes[t] rows of block t-1).

    Args:
        h0: initial states (N0, H), sorted like the layout, N0 >= batch_sizes[0].
        h: packed states (P, H).
        batch_sizes: (T',) rows alive per step.

    Returns:
        Packed (P, H) array; `previous_states(...).T @ da` sums h_{t-1}^T da_t over all
        steps and rows in one matrix product.
    """
    out = np.empty_like(h)
    start = prev = 0
    for t, n in enumerate(batch_sizes):
        out[start:start + n] = h0[:n] if t == 0 else h[prev:prev + n]
        prev, start = start, start + n
    return out


def unsort_rows(a_sorted, layout):
    """Rows back from the layout's sorted order to the padded batch's order."""
    out = np.empty_like(a_sorted)
    out[layout.order] = a_sorted
    return out
