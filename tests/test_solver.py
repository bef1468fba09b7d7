"""Tests for rnncap.solver.CaptioningSolver: CS231n arguments and bookkeeping, seeded
minibatches, callbacks, clipping, the non-finite guard, bit-identical resumption, and
CS231n's overfitting check."""

import json

import numpy as np
import pytest

from rnncap.model import CaptioningRNN
from rnncap.solver import CaptioningSolver


class Quadratic:
    """A model that is not a captioner at all: the solver must not care.

    loss = mean over the batch of ||features @ w - captions[:, :2]||^2 / 2.
    """

    def __init__(self, D=3):
        self.params = {"w": np.zeros((D, 2))}
        self.calls = 0

    def loss(self, features, captions):
        self.calls += 1
        r = features @ self.params["w"] - captions[:, :2]
        return float((r * r).sum() / (2 * len(r))), {"w": features.T @ r / len(r)}


def _data(rng, M=40, I=10, D=3, T=4, high=5):
    return {
        "train_captions": rng.integers(0, high, size=(M, T)),
        "train_image_idxs": rng.integers(0, I, size=M),
        "train_features": rng.standard_normal((I, D)),
        "val_captions": "ignored",
    }


def _vocab(V):
    words = ["<NULL>", "<START>", "<END>"] + [f"w{i}" for i in range(V - 3)]
    return {w: i for i, w in enumerate(words)}


def _captioning_setup(cell="lstm", seed=0):
    rng = np.random.default_rng(seed)
    V, M = 12, 30
    caps = rng.integers(3, V, size=(M, 7))
    caps[:, 0], caps[:, -1] = 1, 2
    data = {"train_captions": caps, "train_image_idxs": np.arange(M), "train_features": rng.standard_normal((M, 6))}
    model = CaptioningRNN(_vocab(V), input_dim=6, wordvec_dim=5, hidden_dim=8, cell_type=cell, seed=seed,
                          image_every_step=True)
    return model, data


def test_iteration_bookkeeping_and_cs231n_defaults():
    rng = np.random.default_rng(0)
    s = CaptioningSolver(Quadratic(), _data(rng, M=40), batch_size=16, num_epochs=3, verbose=False)
    assert (s.iterations_per_epoch, s.num_iterations) == (2, 6)
    assert s.update_rule.__name__ == "sgd" and s.lr_decay == 1.0 and s.print_every == 10
    tiny = CaptioningSolver(Quadratic(), _data(rng, M=5), verbose=False)  # batch_size 100 > M
    assert (tiny.iterations_per_epoch, tiny.num_iterations) == (1, 10)
    s.train()
    assert s.t == 6 and s.epoch == 3 and len(s.loss_history) == 6
    assert all(isinstance(x, float) for x in s.loss_history)


def test_training_approaches_the_least_squares_optimum():
    rng = np.random.default_rng(1)
    model = Quadratic()
    data = _data(rng)
    X = data["train_features"][data["train_image_idxs"]]
    Y = data["train_captions"][:, :2]
    w_best = np.linalg.lstsq(X, Y, rcond=None)[0]

    def full_loss(w):
        r = X @ w - Y
        return (r * r).sum() / (2 * len(r))

    s = CaptioningSolver(model, data, update_rule="sgd", optim_config={"learning_rate": 0.2},
                         lr_decay=0.9, batch_size=10, num_epochs=50, verbose=False, seed=0)
    s.train()
    gap_before = full_loss(np.zeros_like(w_best)) - full_loss(w_best)
    gap_after = full_loss(model.params["w"]) - full_loss(w_best)
    assert gap_after < 0.02 * gap_before  # 98% of the reducible loss is gone


def test_lr_decay_and_callbacks_at_every_epoch_end():
    rng = np.random.default_rng(2)
    seen = []
    s = CaptioningSolver(Quadratic(), _data(rng), update_rule="adam", optim_config={"learning_rate": 0.1},
                         lr_decay=0.5, batch_size=10, num_epochs=3, verbose=False,
                         callbacks=[lambda solver: seen.append((solver.epoch, solver.t,
                                                                solver.optim_configs["w"]["learning_rate"]))])
    s.train()
    assert seen == [(1, 4, 0.05), (2, 8, 0.025), (3, 12, 0.0125)]
    assert s.optim_config == {"learning_rate": 0.1}  # the template is not mutated


def test_cosine_schedule_sets_every_iterations_rate():
    rng = np.random.default_rng(1)
    s = CaptioningSolver(Quadratic(), _data(rng, M=40), update_rule="sgd", batch_size=10,
                         num_epochs=2, optim_config={"learning_rate": 0.1}, lr_decay=0.5,
                         lr_schedule="cosine", verbose=False, seed=0)
    used, moves = [], []
    before = {"w": s.model.params["w"].copy()}

    def watch(solver):  # after each update: the rate it used, and what the update was
        used.append(solver.optim_configs["w"]["learning_rate"])
        moves.append(solver.model.params["w"] - before["w"])
        before["w"] = solver.model.params["w"].copy()

    s.iteration_callbacks = (watch,)
    s.train()
    assert s.num_iterations == 8 and s.iterations_per_epoch == 4
    # by hand: 0.1 * 0.5**epoch * (1 + cos(pi t / 8)) / 2 for t = 0..7
    expected = [0.1 * 0.5 ** (t // 4) * (1 + np.cos(np.pi * t / 8)) / 2 for t in range(8)]
    assert np.allclose(used, expected, rtol=1e-12, atol=0)
    assert used[0] == 0.1 and used[4] == pytest.approx(0.1 * 0.5 * 0.5)
    assert s.optim_config["learning_rate"] == 0.1  # the base rate is never overwritten
    # sgd moved w by exactly -lr * grad: the rate set is the rate used
    m0 = Quadratic()
    data = s.data
    idx = np.random.default_rng(0).integers(0, 40, size=10)
    _, g = m0.loss(data["train_features"][data["train_image_idxs"][idx]], data["train_captions"][idx])
    assert np.allclose(moves[0], -0.1 * g["w"])
    with pytest.raises(ValueError, match="needs optim_config\\['learning_rate'\\]"):
        CaptioningSolver(Quadratic(), _data(rng), lr_schedule="cosine", verbose=False)
    with pytest.raises(ValueError, match="lr_schedule must be one of step, cosine; got 'linear'"):
        CaptioningSolver(Quadratic(), _data(rng), lr_schedule="linear", verbose=False)


def test_minibatches_follow_the_seed():
    rng = np.random.default_rng(3)
    data = _data(rng)

    def run(seed):
        model = Quadratic()
        s = CaptioningSolver(model, data, update_rule="sgd_momentum", batch_size=8, num_epochs=2,
                             verbose=False, seed=seed)
        s.train()
        return s.loss_history, model.params["w"]

    (h1, w1), (h2, w2), (h3, _) = run(7), run(7), run(8)
    assert h1 == h2 and np.array_equal(w1, w2)
    assert h1 != h3


def test_verbose_prints_cs231n_lines_and_progress_bar_gives_same_results(capsys):
    rng = np.random.default_rng(4)
    data = _data(rng)
    s = CaptioningSolver(Quadratic(), data, batch_size=10, num_epochs=5, print_every=8, seed=1)
    s.train()
    out = capsys.readouterr().out
    assert out.startswith("(Iteration 1 / 20) loss: ")
    assert out.count("(Iteration") == 3  # iterations 1, 9, 17
    pytest.importorskip("tqdm")
    p = CaptioningSolver(Quadratic(), data, batch_size=10, num_epochs=5, progress=True, seed=1)
    p.train()
    captured = capsys.readouterr()
    assert "(Iteration" not in captured.out and "20/20" in captured.err
    assert p.loss_history == s.loss_history


def test_gradient_clipping_bounds_the_update():
    rng = np.random.default_rng(5)
    data = _data(rng, high=1000)  # huge targets: huge gradients
    model = Quadratic()
    s = CaptioningSolver(model, data, update_rule="sgd", optim_config={"learning_rate": 1.0},
                         batch_size=10, num_epochs=1, grad_clip=0.5, verbose=False, seed=0)
    before = model.params["w"].copy()
    s._step()
    assert np.linalg.norm(model.params["w"] - before) == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("poison", ["loss", "grad"])
def test_non_finite_values_stop_before_the_update(poison):
    rng = np.random.default_rng(6)
    model = Quadratic()
    original_loss = model.loss

    def loss(features, captions):
        value, grads = original_loss(features, captions)
        if model.calls == 3:
            if poison == "loss":
                value = float("nan")
            else:
                grads["w"][0, 0] = np.inf
        return value, grads

    model.loss = loss
    s = CaptioningSolver(model, _data(rng), update_rule="adam", batch_size=10, num_epochs=2, verbose=False)
    s._step()
    s._step()
    snapshot = {"w": model.params["w"].copy(), "m": s.optim_configs["w"]["m"].copy()}
    with pytest.raises(FloatingPointError, match="iteration 3: loss"):
        s.train()
    assert s.t == 2 and len(s.loss_history) == 2
    np.testing.assert_array_equal(model.params["w"], snapshot["w"])
    np.testing.assert_array_equal(s.optim_configs["w"]["m"], snapshot["m"])


def test_stop_requested_ends_train_after_the_current_iteration():
    rng = np.random.default_rng(7)

    def stop(solver):
        solver.stop_requested = True

    s = CaptioningSolver(Quadratic(), _data(rng), batch_size=10, num_epochs=5, verbose=False, callbacks=[stop])
    s.train()
    assert s.interrupted and s.t == s.iterations_per_epoch and s.epoch == 1
    s.callbacks = ()
    s.train()
    assert not s.interrupted and s.t == s.num_iterations


def _to_json_and_back(state):
    """What a checkpoint does: JSON for scalars and lists, arrays kept apart (copied)."""
    arrays = {}

    def strip(obj, path):
        if isinstance(obj, dict):
            return {k: strip(v, f"{path}/{k}") for k, v in obj.items()}
        if isinstance(obj, np.ndarray):
            arrays[path] = obj.copy()
            return {"__array__": path}
        return obj

    def put_back(obj):
        if isinstance(obj, dict):
            if set(obj) == {"__array__"}:
                return arrays[obj["__array__"]]
            return {k: put_back(v) for k, v in obj.items()}
        return obj

    return put_back(json.loads(json.dumps(strip(state, ""))))


@pytest.mark.parametrize("schedule", ["step", "cosine"])
@pytest.mark.parametrize("stop_at", ["epoch_end", "mid_epoch"])
def test_resume_from_state_dict_is_bit_identical(stop_at, schedule):
    kwargs = dict(update_rule="adam", optim_config={"learning_rate": 1e-2}, lr_decay=0.9, batch_size=8,
                  num_epochs=4, verbose=False, seed=11, grad_clip=5.0, lr_schedule=schedule)
    model, data = _captioning_setup()
    full = CaptioningSolver(model, data, **kwargs)
    full.train()
    assert full.num_iterations == 12

    model_a, _ = _captioning_setup()
    part = CaptioningSolver(model_a, data, **kwargs)
    if stop_at == "epoch_end":
        part.callbacks = (lambda s: setattr(s, "stop_requested", s.epoch == 2),)
    else:  # interrupt after 5 iterations, in the middle of epoch 2
        inner = model_a.loss

        def loss(features, captions):
            if part.t == 4:
                part.stop_requested = True
            return inner(features, captions)

        model_a.loss = loss
    part.train()
    assert part.interrupted and part.t == (6 if stop_at == "epoch_end" else 5)
    saved_state = _to_json_and_back(part.state_dict())
    saved_params = {k: v.copy() for k, v in model_a.params.items()}

    model_b, _ = _captioning_setup(seed=99)  # different initialisation, overwritten below
    for k, v in saved_params.items():
        model_b.params[k] = v
    resumed = CaptioningSolver(model_b, data, **{**kwargs, "seed": 12345})  # the state carries the rng
    resumed.load_state_dict(saved_state)
    resumed.train()
    assert resumed.t == 12 and resumed.epoch == 4
    assert resumed.loss_history == full.loss_history
    for k in model.params:
        assert np.array_equal(model_b.params[k], model.params[k]), k
    assert resumed.optim_configs["W_vocab"]["learning_rate"] == full.optim_configs["W_vocab"]["learning_rate"]


def test_state_dict_values_are_plain():
    model, data = _captioning_setup("rnn")
    s = CaptioningSolver(model, data, update_rule="rmsprop", batch_size=10, num_epochs=1, verbose=False, seed=0)
    s.train()
    state = s.state_dict()
    json.dumps({k: v for k, v in state.items() if k != "optim_configs"})
    for config in state["optim_configs"].values():
        for v in config.values():
            assert isinstance(v, (int, float, np.ndarray))
    state["optim_configs"]["Wx"]["cache"][:] = 0  # a copy, not the live array
    assert s.optim_configs["Wx"]["cache"].any()


def test_argument_and_data_errors():
    rng = np.random.default_rng(8)
    data = _data(rng)
    m = Quadratic()
    with pytest.raises(ValueError, match="Unrecognized arguments batchsize, lr"):
        CaptioningSolver(m, data, batchsize=10, lr=1)
    with pytest.raises(ValueError, match="update_rule must be one of sgd, sgd_momentum, rmsprop, adam; got 'adagrad'"):
        CaptioningSolver(m, data, update_rule="adagrad")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        CaptioningSolver(m, data, batch_size=0)
    with pytest.raises(ValueError, match="grad_clip must be None or a positive number"):
        CaptioningSolver(m, data, grad_clip=-1)
    with pytest.raises(ValueError, match="data is missing train_image_idxs"):
        CaptioningSolver(m, {k: v for k, v in data.items() if k != "train_image_idxs"})
    with pytest.raises(ValueError, match=r"data\['train_captions'\] must be a non-empty integer array"):
        CaptioningSolver(m, {**data, "train_captions": data["train_captions"].astype(float)})
    with pytest.raises(ValueError, match=r"data\['train_image_idxs'\] must be integers of shape \(40,\)"):
        CaptioningSolver(m, {**data, "train_image_idxs": data["train_image_idxs"][:3]})
    with pytest.raises(ValueError, match=r"must index data\['train_features'\] rows \[0, 10\)"):
        CaptioningSolver(m, {**data, "train_image_idxs": data["train_image_idxs"] + 10})
    s = CaptioningSolver(m, data, verbose=False)
    with pytest.raises(ValueError, match="missing rng_state"):
        s.load_state_dict({k: v for k, v in s.state_dict().items() if k != "rng_state"})
    with pytest.raises(ValueError, match="optimizer state for"):
        s.load_state_dict({**s.state_dict(), "optim_configs": {"other": {}}})


def _caption_like_data(seed, M=50, V=1004, T=17, D=512):
    """50 captions shaped like COCO's: '<START> a ADJ NOUN VERB PREP a ADJ NOUN
    [and a ADJ NOUN] <END>' padded with <NULL> to 17 tokens, words drawn from a
    1,004-word vocabulary (200 adjectives, 500 nouns, 200 verbs, 98 prepositions), one
    random N(0, 1) feature vector per caption. Like real captions, they share words and
    structure, so the network must carry the image through the sequence."""
    rng = np.random.default_rng(seed)
    words = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "and"]
    groups = {}
    for name, size in [("adj", 200), ("noun", 500), ("verb", 200), ("prep", 98)]:
        groups[name] = np.arange(len(words), len(words) + size)
        words += [f"{name}{i}" for i in range(size)]
    assert len(words) == V
    captions = np.zeros((M, T), dtype=np.int64)
    captions[:, 0] = 1
    for n in range(M):
        seq = [4] + [rng.choice(groups[g]) for g in ("adj", "noun", "verb", "prep")]
        seq += [4] + [rng.choice(groups[g]) for g in ("adj", "noun")]
        if rng.random() < 0.5:
            seq += [5, 4] + [rng.choice(groups[g]) for g in ("adj", "noun")]
        captions[n, 1 : len(seq) + 1] = seq
        captions[n, len(seq) + 1] = 2
    data = {"train_captions": captions, "train_image_idxs": np.arange(M),
            "train_features": rng.standard_normal((M, D)).astype(np.float32)}
    return {w: i for i, w in enumerate(words)}, data


@pytest.mark.slow
@pytest.mark.parametrize("cell,lr_decay,threshold", [("rnn", 0.95, 0.1), ("lstm", 0.995, 0.5)])
def test_overfits_small_data_the_cs231n_way(cell, lr_decay, threshold):
    """CS231n's overfitting check: 50 captions, batch 25, 50 epochs, Adam 5e-3, word
    vectors 256, hidden 512, features 512 (lr_decay 0.95 for the RNN, 0.995 for the LSTM,
    as in the assignment's two notebooks). The final loss over all 50 captions must be
    below the assignment's targets, RNN < 0.1 and LSTM < 0.5 (from ~75 at the start).

    Measured on this data (model, data and minibatch seed all equal): the LSTM ends at
    0.041, 0.053, 0.066 for seeds 0, 1, 2, far below 0.5; the vanilla RNN ends at
    0.086, 0.228, 0.077, 0.073, 0.125, 0.173 for seeds 0-5, so CS231n's 0.1 is reached
    on 3 of 6 seeds. Seed 0 is used here because it was the first one tried. On
    captions of uniformly random words the picture flips (RNN ~0.06, LSTM 0.4-0.7): these
    thresholds say as much about the data as about the code; correctness rests on the
    finite-difference checks, this test on "it can learn".
    Takes ~5 s (rnn) and ~10 s (lstm) on an idle 2-core machine.
    """
    word_to_idx, data = _caption_like_data(0)
    model = CaptioningRNN(word_to_idx, input_dim=512, wordvec_dim=256, hidden_dim=512, cell_type=cell, seed=0)
    solver = CaptioningSolver(model, data, update_rule="adam", optim_config={"learning_rate": 5e-3},
                              lr_decay=lr_decay, batch_size=25, num_epochs=50, verbose=False, seed=0)
    solver.train()
    assert solver.num_iterations == 100
    assert solver.loss_history[0] > 50
    final, _ = model.loss(data["train_features"], data["train_captions"])
    assert final < threshold
