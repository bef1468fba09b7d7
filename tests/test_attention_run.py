"""The attention model through the same run, checkpoint and CLI as CaptioningRNN:
training on grid features, exact resume, evaluation, `caption --attention`, and the
errors for features of the wrong kind."""

import json

import numpy as np
import pytest

from rnncap.checkpoint import read_checkpoint
from rnncap.cli import main
from rnncap.config import RunConfig, with_overrides
from rnncap.run import restore, train

FLAGS = ["--model", "attention", "--hidden-dim", "12", "--wordvec-dim", "8", "--attention-dim", "8",
         "--batch-size", "50", "--val-images", "5", "--no-progress"]


def _config(folder, **train):
    return with_overrides(RunConfig(), {
        "data": {"path": str(folder), "format": "karpathy"},
        "model": {"kind": "attention", "hidden_dim": 12, "wordvec_dim": 8, "attention_dim": 8},
        "train": {"batch_size": 40, "num_epochs": 2, "val_images": 0, "seed": 3, **train}})


@pytest.fixture(scope="module")
def grid_data(tiny_shapes):
    from rnncap.data import load_data

    return load_data(tiny_shapes, "karpathy", grid=True)


@pytest.fixture(scope="module")
def trained(tiny_shapes, tmp_path_factory):
    run = tmp_path_factory.mktemp("attention-run")
    rc = main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "2",
               "--out", str(run), *FLAGS])
    assert rc == 0
    return run


def test_grid_data_has_one_grid_per_image(grid_data):
    assert grid_data["train_features"].shape == (60, 9, 4 * 64 + 15)
    assert grid_data["test_features"].shape == (20, 9, 4 * 64 + 15)


def test_cli_trains_an_attention_checkpoint(trained):
    r = restore(trained)
    assert type(r.model).__name__ == "AttentionCaptioner"
    assert r.config.model.kind == "attention" and r.model.attention_dim == 8
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and all("truth_rate" in x["val"] for x in lines)


@pytest.mark.parametrize("stop_at", [2, 5])
def test_interrupted_then_resumed_equals_uninterrupted(tiny_shapes, grid_data, tmp_path, stop_at):
    full = train(_config(tiny_shapes), tmp_path / "full", progress=False, data=grid_data)
    first = train(_config(tiny_shapes), tmp_path / "cut", progress=False, data=grid_data,
                  stop_after=stop_at)
    assert first["status"] == "interrupted" and full["status"] == "finished"
    train(None, tmp_path / "cut", resume=True, progress=False, data=grid_data)
    a, b = restore(tmp_path / "full"), restore(tmp_path / "cut")
    for k in a.model.params:
        assert np.array_equal(a.model.params[k], b.model.params[k]), k
    assert (read_checkpoint(tmp_path / "full").documents["solver"]["loss_history"]
            == read_checkpoint(tmp_path / "cut").documents["solver"]["loss_history"])


def test_evaluate_greedy_and_beam(trained, tmp_path, capsys):
    for method in ("greedy", "beam"):
        out = tmp_path / f"{method}.json"
        assert main(["evaluate", str(trained), "--split", "test", "--no-meteor", "--method", method,
                     "--beam-size", "2", "--out", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["scores"]["num_images"] == 20 and "truth_rate" in result["scores"]


def test_caption_draws_attention_maps(trained, tiny_shapes, tmp_path, capsys):
    from PIL import Image

    images = sorted((tiny_shapes / "images" / "test").glob("*.png"))[:2]
    out = tmp_path / "att.png"
    assert main(["caption", str(trained), *map(str, images), "--attention", str(out), "--json"]) == 0
    captions = [json.loads(x)["caption"] for x in capsys.readouterr().out.splitlines()]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 0
    assert len(captions) == 2 and not list(tmp_path.glob(".att.png.tmp-*"))


def test_word_attention_rows_follow_the_caption(trained, grid_data):
    from rnncap.attention_maps import word_attention
    from rnncap.evaluate import DecodeOptions, decode_features

    r = restore(trained)
    feats = grid_data["test_features"][:3]
    tokens = decode_features(r.model, feats, DecodeOptions("greedy", max_length=r.max_length))
    rows = word_attention(r.model, r.vocab, feats, tokens)
    for (words, weights), caption in zip(rows, r.vocab.decode_clean(tokens)):
        assert " ".join(words) == caption
        assert weights.shape == (len(words), 9)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)


def test_pooled_features_file_for_the_attention_model_names_file_and_shape(trained, tmp_path, capsys):
    path = tmp_path / "pooled.npy"
    np.save(path, np.zeros((2, 271), np.float32))
    assert main(["caption", str(trained), "--features", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "(I, L, D)" in err and "got (I, 271)" in err


def test_grid_of_the_wrong_size_names_file_and_shape(trained, tmp_path, capsys):
    path = tmp_path / "grid.npy"
    np.save(path, np.zeros((2, 9, 30), np.float32))
    assert main(["caption", str(trained), "--features", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "(I, L, 271)" in err and "(2, 9, 30)" in err


def test_grid_file_for_the_rnn_model_names_file_and_shape(tiny_shapes, tiny_train_flags, tmp_path,
                                                          capsys):
    run = tmp_path / "rnn"
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "1",
                 "--out", str(run), *tiny_train_flags]) == 0
    path = tmp_path / "grid.npy"
    np.save(path, np.zeros((2, 9, 5), np.float32))
    assert main(["caption", str(run), "--features", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "(I, D)" in err and "got (I, 9, 5)" in err


def test_training_attention_on_a_pooled_features_file_names_it(tiny_shapes, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_shapes, data)
    n = len(json.loads((data / "dataset.json").read_text())["images"])
    np.save(data / "features.npy", np.zeros((n, 16), np.float32))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *FLAGS]) == 1
    err = capsys.readouterr().err.strip()
    assert str(data / "features.npy") in err and "(I, L, D)" in err and "got (I, 16)" in err


def test_attention_flag_needs_an_attention_checkpoint(tiny_shapes, tiny_train_flags, tmp_path, capsys):
    run = tmp_path / "rnn"
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "1",
                 "--out", str(run), *tiny_train_flags]) == 0
    image = sorted((tiny_shapes / "images" / "test").glob("*.png"))[0]
    assert main(["caption", str(run), str(image), "--attention", str(tmp_path / "a.png")]) == 1
    assert "needs an attention model" in capsys.readouterr().err


def test_evaluate_on_grid_features_of_another_size_names_the_file(trained, tiny_shapes, tmp_path,
                                                                   capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_shapes, data)
    n = len(json.loads((data / "dataset.json").read_text())["images"])
    np.save(data / "features.npy", np.zeros((n, 4, 7), np.float32))
    assert main(["evaluate", str(trained), "--data", str(data), "--no-meteor",
                 "--out", str(tmp_path / "e.json")]) == 1
    err = capsys.readouterr().err.strip()
    assert str(data / "features.npy") in err and "(I, L, 271)" in err and "got (I, 4, 7)" in err
