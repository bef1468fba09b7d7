"""Independent pieces of work on several threads, one BLAS thread each.

NumPy releases the GIL inside matrix products and inside element-wise operations on
large arrays, so Python threads that work on separate data run at the same time. When
much of the work is element-wise (decoding: the log-softmax, the top-k, beam search's
bookkeeping), that beats giving one computation several BLAS threads, because NumPy
runs element-wise operations on one core whatever the BLAS thread count. On the
team's 2-core machine it made beam-5 decoding about 1.5x faster than two OpenBLAS
threads did (docs/performance.md has the measurements and the command).

The BLAS thread limit (threadpoolctl) is process-wide: while `map_threads` runs
several workers it is 1 for every thread of the process, and it is restored after.

This module knows functions and lists; not models, decoding or data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

__all__ = ["blas_threads", "map_threads"]

T = TypeVar("T")
R = TypeVar("R")


def blas_threads() -> int:
    """The thread count the loaded BLAS library may use now (1 if none is found).

    The CLI's --threads (or OPENBLAS_NUM_THREADS and friends) sets it; with several
    BLAS libraries loaded, the largest count is returned.
    """
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that it can be found)
    from threadpoolctl import threadpool_info

    counts = [lib["num_threads"] for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return max(counts, default=1)


def map_threads(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """[fn(item) for item in items], computed by up to `workers` threads.

    Results come back in the order of `items`, whatever order the threads finish in;
    the first exception raised by fn is raised here (after the running calls end). With
    one worker, or one item, fn runs in the calling thread and the BLAS limit is left
    alone.

    Args:
        fn: a function that is safe to call from several threads at once (it must not
            modify shared state; rnncap's decoding step functions are pure).
        items: the work, one item per call.
        workers: the most threads to use, >= 1.

    Returns:
        The list of results.

    Raises:
        ValueError: workers < 1.
    """
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    items = list(items)
    workers = min(int(workers), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    from threadpoolctl import threadpool_limits

    # One BLAS thread per worker: `workers` threads in all, not workers x BLAS threads.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
