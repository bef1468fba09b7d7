import json

import numpy as np
import pytest

from rnncap.data.coco import load_coco


def write(d, extra_ann=None):
    train = {"images": [{"id": 10, "file_name": "a.jpg"}, {"id": 11, "file_name": "b.jpg"},
                        {"id": 12, "file_name": "nocap.jpg"}],
             "annotations": [{"image_id": 11, "caption": "A dog. "},
                             {"image_id": 10, "caption": "a cat"},
                             {"image_id": 10, "caption": "a black cat"}]}
    val = {"images": [{"id": 20, "file_name": "c.jpg"}],
           "annotations": [{"image_id": 20, "caption": "a red dog"}] + (extra_ann or [])}
    (d / "captions_train2014.json").write_text(json.dumps(train))
    (d / "captions_val2014.json").write_text(json.dumps(val))
    ids = np.array([20, 11, 10, 99])
    feats = np.stack([np.full(3, i, np.float32) for i in ids])
    np.savez(d / "features.npz", image_ids=ids, features=feats)


def test_loads_coco_annotations_and_keyed_features(tmp_path):
    write(tmp_path)
    d = load_coco(tmp_path)
    # images in the order of 'images', the one without captions skipped
    np.testing.assert_array_equal(d["train_features"][:, 0], [10, 11])
    assert d["train_references"] == [["a cat", "a black cat"], ["A dog."]]
    np.testing.assert_array_equal(d["train_image_idxs"], [0, 0, 1])
    assert d["train_image_files"][0].endswith("train2014/a.jpg")
    np.testing.assert_array_equal(d["val_features"][:, 0], [20])
    assert d["vocab"].decode_clean(d["val_captions"][0]) == "a <UNK> dog"
    assert "test_captions" not in d


def test_coco_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions_train"):
        load_coco(tmp_path)
    write(tmp_path, extra_ann=[{"image_id": 77, "caption": "x"}])
    with pytest.raises(ValueError, match=r"captions_val2014.json: annotations\[1\].*77"):
        load_coco(tmp_path)
    write(tmp_path)
    np.savez(tmp_path / "features.npz", image_ids=np.array([10, 11]), features=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="features.npz: no features for image_id 20"):
        load_coco(tmp_path)
    bad = np.zeros((3, 3))
    bad[1, 2] = np.nan  # image 11, in the train split
    np.savez(tmp_path / "features.npz", image_ids=np.array([10, 11, 20]), features=bad)
    with pytest.raises(ValueError, match=r"features.npz: the features of image_id 11 hold NaN.*captions_train2014"):
        load_coco(tmp_path)
    np.savez(tmp_path / "features.npz", image_ids=np.array([10, 11, 20]), features=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"image_ids.*\(3,\).*\(2, 3\)"):
        load_coco(tmp_path)
    (tmp_path / "captions_val2017.json").write_text("{}")
    with pytest.raises(ValueError, match="two caption files for split 'val'"):
        load_coco(tmp_path)


def test_compressed_features_that_would_not_fit_are_refused_before_unpacking(tmp_path):
    """A few kilobytes of .npz can claim a (10^6, 10^6) array: its header is read first."""
    import io
    import zipfile

    from rnncap.data.coco import read_keyed_features
    from rnncap.memory import MemoryEstimateError

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    ids = io.BytesIO()
    np.save(ids, np.arange(3))
    path = tmp_path / "features.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("image_ids.npy", ids.getvalue())
        zf.writestr("features.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 1000)
    with pytest.raises(MemoryEstimateError, match=r"features.npz: 'features' of shape \(1000000, 1000000\)"):
        read_keyed_features(path)
    np.savez_compressed(path, image_ids=np.arange(3), features=np.ones((3, 4), np.float32))
    assert read_keyed_features(path)[1].shape == (3, 4)  # compressed features are fine


def test_a_garbled_array_header_in_the_features_archive_is_named(tmp_path):
    import zipfile

    from rnncap.data.coco import read_keyed_features

    with zipfile.ZipFile(tmp_path / "f.npz", "w") as z:  # a header cut inside its dict
        z.writestr("image_ids.npy", b"\x93NUMPY\x01\x00\x01\x00{")
        z.writestr("features.npy", b"\x93NUMPY\x01\x00\x01\x00{")
    with pytest.raises(ValueError, match=r"f\.npz: not a readable \.npz file \(TokenError"):
        read_keyed_features(tmp_path / "f.npz")
