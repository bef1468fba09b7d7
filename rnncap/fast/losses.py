"""The softmax cross-entropy of the fast path: rows in any order, in place.

`masked_softmax_loss` is `rnncap.layers.temporal_softmax_loss` on a (M, V) array of
rows in any order (the trainer's packed positions), with the sum divided by a given
divisor and, optionally, the gradient written into the scores' own memory: five passes
over the scores and no (M, V) temporary. It is tested equal to the reference loss.

This module does not know which id is <NULL> (the caller builds the mask), nor how the
rows were packed.
"""

from __future__ import annotations

import numpy as np


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
