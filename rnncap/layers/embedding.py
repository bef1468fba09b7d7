"""Word embedding: integer token ids -> rows of a (V, W) table.

The forward pass is a gather, `W[x]`. The backward pass is the matching scatter-add:
every position that used word v sends its gradient to row v, so a word that appears
k times in the batch receives the SUM of k gradients. Plain fancy-index assignment
(`dW[x] = dout`) silently keeps only one of them; that is the classic bug this module
exists to avoid (see docs/layers/embedding.md).

The accumulation sorts the positions by word id and sums each run of equal ids with
`np.add.reduceat`, which is faster than `np.add.at` on Zipf-distributed ids (real
captions repeat "a", "<END>", ...) and no slower on uniform ids (measured in
docs/layers/embedding.md, benchmarks/bench_embedding.py); unlike a bincount over weights
it stays in the table's dtype instead of going through float64.

This module does not know the vocabulary's words or special tokens; ids are just rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class EmbeddingCache(NamedTuple):
    """What `word_embedding_backward` needs: the ids and the table's shape and dtype."""

    x: np.ndarray  # integer ids, any shape, e.g. (N, T)
    vocab_size: int  # V
    dtype: np.dtype  # dtype of the table W (and of dW)


def word_embedding_forward(x, W):
    """Looks up the word vector of every id: out[n, t] = W[x[n, t]].

    Args:
        x: integer ids in [0, V), shape (N, T) (any shape works).
        W: embedding table, shape (V, W).

    Returns:
        (out, cache): out has shape x.shape + (W,); cache is an `EmbeddingCache`.
    """
    out = W[x]  # (N, T, W)
    return out, EmbeddingCache(x, W.shape[0], W.dtype)


def word_embedding_backward(dout, cache):
    """Backward pass of `word_embedding_forward`: scatter-add rows of dout into dW.

    Repeated ids accumulate: dW[v] = sum of dout at every position where x == v.

    Args:
        dout: upstream gradient, shape x.shape + (W,), e.g. (N, T, W).
        cache: the `EmbeddingCache` from the forward pass.

    Returns:
        dW: gradient of the table, shape (V, W), in the table's dtype.
    """
    x, V, dtype = cache
    Wdim = dout.shape[-1]
    ids = x.reshape(-1)  # (N*T,)
    d = dout.reshape(-1, Wdim)  # (N*T, W)
    dW = np.zeros((V, Wdim), dtype=dtype)
    if ids.size == 0:
        return dW
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    # First position of every run of equal ids in the sorted order.
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    dW[sorted_ids[starts]] = np.add.reduceat(d[order], starts, axis=0)
    return dW
