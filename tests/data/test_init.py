import subprocess
import sys

import numpy as np
import pytest

from rnncap.data import caption_is_true, detect_format, load_data, truth_rate
from rnncap.data.features import load_extractor, extract_files

TINY = dict(num_train=24, num_val=6, num_test=6, extractor_options=dict(num_filters=8, pca_dim=32))


def test_import_needs_only_numpy():
    code = ("import sys, rnncap, rnncap.data; "
            "bad = [m for m in ('PIL', 'h5py', 'tqdm', 'matplotlib') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_detect_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing-folder"):
        load_data(tmp_path / "missing-folder")
    with pytest.raises(ValueError, match="coco2014_captions.h5.*dataset.json.*captions_"):
        load_data(tmp_path)
    (tmp_path / "captions_train2014.json").write_text("{}")
    assert detect_format(tmp_path) == "coco"
    (tmp_path / "dataset.json").write_text("{}")
    assert detect_format(tmp_path) == "karpathy"
    (tmp_path / "coco2014_captions.h5").write_bytes(b"")
    assert detect_format(tmp_path) == "cs231n"
    with pytest.raises(ValueError, match="char"):
        load_data(tmp_path, "cs231n", level="char")
    with pytest.raises(ValueError, match="unknown data format 'mat'"):
        load_data(tmp_path, "mat")


def test_shapes_end_to_end(tmp_path):
    d = load_data(tmp_path, "shapes", **TINY)
    assert d["train_features"].shape == (24, 32) and d["train_features"].dtype == np.float32
    assert d["train_captions"].shape == (24 * 5, 17) and d["train_captions"].dtype == np.int32
    assert len(d["val_truth"]) == 6 and len(d["test_references"]) == 6
    # each encoded caption decodes to its image's reference (the shapes vocabulary is closed)
    v = d["vocab"]
    for row, i in zip(d["train_captions"][:30], d["train_image_idxs"][:30]):
        text = v.decode_clean(row)
        assert text in [r.replace(",", "") for r in d["train_references"][i]]
        assert caption_is_true(text, d["train_truth"][i])
    refs = [r[0] for r in d["val_references"]]
    assert truth_rate(refs, d["val_truth"]) == 1.0
    assert truth_rate(refs, d["val_truth"][::-1]) < 1.0  # the wrong images
    # the saved extractor reproduces the cached features from the image files
    ex = load_extractor(d["extractor_dir"])
    np.testing.assert_allclose(extract_files(ex, d["val_image_files"]), d["val_features"],
                               rtol=1e-5, atol=1e-5)
    # same parameters in another cache folder -> identical arrays (deterministic end to end)
    e = load_data(tmp_path / "again", "shapes", **TINY)
    np.testing.assert_array_equal(e["train_features"], d["train_features"])
    np.testing.assert_array_equal(e["train_captions"], d["train_captions"])
    # the generated folder is also plain Karpathy data
    folder = [p for p in tmp_path.iterdir() if p.name.startswith("shapes-")][0]
    np.save(folder / "features.npy", np.zeros((36, 5), np.float32))
    k = load_data(folder)
    assert k["train_features"].shape == (24, 5) and len(k["test_truth"]) == 6


def test_shapes_char_level_and_max_train(tmp_path):
    d = load_data(tmp_path, "shapes", level="char", max_train=50, **TINY)
    assert d["vocab"].level == "char" and d["train_captions"].shape == (50, 82)
    assert set(d["idx_to_word"][4:]) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_shapes_extractor_options_make_their_own_features_and_saved_extractor(tmp_path):
    base = load_data(tmp_path, "shapes", **TINY)
    tiny = {**TINY, "extractor_options": {**TINY["extractor_options"], "stride": 1}}
    fine = load_data(tmp_path, "shapes", **tiny)
    assert fine["extractor_dir"] != base["extractor_dir"]  # cached apart, the dataset shared
    ex = load_extractor(fine["extractor_dir"])
    assert ex.options["stride"] == 1 and load_extractor(base["extractor_dir"]).options["stride"] == 2
    np.testing.assert_allclose(extract_files(ex, fine["val_image_files"]), fine["val_features"],
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(fine["train_features"], base["train_features"])
