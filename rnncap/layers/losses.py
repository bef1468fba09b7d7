"""Softmax cross-entropy over sequences, and a stable log-softmax.

`temporal_softmax_loss` scores every one of the N*T positions of a caption batch in ONE
array operation over a (N*T, V) view, never a loop over time. Two choices matter:

* the loss is SUMMED over unmasked positions and divided by the batch size N (not by the
  number of tokens), so it is "cross-entropy per caption", as in CS231n; the gradient
  carries the same 1/N (docs/layers/losses.md says why);
* masked positions (the <NULL> padding after <END>) get exactly zero loss and exactly
  zero gradient, whatever their scores.

The softmax subtracts each row's maximum before exponentiating, so scores of any
magnitude neither overflow nor underflow to log(0). This module does not know which id
is <NULL>: the caller builds the mask.
"""

from __future__ import annotations

import numpy as np


def log_softmax(x, axis=-1):
    """Numerically stable log(softmax(x)) along one axis.

    Args:
        x: scores of any shape, e.g. (N, V).
        axis: the axis that sums to one after exponentiating.

    Returns:
        Log-probabilities, same shape and dtype as x.
    """
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


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
    flat = x.reshape(N * T, V)
    rows = np.arange(N * T)
    y_flat = y.reshape(N * T)
    m = mask.reshape(N * T)

    shifted = flat - flat.max(axis=1, keepdims=True)  # (N*T, V), max is 0 per row
    e = np.exp(shifted)
    z = e.sum(axis=1)  # (N*T,), in [1, V]
    target_logp = shifted[rows, y_flat] - np.log(z)  # (N*T,)
    loss = -float(target_logp[m].sum()) / N

    dx = e
    dx /= z[:, None]  # softmax probabilities, in place
    dx[rows, y_flat] -= 1
    dx *= (m.astype(x.dtype) / x.dtype.type(N))[:, None]  # zero rows where masked
    if verbose:
        print("dx_flat:", dx.shape)
    return loss, dx.reshape(N, T, V)
