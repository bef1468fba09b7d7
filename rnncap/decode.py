"""Decoding captions from a step function: greedy, sampling and beam search.

Every decoder here sees a model only through one callable,

    step(tokens, state) -> (logprobs, new_state)

where ``tokens`` is an int array of shape (N,), ``logprobs`` is (N, V) log-
probabilities of the next token, and ``state`` is a tuple of NumPy arrays whose
leading axis is N (for example ``(h,)`` for a vanilla RNN or ``(h, c)`` for an
LSTM). Decoders reorder or copy rows of the state with ``a[idx]`` and never look
inside it.

What this module does NOT know: the cell type, the parameters, the vocabulary
(only the integer ids of <START>, <END> and <NULL> are passed in), images or
features. Turning ids into words is the vocabulary's job.

Output layout (shared by all decoders): an int32 array of shape (N, max_length)
whose first column is the first *generated* token (not <START>); once a row has
emitted ``end_id`` (which is kept), every later position holds ``null_id``.
"""

from __future__ import annotations

import numpy as np


def _check_common(state, start_id, end_id, max_length):
    """Validate arguments shared by all decoders; return the batch size N."""
    if not isinstance(state, tuple) or len(state) == 0:
        raise TypeError(
            f"state must be a non-empty tuple of arrays with leading axis N, "
            f"got {type(state).__name__}")
    n = np.shape(state[0])[0] if np.ndim(state[0]) > 0 else None
    if n is None or any(np.ndim(a) == 0 or np.shape(a)[0] != n for a in state):
        raise ValueError(
            "every array in state must share the leading batch axis N; got shapes "
            f"{[np.shape(a) for a in state]}")
    if int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if start_id == end_id:
        raise ValueError(f"start_id and end_id must differ, both are {start_id}")
    return n


def _call_step(step, tokens, state, n):
    """Run one step and check the shape of what came back."""
    logprobs, new_state = step(tokens, state)
    logprobs = np.asarray(logprobs)
    if logprobs.ndim != 2 or logprobs.shape[0] != n:
        raise ValueError(
            f"step must return logprobs of shape (N, V) with N={n}, "
            f"got shape {logprobs.shape}")
    if not isinstance(new_state, tuple):
        raise TypeError(
            f"step must return state as a tuple of arrays, got {type(new_state).__name__}")
    return logprobs, new_state


def greedy(step, state, start_id, end_id, max_length, null_id=0):
    """Decode by taking the most probable token at every step, for a batch.

    Args:
        step: ``step(tokens (N,), state) -> (logprobs (N, V), new_state)``.
        state: tuple of arrays with leading axis N, the state before <START>.
        start_id: id fed at the first step.
        end_id: id that finishes a caption (kept in the output).
        max_length: number of tokens generated at most, T.
        null_id: filler written after a row has finished.

    Returns:
        int32 array (N, T): generated ids, ``null_id`` after ``end_id``.
    """
    n = _check_common(state, start_id, end_id, max_length)
    out = np.full((n, max_length), null_id, dtype=np.int32)
    tokens = np.full(n, start_id, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    for t in range(max_length):
        logprobs, state = _call_step(step, tokens, state, n)
        tokens = np.argmax(logprobs, axis=1)  # (N,)
        out[:, t] = np.where(done, null_id, tokens)
        done |= tokens == end_id
        if done.all():
            break
    return out
