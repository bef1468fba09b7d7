import json

import h5py
import numpy as np
import pytest

from rnncap.data.cs231n import (decode_captions, load_coco_data, sample_coco_minibatch,
                                write_coco_folder)

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat", "dog", "on", "mat"]


def write_folder(d, n_train_img=4, n_val_img=3, pca=True, drop=None, cap_dtype=np.int32):
    """Write the CS231n layout by hand with h5py (independently of write_coco_folder)."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n_img in (("train", n_train_img), ("val", n_val_img)):
        M = 2 * n_img
        caps = np.zeros((M, 17), cap_dtype)
        caps[:, 0] = 1
        caps[:, 1:4] = rng.integers(4, len(WORDS), size=(M, 3))
        caps[:, 4] = 2
        arrays[f"{s}_captions"] = caps
        arrays[f"{s}_image_idxs"] = np.repeat(np.arange(n_img, dtype=np.int32), 2)
    with h5py.File(d / "coco2014_captions.h5", "w") as f:
        for k, v in arrays.items():
            if k != drop:
                f[k] = v
    suffix = "_pca" if pca else ""
    D = 512 if pca else 4096
    for s, n_img in (("train", n_train_img), ("val", n_val_img)):
        with h5py.File(d / f"{s}2014_vgg16_fc7{suffix}.h5", "w") as f:
            f["features"] = rng.standard_normal((n_img, D)).astype(np.float32)
        (d / f"{s}2014_urls.txt").write_text("".join(f"http://x/{s}/{i}.jpg\n" for i in range(n_img)))
    (d / "coco2014_vocab.json").write_text(json.dumps(
        {"idx_to_word": WORDS, "word_to_idx": {w: i for i, w in enumerate(WORDS)}}))
    return arrays


def test_loads_exact_layout(tmp_path):
    arrays = write_folder(tmp_path)
    data = load_coco_data(tmp_path)
    for k, v in arrays.items():
        np.testing.assert_array_equal(data[k], v)
        assert data[k].dtype == np.int32
    assert data["train_features"].shape == (4, 512) and data["train_features"].dtype == np.float32
    assert data["val_urls"][2] == "http://x/val/2.jpg"
    assert data["idx_to_word"] == WORDS and data["word_to_idx"]["mat"] == 8
    assert decode_captions(data["train_captions"][0], data["idx_to_word"]).startswith("<START> ")


def test_non_pca_names_and_dtype_cast(tmp_path):
    write_folder(tmp_path, pca=False, cap_dtype=np.int64)
    data = load_coco_data(tmp_path, pca_features=False)
    assert data["val_features"].shape == (3, 4096)
    assert data["train_captions"].dtype == np.int32
    with pytest.raises(FileNotFoundError, match="train2014_vgg16_fc7_pca.h5"):
        load_coco_data(tmp_path, pca_features=True)


def test_max_train_subsamples_without_replacement_deterministically(tmp_path):
    write_folder(tmp_path, n_train_img=10)
    full = load_coco_data(tmp_path)
    a = load_coco_data(tmp_path, max_train=5, seed=1)
    b = load_coco_data(tmp_path, max_train=5, seed=1)
    np.testing.assert_array_equal(a["train_captions"], b["train_captions"])
    assert a["train_captions"].shape == (5, 17)
    # every sampled row is a distinct row of the full set with its own image index
    rows = {tuple(r) + (i,) for r, i in zip(full["train_captions"], full["train_image_idxs"])}
    picked = [tuple(r) + (i,) for r, i in zip(a["train_captions"], a["train_image_idxs"])]
    assert all(p in rows for p in picked)


def test_missing_folder_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        load_coco_data(tmp_path / "nothere")
    write_folder(tmp_path, drop="val_image_idxs")
    with pytest.raises(KeyError, match="coco2014_captions.h5.*val_image_idxs"):
        load_coco_data(tmp_path)
    write_folder(tmp_path)
    (tmp_path / "val2014_urls.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val2014_urls.txt"):
        load_coco_data(tmp_path)


def test_mismatched_lengths_and_out_of_range(tmp_path):
    write_folder(tmp_path)
    with h5py.File(tmp_path / "coco2014_captions.h5", "a") as f:
        del f["train_image_idxs"]
        f["train_image_idxs"] = np.zeros(5, np.int32)
    with pytest.raises(ValueError, match=r"train_image_idxs.*\(5,\).*\(8, 17\)"):
        load_coco_data(tmp_path)

    write_folder(tmp_path)
    with h5py.File(tmp_path / "coco2014_captions.h5", "a") as f:
        f["val_image_idxs"][0] = 3  # only 3 val feature rows
    with pytest.raises(ValueError, match=r"val_image_idxs.*\[0, 3\].*3 rows"):
        load_coco_data(tmp_path)

    write_folder(tmp_path)
    with h5py.File(tmp_path / "coco2014_captions.h5", "a") as f:
        f["train_captions"][0, 1] = 99
    with pytest.raises(ValueError, match="train_captions.*9 words"):
        load_coco_data(tmp_path)

    write_folder(tmp_path)
    with h5py.File(tmp_path / "val2014_vgg16_fc7_pca.h5", "a") as f:
        f["features"][2, 7] = np.inf
        f["features"][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"val2014_vgg16_fc7_pca.h5: 'features' row 1 holds NaN.*2 such rows"):
        load_coco_data(tmp_path)

    write_folder(tmp_path)
    (tmp_path / "train2014_urls.txt").write_text("only-one\n")
    with pytest.raises(ValueError, match="train2014_urls.txt.*1 lines.*4 rows"):
        load_coco_data(tmp_path)


def test_sample_minibatch_is_consistent_and_seeded(tmp_path):
    write_folder(tmp_path)
    data = load_coco_data(tmp_path)
    caps, feats, urls = sample_coco_minibatch(data, batch_size=6, split="val", rng=3)
    caps2, _, _ = sample_coco_minibatch(data, batch_size=6, split="val", rng=3)
    np.testing.assert_array_equal(caps, caps2)
    assert caps.shape == (6, 17) and feats.shape == (6, 512) and urls.shape == (6,)
    # each feature row is the one its URL names
    for f, u in zip(feats, urls):
        i = int(u.rsplit("/", 1)[1].split(".")[0])
        np.testing.assert_array_equal(f, data["val_features"][i])
    with pytest.raises(KeyError, match="test"):
        sample_coco_minibatch(data, split="test")


def test_write_coco_folder_round_trip(tmp_path):
    write_folder(tmp_path / "a")
    data = load_coco_data(tmp_path / "a")
    write_coco_folder(tmp_path / "b", data)
    again = load_coco_data(tmp_path / "b")
    for k in ("train_captions", "val_image_idxs", "train_features", "val_urls"):
        np.testing.assert_array_equal(again[k], data[k])
    assert again["idx_to_word"] == data["idx_to_word"]


@pytest.mark.parametrize("key, value, says", [
    ("train_captions", np.ones((8, 1), np.int32), r"train_captions' must be 2-D \(M, T\) with T >= 2"),
    ("val_image_idxs", np.zeros(6, np.float32), "val_image_idxs' must hold integers"),
])
def test_captions_too_short_or_of_the_wrong_type_are_named(tmp_path, key, value, says):
    write_folder(tmp_path)
    with h5py.File(tmp_path / "coco2014_captions.h5", "a") as f:
        del f[key]
        f[key] = value
    with pytest.raises(ValueError, match=says):
        load_coco_data(tmp_path)


def test_complex_or_grouped_features_are_named(tmp_path):
    write_folder(tmp_path)
    with h5py.File(tmp_path / "train2014_vgg16_fc7_pca.h5", "a") as f:
        data = f["features"][()]
        del f["features"]
        f["features"] = data.astype(np.complex64)
    with pytest.raises(ValueError, match="train2014_vgg16_fc7_pca.h5: 'features' must be real numbers"):
        load_coco_data(tmp_path)
    write_folder(tmp_path)
    with h5py.File(tmp_path / "val2014_vgg16_fc7_pca.h5", "a") as f:
        del f["features"]
        f.create_group("features")
    with pytest.raises(ValueError, match="'features' must be an array .an HDF5 dataset., got a group"):
        load_coco_data(tmp_path)
