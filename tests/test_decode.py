"""Tests for rnncap.decode against hand-built models and brute-force search.

The models here are small step functions written in the tests (a table of
next-token log-probabilities, and a tiny fixed RNN whose state is a tuple of two
arrays), so decoding is checked without the real CaptioningRNN. Correctness is
proven by hand-derived answers, exhaustive enumeration of every caption, and
re-scoring captions token by token through the same step function.
"""

import itertools

import numpy as np
import pytest

from rnncap.decode import (BeamResult, beam_search, greedy, length_penalty_factor,
                           sample)

NULL, START, END = 0, 1, 2


# --------------------------------------------------------------------------- models

def table_step(table):
    """Markov model: next-token log-probabilities depend only on the last token."""
    logtab = np.log(np.asarray(table, dtype=np.float64))

    def step(tokens, state):
        return logtab[tokens], state
    return step


def tiny_rnn(V=7, H=5, seed=0, scale=1.5, end_bias=0.0, raw=False):
    """A fixed random RNN: state = (h (N, H), per-image logit bias (N, V)).

    Both state arrays must follow their beam when beams are reordered, so any
    mistake in reordering changes the log-probabilities the tests re-score.
    With raw=True the step returns the unnormalized scores (a fresh array).
    """
    rng = np.random.default_rng(seed)
    E = rng.normal(0, scale, (V, H))
    Wh = rng.normal(0, scale / np.sqrt(H), (H, H))
    Wo = rng.normal(0, scale, (H, V))

    def step(tokens, state):
        h, bias = state
        h = np.tanh(E[tokens] + h @ Wh)  # (N, H)
        logits = h @ Wo + bias  # (N, V)
        logits[:, END] += end_bias
        if raw:
            return logits, (h, bias)
        logits -= logits.max(axis=1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logprobs, (h, bias)

    def init(n, seed_state=1):
        r = np.random.default_rng(seed_state)
        return (r.normal(0, 1, (n, H)), r.normal(0, 1, (n, V)))
    return step, init


def rescore(step, state_row, tokens):
    """Total log-probability of one caption, fed token by token (teacher forcing)."""
    state = tuple(a[None] for a in state_row)
    prev, total = START, 0.0
    for tok in tokens:
        logprobs, state = step(np.array([prev]), state)
        total += float(logprobs[0, tok])
        prev = tok
    return total


def all_captions(V, T):
    """Every caption of at most T tokens: ends at its first END, or is cut at T."""
    non_end = [v for v in range(V) if v != END]
    for length in range(1, T + 1):
        for body in itertools.product(non_end, repeat=length - 1):
            yield body + (END,)
        if length == T:
            yield from itertools.product(non_end, repeat=T)


# --------------------------------------------------------------------------- greedy

def test_greedy_follows_hand_built_chain_and_pads_after_end():
    # Tokens: 0 NULL, 1 START, 2 END, 3, 4. START->3->4->END, hand-derived.
    table = np.full((5, 5), 0.1)
    table[START] = [0.05, 0.05, 0.1, 0.6, 0.2]
    table[3] = [0.05, 0.05, 0.1, 0.2, 0.6]
    table[4] = [0.05, 0.05, 0.6, 0.2, 0.1]
    state = (np.zeros((2, 1)),)
    out = greedy(table_step(table), state, START, END, max_length=6)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[3, 4, END, NULL, NULL, NULL]] * 2)


def test_greedy_custom_null_id_and_max_length_one():
    table = np.full((5, 5), 0.2)
    table[START] = [0.1, 0.1, 0.1, 0.6, 0.1]
    out = greedy(table_step(table), (np.zeros((3, 2)),), START, END, 1, null_id=4)
    np.testing.assert_array_equal(out, [[3], [3], [3]])


def test_greedy_matches_per_row_argmax_loop_on_rnn():
    step, init = tiny_rnn(seed=3)
    state = init(5)
    out = greedy(step, state, START, END, 8)
    for i in range(5):  # independent one-row-at-a-time reference
        st, prev, ref = tuple(a[i:i + 1] for a in state), START, []
        for _ in range(8):
            lp, st = step(np.array([prev]), st)
            prev = int(np.argmax(lp[0]))
            ref.append(prev)
            if prev == END:
                break
        ref += [NULL] * (8 - len(ref))
        np.testing.assert_array_equal(out[i], ref)


# --------------------------------------------------------------------------- beam search

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_equals_greedy(seed):
    step, init = tiny_rnn(seed=seed)
    state = init(12, seed_state=seed + 10)
    res = beam_search(step, state, START, END, 9, beam_size=1)
    assert isinstance(res, BeamResult) and res.tokens.dtype == np.int32
    np.testing.assert_array_equal(res.tokens, greedy(step, state, START, END, 9))


def test_beam_size_one_equals_greedy_under_exact_ties():
    """A step returning one constant row: every token ties at every step. Greedy takes
    the lowest id (np.argmax); beam size 1 must too, for log-probabilities and raw scores."""
    def constant(tokens, state):
        return np.zeros((len(tokens), 9)), state

    state = (np.zeros((2, 3)),)
    want = greedy(constant, state, start_id=1, end_id=2, max_length=3)
    assert want.tolist() == [[0, 0, 0], [0, 0, 0]]
    for logits in (False, True):
        got = beam_search(constant, state, start_id=1, end_id=2, max_length=3, beam_size=1,
                          logits=logits)
        np.testing.assert_array_equal(got.tokens, want)


def test_wider_beams_break_exact_ties_towards_lower_ids():
    """Five tied tokens and beam size 2: the two live beams are tokens 0 and 1."""
    def five_ties(tokens, state):
        row = np.full(9, -np.inf)
        row[[3, 4, 5, 6, 7]] = 0.0
        return np.tile(row, (len(tokens), 1)), state

    got = beam_search(five_ties, (np.zeros((1, 1)),), start_id=1, end_id=2, max_length=2,
                      beam_size=2, n_best=2)
    assert [h.tokens.tolist() for h in got.nbest[0]] == [[3, 3], [3, 4]]


def test_beam_finds_more_probable_caption_than_greedy():
    # Greedy takes 3 (p=.6) then END (p=.5): total .30. Taking 4 (p=.4) then
    # END (p=.9) gives .36, which a beam of 2 keeps and finds.
    table = np.full((5, 5), 0.2)
    table[START] = [0.0, 0.0, 0.0, 0.6, 0.4]
    table[3] = [0.0, 0.0, 0.5, 0.25, 0.25]
    table[4] = [0.0, 0.0, 0.9, 0.05, 0.05]
    with np.errstate(divide="ignore"):
        step = table_step(table)
    state = (np.zeros((1, 1)),)
    np.testing.assert_array_equal(greedy(step, state, START, END, 5)[0], [3, END, 0, 0, 0])
    res = beam_search(step, state, START, END, 5, beam_size=2, n_best=2)
    np.testing.assert_array_equal(res.tokens[0], [4, END, 0, 0, 0])
    assert res.logprobs[0] == pytest.approx(np.log(0.36), abs=1e-12)
    assert [list(h.tokens) for h in res.nbest[0]] == [[4, END], [3, END]]
    assert res.nbest[0][1].logprob == pytest.approx(np.log(0.30), abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_wide_beam_equals_exhaustive_search(alpha):
    # V=5, T=4: at most 4**3 = 64 live prefixes, so a beam of 64 is exhaustive and
    # its n-best list must be the brute-force ranking of every possible caption.
    V, T = 5, 4
    step, init = tiny_rnn(V=V, seed=7, scale=1.0)
    state = init(2, seed_state=8)
    res = beam_search(step, state, START, END, T, beam_size=64, n_best=6,
                      length_penalty=alpha)
    for i in range(2):
        row = tuple(a[i] for a in state)
        # complete captions (ending in <END>) first, then captions cut at T
        ranked = sorted(
            ((c[-1] == END, rescore(step, row, c) / length_penalty_factor(len(c), alpha), c)
             for c in all_captions(V, T)), reverse=True)[:6]
        got = res.nbest[i]
        assert [tuple(int(x) for x in h.tokens) for h in got] == [c for _, _, c in ranked]
        np.testing.assert_allclose([h.score for h in got], [s for _, s, _ in ranked], atol=1e-10)


def test_nbest_sorted_and_equal_to_rescoring():
    step, init = tiny_rnn(V=8, seed=4)
    state = init(6, seed_state=5)
    for alpha in (0.0, 1.0):
        res = beam_search(step, state, START, END, 7, beam_size=4, n_best=4,
                          length_penalty=alpha)
        assert len(res.nbest) == 6
        for i, hyps in enumerate(res.nbest):
            assert len(hyps) == 4
            keys = [(int(h.tokens[-1]) == END, h.score) for h in hyps]
            assert keys == sorted(keys, reverse=True)  # complete first, then by score
            assert len({tuple(h.tokens) for h in hyps}) == 4  # no duplicates
            row = tuple(a[i] for a in state)
            for h in hyps:
                assert h.tokens.dtype == np.int32
                assert h.logprob == pytest.approx(rescore(step, row, h.tokens), abs=1e-9)
                assert h.score == pytest.approx(
                    h.logprob / length_penalty_factor(len(h.tokens), alpha), abs=1e-12)
            assert res.logprobs[i] == hyps[0].logprob and res.scores[i] == hyps[0].score
            np.testing.assert_array_equal(res.tokens[i, :len(hyps[0].tokens)], hyps[0].tokens)
            assert np.all(res.tokens[i, len(hyps[0].tokens):] == NULL)


def test_finished_hypotheses_never_continue_past_end():
    step, init = tiny_rnn(V=6, seed=9, end_bias=1.0)
    T = 10
    res = beam_search(step, init(8), START, END, T, beam_size=5, n_best=5)
    for hyps in res.nbest:
        for h in hyps:
            ends = np.flatnonzero(h.tokens == END)
            if len(ends):  # END only ever as the last token
                assert list(ends) == [len(h.tokens) - 1]
            else:  # otherwise the caption was cut at max length
                assert len(h.tokens) == T


def test_length_penalty_favours_longer_captions():
    # Tokens 3, 4, 5. "3 END" has p = .5 * .99 = .495; "4 5 END" has
    # p = .45 * .95 * .95 = .406. By hand, with GNMT's ((5 + L) / 6) ** alpha:
    #   alpha=0: log .495 = -.703 beats log .406 = -.901  -> "3 END"
    #   alpha=2: -.703 / (7/6)**2 = -.517 loses to -.901 / (8/6)**2 = -.507 -> "4 5 END"
    table = np.full((6, 6), 1 / 6)
    table[START] = [0, 0, 0, 0.5, 0.45, 0.05]
    table[3] = [0, 0, 0.99, 0.005, 0, 0.005]
    table[4] = [0, 0, 0, 0.05, 0, 0.95]
    table[5] = [0, 0, 0.95, 0.05, 0, 0]
    with np.errstate(divide="ignore"):
        step = table_step(table)
    state = (np.zeros((1, 1)),)
    plain = beam_search(step, state, START, END, 4, beam_size=3, length_penalty=0.0)
    long_ = beam_search(step, state, START, END, 4, beam_size=3, length_penalty=2.0)
    np.testing.assert_array_equal(plain.tokens[0], [3, END, 0, 0])
    np.testing.assert_array_equal(long_.tokens[0], [4, 5, END, 0])
    assert long_.logprobs[0] == pytest.approx(np.log(0.45 * 0.95 * 0.95), abs=1e-12)
    assert long_.scores[0] == pytest.approx(np.log(0.406125) / (8 / 6) ** 2, abs=1e-12)


def test_model_that_never_emits_end_stops_at_max_length():
    step, init = tiny_rnn(V=6, seed=2, end_bias=-np.inf)
    calls = []

    def counting(tokens, state):
        calls.append(tokens.shape)
        return step(tokens, state)
    state = init(3)
    T = 6
    with np.errstate(invalid="ignore"):
        g = greedy(counting, state, START, END, T)
        s = sample(counting, state, START, END, T, rng=0)
        calls.clear()
        res = beam_search(counting, state, START, END, T, beam_size=3, n_best=3)
    assert not np.any(g == END) and not np.any(s == END)
    # one call per step: N rows first (all beams start equal), then N*k rows
    assert len(calls) == T and calls[0] == (3,) and all(c == (3 * 3,) for c in calls[1:])
    for hyps in res.nbest:
        assert len(hyps) == 3 and all(len(h.tokens) == T and END not in h.tokens for h in hyps)


def test_batched_beam_equals_one_image_at_a_time():
    step, init = tiny_rnn(V=9, seed=11)
    state = init(7, seed_state=12)
    together = beam_search(step, state, START, END, 8, beam_size=3, n_best=2,
                           length_penalty=0.5)
    for i in range(7):
        alone = beam_search(step, tuple(a[i:i + 1] for a in state), START, END, 8,
                            beam_size=3, n_best=2, length_penalty=0.5)
        np.testing.assert_array_equal(together.tokens[i], alone.tokens[0])
        for a, b in zip(together.nbest[i], alone.nbest[0]):
            np.testing.assert_array_equal(a.tokens, b.tokens)
            assert a.logprob == pytest.approx(b.logprob, abs=1e-12)


@pytest.mark.parametrize("k,alpha", [(1, 0.0), (3, 0.0), (5, 0.7), (12, 0.3)])
def test_beam_on_raw_scores_equals_beam_on_logprobs(k, alpha):
    """logits=True normalizes only the picked entries: the same tokens, log-probabilities
    and scores, bit for bit, as beam search over the log-softmax."""
    step, init = tiny_rnn(V=11, seed=21)
    raw_step, _ = tiny_rnn(V=11, seed=21, raw=True)
    state = init(6, seed_state=22)
    want = beam_search(step, state, START, END, 9, beam_size=k, n_best=min(k, 3),
                       length_penalty=alpha)
    got = beam_search(raw_step, state, START, END, 9, beam_size=k, n_best=min(k, 3),
                      length_penalty=alpha, logits=True)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.logprobs, want.logprobs)
    np.testing.assert_array_equal(got.scores, want.scores)
    for a, b in zip(got.nbest, want.nbest):
        assert [(h.tokens.tolist(), h.logprob, h.score) for h in a] == \
               [(h.tokens.tolist(), h.logprob, h.score) for h in b]
    assert np.isfinite(got.logprobs).all() and (got.logprobs < 0).all()  # really normalized


def test_beam_keeps_float32_model_working():
    step64, init = tiny_rnn(seed=5)

    def step32(tokens, state):
        lp, st = step64(tokens, tuple(a.astype(np.float64) for a in state))
        return lp.astype(np.float32), tuple(a.astype(np.float32) for a in st)
    state = tuple(a.astype(np.float32) for a in init(4))
    res = beam_search(step32, state, START, END, 6, beam_size=1)
    np.testing.assert_array_equal(res.tokens, greedy(step32, state, START, END, 6))


# --------------------------------------------------------------------------- sampling

def test_top_k_one_sampling_equals_greedy():
    step, init = tiny_rnn(seed=6)
    state = init(20)
    ref = greedy(step, state, START, END, 9)
    for temp in (0.5, 1.0, 3.0):
        np.testing.assert_array_equal(
            sample(step, state, START, END, 9, np.random.default_rng(1), temp, top_k=1), ref)
    np.testing.assert_array_equal(sample(step, state, START, END, 9, 0, temperature=0), ref)


def test_same_seed_same_samples_and_other_seed_differs():
    step, init = tiny_rnn(seed=6, scale=0.3)  # flat distributions: samples vary
    state = init(30)
    a = sample(step, state, START, END, 10, np.random.default_rng(123))
    b = sample(step, state, START, END, 10, np.random.default_rng(123))
    c = sample(step, state, START, END, 10, 123)
    d = sample(step, state, START, END, 10, np.random.default_rng(124))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, d)
    assert a.dtype == np.int32


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.5, None), (2.0, 3)])
def test_first_token_frequencies_match_tempered_top_k_distribution(temperature, top_k):
    p = np.array([0.02, 0.03, 0.1, 0.4, 0.25, 0.2])
    table = np.tile(p, (6, 1))
    n = 40000
    out = sample(table_step(table), (np.zeros((n, 1)),), START, END, 1,
                 np.random.default_rng(0), temperature, top_k)
    q = p ** (1.0 / temperature)  # hand formula: softmax(log p / temperature)
    if top_k is not None:
        q[np.argsort(p)[:-top_k]] = 0.0
    q /= q.sum()
    freq = np.bincount(out[:, 0], minlength=6) / n
    assert np.all(freq[q == 0] == 0)
    # 5 standard errors of a binomial proportion: fails only on a real bias
    np.testing.assert_array_less(np.abs(freq - q), 5 * np.sqrt(q * (1 - q) / n) + 1e-12)


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_raise_clear_errors():
    step, init = tiny_rnn()
    state = init(2)
    with pytest.raises(TypeError, match="state must be a non-empty tuple"):
        greedy(step, list(state), START, END, 5)
    with pytest.raises(ValueError, match="leading batch axis"):
        greedy(step, (state[0], state[1][:1]), START, END, 5)
    with pytest.raises(ValueError, match="max_length"):
        beam_search(step, state, START, END, 0)
    with pytest.raises(ValueError, match="n_best"):
        beam_search(step, state, START, END, 5, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(step, state, START, END, 5, length_penalty=-1)
    with pytest.raises(ValueError, match="top_k"):
        sample(step, state, START, END, 5, 0, top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(step, state, START, END, 5, 0, temperature=-1.0)
    with pytest.raises(TypeError, match="rng"):
        sample(step, state, START, END, 5, rng=None)
    with pytest.raises(ValueError, match=r"logprobs of shape \(N, V\)"):
        greedy(lambda t, s: (np.zeros(len(t)), s), state, START, END, 5)


def test_complete_caption_beats_a_more_probable_cut_one():
    # From <START>: token 3 (p=.6) or <END> (p=.4); after 3: 3 again (p=.9) or <END>.
    # At max_length 2 the cut caption "3 3" (log .54) is more probable than "<END>"
    # (log .4) and "3 <END>" (log .06), but it never ended: complete captions rank first.
    table = np.log(np.array([[0.0, 0.0, 0.4, 0.6], [0.0, 0.0, 0.1, 0.9]]) + 1e-300)

    def step(tokens, state):
        (seen,) = state
        return table[np.minimum(seen, 1)], (seen + 1,)

    res = beam_search(step, (np.zeros(1, np.int64),), START, END, 2, beam_size=2, n_best=2)
    assert [list(h.tokens) for h in res.nbest[0]] == [[END], [3, END]]
    assert res.nbest[0][0].logprob == pytest.approx(np.log(0.4))
    assert list(res.tokens[0]) == [END, NULL]
