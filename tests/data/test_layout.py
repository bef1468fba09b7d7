import numpy as np
import pytest

from rnncap.data.layout import build_data, nonfinite_rows, subsample_train
from rnncap.data.vocab import END, START, UNK


def test_build_data_by_hand():
    images = {
        "train": [{"file": "a.png", "captions": ["a red cat", "a cat"]},
                  {"file": "b.png", "captions": ["red red"], "truth": []}],
        "val": [{"file": "c.png", "captions": ["a blue cat"], "truth": [{"shape": "x"}]}],
    }
    feats = {"train": np.arange(6, dtype=np.float64).reshape(2, 3), "val": np.ones((1, 3))}
    d = build_data(images, feats, max_length=4)
    # counts: red 3, a 2, cat 2 -> ties alphabetical: red, a, cat
    assert d["idx_to_word"] == ["<NULL>", "<START>", "<END>", "<UNK>", "red", "a", "cat"]
    np.testing.assert_array_equal(d["train_captions"],
                                  [[START, 5, 4, 6, END, 0], [START, 5, 6, END, 0, 0],
                                   [START, 4, 4, END, 0, 0]])
    np.testing.assert_array_equal(d["train_image_idxs"], [0, 0, 1])
    np.testing.assert_array_equal(d["val_captions"], [[START, 5, UNK, 6, END, 0]])  # vocab: train only
    assert d["train_features"].dtype == np.float32
    assert d["val_references"] == [["a blue cat"]] and d["val_image_files"] == ["c.png"]
    assert "train_truth" not in d and d["val_truth"] == [[{"shape": "x"}]]
    assert "test_captions" not in d


def test_build_data_errors():
    im = {"train": [{"captions": ["a"]}]}
    with pytest.raises(ValueError, match=r"1 images.*\(2, 3\)"):
        build_data(im, {"train": np.zeros((2, 3))}, source="x.json")
    with pytest.raises(ValueError, match="no training images"):
        build_data({"val": im["train"]}, {"val": np.zeros((1, 3))})


def test_subsample_train():
    d = {"train_captions": np.arange(20).reshape(10, 2), "train_image_idxs": np.arange(10)}
    subsample_train(d, 4, seed=0)
    assert len(d["train_captions"]) == 4 and len(set(d["train_image_idxs"])) == 4
    np.testing.assert_array_equal(d["train_captions"][:, 0], 2 * d["train_image_idxs"])


def test_nonfinite_rows():
    a = np.zeros((5, 3), np.float32)
    assert nonfinite_rows(a).tolist() == [] and nonfinite_rows(np.zeros((0, 3))).tolist() == []
    a[3, 1], a[1, 0], a[1, 2] = np.inf, np.nan, -np.inf
    assert nonfinite_rows(a).tolist() == [1, 3]
    a[:] = 0
    a[4, 2] = -np.inf  # found by min, not max
    assert nonfinite_rows(a).tolist() == [4]
