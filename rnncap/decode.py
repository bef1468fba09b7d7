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


class LiveBeams(NamedTuple):
    """The beams still being extended, b per image (b = 1 before the first step).

    Attributes:
        seq: int32 (N, b, T), the tokens so far, ``null_id`` after them.
        logprob: float64 (N, b), total log-probability; -inf marks a dead beam.
        state: the model state, arrays with leading axis N*b (beam j of image i in row
            i*b + j).
    """

    seq: np.ndarray
    logprob: np.ndarray
    state: tuple


class FinishedBeams(NamedTuple):
    """The k best finished hypotheses of every image, best first.

    Attributes:
        seq: int32 (N, k, T), tokens (``null_id`` after the caption).
        logprob: float64 (N, k), total log-probability; -inf for an empty slot.
        score: float64 (N, k), logprob / length penalty.
        length: int (N, k), tokens generated, <END> included.
        key: float64 (N, k), what they are ranked by: the score, minus _CUT if the
            caption was cut at max_length.
    """

    seq: np.ndarray
    logprob: np.ndarray
    score: np.ndarray
    length: np.ndarray
    key: np.ndarray


def _reorder(beams, idx):
    """The beams at positions idx of each image: one gather of every field.

    Args:
        beams: LiveBeams or FinishedBeams whose arrays have leading axes (N, m) (the
            state: N*m rows, image-major).
        idx: int (N, j), positions in [0, m) per image.

    Returns:
        The same type with leading axes (N, j).
    """
    img = np.arange(idx.shape[0])[:, None]
    m = beams.logprob.shape[1]
    out = {}
    for name, value in beams._asdict().items():
        if name == "state":
            out[name] = tuple(a.reshape((len(img), m) + a.shape[1:])[img, idx].reshape((-1,) + a.shape[1:])
                              for a in value)
        else:
            out[name] = value[img, idx]
    return type(beams)(**out)


def _top_per_row(x, c):
    """Column ids of each row's c largest entries; ties at the cut go to the lower ids
    (as np.argmax's do), so that beam size 1 is greedy even under exact ties.

    Args:
        x: (M, V) scores.
        c: 1 <= c <= V.

    Returns:
        int (M, c), in no particular order.
    """
    M, v = x.shape
    if c >= v:
        return np.broadcast_to(np.arange(v), (M, v))
    part = np.argpartition(x, v - c, axis=1)[:, v - c:]  # (M, c), any of several equal entries
    cut = np.take_along_axis(x, part, axis=1).min(axis=1, keepdims=True)  # (M, 1)
    at_least = x >= cut  # (M, V): exactly c per row unless entries tie at the cut
    if np.count_nonzero(at_least) > M * c:  # rare; one total count is cheap, per row is not
        for r in np.flatnonzero(np.count_nonzero(at_least, axis=1) > c):
            part[r] = np.argsort(-x[r], kind="stable")[:c]
    return part


def _candidate_step(step, width, logits):
    """Wraps a step into one that returns each row's `width` best next tokens.

    ``cand(tokens (M,), state, M) -> (ids (M, c), logprobs (M, c), new_state, V)`` with
    c = min(width, V). With ``logits`` the step returns raw scores (a new array every
    call, overwritten here): the best tokens are picked on the scores shifted by their
    row's max, and only the picked entries are normalized (minus the row's log-sum-exp):
    the same log-probabilities, bit for bit, with one pass over the (M, V) scores and
    one (M, V) temporary fewer than a full log-softmax.
    """
    def cand(tokens, state, rows):
        scores, new_state = _call_step(step, tokens, state, rows)
        v = scores.shape[1]
        if logits:  # x - max(x) in place: the log-softmax's first step, same order
            scores -= scores.max(axis=1, keepdims=True)
        ids = _top_per_row(scores, min(width, v))
        picked = np.take_along_axis(scores, ids, axis=1)
        if logits:  # the rest of the log-softmax, for the picked entries only
            picked -= np.log(np.exp(scores, out=scores).sum(axis=1, keepdims=True))
        return ids, picked, new_state, v

    return cand


def beam_search(step, state, start_id, end_id, max_length, beam_size=3,
                length_penalty=0.0, n_best=1, null_id=0, logits=False):
    """Batched beam search: all beams of all images advance in one step call.

    The N images carry ``k = beam_size`` live beams each, so every call to
    ``step`` after the first sees N*k rows (row ``i*k + j`` is beam j of image
    i); the first sees N rows, since all k beams of an image start equal. At each
    time step every live beam is extended by every token; per image the 2k
    best extensions (by total log-probability, all of equal length; exact ties to
    the lower beam, then the lower token id) are kept.
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

    The search keeps two records, `LiveBeams` and `FinishedBeams`, and reorders
    either with one gather (`_reorder`); a step is wrapped (`_candidate_step`) to
    return each row's best 2k tokens, from log-probabilities or raw scores.

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
            instead of log-probabilities; the result is the same, bit for bit.

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
    candidates = _candidate_step(step, 2 * k, logits)

    # Before the first step every image has one beam: <START> and the given state.
    live = LiveBeams(np.full((n, 1, T), null_id, dtype=np.int32), np.zeros((n, 1)), state)
    finished = FinishedBeams(np.full((n, k, T), null_id, dtype=np.int32), np.full((n, k), -np.inf),
                             np.full((n, k), -np.inf), np.zeros((n, k), dtype=np.int64),
                             np.full((n, k), -np.inf))
    done = np.zeros(n, dtype=bool)
    tokens = np.full(n, start_id, dtype=np.int64)
    for t in range(T):
        ids, logprobs, new_state, v = candidates(tokens, live.state, live.logprob.size)
        live = live._replace(state=new_state)
        live, finished, done = _advance(live, finished, done, ids, logprobs, v, t, T, k, n_best,
                                        alpha, end_id)
        if t == T - 1 or done.all():
            break
        tokens = live.seq[:, :, t].reshape(-1).astype(np.int64)
    return _result(finished, n_best, null_id)


def _advance(live, finished, done, ids, logprobs, v, t, T, k, n_best, alpha, end_id):
    """One time step of beam search, after the step has run: rank every live beam's
    candidate extensions per image, move the <END>s among the k best (or, at the last
    step, everything) to the finished list, keep the k best others live.

    Args:
        live: LiveBeams (N, b), its state already the step's new state.
        finished: FinishedBeams (N, k).
        done: bool (N,), images whose result can no longer change.
        ids, logprobs: (N*b, c) each live beam's best next tokens and their
            log-probabilities (from `_candidate_step`).
        v: the vocabulary size (for tie-breaking keys).
        t, T, k, n_best, alpha, end_id: as in beam_search.

    Returns:
        (live (N, min(k, ...)), finished, done).
    """
    n, b = live.logprob.shape
    c = ids.shape[1]
    img = np.arange(n)[:, None]
    cand_lp = (live.logprob.reshape(-1, 1) + logprobs).reshape(n, b * c)
    cand_tok = ids.reshape(n, b * c)
    cand_beam = np.broadcast_to(np.repeat(np.arange(b), c), (n, b * c))
    m = min(2 * k, b * c)
    # best first; exact ties go to the lower (beam, token), like np.argmax in greedy
    order = np.lexsort((cand_beam * v + cand_tok, -cand_lp), axis=1)[:, :m]  # (N, m)
    top_lp = cand_lp[img, order]
    top_beam, top_tok = cand_beam[img, order], cand_tok[img, order]
    is_end = top_tok == end_id
    last = t == T - 1

    # Finish: <END> within the first k, or everything live at max_length.
    finish = np.isfinite(top_lp) & ~done[:, None] & (np.arange(m)[None, :] < k) & (is_end | last)
    if finish.any():
        seq = live.seq[img, top_beam]  # (N, m, T)
        seq[:, :, t] = top_tok
        score = np.where(finish, top_lp / length_penalty_factor(t + 1, alpha), -np.inf)
        new = FinishedBeams(seq, np.where(finish, top_lp, -np.inf), score,
                            np.full((n, m), t + 1), np.where(is_end, score, score - _CUT))
        both = FinishedBeams(*(np.concatenate(pair, axis=1) for pair in zip(finished, new)))
        finished = _reorder(both, np.argsort(-both.key, axis=1, kind="stable")[:, :k])
    if last:
        return live, finished, done

    # Stay live: the k best extensions that do not end in <END> (each beam offers at
    # most one <END>; an <END> kept for want of others is a dead beam).
    keep = np.argsort(is_end, axis=1, kind="stable")[:, :k]  # (N, <= k)
    live = _reorder(live, top_beam[img, keep])
    live.seq[:, :, t] = top_tok[img, keep]
    logprob = np.where(is_end[img, keep], -np.inf, top_lp[img, keep])
    logprob[done] = -np.inf  # done images just idle along
    live = live._replace(logprob=logprob)

    # Done once the n_best-th finished score is out of every live beam's reach:
    # nothing that could still finish would enter the returned list.
    worst_kept = finished.score[:, n_best - 1]
    best_reachable = live.logprob.max(axis=1) / length_penalty_factor(T, alpha)
    done = done | (np.isfinite(worst_kept) & (best_reachable <= worst_kept))
    return live, finished, done


def _result(finished, n_best, null_id):
    """BeamResult from the finished hypotheses."""
    n, k, T = finished.seq.shape
    best = np.full((n, T), null_id, dtype=np.int32)
    nbest = []
    for i in range(n):
        hyps = []
        for j in range(min(n_best, k)):
            if not np.isfinite(finished.score[i, j]):
                break
            seq = finished.seq[i, j, :finished.length[i, j]].copy()
            hyps.append(Hypothesis(seq, float(finished.logprob[i, j]), float(finished.score[i, j])))
        if hyps:
            best[i, :len(hyps[0].tokens)] = hyps[0].tokens
        nbest.append(hyps)
    return BeamResult(tokens=best, logprobs=finished.logprob[:, 0].copy(),
                      scores=finished.score[:, 0].copy(), nbest=nbest)
