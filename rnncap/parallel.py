"""Independent pieces of work on several threads, one BLAS thread each.

NumPy releases the GIL inside matrix products and inside element-wise operations on
large arrays, so Python threads that work on separate data run at the same time. rnncap
uses that instead of BLAS threads: a training batch is split into row groups whose
forward and backward passes run side by side (`CaptioningRNN.loss`), and decoding runs
batches of images side by side (`rnncap.evaluate.decode_features`). Two reasons, both
measured on the team's 2-core machine (docs/performance.md):

* NumPy runs element-wise work (softmax, tanh, the LSTM gates, beam bookkeeping) on one
  core whatever the BLAS thread count, and the recurrence's small per-step products
  gain little from a second BLAS thread; two independent halves keep both cores busy.
* OpenBLAS's idle threads spin for a while after each product; mixing them with
  Python threads slowed a training step down by a quarter. So while `map_threads` runs
  several workers, BLAS is limited to one thread for the whole process (threadpoolctl),
  and restored after.

How many threads rnncap uses is a process-wide setting, like the BLAS thread count it
replaces: `set_threads(n)` (the CLI's --threads). The default is 1: everything runs in
the calling thread and the BLAS library is left as it is.

This module knows functions and lists; not models, decoding or data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

__all__ = ["get_threads", "map_threads", "set_threads"]

T = TypeVar("T")
R = TypeVar("R")

_threads = 1
_blas = None  # threadpoolctl's handle on the BLAS libraries, found once (0.2 ms a search)


def _check_count(name: str, n) -> int:
    try:
        ok = not isinstance(n, bool) and int(n) == n and n >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return int(n)


def set_threads(n: int) -> int:
    """Sets how many threads rnncap computes with; returns the previous count.

    Training steps split their batch into `n` row groups and decoding runs `n` image
    batches at once, each on its own thread with one BLAS thread. Results do not
    depend on `n` beyond floating-point rounding (a gradient summed over two halves is
    not bit-identical to the whole batch's), so a run resumes bit for bit only with
    the same count.

    Raises:
        ValueError: n is not an integer >= 1.
    """
    global _threads
    previous, _threads = _threads, _check_count("threads", n)
    return previous


def get_threads() -> int:
    """How many threads rnncap computes with (`set_threads`; 1 by default)."""
    return _threads


def _blas_controller():
    global _blas
    if _blas is None:
        import numpy  # noqa: F401  (loads NumPy's BLAS, so that it can be found)
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def map_threads(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """[fn(item) for item in items], computed by up to `workers` threads.

    Results come back in the order of `items`, whatever order the threads finish in;
    the first exception raised by fn is raised here (after the running calls end). With
    one worker, or one item, fn runs in the calling thread and the BLAS limit is left
    alone. Call it from one thread at a time: the BLAS limit it sets and restores is
    process-wide, so two overlapping calls could restore each other's values.

    Args:
        fn: a function that is safe to call from several threads at once (it must not
            modify shared state; rnncap's loss and step functions are pure).
        items: the work, one item per call.
        workers: the most threads to use, >= 1; None: `get_threads()`.

    Returns:
        The list of results.

    Raises:
        ValueError: workers is not an integer >= 1.
    """
    workers = get_threads() if workers is None else _check_count("workers", workers)
    items = list(items)
    workers = min(workers, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    # One BLAS thread per worker: `workers` threads in all, not workers x BLAS threads.
    with _blas_controller().limit(limits=1), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
