"""Softmax cross-entropy over sequences, and a stable log-softmax.

`temporal_softmax_loss` scores every one of the N*T positions of a caption batch in ONE
array operation over a (N*T, V) view, never a loop over time. Two choices matter:

* the loss is SUMMED over unmasked positions and divided by the batch size N (not by the
  number of tokens), so it is "cross-entropy per caption", as in CS231n; the gradient
  carries the same 1/N (docs/layers/losses.md says why);
* masked positions (the <NULL> padding after <END>) get exactly zero loss and exactly
  zero gradient, whatever their scores.

`masked_softmax_loss` does the same on rows in any order (the model's packed positions),
optionally reusing the scores' memory for the gradient.

The softmax subtracts each row's maximum before exponentiating, so scores of any
magnitude neither overflow nor underflow to log(0). This module does not know which id
is <NULL>: the caller builds the mask.
"""

from __future__ import annotations

import numpy as np


def log_softmax(x, axis=-1, out=None):
    """Numerically stable log(softmax(x)) along one axis.

    Args:
        x: scores of any shape, e.g. (N, V).
        axis: the axis that sums to one after exponentiating.
        out: optional array of x's shape and dtype for the result; `out=x` works in
            place (decoding does this with its fresh scores: no (N, V) temporaries
            beyond one for the exponentials).

    Returns:
        Log-probabilities, same shape and dtype as x (`out` if given).
    """
    out = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)  # max is 0 now
    out -= np.log(np.exp(out).sum(axis=axis, keepdims=True))
    return out


def masked_softmax_loss(x, y, mask, divisor, overwrite_x=False):
    """Softmax cross-entropy over the rows of x, summed where mask is True, / divisor.

        loss = -(1/divisor) * sum_m mask[m] * log softmax(x[m])[y[m]]

    The work of `temporal_softmax_loss`, on rows in any order (e.g. packed positions).
    Five passes over x and no (M, V) temporary when `overwrite_x` is set.

    Args:
        x: scores, shape (M, V).
        y: target ids in [0, V), shape (M,).
        mask: which rows count, bool shape (M,).
        divisor: what the sum is divided by (the batch size N for captions).
        overwrite_x: reuse x's memory for the gradient (x is destroyed).

    Returns:
        (loss, dx): loss is a Python float; dx has the shape and dtype of x and is
        exactly zero in masked rows.
    """
    M = x.shape[0]
    rows = np.arange(M)
    dx = np.subtract(x, x.max(axis=1, keepdims=True), out=x if overwrite_x else None)
    target = dx[rows, y]  # (M,) shifted target scores
    np.exp(dx, out=dx)
    z = dx.sum(axis=1)  # (M,), in [1, V]
    loss = -float((target - np.log(z))[mask].sum()) / divisor
    weight = mask.astype(x.dtype) / x.dtype.type(divisor)  # (M,), 0 where masked
    dx *= (weight / z)[:, None]  # softmax probabilities times the row's weight
    dx[rows, y] -= weight
    return loss, dx


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy summed over unmasked time steps, divided by N.

        loss = -(1/N) * sum_{n,t} mask[n,t] * log softmax(x[n,t])[y[n,t]]

    Args:
        x: scores, shape (N, T, V).
        y: target ids in [0, V), shape (N, T).
        mask: which positions count, bool shape (N, T).
        verbose: print the shapes of the intermediate arrays (CS231n's debugging aid).

    Returns:
        (loss, dx): loss is a Python float; dx has the shape and dtype of x, and is
        exactly zero at masked positions.
    """
    N, T, V = x.shape
    loss, dx = masked_softmax_loss(x.reshape(N * T, V), y.reshape(N * T),
                                   np.asarray(mask, dtype=bool).reshape(N * T), N)
    if verbose:
        print("dx_flat:", dx.shape)
    return loss, dx.reshape(N, T, V)
