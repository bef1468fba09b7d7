"""A padded batch laid out as the fast path's packed rows (every row alive at every step)."""

import numpy as np


def time_major(a):
    """(N, T, ...) -> (T*N, ...): step 0 of every row, then step 1, ..."""
    N, T = a.shape[:2]
    return np.ascontiguousarray(a.swapaxes(0, 1)).reshape((T * N,) + a.shape[2:])


def batch_major(packed, N, T):
    """Inverse of time_major."""
    return packed.reshape((T, N) + packed.shape[1:]).swapaxes(0, 1)
