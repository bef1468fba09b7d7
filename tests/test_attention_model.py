"""Tests for rnncap.attention_model: whole-model float64 gradient check, the decoding
contract (step agrees with the training forward pass), attention weights, bad input."""

import numpy as np
import pytest

from rnncap import decode
from rnncap.attention_model import PARAM_NAMES, AttentionCaptioner
from rnncap.gradcheck import eval_numerical_gradient, rel_error
from rnncap.parallel import data_parallel, split_rows

WORDS = ["<NULL>", "<START>", "<END>", "a", "red", "blue", "circle", "square"]
W2I = {w: i for i, w in enumerate(WORDS)}
N, L, D = 4, 3, 5


def _model(dtype=np.float64, **kw):
    return AttentionCaptioner(W2I, input_dim=D, wordvec_dim=4, hidden_dim=6, attention_dim=5,
                              dtype=dtype, seed=0, **kw)


def _batch(rng):
    features = rng.standard_normal((N, L, D))
    captions = np.array([[1, 3, 4, 6, 2, 0],
                         [1, 3, 5, 7, 6, 2],
                         [1, 4, 2, 0, 0, 0],
                         [1, 3, 2, 0, 0, 0]])
    return features, captions


def _randomize(model, rng):
    # Non-zero biases, so their gradients are checked at a generic point.
    for k, v in model.params.items():
        model.params[k] = (v + 0.3 * rng.standard_normal(v.shape)).astype(v.dtype)


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_loss_gradients_match_finite_differences(lam):
    rng = np.random.default_rng(0)
    model = _model(doubly_stochastic=lam)
    _randomize(model, rng)
    features, captions = _batch(rng)
    loss, grads = model.loss(features, captions)
    assert list(grads) == list(model.params) == list(PARAM_NAMES)
    for name in PARAM_NAMES:
        f = lambda _: model.loss(features, captions)[0]  # noqa: E731
        num = eval_numerical_gradient(f, model.params[name], verbose=False)
        # Elementwise 1e-5 (entries near 1e-5 carry ~1e-11 of finite-difference rounding),
        # and 1e-7 of each array's largest entry everywhere.
        assert rel_error(grads[name], num) <= 1e-5, (name, rel_error(grads[name], num))
        assert np.abs(grads[name] - num).max() <= 1e-7 * np.abs(num).max(), name


def test_penalty_adds_exactly_the_doubly_stochastic_term():
    rng = np.random.default_rng(1)
    features, captions = _batch(rng)
    plain, penalised = _model(), _model(doubly_stochastic=0.5)
    tokens = captions[:, 1:]
    alphas = plain.attention_weights(features, tokens)  # teacher-forced weights per target
    r = 1 - alphas.sum(axis=1)
    expected = 0.5 * float((r * r).sum()) / N
    assert penalised.loss(features, captions)[0] - plain.loss(features, captions)[0] == pytest.approx(expected, rel=1e-12)


def test_grads_keep_float32():
    rng = np.random.default_rng(2)
    model = _model(np.float32)
    features, captions = _batch(rng)
    _, grads = model.loss(features.astype(np.float32), captions)
    for k, v in model.params.items():
        assert grads[k].dtype == np.float32 and grads[k].shape == v.shape, k


def test_loss_equals_sum_of_step_logprobs():
    # The decoding step and the training forward pass are the same network.
    rng = np.random.default_rng(3)
    model = _model()
    _randomize(model, rng)
    features, captions = _batch(rng)
    state = model.init_state(features)
    total = 0.0
    for t in range(captions.shape[1] - 1):
        logprobs, state = model.step(captions[:, t], state)
        target = captions[:, t + 1]
        total -= logprobs[np.arange(N), target][target != 0].sum()
    assert model.loss(features, captions)[0] == pytest.approx(total / N, rel=1e-12)


def test_decoder_step_equals_step():
    rng = np.random.default_rng(4)
    model = _model()
    features, _ = _batch(rng)
    fast = model.decoder_step()
    s1 = s2 = model.init_state(features)
    for tok in ([1, 1, 1, 1], [3, 4, 5, 6]):
        l1, s1 = model.step(np.array(tok), s1)
        l2, s2 = fast(np.array(tok), s2)
        np.testing.assert_allclose(l1, l2, rtol=1e-12)


def test_attention_weights_are_those_of_the_decoding_steps():
    rng = np.random.default_rng(5)
    model = _model()
    _randomize(model, rng)
    features, _ = _batch(rng)
    tokens = model.sample(features, max_length=5)
    weights = model.attention_weights(features, tokens)
    assert weights.shape == (N, 5, L)
    state = model.init_state(features)
    tables = model._decoder_tables(model.params)
    prev = np.full(N, 1)
    for t in range(5):
        _, state, alpha = model._step(tables, prev, state)
        alive = tokens[:, t] != 0
        np.testing.assert_allclose(weights[alive, t], alpha[alive], rtol=1e-12)
        np.testing.assert_allclose(weights[alive, t].sum(axis=1), 1.0, rtol=1e-12)
        assert not weights[~alive, t].any()
        prev = tokens[:, t]


def test_decoders_run_unchanged_on_the_step_function():
    rng = np.random.default_rng(6)
    model = _model()
    _randomize(model, rng)
    features, _ = _batch(rng)
    ids = dict(start_id=1, end_id=2, max_length=6)
    greedy = decode.greedy(model.step, model.init_state(features), null_id=0, **ids)
    np.testing.assert_array_equal(greedy, model.sample(features, max_length=6))
    beam1 = decode.beam_search(model.step, model.init_state(features), beam_size=1, **ids)
    np.testing.assert_array_equal(beam1.tokens, greedy)
    sampled = decode.sample(model.step, model.init_state(features), rng=np.random.default_rng(0),
                            **ids)
    assert sampled.shape == (N, 6)


def test_row_groups_on_two_threads_give_the_same_loss_and_gradients():
    rng = np.random.default_rng(7)
    model = _model()
    features, captions = _batch(rng)
    loss1, g1 = model.loss(features, captions)
    groups = split_rows((captions[:, 1:] != 0).sum(axis=1), 2)
    loss2, g2 = data_parallel(model.loss, (features, captions), groups, workers=2)
    assert loss2 == pytest.approx(loss1, rel=1e-12)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-10, atol=1e-14)


def test_pooled_features_are_refused_with_the_expected_shape():
    model = _model()
    with pytest.raises(ValueError, match=r"grid features of shape \(N, L, 5\); got \(4, 5\)"):
        model.init_state(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(N, L, 5\); got \(4, 3, 7\)"):
        model.loss(np.zeros((4, 3, 7)), np.ones((4, 3), int))


def test_config_rebuilds_the_same_shapes():
    model = _model(doubly_stochastic=0.25)
    cfg = dict(model.config)
    assert cfg.pop("kind") == "attention"
    again = AttentionCaptioner(W2I, **cfg)
    assert {k: v.shape for k, v in again.params.items()} == {k: v.shape for k, v in model.params.items()}
    assert again.doubly_stochastic == 0.25
