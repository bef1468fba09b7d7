import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rnncap.gradcheck import eval_numerical_gradient, rel_error
from rnncap.model import CaptioningRNN
from rnncap.parallel import (
    data_parallel,
    default_threads,
    get_threads,
    map_threads,
    set_threads,
    split_rows,
)


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
    assert get_threads() == default_threads()
    previous = set_threads(3)
    try:
        assert previous == default_threads() and get_threads() == 3
        # Each call waits until three calls run at once, so this passes only with three
        # threads at work, however slowly a loaded machine starts them.
        barrier = threading.Barrier(3, timeout=30)
        idents = map_threads(lambda _: (barrier.wait(), threading.get_ident())[1], range(3))
        assert len(set(idents)) == 3
    finally:
        set_threads(previous)
    assert get_threads() == default_threads()


def test_default_is_the_cores_capped():
    import os

    from rnncap.parallel import DEFAULT_MAX_THREADS

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_threads() == max(1, min(cores, DEFAULT_MAX_THREADS))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None, float("inf"), float("nan")])
def test_bad_counts(bad):
    if bad is not None:  # None is map_threads' "use get_threads()"
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            map_threads(lambda x: x, range(3), workers=bad)
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        set_threads(bad)
    assert get_threads() == default_threads()


def test_split_rows_by_hand():
    costs = [2, 4, 0, 3, 4]  # ranked rows 1, 4, 3, 0, 2 (highest first, stable)
    assert [list(g) for g in split_rows(costs, 2)] == [[1, 2, 3], [0, 4]]
    assert [list(g) for g in split_rows(costs, 3)] == [[0, 1], [2, 4], [3]]
    assert [list(g) for g in split_rows(costs, 1)] == [[0, 1, 2, 3, 4]]
    assert [list(g) for g in split_rows(costs, 9)] == [[1], [4], [3], [0], [2]]  # at most N
    with pytest.raises(ValueError, match="groups must be an integer >= 1"):
        split_rows(costs, 0)


def test_split_rows_hold_every_row_once_with_balanced_costs():
    rng = np.random.default_rng(7)
    costs = rng.integers(0, 18, size=101)
    for groups in (2, 3, 4):
        parts = split_rows(costs, groups)
        assert sorted(np.concatenate(parts)) == list(range(101))
        sums = [int(costs[g].sum()) for g in parts]
        assert max(sums) - min(sums) <= 17, sums  # at most one row's cost apart


def _model(cell, every=True):
    words = ["<NULL>", "<START>", "<END>"] + [f"w{i}" for i in range(6)]
    return CaptioningRNN({w: i for i, w in enumerate(words)}, input_dim=4, wordvec_dim=3,
                         hidden_dim=5, cell_type=cell, dtype=np.float64, seed=0,
                         image_every_step=every)


def _captions(rng, N, T, pad_from):
    caps = rng.integers(3, 9, size=(N, T))
    caps[:, 0] = 1
    for n, end in enumerate(pad_from):
        caps[n, end] = 2
        caps[n, end + 1:] = 0
    return caps


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("groups,workers", [(2, 2), (3, 2), (7, 3), (3, 1)])
def test_data_parallel_equals_the_whole_batch(cell, groups, workers):
    """Row groups (one caption has no target, one is full length) summed give the whole
    batch's loss and gradients, on any number of threads."""
    m = _model(cell)
    rng = np.random.default_rng(5)
    features = rng.standard_normal((7, 4))
    captions = _captions(rng, 7, 8, [1, 7, 3, 5, 2, 7, 4])
    captions[0, 1:] = 0
    want_loss, want = m.fast_loss(features, captions)
    parts = split_rows(m.row_costs(captions), groups)
    assert len(parts) == groups
    loss, grads = data_parallel(m.fast_loss, (features, captions), parts, workers)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-12, atol=1e-14, err_msg=k)
        assert grads[k].dtype == want[k].dtype


def test_data_parallel_result_does_not_depend_on_the_thread_count():
    m = _model("lstm")
    rng = np.random.default_rng(6)
    features = rng.standard_normal((9, 4))
    captions = _captions(rng, 9, 6, [3, 4, 5, 2, 1, 5, 5, 3, 4])
    parts = split_rows(m.row_costs(captions), 3)
    one = data_parallel(m.fast_loss, (features, captions), parts, workers=1)
    three = data_parallel(m.fast_loss, (features, captions), parts, workers=3)
    assert one[0] == three[0]
    for k in one[1]:
        np.testing.assert_array_equal(one[1][k], three[1][k])


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_data_parallel_gradient_matches_finite_differences(cell):
    m = _model(cell)
    rng = np.random.default_rng(6)
    for k in m.params:
        m.params[k] = 0.5 * rng.standard_normal(m.params[k].shape)
    features = rng.standard_normal((4, 4))
    captions = _captions(rng, 4, 6, [3, 4, 5, 2])
    parts = split_rows(m.row_costs(captions), 2)

    def loss_fn():
        return data_parallel(m.fast_loss, (features, captions), parts, workers=2)

    _, grads = loss_fn()
    for k in m.params:
        num = eval_numerical_gradient(lambda _: loss_fn()[0], m.params[k], verbose=False)
        assert rel_error(grads[k], num) <= 1e-5, k


def test_data_parallel_of_a_share_of_the_rows_is_that_shares_part_of_the_mean():
    """What one MPI rank computes (rnncap.mpi): groups over part of the rows give their n_g / N
    share, and the shares of all ranks add up to the whole batch's mean."""
    from rnncap.parallel import data_parallel, split_rows

    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3))
    w = rng.standard_normal(3)

    def loss_fn(x):  # mean over rows of (x . w)^2 and its gradient in w
        z = x @ w
        return float(np.mean(z ** 2)), {"w": 2 * (z[:, None] * x).mean(axis=0)}

    whole_loss, whole = loss_fn(X)
    ranks = split_rows(np.ones(10), 3)
    parts = [data_parallel(loss_fn, (X,), [rows], workers=1) for rows in ranks]
    loss = sum(p[0] for p in parts)
    grad = sum(p[1]["w"] for p in parts)
    assert abs(loss - whole_loss) < 1e-12 and np.allclose(grad, whole["w"], rtol=1e-12, atol=0)
    # a single share on its own is not the whole batch's mean (it is weighted by n_r / N)
    assert abs(parts[0][0] - loss_fn(X[ranks[0]])[0] * len(ranks[0]) / 10) < 1e-12
