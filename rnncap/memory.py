"""Memory estimates, made before allocating, so that a size typo fails with a sentence.

``--hidden-dim 200000`` asks for an LSTM whose recurrent matrix alone is 200000 x 800000 floats
(596 GiB in float32); NumPy would raise a bare MemoryError somewhere inside the model's constructor,
or the machine would swap. The functions below count the bytes of the big arrays a model, a
training step or a caption array will need, and :func:`require` refuses, naming what was asked
and what it would take, when that exceeds the machine's physical memory.

The counts are lower bounds on what rnncap allocates (the largest arrays only), so a refusal is
never a false alarm: a run that is refused could not have fitted.

This module knows sizes and byte counts. It does not know models, files or flags beyond the
names it is given for its messages.
"""

from __future__ import annotations

import os

__all__ = ["MemoryEstimateError", "physical_bytes", "require", "format_bytes", "model_bytes",
           "training_step_bytes", "caption_array_bytes"]


class MemoryEstimateError(ValueError):
    """What was asked for needs more memory than this machine has."""


_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max",                     # cgroup v2
                  "/sys/fs/cgroup/memory/memory.limit_in_bytes")    # cgroup v1


def physical_bytes() -> int | None:
    """The memory this process may use, in bytes: the machine's physical memory, or a container's
    (cgroup) limit when that is lower, since going past it is a SIGKILL, not a MemoryError.
    None where the OS says neither."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require(nbytes: int, what: str, limit: int | None = None) -> None:
    """Raise MemoryEstimateError if `nbytes` exceeds `limit` (default: physical memory).

    Args:
        nbytes: the estimate.
        what: what needs it, for the message (e.g. "model.hidden_dim 200000: the parameters").
        limit: bytes available; None: :func:`physical_bytes` (no check when unknown).
    """
    limit = physical_bytes() if limit is None else limit
    if limit is not None and nbytes > limit:
        raise MemoryEstimateError(f"{what} would need at least {format_bytes(nbytes)} of memory; "
                                  f"this machine has {format_bytes(limit)}")


def model_bytes(V: int, D: int, W: int, H: int, cell_type: str, itemsize: int,
                image_every_step: bool = False) -> int:
    """Bytes of a CaptioningRNN's parameters (V vocabulary, D features, W word vectors, H hidden)."""
    G = 4 * H if cell_type == "lstm" else H  # gate width
    count = V * W + D * H + H + W * G + H * G + G + H * V + V
    if image_every_step:
        count += D * G
    return count * itemsize


def training_step_bytes(N: int, T: int, V: int, W: int, H: int, cell_type: str,
                        itemsize: int) -> int:
    """Bytes of one training step's largest activations for a minibatch of N captions of T tokens.

    Counted: the word vectors (N, T, W), the hidden states and gates kept for backward
    (N, T, H) and (N, T, 4H) for an LSTM, and the scores with their gradient (N, T, V) twice.
    """
    G = 4 * H if cell_type == "lstm" else H
    return N * T * (W + 2 * H + G + 2 * V) * itemsize


def caption_array_bytes(M: int, T: int) -> int:
    """Bytes of an int32 (M, T) caption array."""
    return M * T * 4
