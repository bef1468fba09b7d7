"""Decoding captions from a step function: greedy, sampling and beam search.

Every decoder here sees a model only through one callable,

    step(tokens, state) -> (logprobs, new_state)

where ``tokens`` is an int array of shape (N,), ``logprobs`` is (N, V) log-
probabilities of the next token, and ``state`` is a tuple of NumPy arrays whose
leading axis is N (for example ``(h,)`` for a vanilla RNN or ``(h, c)`` for an
LSTM). Decoders reorder or copy rows of the state with ``a[idx]`` and never look
inside it.

What this module does NOT know: the cell type, the parameters, the vocabulary
(only the integer ids of <START>, <END> and <NULL> are passed in), images or
features. Turning ids into words is the vocabulary's job.

Output layout (shared by all decoders): an int32 array of shape (N, max_length)
whose first column is the first *generated* token (not <START>); once a row has
emitted ``end_id`` (which is kept), every later position holds ``null_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


def _check_common(state, start_id, end_id, max_length):
    """Validate arguments shared by all decoders; return the batch size N."""
    if not isinstance(state, tuple) or len(state) == 0:
        raise TypeError(
            f"state must be a non-empty tuple of arrays with leading axis N, "
            f"got {type(state).__name__}")
    n = np.shape(state[0])[0] if np.ndim(state[0]) > 0 else None
    if n is None or any(np.ndim(a) == 0 or np.shape(a)[0] != n for a in state):
        raise ValueError(
            "every array in state must share the leading batch axis N; got shapes "
            f"{[np.shape(a) for a in state]}")
    if int(max_length) < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if start_id == end_id:
        raise ValueError(f"start_id and end_id must differ, both are {start_id}")
    return n


def _call_step(step, tokens, state, n):
    """Run one step and check the shape of what came back."""
    logprobs, new_state = step(tokens, state)
    logprobs = np.asarray(logprobs)
    if logprobs.ndim != 2 or logprobs.shape[0] != n:
        raise ValueError(
            f"step must return logprobs of shape (N, V) with N={n}, "
            f"got shape {logprobs.shape}")
    if not isinstance(new_state, tuple):
        raise TypeError(
            f"step must return state as a tuple of arrays, got {type(new_state).__name__}")
    return logprobs, new_state


def greedy(step, state, start_id, end_id, max_length, null_id=0):
    """Decode by taking the most probable token at every step, for a batch.

    Args:
        step: ``step(tokens (N,), state) -> (logprobs (N, V), new_state)``. Only each
            row's argmax is used, so the step may return unnormalized scores (logits)
            instead and save the softmax (``CaptioningRNN.decoder_step(logits=True)``).
        state: tuple of arrays with leading axis N, the state before <START>.
        start_id: id fed at the first step.
        end_id: id that finishes a caption (kept in the output).
        max_length: number of tokens generated at most, T.
        null_id: filler written after a row has finished.

    Returns:
        int32 array (N, T): generated ids, ``null_id`` after ``end_id``.

    A row that has emitted ``end_id`` leaves the batch: later calls to ``step``
    see only the unfinished rows (fewer than N), so a trained model, which ends
    most captions well before ``max_length``, pays only for the words it writes.
    """
    n = _check_common(state, start_id, end_id, max_length)
    out = np.full((n, max_length), null_id, dtype=np.int32)
    tokens = np.full(n, start_id, dtype=np.int64)
    alive = np.arange(n)  # rows still decoding; finished rows leave the batch
    for t in range(max_length):
        logprobs, state = _call_step(step, tokens, state, len(alive))
        tokens = np.argmax(logprobs, axis=1)  # (n_alive,)
        out[alive, t] = tokens
        ended = tokens == end_id
        if ended.any():
            if ended.all():
                break
            keep = ~ended
            alive, tokens = alive[keep], tokens[keep]
            state = tuple(a[keep] for a in state)
    return out


def _as_generator(rng):
    """Accept a np.random.Generator or an int seed; never the global RNG."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a np.random.Generator or an int seed, got {type(rng).__name__}")


def sample(step, state, start_id, end_id, max_length, rng, temperature=1.0,
           top_k=None, null_id=0):
    """Decode by drawing each token at random, for a batch.

    The next token is drawn from ``softmax(logprobs / temperature)`` restricted
    to the ``top_k`` most probable tokens of each row. ``temperature=0`` means
    greedy (argmax); ``top_k=1`` is greedy too, whatever the temperature.
    One uniform number per row and step is drawn from ``rng`` (inverse-CDF
    sampling), so the same seed always gives the same captions.

    Args:
        step: ``step(tokens (N,), state) -> (logprobs (N, V), new_state)``.
        state: tuple of arrays with leading axis N.
        start_id, end_id, max_length, null_id: as in :func:`greedy`.
        rng: ``np.random.Generator`` or an int seed.
        temperature: > 0 flattens (>1) or sharpens (<1) the distribution; 0 is argmax.
        top_k: keep only the k most probable tokens per step (None: all).

    Returns:
        int32 array (N, T) in :func:`greedy`'s layout.
    """
    n = _check_common(state, start_id, end_id, max_length)
    rng = _as_generator(rng)
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    out = np.full((n, max_length), null_id, dtype=np.int32)
    tokens = np.full(n, start_id, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    rows = np.arange(n)
    for t in range(max_length):
        logprobs, state = _call_step(step, tokens, state, n)
        v = logprobs.shape[1]
        u = rng.random(n)  # drawn every step, used or not, so streams stay aligned
        if temperature == 0:
            tokens = np.argmax(logprobs, axis=1)
        else:
            # float64 here: exp/cumsum of float32 can lose the tail of the distribution
            logits = logprobs.astype(np.float64) / temperature  # (N, V)
            if top_k is not None and top_k < v:
                kth = np.partition(logits, v - top_k, axis=1)[:, v - top_k]  # (N,)
                logits = np.where(logits >= kth[:, None], logits, -np.inf)
            logits -= logits.max(axis=1, keepdims=True)
            cdf = np.cumsum(np.exp(logits), axis=1)  # (N, V), unnormalised
            target = u * cdf[:, -1]
            tokens = np.argmax(cdf > target[:, None], axis=1)
            # a token of probability 0 can never be drawn, even at cdf ties
            assert np.all(np.isfinite(logits[rows, tokens]))
        out[:, t] = np.where(done, null_id, tokens)
        done |= tokens == end_id
        if done.all():
            break
    return out


class Hypothesis(NamedTuple):
    """One finished caption from beam search.

    Attributes:
        tokens: int32 (L,) generated ids, ending with ``end_id`` unless the
            caption was cut at ``max_length``; no <START>, no padding.
        logprob: total log-probability of ``tokens`` under the model.
        score: ``logprob / length_penalty(L)``, what the n-best list is sorted by.
    """

    tokens: np.ndarray
    logprob: float
    score: float


@dataclass(frozen=True)
class BeamResult:
    """What :func:`beam_search` returns.

    Attributes:
        tokens: int32 (N, T), the best caption per image in :func:`greedy`'s layout,
            so ``result.tokens`` drops in wherever greedy output is used.
        logprobs: (N,) total log-probability of each best caption.
        scores: (N,) length-penalised score of each best caption.
        nbest: N lists of :class:`Hypothesis`, best first, at most ``n_best`` each.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    scores: np.ndarray
    nbest: list


def length_penalty_factor(length, alpha):
    """GNMT length normaliser ``((5 + L) / 6) ** alpha`` (Wu et al., 2016).

    A hypothesis's score is its total log-probability divided by this factor.
    ``alpha = 0`` gives 1 (plain log-probability, which favours short
    captions); larger alpha favours longer ones. L counts generated tokens
    including <END>.
    """
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha


_CUT = 1e12  # ranks a caption cut at max_length below every complete caption


def beam_search(step, state, start_id, end_id, max_length, beam_size=3,
                length_penalty=0.0, n_best=1, null_id=0, logits=False):
    """Batched beam search: all beams of all images advance in one step call.

    The N images carry ``k = beam_size`` live beams each, so every call to
    ``step`` after the first sees N*k rows (row ``i*k + j`` is beam j of image
    i); the first sees N rows, since all k beams of an image start equal. At each
    time step every live beam is extended by every token; per image the 2k
    best extensions (by total log-probability, all of equal length) are kept.
    Of these, those ending in <END> *and ranking within the first k* are moved
    to the image's finished list (as fairseq does; this is what makes k = 1
    exactly greedy), and the k best that do not end in <END> stay live. A
    finished hypothesis is never extended again. At ``max_length`` the live
    beams are finished as they are (cut, without <END>), but a cut caption
    ranks below every complete one, whatever its score: it is returned only
    when an image has fewer than ``n_best`` complete captions (a partial
    sentence's log-probability has not yet paid for its ending, so comparing
    it with complete captions would favour cut-off text).

    An image is done once it has ``n_best`` finished hypotheses and no live
    beam can still beat the worst of them, so stopping early changes no
    result: a live beam's log-probability only falls, so with ``alpha >= 0``
    its best reachable score is ``logprob / lp(max_length)``. The loop stops
    when every image is done, or at ``max_length``. Scores are accumulated in
    float64 whatever the model's dtype (they rank hypotheses; nothing flows
    back into the model).

    Args:
        step: ``step(tokens (M,), state) -> (logprobs (M, V), new_state)``; M = N
            at the first call, N*k after.
        state: tuple of arrays with leading axis N (each is repeated k times).
        start_id, end_id, max_length, null_id: as in :func:`greedy`.
        beam_size: k >= 1. k = 1 with ``length_penalty=0`` equals greedy.
        length_penalty: alpha >= 0 of :func:`length_penalty_factor`.
        n_best: how many hypotheses per image to return, 1 <= n_best <= k.
        logits: the step returns unnormalized scores (a new array every call, which
            beam search overwrites; ``CaptioningRNN.decoder_step(logits=True)``)
            instead of log-probabilities. Beam search then picks each row's best
            tokens on the scores and normalizes only those: the same
            log-probabilities, bit for bit, with one pass over the (M, V) scores and
            one (M, V) temporary fewer per step.

    Returns:
        BeamResult with the best caption of each image and its n-best list.
    """
    n = _check_common(state, start_id, end_id, max_length)
    k = beam_size
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
    if not isinstance(n_best, (int, np.integer)) or not 1 <= n_best <= k:
        raise ValueError(f"n_best must be an int in [1, beam_size={k}], got {n_best!r}")
    alpha = float(length_penalty)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"length_penalty must be a finite number >= 0, got {length_penalty}")
    T = int(max_length)
    img = np.arange(n)[:, None]  # (N, 1), for fancy indexing per image

    tokens = np.full(n, start_id, dtype=np.int64)  # the first step runs on N rows
    live_seq = np.full((n, k, T), null_id, dtype=np.int32)
    # Only beam 0 is real at the start; the others would duplicate it.
    live_lp = np.full((n, k), -np.inf)
    live_lp[:, 0] = 0.0
    fin_seq = np.full((n, k, T), null_id, dtype=np.int32)
    fin_lp = np.full((n, k), -np.inf)
    fin_score = np.full((n, k), -np.inf)
    fin_len = np.zeros((n, k), dtype=np.int64)
    fin_key = np.full((n, k), -np.inf)  # ranking key: the score, minus _CUT if cut
    done = np.zeros(n, dtype=bool)

    for t in range(T):
        beams = 1 if t == 0 else k  # rows per image in this call
        logprobs, state = _call_step(step, tokens, state, n * beams)
        v = logprobs.shape[1]
        if logits:  # x - max(x) in place: the log-softmax's first step, same order
            logprobs -= logprobs.max(axis=1, keepdims=True)
        # The image's best 2k extensions are among each beam's own best 2k tokens,
        # and adding a beam's log-probability does not reorder its row: select per
        # row first (one argpartition over the float32 logprobs), then rank the
        # few survivors exactly.
        per_row = min(2 * k, v)
        if per_row < v:
            part = np.argpartition(logprobs, v - per_row, axis=1)[:, v - per_row:]  # (N*k, 2k)
        else:
            part = np.broadcast_to(np.arange(v), (n * beams, v))
        picked = np.take_along_axis(logprobs, part, axis=1)
        if logits:  # the rest of the log-softmax, for the picked entries only
            picked -= np.log(np.exp(logprobs, out=logprobs).sum(axis=1, keepdims=True))
        if beams < k:
            # The first step: every beam of an image would see the same row; beams
            # 1..k-1 are at -inf, so copying beam 0's candidates to them keeps them out.
            part = np.repeat(part, k, axis=0)
            picked = np.repeat(picked, k, axis=0)
        cand_lp = live_lp.reshape(-1, 1) + picked
        cand_lp = cand_lp.reshape(n, k * per_row)
        cand_tok = part.reshape(n, k * per_row)
        cand_beam = np.broadcast_to(np.repeat(np.arange(k), per_row), (n, k * per_row))
        m = min(2 * k, k * v)
        # best first; exact ties go to the lower (beam, token), like np.argmax in greedy
        order = np.lexsort((cand_beam * v + cand_tok, -cand_lp), axis=1)[:, :m]  # (N, m)
        top_lp = cand_lp[img, order]
        top_beam, top_tok = cand_beam[img, order], cand_tok[img, order]
        is_end = top_tok == end_id
        last = t == T - 1

        # Finish: <END> within the first k, or everything live at max_length.
        rank = np.arange(m)[None, :]
        finish = np.isfinite(top_lp) & ~done[:, None] & (rank < k) & (is_end | last)
        if finish.any():
            new_seq = live_seq[img, top_beam]  # (N, m, T)
            new_seq[:, :, t] = top_tok
            new_score = np.where(finish, top_lp / length_penalty_factor(t + 1, alpha), -np.inf)
            new_key = np.where(is_end, new_score, new_score - _CUT)
            all_score = np.concatenate([fin_score, new_score], axis=1)  # (N, k+m)
            all_key = np.concatenate([fin_key, new_key], axis=1)
            keep = np.argsort(-all_key, axis=1, kind="stable")[:, :k]
            fin_key = all_key[img, keep]
            fin_seq = np.concatenate([fin_seq, new_seq], axis=1)[img, keep]
            fin_lp = np.concatenate([fin_lp, np.where(finish, top_lp, -np.inf)], axis=1)[img, keep]
            fin_len = np.concatenate([fin_len, np.full((n, m), t + 1)], axis=1)[img, keep]
            fin_score = all_score[img, keep]
        if last:
            break

        # Stay live: the k best extensions that do not end in <END>. There are
        # at least k, since each of the k beams offers at most one <END>.
        live = np.argsort(is_end, axis=1, kind="stable")[:, :k]  # (N, k)
        src_beam = top_beam[img, live]
        live_lp = top_lp[img, live]
        live_seq = live_seq[img, src_beam]
        live_seq[:, :, t] = top_tok[img, live]
        live_lp[done] = -np.inf  # done images just idle along

        # Done once the n_best-th finished score is out of every live beam's reach:
        # nothing that could still finish would enter the returned list.
        worst_kept = fin_score[:, n_best - 1]
        best_reachable = live_lp.max(axis=1) / length_penalty_factor(T, alpha)
        done |= np.isfinite(worst_kept) & (best_reachable <= worst_kept)
        if done.all():
            break
        if beams < k:  # all beams came from the same row: k copies of it
            rows = np.repeat(np.arange(n), k)
        else:
            rows = (np.arange(n)[:, None] * k + src_beam).reshape(-1)  # (N*k,)
        state = tuple(a[rows] for a in state)
        tokens = top_tok[img, live].reshape(-1).astype(np.int64)

    best = np.full((n, T), null_id, dtype=np.int32)
    nbest = []
    for i in range(n):
        hyps = []
        for j in range(min(n_best, k)):
            if not np.isfinite(fin_score[i, j]):
                break
            seq = fin_seq[i, j, :fin_len[i, j]].copy()
            hyps.append(Hypothesis(seq, float(fin_lp[i, j]), float(fin_score[i, j])))
        if hyps:
            best[i, :len(hyps[0].tokens)] = hyps[0].tokens
        nbest.append(hyps)
    return BeamResult(tokens=best, logprobs=fin_lp[:, 0].copy(),
                      scores=fin_score[:, 0].copy(), nbest=nbest)
