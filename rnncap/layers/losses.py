"""Softmax cross-entropy over sequences, and a stable log-softmax.

`temporal_softmax_loss` is CS231n's: it scores every one of the N*T positions of a
caption batch in ONE array operation over a flattened (N*T, V) view, never a loop over
time. Two choices matter:

* the loss is SUMMED over unmasked positions and divided by the batch size N (not by the
  number of tokens), so it is "cross-entropy per caption", as in CS231n; the gradient
  carries the same 1/N (docs/layers/losses.md says why);
* masked positions (the <NULL> padding after <END>) get exactly zero loss and exactly
  zero gradient, whatever their scores.

The softmax subtracts each row's maximum before exponentiating and the loss is taken
from the log-softmax, so scores of any magnitude neither overflow nor underflow to
log(0). The trainer runs the same loss on packed rows, in place
(rnncap.fast.losses.masked_softmax_loss), tested equal to this one.

This module does not know which id is <NULL>: the caller builds the mask.
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
    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = np.asarray(mask, dtype=bool).reshape(N * T)
    rows = np.arange(N * T)

    log_probs = log_softmax(x_flat, axis=1)  # (N*T, V)
    loss = -float(log_probs[rows, y_flat][mask_flat].sum()) / N
    dx_flat = np.exp(log_probs)  # the softmax probabilities
    dx_flat[rows, y_flat] -= 1  # d(-log p_y)/dx = p - onehot(y)
    dx_flat /= N
    dx_flat *= mask_flat[:, None]  # masked positions: exactly 0
    if verbose:
        print("dx_flat:", dx_flat.shape)
    return loss, dx_flat.reshape(N, T, V)
