import json

import h5py
import numpy as np
import pytest
from PIL import Image

from rnncap.data.karpathy import load_karpathy

IMAGES = [
    {"split": "train", "filename": "0.jpg", "filepath": "imgs", "imgid": 0,
     "sentences": [{"tokens": ["a", "dog", "runs"], "raw": "A dog runs."},
                   {"tokens": ["a", "dog"], "raw": "A dog"}]},
    {"split": "val", "filename": "1.jpg", "filepath": "imgs", "imgid": 1,
     "sentences": [{"tokens": ["a", "cat"], "raw": "A cat."}]},
    {"split": "restval", "filename": "2.jpg", "filepath": "imgs", "imgid": 2,
     "sentences": [{"tokens": ["the", "cat", "sleeps"]}]},
    {"split": "test", "filename": "3.jpg", "filepath": "imgs", "imgid": 3,
     "sentences": [{"raw": "a bird"}]},
]


def write(d, images=IMAGES, feats="npy"):
    d.mkdir(exist_ok=True)
    (d / "dataset.json").write_text(json.dumps({"images": images, "dataset": "toy"}))
    f = np.arange(len(images) * 4, dtype=np.float32).reshape(len(images), 4)
    if feats == "npy":
        np.save(d / "features.npy", f)
    elif feats == "h5":
        with h5py.File(d / "features.h5", "w") as h:
            h["features"] = f
    return f


@pytest.mark.parametrize("kind", ["npy", "h5"])
def test_loads_karpathy_with_feature_rows_in_file_order(tmp_path, kind):
    f = write(tmp_path, feats=kind)
    d = load_karpathy(tmp_path)
    np.testing.assert_array_equal(d["train_features"], f[[0, 2]])  # restval merged into train
    np.testing.assert_array_equal(d["val_features"], f[[1]])
    np.testing.assert_array_equal(d["test_features"], f[[3]])
    assert d["train_references"] == [["A dog runs.", "A dog"], ["the cat sleeps"]]
    assert d["train_image_files"][1].endswith("imgs/2.jpg")
    # vocabulary from training text only: 'bird' (test) is unknown
    assert "bird" not in d["word_to_idx"] and "sleeps" in d["word_to_idx"]
    assert d["vocab"].decode_clean(d["test_captions"][0]) == "a <UNK>"
    np.testing.assert_array_equal(d["train_image_idxs"], [0, 0, 1])
    assert d["train_captions"].shape == (3, 17)


def test_restval_drop_and_char_level(tmp_path):
    write(tmp_path)
    d = load_karpathy(tmp_path / "dataset.json", restval="drop", level="char", max_length=10)
    assert d["train_features"].shape == (1, 4)
    assert d["vocab"].level == "char" and d["train_captions"].shape == (2, 12)
    assert d["vocab"].decode_clean(d["train_captions"][0]) == "a dog runs"


def test_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        load_karpathy(tmp_path)
    bad = [dict(IMAGES[0]), IMAGES[1]]
    del bad[0]["sentences"]
    write(tmp_path, bad)
    with pytest.raises(ValueError, match=r"dataset.json: images\[0\] lacks 'sentences'"):
        load_karpathy(tmp_path)
    bad = [dict(IMAGES[0], split="holdout")]
    write(tmp_path, bad)
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        load_karpathy(tmp_path)
    write(tmp_path)
    np.save(tmp_path / "features.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"features.npy: has 2 rows.*4 images"):
        load_karpathy(tmp_path)
    (tmp_path / "dataset.json").write_text("{")
    with pytest.raises(ValueError, match="dataset.json: not valid JSON"):
        load_karpathy(tmp_path)


def test_features_computed_from_images_when_no_file(tmp_path):
    write(tmp_path, feats=None)
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(
            tmp_path / "imgs" / f"{i}.jpg")
    opts = dict(image_size=32, num_filters=4, pca_dim=1)
    d = load_karpathy(tmp_path, extractor_options=opts)
    assert d["train_features"].shape == (2, 1) and "extractor_dir" in d
    again = load_karpathy(tmp_path, extractor_options=opts)  # from the cache
    np.testing.assert_array_equal(again["val_features"], d["val_features"])
    (tmp_path / "imgs" / "3.jpg").write_text("not a jpeg")
    with pytest.raises(ValueError, match="3.jpg"):
        load_karpathy(tmp_path, extractor_options=dict(opts, seed=1))  # new key: recomputes


def test_features_must_match_the_dataset_exactly(tmp_path):
    f = write(tmp_path)
    np.save(tmp_path / "features.npy", np.concatenate([f, f[:1]]))  # one row too many
    with pytest.raises(ValueError, match=r"features.npy: has 5 rows.*lists 4 images"):
        load_karpathy(tmp_path)
    f[2, 1] = np.nan
    np.save(tmp_path / "features.npy", f)
    with pytest.raises(ValueError, match=r"features.npy: row 2 holds NaN"):
        load_karpathy(tmp_path)


def test_unreadable_hdf5_and_missing_key_are_value_errors(tmp_path):
    write(tmp_path, feats=None)
    (tmp_path / "features.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="features.h5: not a readable HDF5 file"):
        load_karpathy(tmp_path)
    (tmp_path / "features.h5").unlink()
    with h5py.File(tmp_path / "features.h5", "w") as h:
        h["feats"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="features.h5: missing key 'features'") as err:
        load_karpathy(tmp_path)
    assert isinstance(err.value, KeyError)  # both: callers may catch either


def test_no_training_images(tmp_path):
    write(tmp_path, [IMAGES[1]])
    with pytest.raises(ValueError, match="dataset.json: lists no images of the 'train' split"):
        load_karpathy(tmp_path)
    write(tmp_path, [])
    with pytest.raises(ValueError, match="lists no images of the 'train' split"):
        load_karpathy(tmp_path)


def write_vgg_mat(d, images=IMAGES, order=None, **savemat_kw):
    """neuraltalk's download: dataset.json + vgg_feats.mat with feats (D, I), column = imgid."""
    import scipy.io

    d.mkdir(exist_ok=True)
    (d / "dataset.json").write_text(json.dumps({"images": images}))
    rows = np.random.default_rng(0).standard_normal((len(images), 6)).astype(np.float32)  # (I, D)
    order = list(range(len(images))) if order is None else order
    cols = np.empty_like(rows)
    cols[order] = rows  # image n's features are column order[n]
    scipy.io.savemat(d / "vgg_feats.mat", {"feats": cols.T}, **savemat_kw)  # (D, I)
    return rows


def test_neuraltalks_vgg_feats_mat_trains_as_downloaded(tmp_path):
    pytest.importorskip("scipy")
    rows = write_vgg_mat(tmp_path)
    d = load_karpathy(tmp_path)  # found by name beside dataset.json
    np.testing.assert_array_equal(d["train_features"], rows[[0, 2]])
    np.testing.assert_array_equal(d["test_features"], rows[[3]])


def test_vgg_feats_columns_are_found_by_imgid(tmp_path):
    pytest.importorskip("scipy")
    shuffled = [dict(im, imgid=i) for im, i in zip(IMAGES, [2, 0, 3, 1])]
    rows = write_vgg_mat(tmp_path, shuffled, order=[2, 0, 3, 1])
    d = load_karpathy(tmp_path)
    np.testing.assert_array_equal(d["val_features"], rows[[1]])
    np.testing.assert_array_equal(d["train_features"], rows[[0, 2]])


def test_vgg_feats_with_too_few_columns_names_the_imgid(tmp_path):
    pytest.importorskip("scipy")
    write_vgg_mat(tmp_path, IMAGES[:3])
    (tmp_path / "dataset.json").write_text(json.dumps({"images": IMAGES}))
    with pytest.raises(ValueError, match=r"images\[3\] has imgid 3, but .*vgg_feats.mat has 3 columns"):
        load_karpathy(tmp_path)


def test_mat_features_without_scipy_say_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    write_vgg_mat(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "scipy", None)
    monkeypatch.setitem(__import__("sys").modules, "scipy.io", None)
    with pytest.raises(ValueError, match=r"vgg_feats.mat: reading MATLAB .mat features needs scipy; "
                                         r"install it with `pip install scipy`"):
        load_karpathy(tmp_path)


def test_a_mat_file_without_feats_is_named(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    write(tmp_path)
    (tmp_path / "features.npy").unlink()
    scipy_io.savemat(tmp_path / "vgg_feats.mat", {"other": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"vgg_feats.mat: missing variable 'feats' \(has: \['other'\]\)"):
        load_karpathy(tmp_path)
