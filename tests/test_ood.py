"""rnncap.ood: the distance, the conformal threshold, and `caption` flagging unfamiliar photos."""

import json
import math
import os

import numpy as np
import pytest

from rnncap import ood
from rnncap.cli import main


def photo_paths():
    """Real photos that ship with scikit-image and matplotlib (no download)."""
    skdata = pytest.importorskip("skimage.data")
    import matplotlib.cbook

    folder = os.path.dirname(skdata.__file__)
    return [os.path.join(folder, n) for n in
            ("coffee.png", "chelsea.png", "motorcycle_right.png", "astronaut.png", "rocket.jpg")] + [
        matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)]


def test_score_is_the_mean_squared_standardised_distance():
    stats = ood.FeatureStats(np.array([1.0, -2.0]), np.array([4.0, 0.25]), 1.0, {})
    x = np.array([[3.0, -2.0], [1.0, -1.0], [-1.0, -3.0]])
    # hand: ((2^2/4 + 0) / 2, (0 + 1/0.25) / 2, (4/4 + 1/0.25) / 2)
    np.testing.assert_allclose(ood.scores(x, stats), [0.5, 2.0, 2.5])
    with pytest.raises(ValueError, match=r"features must have shape \(N, 2\) or grids \(N, L, 2\), "
                                         r"got \(3, 3\)"):
        ood.scores(np.zeros((3, 3)), stats)


def test_threshold_is_the_conformal_rank_of_the_calibration_scores():
    rng = np.random.default_rng(0)
    train, calib = rng.standard_normal((300, 5)), rng.standard_normal((399, 5))
    stats = ood.fit_stats(train, rng, calibration=calib, alpha=0.01)
    var = train.var(0) + ood.SHRINK * train.var(0).mean()
    by_hand = np.sort(((calib - train.mean(0)) ** 2 / var).mean(1))
    k = math.ceil(400 * 0.99)  # 396: at most 1% of new in-distribution images lie above it
    assert stats.threshold == pytest.approx(by_hand[k - 1])
    assert stats.info["rank"] == 396 and stats.info["holdout"] == "validation split"
    assert stats.info["n_fit"] == 300 and stats.info["guarantee"] == 0.01


def test_without_a_validation_split_training_images_are_held_out():
    x = np.random.default_rng(1).standard_normal((50, 3))
    stats = ood.fit_stats(x, np.random.default_rng(0))
    assert stats.info["n_holdout"] == 10 and stats.info["n_fit"] == 40
    # ceil(11 * 0.995) = 11 > 10 held-out scores: the largest is used, a 1/11 guarantee
    assert stats.info["rank"] == 10 and stats.info["guarantee"] == pytest.approx(1 / 11)
    assert stats.threshold == pytest.approx(stats.info["holdout_max"])
    assert ood.fit_stats(x[:2], np.random.default_rng(0)) is None


def test_checkpoint_form_round_trips_and_bad_arrays_are_named():
    stats = ood.fit_stats(np.random.default_rng(2).standard_normal((40, 4)), np.random.default_rng(0))
    doc, arrays = ood.to_checkpoint(stats, "toy data")
    json.dumps(doc)  # a JSON document, no pickle
    back = ood.from_checkpoint(doc, arrays)
    np.testing.assert_array_equal(back.mean, stats.mean)
    assert back.threshold == stats.threshold and back.info["trained_on"] == "toy data"
    with pytest.raises(ValueError, match="ckpt/feature_stats: feature statistics have shapes"):
        ood.from_checkpoint(doc, {"mean": arrays["mean"], "var": arrays["var"][:2]}, "ckpt/feature_stats")
    with pytest.raises(ValueError, match="feature statistics are incomplete"):
        ood.from_checkpoint(doc, {"mean": arrays["mean"]})
    # JSON's true and a string of digits are not numbers, though float() would take them
    for bad in [True, False, "0.5", None, [1.0]]:
        with pytest.raises(ValueError, match=r"ckpt/feature_stats: feature statistics' threshold is "
                                             r".*; expected a number"):
            ood.from_checkpoint({**doc, "threshold": bad}, arrays, "ckpt/feature_stats")
    assert ood.from_checkpoint({**doc, "threshold": 2}, arrays).threshold == 2.0  # an integer is a number
    # NaN makes every distance NaN and a NaN or infinite threshold flags nothing: both refused
    for bad_doc, bad_arrays in [({**doc, "threshold": math.nan}, arrays), ({**doc, "threshold": math.inf}, arrays),
                                (doc, {**arrays, "mean": arrays["mean"] * np.nan})]:
        with pytest.raises(ValueError, match="ckpt/feature_stats: feature statistics hold NaN or infinite"):
            ood.from_checkpoint(bad_doc, bad_arrays, "ckpt/feature_stats")


def test_a_grid_is_scored_by_its_mean_over_cells():
    stats = ood.FeatureStats(np.array([1.0, -2.0]), np.array([4.0, 0.25]), 1.0, {})
    grids = np.array([[[5.0, -2.0], [1.0, -2.0]],       # cell mean (3, -2): (2^2/4 + 0) / 2
                      [[1.0, 0.0], [1.0, -2.0]]])       # cell mean (1, -1): (0 + 1/0.25) / 2
    np.testing.assert_allclose(ood.scores(grids, stats), [0.5, 2.0])
    with pytest.raises(ValueError, match=r"features must have shape \(N, 2\) or grids \(N, L, 2\), "
                                         r"got \(2, 2, 3\)"):
        ood.scores(np.zeros((2, 2, 3)), stats)


@pytest.mark.parametrize("calibrated", [True, False])
def test_statistics_of_grids_are_those_of_their_cell_means(calibrated, monkeypatch):
    monkeypatch.setattr(ood, "CHUNK", 7)  # several chunks, the last one short
    rng = np.random.default_rng(4)
    grids = (rng.standard_normal((60, 9, 5)) * [1, 2, 3, 4, 5]).astype(np.float32)  # (I, L, D)
    calib = rng.standard_normal((30, 9, 5)).astype(np.float32) if calibrated else None
    means = grids.astype(np.float64).mean(axis=1)  # (I, D)
    got = ood.fit_stats(grids, np.random.default_rng(0), calibration=calib)
    want = ood.fit_stats(means, np.random.default_rng(0),
                         calibration=None if calib is None else calib.astype(np.float64).mean(1))
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)
    np.testing.assert_allclose(got.var, want.var, rtol=1e-10)
    assert got.threshold == pytest.approx(want.threshold, rel=1e-10)
    assert got.info["summary"] == "mean over grid cells" and "summary" not in want.info
    assert {k: v for k, v in got.info.items() if k != "summary"} == pytest.approx(want.info)


@pytest.fixture(scope="module")
def shapes_cache(tmp_path_factory):
    """A shapes cache of 800 training, 400 validation and 400 test images."""
    return tmp_path_factory.mktemp("ood") / "cache"


def _train_on_shapes(cache, out, model, grid=False):
    from rnncap import config as cfg
    from rnncap.data import load_shapes
    from rnncap.run import train

    data = load_shapes(cache, seed=3, num_train=800, num_val=400, num_test=400, grid=grid)
    config = cfg.with_overrides(cfg.RunConfig(), {
        "data": {"format": "shapes", "path": str(cache)}, "model": model,
        "train": {"num_epochs": 1, "batch_size": 100, "val_images": 0}})
    train(config, out, progress=False, data=data)
    return out, data


@pytest.fixture(scope="module")
def shapes_run(shapes_cache):
    """An LSTM trained for one epoch on the 800 training images."""
    return _train_on_shapes(shapes_cache, shapes_cache.parent / "run",
                            {"cell_type": "lstm", "hidden_dim": 16, "wordvec_dim": 8})


@pytest.fixture(scope="module")
def attention_run(shapes_cache):
    """An attention model trained for one epoch on the same images' 3x3 grids."""
    return _train_on_shapes(shapes_cache, shapes_cache.parent / "attention-run",
                            {"kind": "attention", "hidden_dim": 16, "wordvec_dim": 8,
                             "attention_dim": 8}, grid=True)


def test_an_attention_checkpoint_keeps_statistics_of_its_grids_cell_means(attention_run):
    from rnncap.run import restore

    run, data = attention_run
    r = restore(run)
    assert r.model.kind == "attention" and data["train_features"].shape == (800, 9, r.model.input_dim)
    stats = r.feature_stats
    assert stats.mean.shape == (r.model.input_dim,) and stats.info["summary"] == "mean over grid cells"
    np.testing.assert_allclose(stats.mean, data["train_features"].astype(np.float64).mean(axis=(0, 1)),
                               rtol=1e-6, atol=1e-9)
    assert stats.info["holdout"] == "validation split" and stats.info["n_holdout"] == 400


def test_attention_statistics_of_another_size_are_refused(attention_run, tmp_path, rehash):
    import shutil

    from rnncap.run import CheckpointError, restore

    src = restore(attention_run[0]).checkpoint.folder
    folder = tmp_path / "ckpt"
    shutil.copytree(src, folder)
    with np.load(folder / "feature_stats.npz") as z:
        arrays = {k: z[k][:-1] for k in z.files}
    np.savez(folder / "feature_stats.npz", **arrays)
    rehash(folder)
    with pytest.raises(CheckpointError, match=r"feature_stats.npz has 270-d statistics, the model "
                                              r"reads 271-d features"):
        restore(folder)


def test_refused_statistics_are_a_checkpoint_error_and_one_line_of_the_cli(shapes_run, tmp_path, rehash,
                                                                           capsys):
    import shutil

    from rnncap.run import CheckpointError, restore

    folder = tmp_path / "ckpt"
    shutil.copytree(restore(shapes_run[0]).checkpoint.folder, folder)
    doc = json.loads((folder / "feature_stats.json").read_text())
    (folder / "feature_stats.json").write_text(json.dumps({**doc, "threshold": True}))
    rehash(folder)
    with pytest.raises(CheckpointError, match=f"{folder}/feature_stats: feature statistics' threshold "
                                              f"is True; expected a number"):
        restore(folder)
    capsys.readouterr()
    assert main(["caption", str(folder), str(shapes_run[1]["test_image_files"][0])]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"rnncap caption: error: {folder}/feature_stats: feature statistics' threshold is "
                   f"True; expected a number"]


def caption_json(args, capsys):
    assert main(["caption", *args, "--json"]) == 0
    captured = capsys.readouterr()
    return [json.loads(x) for x in captured.out.splitlines()], captured.err.splitlines()


@pytest.mark.parametrize("fixture", ["shapes_run", "attention_run"])
def test_every_real_photo_is_flagged_by_a_shapes_model(fixture, request, capsys):
    run, _ = request.getfixturevalue(fixture)
    capsys.readouterr()  # the training's lines, when the run was trained just now
    photos = photo_paths()
    out, err = caption_json([str(run), *photos], capsys)
    assert [o["out_of_distribution"] for o in out] == [True] * len(photos)
    assert len(err) == len(photos)
    for line, photo in zip(err, photos):
        assert line.startswith(f"rnncap caption: warning: {photo} looks unlike the images this model "
                               f"was trained on (the built-in shapes dataset (800 training images")
        assert "randconv features" in line


@pytest.mark.parametrize("fixture", ["shapes_run", "attention_run"])
def test_at_most_one_percent_of_shapes_test_images_are_flagged(fixture, request, capsys):
    run, data = request.getfixturevalue(fixture)
    capsys.readouterr()
    files = data["test_image_files"]
    out, err = caption_json([str(run), *files], capsys)
    flagged = sum(o["out_of_distribution"] for o in out)
    warnings = [line for line in err if line.startswith("rnncap caption: warning:")]
    assert len(out) == 400 and flagged <= 4 and len(warnings) == flagged  # err also has progress


def test_a_checkpoint_without_statistics_says_it_does_not_check(tiny_shapes, tiny_train_flags, tmp_path,
                                                                monkeypatch, capsys):
    from rnncap import run as run_module

    monkeypatch.setattr(run_module, "_feature_stats", lambda config, data: None)
    assert main(["train", "--data", str(tiny_shapes), "--format", "karpathy", "--epochs", "1",
                 "--out", str(tmp_path / "run"), *tiny_train_flags]) == 0
    image = str(sorted((tiny_shapes / "images" / "test").glob("*.png"))[0])
    capsys.readouterr()
    out, err = caption_json([str(tmp_path / "run"), image], capsys)
    assert out[0]["out_of_distribution"] is None
    assert err == [f"rnncap caption: note: checkpoint {run_module.restore(tmp_path / 'run').checkpoint.folder} "
                   f"keeps no statistics of its training features; images are not checked for being "
                   f"unlike them"]


def test_chunked_moments_equal_numpys_over_many_chunks(monkeypatch):
    monkeypatch.setattr(ood, "CHUNK", 7)  # 40 rows: six chunks, the last one short
    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32) * 3 + 1
    stats = ood.fit_stats(x[:40], np.random.default_rng(0), calibration=x[40:])
    train = x[:40].astype(np.float64)
    np.testing.assert_allclose(stats.mean, train.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.var, train.var(0) + ood.SHRINK * train.var(0).mean(), rtol=1e-10)
    by_hand = ((x.astype(np.float64) - train.mean(0)) ** 2 / stats.var).mean(1)
    np.testing.assert_allclose(ood.scores(x, stats), by_hand, rtol=1e-12)
