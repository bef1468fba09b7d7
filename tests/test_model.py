"""Tests for rnncap.model.CaptioningRNN: whole-model gradients against float64 finite
differences, the loss against an independent step-by-step computation, masking, dtypes,
the decoding interface and input errors."""

import copy
import json
import math

import numpy as np
import pytest

from rnncap.gradcheck import eval_numerical_gradient, rel_error
from rnncap.model import CaptioningRNN

# Whole-model finite-difference checks: largest relative errors measured 5.4e-8 (rnn) and
# 2.3e-6 / 9.6e-7 (lstm, loss / fast_loss), all from the finite differences' own rounding
# on gradient entries near 1e-5 (float64, h = 1e-5).
GRAD_TOL = 1e-5
CONFIGS = [("rnn", False), ("rnn", True), ("lstm", False), ("lstm", True)]


def _vocab(V):
    words = ["<NULL>", "<START>", "<END>"] + [f"w{i}" for i in range(V - 3)]
    return {w: i for i, w in enumerate(words)}


def _captions(rng, N, T, V, pad_from=None):
    """(N, T) captions: <START>, random words, <END> somewhere, <NULL> after it."""
    caps = rng.integers(3, V, size=(N, T))
    caps[:, 0] = 1
    for n in range(N):
        end = pad_from[n] if pad_from is not None else rng.integers(2, T)
        caps[n, end] = 2
        caps[n, end + 1 :] = 0
    return caps


def _model(cell, every, V=9, D=4, W=3, H=5, dtype=np.float64, seed=0):
    return CaptioningRNN(_vocab(V), input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell,
                         dtype=dtype, seed=seed, image_every_step=every)


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_parameters_shapes_and_initialisation(cell, every):
    V, D, W, H = 1004, 512, 64, 96
    m = CaptioningRNN(_vocab(V), input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell, seed=0,
                      image_every_step=every)
    G = H if cell == "rnn" else 4 * H
    shapes = {"W_embed": (V, W), "W_proj": (D, H), "b_proj": (H,), "Wx": (W, G), "Wh": (H, G),
              "b": (G,), "W_vocab": (H, V), "b_vocab": (V,)}
    if every:
        shapes["W_img"] = (D, G)
    assert {k: v.shape for k, v in m.params.items()} == shapes
    assert all(v.dtype == np.float32 for v in m.params.values())
    assert abs(m.params["W_embed"].std() - 0.01) < 0.001
    for k, fan_in in [("W_proj", D), ("Wx", W), ("Wh", H), ("W_vocab", H)] + [("W_img", D)] * every:
        assert abs(m.params[k].std() * math.sqrt(fan_in) - 1) < 0.05, k
    for k in ("b_proj", "b", "b_vocab"):
        assert not m.params[k].any()


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_pytorch_initialisation_draws_what_pytorchs_layers_draw(cell, every):
    V, D, W, H = 1004, 512, 64, 96
    kw = dict(input_dim=D, wordvec_dim=W, hidden_dim=H, cell_type=cell, seed=0, image_every_step=every)
    m = CaptioningRNN(_vocab(V), init="pytorch", **kw)
    ref = CaptioningRNN(_vocab(V), **kw)
    assert {k: (v.shape, v.dtype) for k, v in m.params.items()} == \
        {k: (v.shape, v.dtype) for k, v in ref.params.items()}
    assert m.config["init"] == "pytorch" and ref.config["init"] == "cs231n"
    assert abs(m.params["W_embed"].std() - 1) < 0.01  # nn.Embedding: N(0, 1)
    # U(-a, a) has standard deviation a / sqrt(3); nn.LSTM/nn.RNN use a = 1/sqrt(H) for every
    # weight, nn.Linear a = 1/sqrt(fan_in) for weight and bias.
    uniform = [("W_proj", D), ("b_proj", D), ("Wx", H), ("Wh", H), ("W_vocab", H), ("b_vocab", H)]
    for k, fan in uniform + [("W_img", D)] * every:
        a = 1 / math.sqrt(fan)
        assert np.abs(m.params[k]).max() <= a, k
        assert abs(m.params[k].std() / (a / math.sqrt(3)) - 1) < 0.1, k
    # b is b_ih + b_hh, each U(+-1/sqrt(H)): bounded by 2/sqrt(H), variance twice a/sqrt(3)'s
    b, a = m.params["b"], 1 / math.sqrt(H)
    assert np.abs(b).max() <= 2 * a and abs(b.std() / (a * math.sqrt(2 / 3)) - 1) < 0.15


def test_seed_dtype_names_and_config_round_trip():
    m = CaptioningRNN(_vocab(20), input_dim=6, wordvec_dim=4, hidden_dim=5, cell_type="lstm",
                      dtype="float64", seed=3, image_every_step=True)
    assert m.dtype == np.float64
    cfg = json.loads(json.dumps(m.config))
    assert cfg == {"input_dim": 6, "wordvec_dim": 4, "hidden_dim": 5, "cell_type": "lstm",
                   "dtype": "float64", "image_every_step": True, "init": "cs231n"}
    twin = CaptioningRNN(_vocab(20), **cfg, seed=3)
    assert all(np.array_equal(twin.params[k], v) and twin.params[k].dtype == v.dtype for k, v in m.params.items())
    single = CaptioningRNN(_vocab(20), **{**cfg, "dtype": np.float32}, seed=3)
    for k, v in m.params.items():  # same draws, rounded: float32 does not change the network
        np.testing.assert_allclose(single.params[k], v, rtol=1e-6, atol=1e-7)
    assert m.idx_to_word[:3] == ["<NULL>", "<START>", "<END>"] and m.idx_to_word[5] == "w2"


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_whole_model_gradient_matches_finite_differences(cell, every):
    m = _model(cell, every)
    rng = np.random.default_rng(1)
    for k in m.params:  # away from the zero biases of the initialisation
        m.params[k] = 0.5 * rng.standard_normal(m.params[k].shape)
    features = rng.standard_normal((3, 4))
    captions = _captions(rng, 3, 6, 9, pad_from=[3, 4, 5])
    _, grads = m.loss(features, captions)
    for k in m.params:
        num = eval_numerical_gradient(lambda _: m.loss(features, captions)[0], m.params[k], verbose=False)
        err = rel_error(grads[k], num)
        assert err <= GRAD_TOL, (k, err)


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_fast_loss_equals_reference_loss(cell, every):
    """The fast path (packed, in place) against the reference path (the assignment's
    five layers), float64: one caption has no target at all, one is full length."""
    m = _model(cell, every)
    rng = np.random.default_rng(5)
    for k in m.params:
        m.params[k] = 0.5 * rng.standard_normal(m.params[k].shape)
    features = rng.standard_normal((7, 4))
    captions = _captions(rng, 7, 8, 9, pad_from=[1, 7, 3, 5, 2, 7, 4])
    captions[0, 1:] = 0  # no targets
    want_loss, want = m.loss(features, captions)
    loss, grads = m.fast_loss(features, captions)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-11, atol=1e-14, err_msg=k)
        assert grads[k].dtype == want[k].dtype


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_fast_loss_gradient_matches_finite_differences(cell, every):
    m = _model(cell, every)
    rng = np.random.default_rng(1)
    for k in m.params:
        m.params[k] = 0.5 * rng.standard_normal(m.params[k].shape)
    features = rng.standard_normal((3, 4))
    captions = _captions(rng, 3, 6, 9, pad_from=[3, 4, 5])
    _, grads = m.fast_loss(features, captions)
    for k in m.params:
        num = eval_numerical_gradient(lambda _: m.fast_loss(features, captions)[0], m.params[k], verbose=False)
        err = rel_error(grads[k], num)
        assert err <= GRAD_TOL, (k, err)


def test_row_costs_are_positions_up_to_the_last_target():
    m = _model("rnn", False)
    captions = np.array([[1, 4, 2, 0, 0], [1, 2, 0, 0, 0], [1, 0, 0, 0, 0], [1, 3, 0, 5, 2]])
    assert list(m.row_costs(captions)) == [2, 1, 0, 4]


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_loss_equals_sum_of_step_logprobs(cell, every):
    """A second implementation of the forward pass: teacher-force the same captions
    through init_state()/step() and add up -log p(target) where the target is not <NULL>."""
    m = _model(cell, every)
    rng = np.random.default_rng(2)
    for k in m.params:
        m.params[k] = 0.5 * rng.standard_normal(m.params[k].shape)
    N, T = 4, 7
    features = rng.standard_normal((N, 4))
    captions = _captions(rng, N, T, 9)
    loss, _ = m.loss(features, captions)
    state, total = m.init_state(features), 0.0
    for t in range(T - 1):
        logprobs, state = m.step(captions[:, t], state)
        target = captions[:, t + 1]
        total -= sum(logprobs[n, target[n]] for n in range(N) if target[n] != 0)
    assert abs(loss - total / N) < 1e-10


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_loss_at_initialisation_is_near_uniform(cell):
    V = 1004
    m = CaptioningRNN(_vocab(V), input_dim=512, wordvec_dim=64, hidden_dim=128, cell_type=cell, seed=0)
    rng = np.random.default_rng(3)
    N, T = 50, 17
    captions = _captions(rng, N, T, V)
    features = rng.standard_normal((N, 512)).astype(np.float32)
    loss, _ = m.loss(features, captions)
    expected = (captions[:, 1:] != 0).sum() / N * math.log(V)
    # Initial scores have small variance s^2 (< 1), which adds about s^2/2 per token.
    assert expected <= loss < 1.08 * expected


def test_zero_output_weights_give_exactly_log_v_per_token():
    """params is read on every call: new output weights take effect immediately."""
    m = _model("lstm", True)
    rng = np.random.default_rng(4)
    captions = _captions(rng, 5, 8, 9)
    m.params["W_vocab"] = np.zeros_like(m.params["W_vocab"])
    m.params["b_vocab"] = np.zeros_like(m.params["b_vocab"])
    loss, _ = m.loss(rng.standard_normal((5, 4)), captions)
    assert abs(loss - (captions[:, 1:] != 0).sum() / 5 * math.log(9)) < 1e-12


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_masked_positions_contribute_nothing(cell, every):
    """A padded batch must give what its rows give unpadded, one at a time: the <NULL>
    padding adds no loss and no gradient (and the loss is per caption: sum / N)."""
    m = _model(cell, every)
    rng = np.random.default_rng(5)
    features = rng.standard_normal((3, 4))
    ends = [2, 4, 7]
    captions = _captions(rng, 3, 8, 9, pad_from=ends)
    loss, grads = m.loss(features, captions)
    total, total_grads = 0.0, {k: np.zeros_like(v) for k, v in m.params.items()}
    for n, end in enumerate(ends):
        row_loss, row_grads = m.loss(features[n : n + 1], captions[n : n + 1, : end + 1])
        total += row_loss
        for k, g in row_grads.items():
            total_grads[k] += g
    assert abs(loss - total / 3) < 1e-12
    for k in grads:
        np.testing.assert_allclose(grads[k], total_grads[k] / 3, rtol=1e-10, atol=1e-14, err_msg=k)
    only_null = np.zeros((3, 5), dtype=np.int64)
    only_null[:, 0] = 1
    loss0, grads0 = m.loss(features, only_null)
    assert loss0 == 0.0 and not any(g.any() for g in grads0.values())


@pytest.mark.parametrize("cell,every", CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grads_have_the_keys_shapes_and_dtypes_of_params(cell, every, dtype):
    m = _model(cell, every, dtype=dtype)
    rng = np.random.default_rng(6)
    loss, grads = m.loss(rng.standard_normal((4, 4)), _captions(rng, 4, 6, 9))  # float64 features
    assert isinstance(loss, float) and math.isfinite(loss)
    assert list(grads) == list(m.params)
    for k, v in m.params.items():
        assert grads[k].shape == v.shape and grads[k].dtype == dtype, k
    state = m.init_state(rng.standard_normal((4, 4)))
    logprobs, state = m.step(np.array([1, 1, 2, 3]), state)
    assert logprobs.dtype == dtype and all(s.dtype == dtype for s in state)


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_step_is_pure_and_state_reorders_by_fancy_indexing(cell, every):
    m = _model(cell, every)
    rng = np.random.default_rng(7)
    state = m.init_state(rng.standard_normal((4, 4)))
    assert all(s.shape[0] == 4 for s in state)
    assert len(state) == (1 if cell == "rnn" else 2) + every
    before = copy.deepcopy(state)
    tokens = np.array([1, 4, 5, 6])
    logprobs, new_state = m.step(tokens, state)
    for a, b in zip(state, before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.exp(logprobs).sum(axis=1), 1.0, rtol=1e-12)
    idx = np.array([2, 2, 0])
    lp2, st2 = m.step(tokens[idx], tuple(s[idx] for s in state))
    np.testing.assert_allclose(lp2, logprobs[idx], rtol=1e-12, atol=1e-12)
    for a, b in zip(st2, new_state):
        np.testing.assert_allclose(a, b[idx], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_sample_is_greedy_over_step(cell, every):
    m = _model(cell, every, V=7)
    rng = np.random.default_rng(8)
    for k in m.params:
        m.params[k] = rng.standard_normal(m.params[k].shape)
    features = rng.standard_normal((6, 4))
    out = m.sample(features, max_length=9)
    assert out.shape == (6, 9) and out.dtype == np.int32
    for n in range(6):  # hand-rolled greedy loop, one row at a time
        state = m.init_state(features[n : n + 1])
        token, done = 1, False
        for t in range(9):
            logprobs, state = m.step(np.array([token]), state)
            token = int(np.argmax(logprobs[0]))
            assert out[n, t] == (0 if done else token)
            done = done or token == 2


def test_sample_writes_null_after_end():
    m = _model("rnn", False)
    m.params["W_vocab"] = np.zeros_like(m.params["W_vocab"])
    b_vocab = np.zeros(9)
    b_vocab[2] = 10.0  # <END> is always the most probable word
    m.params["b_vocab"] = b_vocab
    out = m.sample(np.ones((2, 4)), max_length=5)
    np.testing.assert_array_equal(out, [[2, 0, 0, 0, 0]] * 2)


def test_constructor_errors():
    v = _vocab(9)
    with pytest.raises(ValueError, match="cell_type must be one of rnn, lstm; got 'gru'"):
        CaptioningRNN(v, cell_type="gru")
    with pytest.raises(ValueError, match="missing <NULL>"):
        CaptioningRNN({k: i for k, i in v.items() if k != "<NULL>"})
    with pytest.raises(ValueError, match="ids must be exactly 0..8"):
        CaptioningRNN({**v, "w0": 42})
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        CaptioningRNN(v, dtype="float16")
    with pytest.raises(ValueError, match="hidden_dim must be a positive integer"):
        CaptioningRNN(v, hidden_dim=0)
    with pytest.raises(ValueError, match="init must be one of cs231n, pytorch; got 'xavier'"):
        CaptioningRNN(v, init="xavier")


def test_input_errors_say_what_was_expected():
    m = _model("lstm", True)
    rng = np.random.default_rng(9)
    f, c = rng.standard_normal((3, 4)), _captions(rng, 3, 6, 9)
    cases = [
        ((f[0], c), r"features must have shape \(N, 4\); got \(4,\)"),
        ((f[:, :3], c), r"features must have shape \(N, 4\); got \(3, 3\)"),
        ((np.ones((3, 4), int), c), "features must be floating point; got dtype int64"),
        ((np.where(f > 1, np.nan, f), c), "features must be finite"),
        ((f, c.astype(float)), "captions must hold integer token ids; got dtype float64"),
        ((f, c[0]), r"captions must have shape \(N, T\)"),
        ((f, c[:2]), "same N; got 2 and 3"),
        ((f, np.where(c == 3, 9, c)), r"ids in \[0, 9\); got values in \[0, 9\]"),
        ((f, np.where(c == 3, -1, c)), r"ids in \[0, 9\); got values in \[-1, "),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            m.loss(*args)
    state = m.init_state(f)
    with pytest.raises(ValueError, match=r"tokens must have shape \(3,\)"):
        m.step(np.array([1, 1]), state)
    with pytest.raises(ValueError, match=r"tokens must hold ids in \[0, 9\)"):
        m.step(np.array([1, 1, 12]), state)
    with pytest.raises(ValueError, match="state must be the tuple of 3 arrays"):
        m.step(np.array([1, 1, 1]), state[:2])


@pytest.mark.parametrize("cell,every", CONFIGS)
def test_decoder_step_equals_step(cell, every):
    """decoder_step() precomputes the projected word table; it must give what step() gives,
    and sample() (which uses it for long runs) must stay greedy over step()."""
    from rnncap.decode import greedy

    m = _model(cell, every, V=7)
    rng = np.random.default_rng(9)
    for k in m.params:
        m.params[k] = rng.standard_normal(m.params[k].shape)
    state = m.init_state(rng.standard_normal((5, 4)))
    before = copy.deepcopy(state)
    fast = m.decoder_step()
    tokens = np.array([1, 4, 4, 6, 2])
    lp_fast, st_fast = fast(tokens, state)
    lp, st = m.step(tokens, state)
    np.testing.assert_allclose(lp_fast, lp, rtol=1e-12, atol=1e-12)
    for a, b in zip(st_fast, st):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(state, before):
        np.testing.assert_array_equal(a, b)
    # logits=True: the raw scores, whose log-softmax is step()'s log-probabilities.
    scores, st_logits = m.decoder_step(logits=True)(tokens, state)
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.testing.assert_allclose(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), lp,
                               rtol=1e-12, atol=1e-12)
    assert not np.allclose(np.exp(scores).sum(axis=1), 1)  # not normalized
    for a, b in zip(st_logits, st):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    features = rng.standard_normal((6, 4))  # 6 rows x 9 steps >= V: sample uses the table
    want = greedy(m.step, m.init_state(features), start_id=1, end_id=2, max_length=9)
    np.testing.assert_array_equal(m.sample(features, max_length=9), want)
