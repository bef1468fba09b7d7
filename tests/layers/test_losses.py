"""Tests for rnncap.layers.losses: hand-computed values, masking, the 1/N convention,
stability, and the gradient against finite differences."""

import math

import numpy as np

from rnncap.gradcheck import eval_numerical_gradient, rel_error
from rnncap.layers import log_softmax, temporal_softmax_loss


def test_loss_by_hand():
    x = np.array([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])  # N=1, T=2, V=3
    y = np.array([[2, 1]])
    mask = np.array([[True, True]])
    loss, dx = temporal_softmax_loss(x, y, mask)
    z = math.exp(1) + math.exp(2) + math.exp(3)
    expected = -(3 - math.log(z)) + math.log(3)
    assert abs(loss - expected) < 1e-12
    np.testing.assert_allclose(dx[0, 0], [math.exp(1) / z, math.exp(2) / z, math.exp(3) / z - 1], rtol=1e-12)
    np.testing.assert_allclose(dx[0, 1], [1 / 3, 1 / 3 - 1, 1 / 3], rtol=1e-12)


def test_loss_of_uniform_scores_is_tokens_over_n_times_log_v():
    rng = np.random.default_rng(0)
    N, T, V = 100, 3, 10
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) < 0.6
    loss, _ = temporal_softmax_loss(x, y, mask)
    expected = mask.sum() / N * math.log(V)
    assert abs(loss - expected) < 0.01 * expected


def test_divided_by_batch_size_not_token_count():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5))
    y = rng.integers(0, 5, size=(2, 4))
    mask = np.array([[True, True, False, False], [True, True, True, True]])
    loss, _ = temporal_softmax_loss(x, y, mask)
    loss2, _ = temporal_softmax_loss(np.concatenate([x, x]), np.concatenate([y, y]), np.concatenate([mask, mask]))
    assert abs(loss - loss2) < 1e-12  # doubling the batch leaves the per-caption loss unchanged
    per_position = -log_softmax(x)[np.arange(2)[:, None], np.arange(4), y]
    assert abs(loss - per_position[mask].sum() / 2) < 1e-12


def test_masked_positions_have_zero_loss_and_zero_gradient():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 6))
    y = rng.integers(0, 6, size=(3, 4))
    mask = rng.random((3, 4)) < 0.5
    mask[0, 0], mask[0, 1] = True, False
    loss, dx = temporal_softmax_loss(x, y, mask)
    assert np.all(dx[~mask] == 0.0)
    assert np.all(np.abs(dx[mask]).sum(axis=-1) > 0)
    x2 = x.copy()
    x2[~mask] = 1e6 * rng.standard_normal(x2[~mask].shape)  # garbage where masked
    loss2, dx2 = temporal_softmax_loss(x2, y, mask)
    assert loss2 == loss
    np.testing.assert_array_equal(dx2[mask], dx[mask])
    loss0, dx0 = temporal_softmax_loss(x, y, np.zeros_like(mask))
    assert loss0 == 0.0 and not np.any(dx0)


def test_gradient_matches_finite_differences():
    # Small on purpose: the centred difference's rounding error is ~1e-16 * |loss| / h,
    # so a big summed loss would drown the smallest gradient entries in noise.
    rng = np.random.default_rng(3)
    N, T, V = 4, 5, 6
    x = rng.standard_normal((N, T, V))
    y = rng.integers(0, V, size=(N, T))
    mask = rng.random((N, T)) > 0.3
    assert mask.any() and not mask.all()
    _, dx = temporal_softmax_loss(x, y, mask)
    dx_num = eval_numerical_gradient(lambda a: temporal_softmax_loss(a, y, mask)[0], x, verbose=False)
    assert rel_error(dx, dx_num) <= 1e-7


def test_large_scores_are_stable_and_float32_stays_float32():
    x = np.array([[[1e4, -1e4, 0.0], [-3e4, -3e4, -3e4]]], dtype=np.float32)
    y = np.array([[1, 0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, dx = temporal_softmax_loss(x, y, np.ones((1, 2), bool))
        logp = log_softmax(x)
    assert dx.dtype == np.float32 and logp.dtype == np.float32
    assert abs(loss - (2e4 + math.log(3))) < 0.01
    np.testing.assert_allclose(dx[0, 0], [1, -1, 0], atol=1e-6)
    np.testing.assert_allclose(np.exp(logp).sum(axis=-1), 1, rtol=1e-6)


def test_log_softmax_matches_naive_formula():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 7))
    naive = np.log(np.exp(x) / np.exp(x).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(log_softmax(x), naive, rtol=1e-12, atol=1e-12)
