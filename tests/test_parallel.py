import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rnncap.parallel import get_threads, map_threads, set_threads


def _blas_threads():
    return max(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def test_results_keep_the_order_of_the_items_whatever_finishes_first():
    def slow_for_small(x):
        time.sleep(0.02 * (5 - x))  # item 0 finishes last
        return x * x

    assert map_threads(slow_for_small, range(5), workers=3) == [0, 1, 4, 9, 16]


def test_work_runs_on_several_threads_at_once():
    barrier = threading.Barrier(2, timeout=10)  # breaks (raises) unless two calls overlap
    idents = set()

    def meet(_):
        barrier.wait()
        idents.add(threading.get_ident())

    map_threads(meet, range(2), workers=2)
    assert len(idents) == 2 and threading.get_ident() not in idents


def test_one_worker_or_one_item_runs_inline():
    main = threading.get_ident()
    assert map_threads(lambda _: threading.get_ident(), range(3), workers=1) == [main] * 3
    assert map_threads(lambda _: threading.get_ident(), [0], workers=4) == [main]
    assert map_threads(lambda x: x, [], workers=4) == []


def test_blas_is_limited_to_one_thread_inside_and_restored_after():
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        assert map_threads(lambda _: _blas_threads(), range(2), workers=2) == [1, 1]
        assert _blas_threads() == before == 2
    # A product computed on the workers equals the one computed here.
    a = np.random.default_rng(0).standard_normal((64, 64))
    got = map_threads(lambda m: m @ m, [a, a.T], workers=2)
    np.testing.assert_array_equal(got[0], a @ a)
    np.testing.assert_array_equal(got[1], a.T @ a.T)


def test_an_exception_in_a_worker_reaches_the_caller():
    def boom(x):
        if x == 2:
            raise RuntimeError("item 2 failed")
        return x

    with pytest.raises(RuntimeError, match="item 2 failed"):
        map_threads(boom, range(4), workers=2)


def test_the_process_wide_count_is_the_default_number_of_workers():
    assert get_threads() == 1
    previous = set_threads(3)
    try:
        assert previous == 1 and get_threads() == 3
        idents = map_threads(lambda _: (time.sleep(0.05), threading.get_ident())[1], range(3))
        assert len(set(idents)) == 3
    finally:
        set_threads(previous)
    assert get_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None, float("inf"), float("nan")])
def test_bad_counts(bad):
    if bad is not None:  # None is map_threads' "use get_threads()"
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            map_threads(lambda x: x, range(3), workers=bad)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        set_threads(bad)
    assert get_threads() == 1
