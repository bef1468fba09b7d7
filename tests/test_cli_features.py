"""`rnncap features`, then `train` and `caption`, end to end on real photos; backbone checks."""

import json
import os
import shutil

import pytest

from rnncap.cli import main

#: Photos that ship with scikit-image and matplotlib, each with its own caption.
PHOTOS = {"coffee.png": "a cup of coffee on a saucer",
          "chelsea.png": "a cat lying on a rug",
          "astronaut.png": "a woman in a space suit",
          "motorcycle_right.png": "a red motorcycle parked outside",
          "grace_hopper.jpg": "a woman in a military uniform"}
#: The backbone the end-to-end test runs: the pretrained one.
BACKBONE = ["--extractor", "efficientnet-lite0"]


def photo_dataset(root):
    """A Karpathy-format dataset of the shipped photos, every one a training image."""
    skdata = pytest.importorskip("skimage.data")
    import matplotlib.cbook

    (root / "images").mkdir(parents=True)
    images = []
    for i, (name, caption) in enumerate(PHOTOS.items()):
        src = (matplotlib.cbook.get_sample_data(name, asfileobj=False) if name.endswith(".jpg")
               else os.path.join(os.path.dirname(skdata.__file__), name))
        shutil.copy(src, root / "images" / name)
        images.append({"split": "train", "filepath": "images", "filename": name, "imgid": i,
                       "sentences": [{"raw": caption}] * 5})
    (root / "dataset.json").write_text(json.dumps({"images": images}))
    return root


def test_real_photos_features_train_caption_returns_its_own_caption(tmp_path, capsys):
    data = photo_dataset(tmp_path / "photos")
    assert main(["features", str(data), *BACKBONE, "--no-progress"]) == 0
    assert f"wrote {data / 'features.h5'}: 5 images, 5 computed" in capsys.readouterr().out
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "40",
                 "--hidden-dim", "32", "--wordvec-dim", "16", "--batch-size", "5", "--lr", "1e-2",
                 "--lr-decay", "1.0", "--val-images", "0", "--keep-checkpoints", "1",
                 "--no-progress"]) == 0
    from rnncap.data.featfile import read_attrs
    from rnncap.run import checkpoint_backbone, restore
    from rnncap.vision.efficientnet import WEIGHTS_SHA256

    attrs = read_attrs(data / "features.h5")
    assert attrs["backbone"] == "efficientnet-lite0" and attrs["weights_sha256"] == WEIGHTS_SHA256
    assert attrs["preprocessing"]["size"] == 224

    # the checkpoint holds the backbone that made the features, so caption runs it on pixels
    assert checkpoint_backbone(restore(tmp_path / "run").checkpoint)["fingerprint"] == \
        read_attrs(data / "features.h5")["fingerprint"]
    capsys.readouterr()
    assert main(["caption", str(tmp_path / "run"), str(data / "images" / "chelsea.png"),
                 str(data / "images" / "grace_hopper.jpg"), "--json"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o["caption"] for o in out] == [PHOTOS["chelsea.png"], PHOTOS["grace_hopper.jpg"]]


def features_run(tiny_shapes, tiny_train_flags, tmp_path, name, seed):
    """A copy of the tiny shapes data with features.h5 from `rnncap features` (extractor seed)."""
    data = shutil.copytree(tiny_shapes, tmp_path / name)
    assert main(["features", str(data), "--extractor", "randconv", "--extractor-options",
                 json.dumps({"image_size": 32, "num_filters": 8, "pca_dim": 16, "seed": seed}),
                 "--no-progress", "--dtype", "float32"]) == 0
    return data


def test_evaluate_refuses_features_of_another_backbone(tiny_shapes, tiny_train_flags, tmp_path, capsys):
    a = features_run(tiny_shapes, tiny_train_flags, tmp_path, "a", seed=0)
    b = features_run(tiny_shapes, tiny_train_flags, tmp_path, "b", seed=1)
    assert main(["train", "--data", str(a), "--out", str(tmp_path / "run"), "--epochs", "1",
                 *tiny_train_flags]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(b), "--no-meteor",
                 "--limit", "2", "--out", str(tmp_path / "e.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rnncap evaluate: error: the features of {b} were made by backbone "
                          f"'randconv' (fingerprint ")
    assert "was trained on backbone 'randconv' (fingerprint " in err
    assert main(["evaluate", str(tmp_path / "run"), "--no-meteor", "--limit", "2",
                 "--out", str(tmp_path / "e.json")]) == 0


def test_features_command_errors_are_one_line(tmp_path, capsys):
    assert main(["features", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"rnncap features: error: dataset not found: {tmp_path / 'nowhere'}\n"
    (tmp_path / "empty").mkdir()
    assert main(["features", str(tmp_path / "empty"), "--extractor-options", "[1]"]) == 1
    assert "--extractor-options must be a JSON object" in capsys.readouterr().err
    assert main(["features", str(tmp_path / "empty"), "--extractor", "nope"]) == 1
    assert "found no dataset.json, no captions_*.json and no image files" in capsys.readouterr().err


def test_train_reads_a_features_file_named_by_flag(tiny_shapes, tiny_train_flags, tmp_path, capsys):
    data = shutil.copytree(tiny_shapes, tmp_path / "data")
    elsewhere = tmp_path / "feats" / "mine.h5"
    elsewhere.parent.mkdir()
    assert main(["features", str(data), "--out", str(elsewhere), "--extractor", "randconv",
                 "--extractor-options", '{"image_size": 32, "num_filters": 8, "pca_dim": 12}',
                 "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--features", str(elsewhere), "--out",
                 str(tmp_path / "run"), "--epochs", "1", *tiny_train_flags]) == 0
    from rnncap.run import restore

    r = restore(tmp_path / "run")
    assert r.model.params["W_proj"].shape[0] == 12 and r.config.data.features == str(elsewhere)
    assert main(["train", "--format", "shapes", "--features", str(elsewhere), "--out",
                 str(tmp_path / "run2"), *tiny_train_flags]) == 1
    assert "only the karpathy and coco formats read (format here: shapes)" in capsys.readouterr().err


def test_attention_model_trains_on_the_backbones_7x7_grid_and_captions_photos(tmp_path, capsys):
    """`rnncap features --grid` -> `train --model attention` -> `caption` on real photos."""
    data = photo_dataset(tmp_path / "photos")
    assert main(["features", str(data), *BACKBONE, "--grid", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "60",
                 "--model", "attention", "--hidden-dim", "32", "--wordvec-dim", "16",
                 "--attention-dim", "16", "--batch-size", "5", "--lr", "1e-2", "--lr-decay", "1.0",
                 "--val-images", "0", "--keep-checkpoints", "1", "--no-progress"]) == 0
    from rnncap.run import restore

    r = restore(tmp_path / "run")
    assert r.model.input_dim == 1280
    png = tmp_path / "maps.png"
    capsys.readouterr()
    assert main(["caption", str(tmp_path / "run"), str(data / "images" / "chelsea.png"),
                 "--json", "--attention", str(png)]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert out[0]["caption"] == PHOTOS["chelsea.png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------- caption --features FILE.h5

#: a tiny randconv extractor: pooled 16-d, grid 3x3 cells of 4 x 8 responses and 15 position features
TINY_RANDCONV = ["--extractor", "randconv", "--extractor-options",
                 json.dumps({"image_size": 32, "num_filters": 8, "pca_dim": 16, "seed": 0})]


@pytest.fixture(scope="module")
def h5_runs(tiny_shapes, tiny_train_flags, tmp_path_factory):
    """The tiny shapes data with a features.h5 of pooled features and grids, an LSTM trained on
    its pooled features and an attention model trained on its grids (one epoch each)."""
    root = tmp_path_factory.mktemp("h5-runs")
    data = shutil.copytree(tiny_shapes, root / "data")
    assert main(["features", str(data), *TINY_RANDCONV, "--grid", "--dtype", "float32",
                 "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--out", str(root / "lstm"), "--epochs", "1",
                 *tiny_train_flags]) == 0
    assert main(["train", "--data", str(data), "--out", str(root / "attention"), "--epochs", "1",
                 "--model", "attention", "--hidden-dim", "16", "--wordvec-dim", "8",
                 "--attention-dim", "8", "--batch-size", "50", "--val-images", "0",
                 "--no-progress"]) == 0
    return data / "features.h5", root / "lstm", root / "attention"


def _caption_lines(args, capsys):
    assert main(["caption", *args]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    return [line.split("\t") for line in captured.out.splitlines()], captured.err


@pytest.mark.parametrize("kind, key", [("lstm", "features"), ("attention", "grid")])
def test_caption_reads_the_features_file_that_rnncap_features_writes(h5_runs, kind, key, tmp_path,
                                                                      capsys):
    """The pooled dataset for an LSTM, the grid for an attention model: the same captions as the
    same numbers from a .npy file, each row named by its image file."""
    import h5py
    import numpy as np

    h5, runs = h5_runs[0], dict(zip(("lstm", "attention"), h5_runs[1:]))
    with h5py.File(h5, "r") as f:
        a, files = f[key][()], list(f["files"].asstr()[()])
    assert len(files) == 100 and a.shape == ((100, 16) if key == "features" else (100, 3, 3, 47))
    np.save(tmp_path / "f.npy", a.reshape(100, 9, 47) if key == "grid" else a)
    from_h5, _ = _caption_lines([str(runs[kind]), "--features", str(h5)], capsys)
    from_npy, _ = _caption_lines([str(runs[kind]), "--features", str(tmp_path / "f.npy")], capsys)
    assert [n for n, _ in from_h5] == files and files[0].startswith("images/")
    assert [c for _, c in from_h5] == [c for _, c in from_npy]


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_captioning_an_image_file_equals_captioning_its_row_of_the_features_file(h5_runs, kind,
                                                                                 capsys):
    """The checkpoint's extractor gives a photo the features (pooled, or grid) of the file the
    model was trained on."""
    h5, runs = h5_runs[0], dict(zip(("lstm", "attention"), h5_runs[1:]))
    from_h5, _ = _caption_lines([str(runs[kind]), "--features", str(h5)], capsys)
    pick = [0, 61, 99]  # a training, a validation and a test image
    files = [str(h5.parent / from_h5[i][0]) for i in pick]
    from_files, _ = _caption_lines([str(runs[kind]), *files], capsys)
    assert [c for _, c in from_files] == [from_h5[i][1] for i in pick]


def test_caption_names_the_dataset_a_features_file_lacks(h5_runs, tmp_path, capsys):
    import h5py

    h5, lstm, attention = h5_runs
    need = {"features": "a CaptioningRNN needs pooled features: make them with `rnncap features` "
                        "without --no-pooled",
            "grid": "an attention model needs grids: make them with `rnncap features --grid`"}
    for run, key, other in ((lstm, "features", "grid"), (attention, "grid", "features")):
        copy = tmp_path / f"no-{key}.h5"
        shutil.copy(h5, copy)
        with h5py.File(copy, "r+") as f:
            del f[key]
        assert main(["caption", str(run), "--features", str(copy)]) == 1
        assert capsys.readouterr().err == (f"rnncap caption: error: {copy} has no '{key}' dataset "
                                           f"(it has ['{other}']); {need[key]}\n")


def test_caption_refuses_a_features_file_of_the_wrong_shape_or_unfinished(h5_runs, tmp_path, capsys):
    import h5py
    import numpy as np

    from rnncap.data import featfile

    h5, lstm, attention = h5_runs
    with h5py.File(h5, "r") as f:
        grid = f["grid"][()]
    # features of another size than the checkpoint's model reads
    wrong = tmp_path / "wrong.h5"
    featfile.create(wrong, files=["a.png", "b.png"], job={}, spec={"name": "test"}, arrays={},
                    pooled_dim=7, dtype="float32")
    w = featfile.Writer(wrong)
    w.write([0, 1], pooled=np.ones((2, 7), np.float32))
    w.finish(wrong)
    assert main(["caption", str(lstm), "--features", str(wrong)]) == 1
    assert capsys.readouterr().err == (f"rnncap caption: error: {wrong}: the checkpoint's model needs "
                                       f"features of shape (I, 16); got (2, 7)\n")
    # a grid stored flat (I, L, C) is not what `rnncap features` writes
    flat = tmp_path / "flat.h5"
    shutil.copy(h5, flat)
    with h5py.File(flat, "r+") as f:
        del f["grid"]
        f["grid"] = grid.reshape(100, 9, 47)
    assert main(["caption", str(attention), "--features", str(flat)]) == 1
    assert capsys.readouterr().err == (f"rnncap caption: error: {flat}: 'grid' must have shape "
                                       f"(I, G, G, C) with one row per entry of 'status' (100), "
                                       f"got (100, 9, 47)\n")
    # a file still being written (or killed while it was)
    partial = tmp_path / "features.h5.partial"
    featfile.create(partial, files=["a.png", "b.png", "c.png"], job={}, spec={"name": "test"},
                    arrays={}, pooled_dim=16, dtype="float32")
    w = featfile.Writer(partial)
    w.write([0], pooled=np.ones((1, 16), np.float32))
    w.close()
    assert main(["caption", str(lstm), "--features", str(partial)]) == 1
    assert capsys.readouterr().err == (f"rnncap caption: error: {partial} is an unfinished features "
                                       f"file (2 of 3 rows not computed); finish it by running "
                                       f"`rnncap features` again with the same flags\n")


def test_caption_leaves_out_the_rows_a_features_file_records_as_unreadable(h5_runs, tmp_path, capsys):
    import h5py
    import numpy as np

    from rnncap.data import featfile

    h5, lstm, _ = h5_runs
    with h5py.File(h5, "r") as f:
        pooled = f["features"][:3]
    out = tmp_path / "skipped.h5"
    featfile.create(out, files=["a.png", "broken.png", "c.png"], job={}, spec={"name": "test"},
                    arrays={}, pooled_dim=16, dtype="float32")
    w = featfile.Writer(out)
    w.write([0, 2], pooled=pooled[[0, 2]], skipped=[1])
    w.finish(out)
    lines, err = _caption_lines([str(lstm), "--features", str(out)], capsys)
    assert [n for n, _ in lines] == ["a.png", "c.png"]
    assert f"rnncap caption: note: {out} records 1 unreadable image(s), left out: broken.png" in err
    np.save(tmp_path / "f.npy", pooled[[0, 2]])
    by_npy, _ = _caption_lines([str(lstm), "--features", str(tmp_path / "f.npy")], capsys)
    assert [c for _, c in lines] == [c for _, c in by_npy]


def test_resuming_a_partial_file_of_another_grid_width_is_one_line(tiny_shapes, tmp_path, capsys):
    """A `--grid` partial file whose grid is narrower than what `rnncap features --grid` writes
    now (randconv's raw cell responses, as rnncap once stored them): one line naming the file,
    the dataset and both shapes, not h5py's broadcast error."""
    import h5py

    from rnncap.data.featurize import FeaturesOptions, make_features

    options = {"image_size": 32, "num_filters": 8, "pca_dim": 16}
    out = tmp_path / "f.h5"

    def stop(done):
        if done >= 32:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # what `rnncap features ... --grid` leaves when stopped
        make_features(tiny_shapes, out, on_chunk=stop, options=FeaturesOptions(
            extractor="randconv", extractor_options=options, fit_images=40, grid=True,
            dtype="float16", chunk_size=16, progress=False))
    partial = f"{out}.partial"
    with h5py.File(partial, "r+") as f:
        del f["grid"]
        f.create_dataset("grid", (100, 3, 3, 32), dtype="float16")
    assert main(["features", str(tiny_shapes), "--out", str(out), "--extractor", "randconv",
                 "--extractor-options", json.dumps(options), "--fit-images", "40", "--grid",
                 "--no-progress"]) == 1
    assert capsys.readouterr().err == (
        f"rnncap features: error: {partial} is an unfinished features file made with other "
        f"settings: its 'grid' is float16 (100, 3, 3, 32), expected float16 (100, 3, 3, 47); "
        f"remove it to start over\n")
