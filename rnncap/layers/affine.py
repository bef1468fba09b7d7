"""Affine layers: one linear map plus bias, for a batch or for every time step.

`affine` maps a batch of vectors (N, D) -> (N, M): the image projection to the initial
hidden state, and the output scores of a single decoding step. `temporal_affine` applies
the same map to every one of the N*T positions of a sequence batch (N, T, D) -> (N, T, M)
with ONE matrix product over the flattened positions, which is what keeps the output
projection and the recurrent input projection out of the Python time loop.

This module does not know what the vectors mean (pixels, words or hidden states), and
keeps no state: the caches below hold exactly what the backward pass needs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class AffineCache(NamedTuple):
    """What `affine_backward` needs: the input (reshaped to (N, D)) and the weights."""

    x: np.ndarray  # (N, D) -- the flattened input
    w: np.ndarray  # (D, M)
    x_shape: tuple  # original input shape, restored for dx


def affine_forward(x, w, b):
    """Computes out = x w + b.

    CS231n's affine layer: any trailing shape of one example is flattened to D.

    Args:
        x: input, shape (N, d_1, ..., d_k) with d_1 * ... * d_k = D.
        w: weights, shape (D, M).
        b: bias, shape (M,).

    Returns:
        (out, cache): out has shape (N, M); cache is an `AffineCache`.
    """
    x2 = x.reshape(x.shape[0], w.shape[0])  # (N, D); explicit D also works for N = 0
    out = x2 @ w  # (N, M)
    out += b
    return out, AffineCache(x2, w, x.shape)


def affine_backward(dout, cache):
    """Backward pass of `affine_forward`.

    Args:
        dout: upstream gradient, shape (N, M).
        cache: the `AffineCache` from the forward pass.

    Returns:
        (dx, dw, db) with the shapes of x, w and b.
    """
    x2, w, x_shape = cache
    dx = (dout @ w.T).reshape(x_shape)
    dw = x2.T @ dout  # (D, M): sum over the batch of outer products x_n dout_n
    db = dout.sum(axis=0)
    return dx, dw, db


class TemporalAffineCache(NamedTuple):
    """What `temporal_affine_backward` needs: the input and the weights."""

    x: np.ndarray  # (N, T, D)
    w: np.ndarray  # (D, M)


def temporal_affine_forward(x, w, b):
    """Applies the same affine map to every time step: out[n, t] = x[n, t] w + b.

    One matrix product over all N*T positions; no loop over time.

    Args:
        x: input, shape (N, T, D).
        w: weights, shape (D, M).
        b: bias, shape (M,).

    Returns:
        (out, cache): out has shape (N, T, M); cache is a `TemporalAffineCache`.
    """
    N, T, D = x.shape
    out = (x.reshape(N * T, D) @ w).reshape(N, T, w.shape[1]) + b  # (N, T, M)
    return out, TemporalAffineCache(x, w)


def temporal_affine_backward(dout, cache):
    """Backward pass of `temporal_affine_forward`.

    The weight gradient is summed over batch AND time, which is again one matrix
    product of the flattened (N*T, D) input with the flattened (N*T, M) gradient.

    Args:
        dout: upstream gradient, shape (N, T, M).
        cache: the `TemporalAffineCache` from the forward pass.

    Returns:
        (dx, dw, db) with shapes (N, T, D), (D, M), (M,).
    """
    x, w = cache
    N, T, D = x.shape
    M = w.shape[1]
    d2 = dout.reshape(N * T, M)
    dx = (d2 @ w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T @ d2  # (D, M)
    db = d2.sum(axis=0)  # (M,)
    return dx, dw, db
