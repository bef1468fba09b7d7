"""Tests for rnncap.layers.embedding: the gather, and the scatter-add that must
accumulate repeated ids."""

import numpy as np

from rnncap.gradcheck import eval_numerical_gradient_array, rel_error
from rnncap.layers import word_embedding_backward, word_embedding_forward


def test_forward_picks_rows():
    W = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [1.0, 1.1, 1.2]])
    x = np.array([[0, 2, 1, 3], [3, 1, 1, 0]])
    out, _ = word_embedding_forward(x, W)
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out[0, 1], [0.7, 0.8, 0.9])
    np.testing.assert_array_equal(out[1, 0], [1.0, 1.1, 1.2])


def test_backward_accumulates_repeated_ids_by_hand():
    W = np.zeros((4, 2))
    x = np.array([[1, 1, 3], [1, 0, 3]])  # id 1 three times, id 3 twice, id 2 never
    dout = np.arange(12, dtype=np.float64).reshape(2, 3, 2)
    _, cache = word_embedding_forward(x, W)
    dW = word_embedding_backward(dout, cache)
    expected = np.array(
        [
            [8.0, 9.0],  # id 0 at (1, 1)
            [0 + 2 + 6, 1 + 3 + 7],  # id 1 at (0, 0), (0, 1), (1, 0)
            [0.0, 0.0],  # unused
            [4 + 10, 5 + 11],  # id 3 at (0, 2), (1, 2)
        ]
    )
    np.testing.assert_array_equal(dW, expected)


def test_backward_matches_np_add_at_on_many_repeats():
    rng = np.random.default_rng(0)
    V, Wd = 50, 7
    x = rng.integers(0, 10, size=(20, 9))  # only 10 of 50 ids used, each many times
    dout = rng.standard_normal((20, 9, Wd))
    _, cache = word_embedding_forward(x, np.zeros((V, Wd)))
    reference = np.zeros((V, Wd))
    np.add.at(reference, x, dout)
    np.testing.assert_allclose(word_embedding_backward(dout, cache), reference, rtol=1e-12, atol=1e-12)


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    N, T, V, Wd = 3, 5, 6, 4
    x = rng.integers(0, V, size=(N, T))
    W = rng.standard_normal((V, Wd))
    dout = rng.standard_normal((N, T, Wd))
    _, cache = word_embedding_forward(x, W)
    dW = word_embedding_backward(dout, cache)
    dW_num = eval_numerical_gradient_array(lambda a: word_embedding_forward(x, a)[0], W, dout)
    assert rel_error(dW, dW_num) <= 1e-10


def test_float32_stays_float32_and_single_id_batch():
    W = np.ones((5, 3), np.float32)
    x = np.full((2, 4), 2)
    out, cache = word_embedding_forward(x, W)
    dW = word_embedding_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and dW.dtype == np.float32
    np.testing.assert_array_equal(dW[2], [8.0, 8.0, 8.0])
    assert np.count_nonzero(dW) == 3
