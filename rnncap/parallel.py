"""Data parallelism: a batch split into row groups, their gradients summed; work on threads.

A training batch's loss is a mean over its rows, so it can be computed in pieces: split
the rows into groups, compute each group's loss and gradients on its own (on a thread
here; on another machine's process for MPI), and add them up weighted by each group's
share of the rows. `data_parallel(loss_fn, batch, groups)` does exactly that and
nothing else; `split_rows` deals rows into groups of about equal work. The trainer
(rnncap.solver) uses both; decoding runs independent image batches with `map_threads`.

NumPy releases the GIL inside matrix products and element-wise operations on large
arrays, so Python threads that work on separate data run at the same time. rnncap
uses that instead of BLAS threads (measured in docs/performance.md):

* NumPy runs element-wise work (softmax, tanh, the LSTM gates, beam bookkeeping) on one
  core whatever the BLAS thread count, and the recurrence's small per-step products
  gain little from a second BLAS thread; independent row groups keep every core busy.
* OpenBLAS's idle threads spin for a while after each product, and mixing them with
  Python threads slows a training step down. So while `map_threads` runs
  several workers, BLAS is limited to one thread for the whole process (threadpoolctl),
  and restored after.

How many threads rnncap uses is a process-wide setting, like the BLAS thread count it
replaces: `set_threads(n)` (the CLI's --threads). The default, `default_threads()`, is
the machine's core count capped at DEFAULT_MAX_THREADS (docs/performance.md shows the
measurements behind the cap).

This module knows functions, arrays of rows and lists; not models, what a loss
computes, decoding or data.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

__all__ = ["DEFAULT_MAX_THREADS", "data_parallel", "default_threads", "get_threads",
           "map_threads", "set_threads", "split_rows"]

T = TypeVar("T")
R = TypeVar("R")

#: The most threads rnncap uses unless told otherwise (see default_threads).
DEFAULT_MAX_THREADS = 4


def default_threads() -> int:
    """The default thread count: the cores this process may run on, at most
    DEFAULT_MAX_THREADS. A training batch of 100 captions split further leaves each
    thread too few rows for its matrix products to run at speed
    (docs/performance.md, "How many threads")."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, DEFAULT_MAX_THREADS))


_threads = default_threads()
_blas = None  # threadpoolctl's handle on the BLAS libraries, found once (a search is slow)


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
    """How many threads rnncap computes with (`set_threads`; `default_threads()` until set)."""
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


def split_rows(costs, groups: int) -> list[np.ndarray]:
    """Rows of a batch dealt into `groups` groups of about equal total cost.

    The rows are ranked by cost, highest first, and dealt round-robin: group g gets
    ranks g, g + groups, ... So every group gets costly and cheap rows alike, and the
    groups' totals differ by at most one row's cost.

    Args:
        costs: (N,) numbers, the work each row costs (e.g. its caption's length).
        groups: the number of groups wanted, >= 1.

    Returns:
        A list of max(1, min(groups, N)) int arrays of row indices, each in increasing
        order; together they hold every row once. [arange(N)] for one group.

    Raises:
        ValueError: groups is not an integer >= 1.
    """
    costs = np.asarray(costs)
    N = costs.shape[0]
    groups = max(1, min(_check_count("groups", groups), N))
    if groups == 1:
        return [np.arange(N)]
    ranked = np.argsort(-costs, kind="stable")
    return [np.sort(ranked[g::groups]) for g in range(groups)]


def data_parallel(loss_fn: Callable, batch: Sequence[np.ndarray], groups: Sequence[np.ndarray],
                  workers: int | None = None) -> tuple[float, dict]:
    """The batch's loss and gradients, computed group by group and summed.

    `loss_fn(*arrays) -> (loss, grads)` must return the MEAN over the rows it is given
    (as CaptioningRNN's losses do: summed, divided by their N). Group g's loss and
    gradients are weighted by n_g / N, so the sum equals the whole batch's mean up to
    float rounding. Groups run on up to `workers` threads (`map_threads`) and are added
    in the order given, so the result does not depend on how many threads ran them.

    Args:
        loss_fn: the loss function; safe to call from several threads at once (pure).
        batch: arrays with a leading axis N (e.g. features (N, D), captions (N, T + 1)).
        groups: int arrays of row indices that together hold every row once
            (`split_rows`). With one group of every row the batch goes to loss_fn as
            it is. Groups that hold only some rows (one MPI rank's share,
            rnncap.mpi) give those rows' share of the batch mean: the same n_g / N
            weights, summed over the groups given.
        workers: the most threads to use; None: `get_threads()`.

    Returns:
        (loss, grads): a float and a dict of arrays, the keys, shapes and dtypes of
        loss_fn's gradients.
    """
    N = len(batch[0])
    if len(groups) == 1 and len(groups[0]) == N:
        return loss_fn(*batch)

    def one_group(rows):
        loss, grads = loss_fn(*(a[rows] for a in batch))
        share = len(rows) / N
        for g in grads.values():
            g *= g.dtype.type(share)
        return loss * share, grads

    parts = map_threads(one_group, groups, workers)
    loss, grads = parts[0]
    for part_loss, part_grads in parts[1:]:
        loss += part_loss
        for k in grads:
            grads[k] += part_grads[k]
    return loss, grads
