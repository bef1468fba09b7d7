"""Tests for rnncap.layers.attention: values against plain formulas, every backward against
float64 finite differences, and the sequence against a loop of steps."""

import math

import numpy as np
import pytest

from rnncap.gradcheck import eval_numerical_gradient, numerical_input_gradients, rel_error
from rnncap.layers import (
    attention_backward,
    attention_forward,
    attention_init_backward,
    attention_init_forward,
    attention_lstm_backward,
    attention_lstm_forward,
    attention_lstm_step_backward,
    attention_lstm_step_forward,
    doubly_stochastic_loss,
    lstm_step_forward,
    sigmoid,
)

N, T, L, D, W, H, A = 3, 4, 5, 6, 4, 5, 7


def _weights(rng, dtype=np.float64):
    """Seq args after x, feats, h0, c0: Wx, Wh, Wz, b, W_a, b_a, W_h, w, W_beta, b_beta."""
    shapes = [(W, 4 * H), (H, 4 * H), (D, 4 * H), (4 * H,), (D, A), (A,), (H, A), (A,), (H, 1), (1,)]
    return [(rng.standard_normal(s) / math.sqrt(s[0] if len(s) == 2 else 4)).astype(dtype)
            for s in shapes]


def _inputs(rng, dtype=np.float64):
    x = rng.standard_normal((N, T, W)).astype(dtype)
    feats = rng.standard_normal((N, L, D)).astype(dtype)
    h0 = rng.standard_normal((N, H)).astype(dtype) * 0.5
    c0 = rng.standard_normal((N, H)).astype(dtype) * 0.5
    return x, feats, h0, c0


def _step_args(rng):
    """Arguments of attention_lstm_step_forward, in order."""
    x, feats, h0, c0 = _inputs(rng)
    Wx, Wh, Wz, b, W_a, b_a, W_h, w, W_beta, b_beta = _weights(rng)
    proj = feats @ W_a + b_a
    return [x[:, 0], h0, c0, feats, proj, Wx, Wh, Wz, b, W_h, w, W_beta, b_beta]


def test_attention_forward_matches_plain_formula():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((N, L, D))
    proj = rng.standard_normal((N, L, A))
    h = rng.standard_normal((N, H))
    W_h = rng.standard_normal((H, A))
    w = rng.standard_normal(A)
    context, alpha, _ = attention_forward(feats, proj, h, W_h, w)
    for n in range(N):
        e = [sum(w[a] * math.tanh(proj[n, l, a] + sum(h[n, k] * W_h[k, a] for k in range(H)))
                 for a in range(A)) for l in range(L)]
        z = sum(math.exp(v) for v in e)
        al = [math.exp(v) / z for v in e]
        np.testing.assert_allclose(alpha[n], al, rtol=1e-12)
        np.testing.assert_allclose(context[n], sum(al[l] * feats[n, l] for l in range(L)), rtol=1e-12)


def test_attention_softmax_survives_huge_scores():
    feats = np.ones((1, 3, 2))
    proj = np.zeros((1, 3, 1))
    h = np.zeros((1, 1))
    W_h = np.zeros((1, 1))
    proj[0, :, 0] = [1.0, 0.0, -1.0]
    with np.errstate(over="raise", invalid="raise"):
        _, alpha, _ = attention_forward(feats, proj, h, W_h, np.array([1e4]))
    np.testing.assert_allclose(alpha, [[1.0, 0.0, 0.0]], atol=1e-300)


def test_attention_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((N, L, D)), rng.standard_normal((N, L, A)),
            rng.standard_normal((N, H)), rng.standard_normal((H, A)) / 2, rng.standard_normal(A)]
    context, alpha, cache = attention_forward(*args)
    dcontext = rng.standard_normal(context.shape)
    dalpha = rng.standard_normal(alpha.shape)
    grads = attention_backward(dcontext, dalpha, cache)
    nums = numerical_input_gradients(attention_forward, args, [dcontext, dalpha])
    for name, got, num in zip(["dfeats", "dproj", "dh", "dW_h", "dw"], grads, nums):
        assert rel_error(got, num) <= 1e-7, (name, rel_error(got, num))


def test_init_backward_matches_finite_differences():
    rng = np.random.default_rng(2)
    args = [rng.standard_normal((N, L, D)), rng.standard_normal((D, H)) / 2,
            rng.standard_normal(H), rng.standard_normal((D, H)) / 2, rng.standard_normal(H)]
    h0, c0, cache = attention_init_forward(*args)
    np.testing.assert_allclose(h0, np.tanh(args[0].mean(axis=1) @ args[1] + args[2]), rtol=1e-14)
    dh0, dc0 = rng.standard_normal(h0.shape), rng.standard_normal(c0.shape)
    grads = attention_init_backward(dh0, dc0, cache)
    nums = numerical_input_gradients(attention_init_forward, args, [dh0, dc0])
    for name, got, num in zip(["dfeats", "dW_h0", "db_h0", "dW_c0", "db_c0"], grads, nums):
        assert rel_error(got, num) <= 1e-8, (name, rel_error(got, num))


def test_step_is_an_lstm_step_on_word_and_gated_context():
    rng = np.random.default_rng(3)
    args = _step_args(rng)
    x, h, c, feats, proj, Wx, Wh, Wz, b, W_h, w, W_beta, b_beta = args
    next_h, next_c, alpha, _ = attention_lstm_step_forward(*args)
    context, alpha_ref, _ = attention_forward(feats, proj, h, W_h, w)
    beta = 1 / (1 + np.exp(-(h @ W_beta + b_beta)))
    ref_h, ref_c, _ = lstm_step_forward(np.concatenate((x, beta * context), axis=1), h, c,
                                        np.concatenate((Wx, Wz)), Wh, b)
    np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-14)
    np.testing.assert_allclose(next_h, ref_h, rtol=1e-13)
    np.testing.assert_allclose(next_c, ref_c, rtol=1e-13)


def test_step_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    args = _step_args(rng)
    next_h, next_c, alpha, cache = attention_lstm_step_forward(*args)
    douts = [rng.standard_normal(next_h.shape), rng.standard_normal(next_c.shape),
             rng.standard_normal(alpha.shape)]
    grads = attention_lstm_step_backward(*douts, cache)
    nums = numerical_input_gradients(attention_lstm_step_forward, args, douts)
    names = ["dx", "dprev_h", "dprev_c", "dfeats", "dproj", "dWx", "dWh", "dWz", "db", "dW_h",
             "dw", "dW_beta", "db_beta"]
    assert len(grads) == len(args)
    for name, got, num, arg in zip(names, grads, nums, args):
        assert got.shape == arg.shape, name
        assert rel_error(got, num) <= 1e-7, (name, rel_error(got, num))


def _seq_args(rng):
    return [*_inputs(rng), *_weights(rng)]


def test_sequence_forward_equals_loop_of_steps():
    rng = np.random.default_rng(5)
    args = _seq_args(rng)
    x, feats, h0, c0, Wx, Wh, Wz, b, W_a, b_a, W_h, w, W_beta, b_beta = args
    h, alphas, _ = attention_lstm_forward(*args)
    proj = feats @ W_a + b_a
    prev_h, prev_c = h0, c0
    for t in range(T):
        prev_h, prev_c, alpha, _ = attention_lstm_step_forward(
            x[:, t], prev_h, prev_c, feats, proj, Wx, Wh, Wz, b, W_h, w, W_beta, b_beta)
        np.testing.assert_allclose(h[:, t], prev_h, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(alphas[:, t], alpha, rtol=1e-12, atol=1e-14)


def test_sequence_backward_equals_loop_of_step_backwards():
    rng = np.random.default_rng(6)
    args = _seq_args(rng)
    x, feats, h0, c0, Wx, Wh, Wz, b, W_a, b_a, W_h, w, W_beta, b_beta = args
    h, alphas, cache = attention_lstm_forward(*args)
    dh = rng.standard_normal(h.shape)
    dalphas = rng.standard_normal(alphas.shape)
    got = attention_lstm_backward(dh, dalphas, cache)

    proj = feats @ W_a + b_a
    caches, prev_h, prev_c = [], h0, c0
    for t in range(T):
        prev_h, prev_c, _, c = attention_lstm_step_forward(
            x[:, t], prev_h, prev_c, feats, proj, Wx, Wh, Wz, b, W_h, w, W_beta, b_beta)
        caches.append(c)
    dx = np.zeros_like(x)
    dfeats, dproj = np.zeros_like(feats), np.zeros_like(proj)
    sums = [np.zeros_like(a) for a in (Wx, Wh, Wz, b, W_h, w, W_beta, b_beta)]
    dnext_h, dnext_c = np.zeros_like(h0), np.zeros_like(c0)
    for t in reversed(range(T)):
        g = attention_lstm_step_backward(dh[:, t] + dnext_h, dnext_c, dalphas[:, t], caches[t])
        dx[:, t], dnext_h, dnext_c = g[0], g[1], g[2]
        dfeats += g[3]
        dproj += g[4]
        for s, d in zip(sums, g[5:]):
            s += d
    dWx, dWh, dWz, db, dW_h, dw, dW_beta, db_beta = sums
    dW_a = np.einsum("nld,nla->da", feats, dproj)
    db_a = dproj.sum(axis=(0, 1))
    dfeats += dproj @ W_a.T
    want = (dx, dfeats, dnext_h, dnext_c, dWx, dWh, dWz, db, dW_a, db_a, dW_h, dw, dW_beta, db_beta)
    for k, (a, e) in enumerate(zip(got, want)):
        assert a.shape == e.shape, k
        assert rel_error(a, e) <= 1e-10, (k, rel_error(a, e))


def test_sequence_backward_matches_finite_differences():
    rng = np.random.default_rng(7)
    args = _seq_args(rng)
    h, alphas, cache = attention_lstm_forward(*args)
    dh = rng.standard_normal(h.shape)
    dalphas = rng.standard_normal(alphas.shape)
    grads = attention_lstm_backward(dh, dalphas, cache)
    nums = numerical_input_gradients(attention_lstm_forward, args, [dh, dalphas])
    names = ["dx", "dfeats", "dh0", "dc0", "dWx", "dWh", "dWz", "db", "dW_a", "db_a", "dW_h",
             "dw", "dW_beta", "db_beta"]
    # 1e-6: the differences of a T-step sum carry ~1e-11 of rounding, which is 1e-7 of
    # the smallest entries (~1e-5, in dWz); the step-loop test above holds to 1e-10.
    for name, got, num in zip(names, grads, nums):
        assert rel_error(got, num) <= 1e-6, (name, rel_error(got, num))


def test_sequence_keeps_float32():
    rng = np.random.default_rng(8)
    args = [a.astype(np.float32) for a in _seq_args(rng)]
    h, alphas, cache = attention_lstm_forward(*args)
    assert h.dtype == alphas.dtype == np.float32
    grads = attention_lstm_backward(np.ones_like(h), np.ones_like(alphas), cache)
    assert [g.dtype for g in grads] == [np.float32] * len(args)


def test_doubly_stochastic_loss_by_hand():
    # One image, two steps of which the second is padding, two locations.
    alphas = np.array([[[0.25, 0.75], [0.5, 0.5]]])
    mask = np.array([[True, False]])
    loss, dalphas = doubly_stochastic_loss(alphas, mask, lam=2.0)
    # (1 - 0.25)^2 + (1 - 0.75)^2 = 0.5625 + 0.0625; times lambda 2
    assert loss == pytest.approx(1.25, abs=1e-15)
    np.testing.assert_allclose(dalphas, [[[-3.0, -1.0], [0.0, 0.0]]], atol=1e-15)


def test_doubly_stochastic_gradient_matches_finite_differences():
    rng = np.random.default_rng(9)
    alphas = rng.random((N, T, L))
    mask = rng.random((N, T)) < 0.7
    _, dalphas = doubly_stochastic_loss(alphas, mask, 0.3)
    num = eval_numerical_gradient(lambda a: doubly_stochastic_loss(a, mask, 0.3)[0], alphas,
                                  verbose=False)
    assert rel_error(dalphas, num) <= 1e-8


def test_sigmoid_used_for_beta_is_the_lstm_one():
    # beta shares rnncap.layers.lstm.sigmoid, stable for huge inputs.
    assert sigmoid(np.array([1e4]))[0] == 1.0


def test_shrinking_batch_equals_full_batch_on_the_running_rows():
    # Rows sorted longest first; step t runs batch_sizes[t] rows. On those rows the values
    # and, with upstream gradients zero elsewhere, all gradients equal the full run's.
    rng = np.random.default_rng(10)
    args = _seq_args(rng)
    batch_sizes = [3, 3, 2, 1]  # N = 3, T = 4
    alive = np.arange(N)[:, None] < np.array(batch_sizes)[None, :]  # (N, T)
    h_full, al_full, cache_full = attention_lstm_forward(*args)
    h, al, cache = attention_lstm_forward(*args, batch_sizes=batch_sizes)
    np.testing.assert_allclose(h[alive], h_full[alive], rtol=1e-13)
    np.testing.assert_allclose(al[alive], al_full[alive], rtol=1e-13)
    assert not h[~alive].any() and not al[~alive].any()
    dh = rng.standard_normal(h.shape) * alive[:, :, None]
    dal = rng.standard_normal(al.shape) * alive[:, :, None]
    got = attention_lstm_backward(dh, dal, cache)
    want = attention_lstm_backward(dh, dal, cache_full)
    for k, (a, e) in enumerate(zip(got, want)):
        assert rel_error(a, e) <= 1e-10, (k, rel_error(a, e))
