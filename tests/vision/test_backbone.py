"""The pretrained backbone as a registered extractor: specs, checkpoints, classify, caption."""

import json
import os

import numpy as np
import pytest

from rnncap.cli import main
from rnncap.data.features import extract_files, load_extractor, make_extractor
from rnncap.vision.backbone import EfficientNetExtractor, make_backbone
from rnncap.vision.efficientnet import WEIGHTS_SHA256


def test_registry_makes_saves_and_reloads_it_without_copying_weights(tmp_path, photo):
    ex = make_extractor("efficientnet-lite0")
    assert isinstance(ex, EfficientNetExtractor) and ex.dim == 1280
    ex.save(tmp_path / "ex")
    spec = json.loads((tmp_path / "ex" / "extractor.json").read_text())
    assert spec["name"] == "efficientnet-lite0" and spec["output"] == "pooled"
    assert spec["weights"]["sha256"] == WEIGHTS_SHA256
    assert spec["preprocessing"] == {"size": 224, "crop_fraction": 0.875, "mean": [127.0] * 3,
                                     "std": [128.0] * 3, "resample": "bicubic"}
    assert os.path.getsize(tmp_path / "ex" / "arrays.npz") < 1000  # a description, no weights
    again = load_extractor(tmp_path / "ex")
    path = photo("coffee")
    direct = ex.features_prepared(ex.read_image(path)[None])["pooled"]
    np.testing.assert_array_equal(extract_files(again, [path]), direct)


def test_grid_output_through_extract_files(tmp_path, photo):
    ex = make_backbone("efficientnet-lite0", output="grid")
    assert ex.feature_shape == (7, 7, 1280)
    paths = [photo("coffee"), photo("grace_hopper")]
    grid = extract_files(ex, paths, batch_size=1)
    assert grid.shape == (2, 7, 7, 1280) and grid.dtype == np.float32
    pooled = extract_files(make_backbone("efficientnet-lite0"), paths)
    np.testing.assert_allclose(grid.mean(axis=(1, 2)), pooled, rtol=1e-5, atol=1e-6)
    ex.save(tmp_path / "g")
    assert load_extractor(tmp_path / "g").feature_shape == (7, 7, 1280)


def test_in_memory_images_of_any_size_and_shape_errors():
    ex = EfficientNetExtractor()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (50, 80, 3), dtype=np.uint8), rng.integers(0, 256, (300, 200), dtype=np.uint8)]
    assert ex.extract(imgs).shape == (2, 1280)
    with pytest.raises(ValueError, match=r"image 0: expected uint8"):
        ex.extract([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match=r"prepared images must be uint8 \(N, 224, 224, 3\)"):
        ex.extract_prepared(np.zeros((1, 100, 100, 3), np.uint8))


def test_saved_specs_with_other_weights_or_garbage_are_refused(tmp_path):
    spec = EfficientNetExtractor().spec()
    with pytest.raises(ValueError, match="other EfficientNet-Lite0 weights"):
        EfficientNetExtractor.from_saved({**spec, "weights": {"sha256": "0" * 64}}, {})
    with pytest.raises(ValueError, match=r"ex/extractor.json: saved backbone has no 'weights' "
                                         r"\(it holds: 'name'\)"):
        EfficientNetExtractor.from_saved({"name": "efficientnet-lite0"}, {}, source="ex")
    with pytest.raises(ValueError, match="saved backbone has no 'weights.sha256'"):
        EfficientNetExtractor.from_saved({**spec, "weights": {}}, {}, source="ex")
    with pytest.raises(ValueError, match="ex/extractor.json: preprocessing: malformed preprocessing"):
        EfficientNetExtractor.from_saved({**spec, "preprocessing": {"size": -3}}, {}, source="ex")
    with pytest.raises(ValueError, match="ex/extractor.json: saved backbone is malformed"):
        EfficientNetExtractor.from_saved({**spec, "preprocessing": "bicubic"}, {}, source="ex")
    with pytest.raises(ValueError, match="ex/extractor.json: backbone output must be one of"):
        EfficientNetExtractor.from_saved({**spec, "output": "fc7"}, {}, source="ex")
    with pytest.raises(ValueError, match="backbone output must be one of"):
        make_backbone("efficientnet-lite0", output="fc7")
    with pytest.raises(ValueError, match="unknown feature extractor 'vgg16'"):
        make_backbone("vgg16")


def test_classify_finds_what_the_photos_show(capsys, photo):
    names = ["coffee", "chelsea", "motorcycle_right", "grace_hopper"]
    assert main(["classify", "--json", *map(photo, names)]) == 0
    out = {os.path.basename(r["image"]).split(".")[0]: r
           for r in map(json.loads, capsys.readouterr().out.splitlines())}
    for r in out.values():
        assert len(r["labels"]) == 5 and r["probabilities"] == sorted(r["probabilities"], reverse=True)
    assert out["coffee"]["labels"][0] == "espresso"
    assert out["chelsea"]["labels"][0] in ("tabby, tabby cat", "tiger cat", "Persian cat",
                                           "Siamese cat, Siamese", "Egyptian cat")
    assert out["motorcycle_right"]["labels"][0] in ("moped", "motor scooter, scooter")
    assert "military uniform" in out["grace_hopper"]["labels"]


def test_classify_errors_are_one_line(tmp_path, capsys, photo):
    (tmp_path / "x.jpg").write_text("no")
    assert main(["classify", str(tmp_path / "x.jpg")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "x.jpg: not an image" in err
    assert main(["classify", "--top", "0", photo("coffee")]) == 1


def test_caption_runs_the_checkpoints_backbone_end_to_end(tmp_path, capsys, photo):
    """Features from the backbone -> train -> `rnncap caption CHECKPOINT photo` re-runs it."""
    from rnncap.config import RunConfig, with_overrides
    from rnncap.data.karpathy import load_karpathy
    from rnncap.run import train

    names = {"coffee": "a cup of coffee", "chelsea": "a cat", "motorcycle_right": "a red motorbike",
             "grace_hopper": "a woman in uniform"}
    images = [{"split": "train", "filename": photo(n), "sentences": [{"raw": c}]}
              for n, c in names.items()]
    (tmp_path / "dataset.json").write_text(json.dumps({"images": images}))
    data = load_karpathy(tmp_path, extractor="efficientnet-lite0")
    assert data["train_features"].shape == (4, 1280)
    config = with_overrides(RunConfig(), {
        "data": {"path": str(tmp_path), "format": "karpathy"},
        "model": {"cell_type": "lstm", "hidden_dim": 16, "wordvec_dim": 8},
        "train": {"batch_size": 4, "num_epochs": 2, "val_images": 0}})
    train(config, tmp_path / "run", progress=False, data=data)
    saved = json.loads(next((tmp_path / "run" / "checkpoints").glob("ckpt-*/extractor/extractor.json")).read_text())
    assert saved["name"] == "efficientnet-lite0" and saved["weights"]["sha256"] == WEIGHTS_SHA256
    assert main(["caption", str(tmp_path / "run"), photo("coffee"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["image"] == photo("coffee") and isinstance(out["caption"], str)
