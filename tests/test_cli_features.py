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
