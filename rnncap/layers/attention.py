"""Soft spatial attention (Show, Attend and Tell): additive attention, the attention
LSTM (one step and a whole sequence), its initial state, and the doubly stochastic
regulariser.

An image is a grid of L annotation vectors feats (N, L, D) (a 3x3 or 7x7 grid of CNN
features, flattened). At every step the decoder looks at the grid through additive
(Bahdanau) attention driven by its previous hidden state h:

    proj = feats W_a + b_a                       (N, L, A)  once per image, not per step
    u    = tanh(proj + h W_h)                    (N, L, A)
    e    = u w                                   (N, L)     one score per location
    alpha = softmax(e) over the L locations      (N, L)
    context = sum_l alpha_l feats_l              (N, D)

The attention LSTM (Xu et al. 2015) feeds the word vector and the gated context into an
LSTM with gates i, f, o, g (as rnncap.layers.lstm):

    beta = sigmoid(h_{t-1} W_beta + b_beta)      (N, 1)     "is the image needed now?"
    z_t  = beta * context_t                      (N, D)
    a    = x_t Wx + z_t Wz + h_{t-1} Wh + b      (N, 4H)
    c_t  = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)

and starts from h0 = tanh(mean_l feats_l W_h0 + b_h0), c0 = tanh(mean_l feats_l W_c0 + b_c0).
The regulariser lambda * sum_l (1 - sum_t alpha_tl)^2 asks every location to be looked at
about once over a caption. docs/attention.md derives every backward pass.

Every backward returns the gradients in the order of its forward's arguments. The
sequence functions loop over T only for the recurrence: the annotation projection, the
word projection and the weight gradients are computed for all steps at once.

This module does not know about words, images, vocabularies or grids' geometry (the L
locations are just a list), and keeps no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncap.fast.lstm import activate_gates
from rnncap.layers.affine import (
    TemporalAffineCache,
    temporal_affine_backward,
    temporal_affine_forward,
)
from rnncap.layers.lstm import LSTMStepCache, lstm_step_backward, lstm_step_forward, sigmoid


# In place: LSTM pre-activations (n, 4H) -> i, f, o = sigmoid, g = tanh; the packed LSTM's own
# function, so the fast cell's maths exists once.
gates_inplace = activate_gates


def _softmax_rows(e):
    """Softmax over the last axis, shifted by the row maximum so exp cannot overflow."""
    p = np.exp(e - e.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p


# ----------------------------------------------------------------- additive attention


class AttentionCache(NamedTuple):
    """What `attention_backward` needs."""

    feats: np.ndarray  # (N, L, D), to weight dcontext back onto each location
    h: np.ndarray  # (N, H), for dW_h
    W_h: np.ndarray  # (H, A), for dh
    w: np.ndarray  # (A,), for du
    u: np.ndarray  # (N, L, A): tanh(proj + h W_h), for tanh' and dw
    alpha: np.ndarray  # (N, L): the softmax, for its Jacobian and dfeats


def attention_forward(feats, proj, h, W_h, w):
    """Additive attention of one step: where to look, and what is seen there.

    Args:
        feats: annotation vectors, shape (N, L, D).
        proj: their projection feats W_a + b_a, shape (N, L, A) (computed once per image
            with `temporal_affine_forward`; it does not change from step to step).
        h: the decoder's hidden state that asks, shape (N, H).
        W_h: hidden-to-attention weights, shape (H, A).
        w: scoring vector, shape (A,).

    Returns:
        (context, alpha, cache): context (N, D), alpha (N, L) (each row sums to 1), and an
        `AttentionCache`.
    """
    u = np.tanh(proj + (h @ W_h)[:, None, :])  # (N, L, A)
    e = u @ w  # (N, L)
    alpha = _softmax_rows(e)  # (N, L)
    context = np.einsum("nl,nld->nd", alpha, feats)  # (N, D)
    return context, alpha, AttentionCache(feats, h, W_h, w, u, alpha)


def attention_backward(dcontext, dalpha, cache):
    """Backward pass of `attention_forward`.

    Args:
        dcontext: gradient w.r.t. context, shape (N, D).
        dalpha: gradient w.r.t. alpha from elsewhere (the regulariser), shape (N, L), or
            None for none.
        cache: the `AttentionCache` from the forward pass.

    Returns:
        (dfeats, dproj, dh, dW_h, dw) with shapes (N, L, D), (N, L, A), (N, H), (H, A), (A,).
        dfeats is only the path through the weighted sum; the path through proj is the
        caller's (it owns W_a).
    """
    feats, h, W_h, w, u, alpha = cache
    # context = sum_l alpha_l feats_l: linear in both factors.
    dalpha_all = np.einsum("nd,nld->nl", dcontext, feats)  # (N, L)
    if dalpha is not None:
        dalpha_all = dalpha_all + dalpha
    dfeats = alpha[:, :, None] * dcontext[:, None, :]  # (N, L, D)
    # Softmax Jacobian: de_l = alpha_l (dalpha_l - sum_k alpha_k dalpha_k).
    de = alpha * (dalpha_all - (alpha * dalpha_all).sum(axis=1, keepdims=True))  # (N, L)
    dw = np.einsum("nla,nl->a", u, de)
    ds = de[:, :, None] * w * (1 - u * u)  # (N, L, A): through e = u w and u = tanh(s)
    dproj = ds
    dhW = ds.sum(axis=1)  # (N, A): h W_h was broadcast over the L locations
    dh = dhW @ W_h.T
    dW_h = h.T @ dhW
    return dfeats, dproj, dh, dW_h, dw


# ------------------------------------------------------------------ initial state


class AttentionInitCache(NamedTuple):
    """What `attention_init_backward` needs."""

    mean: np.ndarray  # (N, D): mean annotation vector
    L: int  # locations the mean was taken over
    W_h0: np.ndarray  # (D, H)
    W_c0: np.ndarray  # (D, H)
    h0: np.ndarray  # (N, H), for tanh'
    c0: np.ndarray  # (N, H), for tanh'


def attention_init_forward(feats, W_h0, b_h0, W_c0, b_c0):
    """The attention LSTM's initial state from the mean annotation vector.

    Args:
        feats: annotation vectors, shape (N, L, D).
        W_h0, W_c0: weights, shape (D, H) each.
        b_h0, b_c0: biases, shape (H,) each.

    Returns:
        (h0, c0, cache): both (N, H); cache is an `AttentionInitCache`.
    """
    mean = feats.mean(axis=1)  # (N, D)
    h0 = np.tanh(mean @ W_h0 + b_h0)
    c0 = np.tanh(mean @ W_c0 + b_c0)
    return h0, c0, AttentionInitCache(mean, feats.shape[1], W_h0, W_c0, h0, c0)


def attention_init_backward(dh0, dc0, cache):
    """Backward pass of `attention_init_forward`.

    Args:
        dh0, dc0: gradients w.r.t. h0 and c0, shape (N, H) each.
        cache: the `AttentionInitCache` from the forward pass.

    Returns:
        (dfeats, dW_h0, db_h0, dW_c0, db_c0) with shapes (N, L, D), (D, H), (H,), (D, H), (H,).
    """
    mean, L, W_h0, W_c0, h0, c0 = cache
    dsh = dh0 * (1 - h0 * h0)  # (N, H)
    dsc = dc0 * (1 - c0 * c0)
    dmean = dsh @ W_h0.T + dsc @ W_c0.T  # (N, D)
    # The mean spreads its gradient evenly over the L locations.
    dfeats = np.broadcast_to((dmean / L)[:, None, :], (mean.shape[0], L, mean.shape[1])).copy()
    return dfeats, mean.T @ dsh, dsh.sum(axis=0), mean.T @ dsc, dsc.sum(axis=0)


# ------------------------------------------------------------- attention LSTM, one step


class AttentionLSTMStepCache(NamedTuple):
    """What `attention_lstm_step_backward` needs."""

    att: AttentionCache  # the attention on prev_h
    lstm: LSTMStepCache  # the LSTM step on the input [x, z]
    D_x: int  # width of x (W), to split the LSTM's input gradient
    context: np.ndarray  # (N, D), ungated
    beta: np.ndarray  # (N, 1)
    W_beta: np.ndarray  # (H, 1)


def attention_lstm_step_forward(x, prev_h, prev_c, feats, proj, Wx, Wh, Wz, b, W_h, w,
                                W_beta, b_beta):
    """One step of the attention LSTM: attend with prev_h, then an LSTM step on [x, z].

    Args:
        x: word vectors of this step, shape (N, W).
        prev_h, prev_c: previous hidden and cell states, shape (N, H) each.
        feats: annotation vectors, shape (N, L, D).
        proj: feats W_a + b_a, shape (N, L, A).
        Wx: word-to-gates weights, shape (W, 4H).
        Wh: hidden-to-gates weights, shape (H, 4H).
        Wz: context-to-gates weights, shape (D, 4H).
        b: gate bias, shape (4H,).
        W_h: hidden-to-attention weights, shape (H, A).
        w: attention scoring vector, shape (A,).
        W_beta: hidden-to-gate-scalar weights, shape (H, 1).
        b_beta: gate-scalar bias, shape (1,).

    Returns:
        (next_h, next_c, alpha, cache): states (N, H), attention weights (N, L) of this
        step, and an `AttentionLSTMStepCache`.
    """
    context, alpha, att_cache = attention_forward(feats, proj, prev_h, W_h, w)
    beta = sigmoid(prev_h @ W_beta + b_beta)  # (N, 1)
    z = beta * context  # (N, D)
    # The LSTM step of rnncap.layers.lstm on the joint input [x, z]: a = [x, z] [Wx; Wz] + ...
    xz = np.concatenate((x, z), axis=1)  # (N, W + D)
    next_h, next_c, lstm_cache = lstm_step_forward(xz, prev_h, prev_c,
                                                   np.concatenate((Wx, Wz)), Wh, b)
    cache = AttentionLSTMStepCache(att_cache, lstm_cache, x.shape[1], context, beta, W_beta)
    return next_h, next_c, alpha, cache


def attention_lstm_step_backward(dnext_h, dnext_c, dalpha, cache):
    """Backward pass of `attention_lstm_step_forward`.

    Args:
        dnext_h, dnext_c: gradients w.r.t. next_h and next_c, shape (N, H) each.
        dalpha: gradient w.r.t. this step's alpha (N, L) (the regulariser's), or None.
        cache: the `AttentionLSTMStepCache` from the forward pass.

    Returns:
        (dx, dprev_h, dprev_c, dfeats, dproj, dWx, dWh, dWz, db, dW_h, dw, dW_beta,
        db_beta), each of its argument's shape.
    """
    att_cache, lstm_cache, W, context, beta, W_beta = cache
    dxz, dprev_h, dprev_c, dWxz, dWh, db = lstm_step_backward(dnext_h, dnext_c, lstm_cache)
    dx, dz = dxz[:, :W], dxz[:, W:]
    dWx, dWz = dWxz[:W], dWxz[W:]
    # z = beta * context: beta is one number per row, so its gradient sums over D.
    dbeta = (dz * context).sum(axis=1, keepdims=True)  # (N, 1)
    dcontext = dz * beta
    dpre_beta = dbeta * beta * (1 - beta)  # sigmoid' = beta (1 - beta)
    dfeats, dproj, dh_att, dW_h, dw = attention_backward(dcontext, dalpha, att_cache)
    # prev_h reached the step three ways: the gates (Wh), the attention (W_h), beta (W_beta).
    dprev_h = dprev_h + dh_att + dpre_beta @ W_beta.T
    dW_beta = att_cache.h.T @ dpre_beta  # (H, 1)
    db_beta = dpre_beta.sum(axis=0)  # (1,)
    return dx, dprev_h, dprev_c, dfeats, dproj, dWx, dWh, dWz, db, dW_h, dw, dW_beta, db_beta


# ---------------------------------------------------------- attention LSTM, a sequence


class AttentionLSTMCache(NamedTuple):
    """What `attention_lstm_backward` needs: the all-steps projections' caches, and for
    every step the arrays the recurrence's backward uses."""

    word_proj: TemporalAffineCache  # x Wx + b, all steps at once
    feat_proj: TemporalAffineCache  # feats W_a + b_a, once per image
    feats: np.ndarray  # (N, L, D)
    fz: np.ndarray  # (N, L, 4H): feats Wz, each location's pull on the gates
    W_cat: np.ndarray  # (H, A + 4H + 1): [W_h | Wh | W_beta], one product per step
    Wz: np.ndarray  # (D, 4H)
    w: np.ndarray  # (A,)
    h0: np.ndarray  # (N, H)
    c0: np.ndarray  # (N, H)
    # Time-major, every step's:
    h: np.ndarray  # (T, N, H)
    c: np.ndarray  # (T, N, H)
    u: np.ndarray  # (T, N, L, A): attention tanh
    alphas: np.ndarray  # (T, N, L)
    zc: np.ndarray  # (T, N, 4H): context_t Wz, ungated
    beta: np.ndarray  # (T, N, 1)
    gates: np.ndarray  # (T, N, 4H): i, f, o, g after their nonlinearities
    tanh_c: np.ndarray  # (T, N, H)
    batch_sizes: list  # T ints: rows step t ran


def attention_lstm_forward(x, feats, h0, c0, Wx, Wh, Wz, b, W_a, b_a, W_h, w, W_beta, b_beta,
                           batch_sizes=None):
    """Runs the attention LSTM over whole sequences (teacher forcing).

    Equal to `attention_lstm_step_forward` in a loop, but everything that does not
    depend on the recurrence is done once: the word projection x Wx + b for all steps,
    the annotation projection feats W_a + b_a, and feats Wz. The last turns the context's
    product z Wz = beta sum_l alpha_l (feats_l Wz) into a weighted sum of L precomputed
    rows, so no step multiplies by the (D, 4H) matrix Wz. The three products of h_{t-1}
    (gates, attention, beta) are one product with [W_h | Wh | W_beta].

    Args:
        x: word vectors of every step, shape (N, T, W).
        feats: annotation vectors, shape (N, L, D).
        h0, c0: initial states, shape (N, H) each (e.g. from `attention_init_forward`).
        Wx (W, 4H), Wh (H, 4H), Wz (D, 4H), b (4H,): the LSTM's weights.
        W_a (D, A), b_a (A,), W_h (H, A), w (A,): the attention's weights.
        W_beta (H, 1), b_beta (1,): the gate scalar's weights.
        batch_sizes: optional (T,) non-increasing ints: step t runs only the first
            batch_sizes[t] rows (the rows sorted longest caption first, as
            rnncap.layers.packing does), so no step computes a finished caption's padding.
            Default: every row at every step.

    Returns:
        (h, alphas, cache): h (N, T, H), alphas (N, T, L) (each row sums to 1; rows of h
        and alphas past batch_sizes[t] are 0), and an `AttentionLSTMCache`.
    """
    N, T, _ = x.shape
    bs = [N] * T if batch_sizes is None else [int(n) for n in batch_sizes]
    L = feats.shape[1]
    H, A = Wh.shape[0], W_h.shape[1]
    dtype = np.result_type(x, feats, h0, Wh)
    a_x, word_cache = temporal_affine_forward(x, Wx, b)  # (N, T, 4H)
    proj, feat_cache = temporal_affine_forward(feats, W_a, b_a)  # (N, L, A), once
    fz = feats @ Wz  # (N, L, 4H), once
    W_cat = np.concatenate((W_h, Wh, W_beta), axis=1)  # (H, A + 4H + 1)
    # Per-step arrays are kept time-major (T, N, ...), so that every step reads and
    # writes contiguous blocks; h and alphas are returned batch-major.
    # Rows past batch_sizes[t] are never written by step t: zeros, so that the sums
    # after the backward loop see nothing from them.
    h = np.zeros((T, N, H), dtype)
    c = np.zeros((T, N, H), dtype)
    u = np.zeros((T, N, L, A), dtype)
    alphas = np.zeros((T, N, L), dtype)
    zc = np.zeros((T, N, 4 * H), dtype)
    beta = np.zeros((T, N, 1), dtype)
    gates = np.zeros((T, N, 4 * H), dtype)
    tanh_c = np.zeros((T, N, H), dtype)
    a_x = np.ascontiguousarray(a_x.transpose(1, 0, 2))  # (T, N, 4H)
    hw_buf = np.empty((N, A + 4 * H + 1), dtype)
    prev_h, prev_c = h0, c0
    for t, n in enumerate(bs):
        hw = np.matmul(prev_h[:n], W_cat, out=hw_buf[:n])  # (n, A + 4H + 1)
        u_t = np.add(proj[:n], hw[:, None, :A], out=u[t, :n])  # (n, L, A)
        np.tanh(u_t, out=u_t)
        alpha = alphas[t, :n]
        alpha[...] = _softmax_rows(u_t @ w)  # (n, L)
        zc_t = zc[t, :n]
        zc_t[...] = (alpha[:, None, :] @ fz[:n])[:, 0]  # (n, 4H): context_t Wz
        beta_t = beta[t, :n]
        beta_t[...] = sigmoid(hw[:, A + 4 * H:] + b_beta)  # (n, 1)
        g = np.multiply(beta_t, zc_t, out=gates[t, :n])  # (n, 4H) pre-activation
        g += a_x[t, :n]
        g += hw[:, A:A + 4 * H]
        gates_inplace(g)  # i, f, o = sigmoid, g = tanh
        i, f, o, gg = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        c_t = np.multiply(i, gg, out=c[t, :n])
        c_t += f * prev_c[:n]
        tc = np.tanh(c_t, out=tanh_c[t, :n])
        prev_h = np.multiply(o, tc, out=h[t, :n])
        prev_c = c_t
    cache = AttentionLSTMCache(word_cache, feat_cache, feats, fz, W_cat, Wz, w, h0, c0, h, c,
                               u, alphas, zc, beta, gates, tanh_c, bs)
    h, alphas = h.transpose(1, 0, 2).copy(), alphas.transpose(1, 0, 2).copy()  # batch-major
    return h, alphas, cache


def attention_lstm_backward(dh, dalphas, cache):
    """Backpropagation through time for `attention_lstm_forward`.

    Per step (the recurrence forces the loop): the LSTM gates' derivatives, then beta's
    and the attention weights', then the attention's, which together give dh_{t-1}.
    Everything summed over steps (weight gradients, dfeats) is one product after the loop.

    Args:
        dh: gradient w.r.t. every hidden state, shape (N, T, H).
        dalphas: gradient w.r.t. every step's attention weights, shape (N, T, L), or None.
        cache: the `AttentionLSTMCache` from the forward pass.

    Returns:
        (dx, dfeats, dh0, dc0, dWx, dWh, dWz, db, dW_a, db_a, dW_h, dw, dW_beta, db_beta),
        each of its argument's shape.
    """
    (word_cache, feat_cache, feats, fz, W_cat, Wz, w, h0, c0, h, c, u, alphas, zc, beta,
     gates, tanh_c, bs) = cache
    N, T, H = dh.shape
    L, A = u.shape[2], w.shape[0]
    dh = dh.transpose(1, 0, 2)  # (T, N, H), like the cache
    if dalphas is not None:
        dalphas = dalphas.transpose(1, 0, 2)  # (T, N, L)
    # Zeros: rows a step did not run get no gradient from it.
    da_all = np.zeros((T, N, 4 * H), dh.dtype)  # gate pre-activation gradients
    dcat = np.zeros((T, N, A + 4 * H + 1), dh.dtype)  # gradients of h_{t-1} W_cat
    dzc = np.zeros((T, N, 4 * H), dh.dtype)  # of context_t Wz
    dproj = np.zeros((N, L, A), dh.dtype)
    de_all = np.zeros(alphas.shape, dh.dtype)  # (T, N, L)
    W_catT = np.ascontiguousarray(W_cat.T)
    # Rows alive at t but not at t+1 ended at t: nothing flows back into them from later
    # steps, and these buffers' rows past batch_sizes[t+1] are still 0 for them.
    dnext_h = np.zeros((N, H), dh.dtype)
    dnext_c = np.zeros((N, H), dh.dtype)
    for t in range(T - 1, -1, -1):
        n = bs[t]
        g = gates[t, :n]
        i, f, o, gg = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        tc = tanh_c[t, :n]
        c_prev = c[t - 1, :n] if t > 0 else c0[:n]
        dh_t = dh[t, :n] + dnext_h[:n]
        dc = dnext_c[:n] + dh_t * o * (1 - tc * tc)  # (n, H)
        da = da_all[t, :n]
        da[:, :H] = dc * gg * i * (1 - i)
        da[:, H:2 * H] = dc * c_prev * f * (1 - f)
        da[:, 2 * H:3 * H] = dh_t * tc * o * (1 - o)
        da[:, 3 * H:] = dc * i * (1 - gg * gg)
        np.multiply(dc, f, out=dnext_c[:n])
        # The gates got beta * zc with zc = sum_l alpha_l fz_l.
        b_t = beta[t, :n]  # (n, 1)
        dbeta = (da * zc[t, :n]).sum(axis=1, keepdims=True)  # (n, 1)
        dzc_t = np.multiply(da, b_t, out=dzc[t, :n])  # (n, 4H)
        dalpha = (fz[:n] @ dzc_t[:, :, None])[:, :, 0]  # (n, L): fz_l . dzc
        if dalphas is not None:
            dalpha += dalphas[t, :n]
        # alpha = softmax(u w), u = tanh(proj + h W_h).
        alpha = alphas[t, :n]
        de = de_all[t, :n]
        np.multiply(alpha, dalpha - (alpha * dalpha).sum(axis=1, keepdims=True), out=de)
        u_t = u[t, :n]
        ds = de[:, :, None] * w * (1 - u_t * u_t)  # (n, L, A)
        dproj[:n] += ds
        dcat[t, :n, :A] = ds.sum(axis=1)
        dcat[t, :n, A:A + 4 * H] = da
        dcat[t, :n, A + 4 * H:] = dbeta * b_t * (1 - b_t)
        np.matmul(dcat[t, :n], W_catT, out=dnext_h[:n])  # (n, H): the three paths at once
    # Sums over steps, each one product.
    h_prev = np.concatenate((h0[None], h[:-1]))  # (T, N, H)
    dW_cat = h_prev.reshape(T * N, H).T @ dcat.reshape(T * N, -1)  # (H, A + 4H + 1)
    dW_h, dWh, dW_beta = dW_cat[:, :A], dW_cat[:, A:A + 4 * H], dW_cat[:, A + 4 * H:]
    db_beta = dcat[:, :, A + 4 * H:].sum(axis=(0, 1))  # (1,)
    dw = de_all.reshape(-1) @ u.reshape(-1, A)  # (A,): sum over t, n, l of de u
    dfz = alphas.transpose(1, 2, 0) @ dzc.transpose(1, 0, 2)  # (N, L, 4H): sum_t alpha_tl dzc_t
    D = feats.shape[2]
    dWz = feats.reshape(N * L, D).T @ dfz.reshape(N * L, -1)  # (D, 4H)
    dfeats_proj, dW_a, db_a = temporal_affine_backward(dproj, feat_cache)
    dfeats = dfz @ Wz.T + dfeats_proj  # (N, L, D)
    dx, dWx, db = temporal_affine_backward(da_all.transpose(1, 0, 2), word_cache)
    return (dx, dfeats, dnext_h, dnext_c, dWx, dWh, dWz, db, dW_a, db_a, dW_h, dw,
            dW_beta, db_beta)


# ------------------------------------------------------------------ regulariser


def doubly_stochastic_loss(alphas, mask, lam, divisor=None):
    """SAT's doubly stochastic attention penalty and its gradient.

    loss = lam * sum_n sum_l (1 - sum_t mask_nt alpha_ntl)^2 / divisor: every location
    should receive about one unit of attention over a caption's steps.

    Args:
        alphas: attention weights of every step, shape (N, T, L).
        mask: which steps exist, bool shape (N, T) (padding steps do not count).
        lam: the penalty's weight lambda, a float >= 0.
        divisor: what the sum is divided by; default N (as `temporal_softmax_loss`).

    Returns:
        (loss, dalphas): a Python float and the gradient, shape (N, T, L).
    """
    N = alphas.shape[0]
    divisor = N if divisor is None else divisor
    m = mask[:, :, None].astype(alphas.dtype)  # (N, T, 1)
    r = 1 - (alphas * m).sum(axis=1)  # (N, L): what each location misses of one unit
    loss = lam * float((r * r).sum()) / divisor
    dalphas = (-2 * lam / divisor) * r[:, None, :] * m  # (N, T, L)
    return loss, dalphas.astype(alphas.dtype, copy=False)
