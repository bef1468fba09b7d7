"""Centre crop, resize and scaling (rnncap.vision.preprocess)."""

import numpy as np
import pytest
from PIL import Image

from rnncap.vision.preprocess import Preprocessing, crop_resize, prepare


def test_centre_crop_is_the_middle_square_of_the_shorter_side():
    # 400 x 200: the crop is 175 x 175 from x = 113 (columns 113..287), y = 13
    a = np.zeros((200, 400, 3), np.uint8)
    a[:, :, 0] = np.arange(400)[None, :] // 2  # red encodes the column
    a[:, :, 1] = np.arange(200)[:, None]       # green encodes the row
    p = Preprocessing(size=175, resample="nearest")
    out = crop_resize(Image.fromarray(a), p)
    np.testing.assert_array_equal(out, a[13:188, 113:288])


def test_scale_and_prepare_any_layout():
    p = Preprocessing(size=8, crop_fraction=1.0)
    np.testing.assert_allclose(p.scale(np.array([[[[0, 127, 255]]]], np.uint8)),
                               [[[[-127 / 128, 0, 1]]]])
    grey = np.full((8, 8), 200, np.uint8)
    rgba = np.dstack([np.full((8, 8, 3), 10, np.uint8), np.zeros((8, 8), np.uint8)])
    out = prepare([grey, rgba, np.full((16, 12, 3), 7, np.uint8)], p)
    assert out.shape == (3, 8, 8, 3) and out.dtype == np.uint8
    assert (out[0] == 200).all() and (out[1] == 255).all() and (out[2] == 7).all()


def test_specs_round_trip_and_bad_ones_are_named():
    p = Preprocessing.from_dict({"size": 128.0, "crop_fraction": 1})
    assert p.size == 128 and isinstance(p.size, int)
    assert Preprocessing.from_dict(p.to_dict()) == p
    for bad in ({"size": 12.5}, {"mean": [1, 2]}, {"std": [0, 1, 1]}, {"resample": "box"},
                {"crop_fraction": 0}):
        with pytest.raises(ValueError, match="spec: malformed preprocessing"):
            Preprocessing.from_dict(bad, "spec")
    with pytest.raises(ValueError, match=r"unknown preprocessing fields \['foo'\]"):
        Preprocessing.from_dict({"foo": 1})
