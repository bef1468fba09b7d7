"""Word-embedding backward: which scatter-add is fastest at captioning sizes?

Compares, at V=1004, N*T=1600 (batch 100 x 16 inputs), W=256, float32:
  * np.add.at                         (the obvious unbuffered scatter-add)
  * sort + np.add.reduceat            (what rnncap.layers.embedding uses)
  * one-hot matrix product            (dense (V, N*T) @ (N*T, W))
  * np.bincount per flattened element (goes through float64; shown for reference)
with ids drawn uniformly and from a Zipf law (real captions repeat "a", "<END>"...).

Run:  .venv/bin/python benchmarks/bench_embedding.py
"""

import timeit

import numpy as np

from rnncap.layers.embedding import EmbeddingCache, word_embedding_backward

V, N, T, W = 1004, 100, 16, 256


def add_at(x, dout):
    dW = np.zeros((V, W), np.float32)
    np.add.at(dW, x, dout)
    return dW


def one_hot(x, dout):
    flat = x.ravel()
    oh = np.zeros((V, flat.size), np.float32)
    oh[flat, np.arange(flat.size)] = 1
    return oh @ dout.reshape(-1, W)


def bincount(x, dout):
    idx = (x.ravel()[:, None] * W + np.arange(W)).ravel()
    return np.bincount(idx, weights=dout.ravel(), minlength=V * W).reshape(V, W).astype(np.float32)


def main():
    rng = np.random.default_rng(0)
    dout = rng.standard_normal((N, T, W)).astype(np.float32)
    for law, x in [
        ("uniform", rng.integers(0, V, size=(N, T))),
        ("zipf", np.minimum(rng.zipf(1.3, size=(N, T)), V) - 1),
    ]:
        cache = EmbeddingCache(x, V, np.dtype(np.float32))
        ref = add_at(x, dout)
        print(f"ids {law}: {np.unique(x).size} distinct of {x.size}")
        for name, fn in [
            ("np.add.at", lambda: add_at(x, dout)),
            ("sort+reduceat (rnncap)", lambda: word_embedding_backward(dout, cache)),
            ("one-hot matmul", lambda: one_hot(x, dout)),
            ("bincount (float64 inside)", lambda: bincount(x, dout)),
        ]:
            assert np.allclose(fn(), ref, atol=1e-4)
            best = min(timeit.repeat(fn, number=20, repeat=7)) / 20
            print(f"  {name:28s} {best * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
