"""Tests for rnncap.attention_maps: one row of panels per image, PNG output, bad input."""

import io

import numpy as np
import pytest
from PIL import Image

from rnncap.attention_maps import attention_figure, attention_png, write_attention_png


def _rows():
    w = np.full((2, 9), 1 / 9)
    return [(["a", "circle"], w), (["red"], w[:1])]


def test_figure_has_a_panel_per_word_and_one_for_the_image():
    pictures = [np.zeros((64, 64, 3), np.uint8)] * 2
    fig = attention_figure(pictures, _rows())
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["image", "a (0.11)", "circle (0.11)"]
    assert [ax.get_title() for ax in axes[1]] == ["image", "red (0.11)", ""]


def test_png_bytes_and_atomic_file(tmp_path):
    pic = np.zeros((64, 64, 3), np.uint8)
    words, weights = _rows()[0]
    with Image.open(io.BytesIO(attention_png(pic, words, weights))) as im:
        assert im.format == "PNG"
    out = write_attention_png(tmp_path / "m.png", [pic], [(words, weights)])
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == ["m.png"]


def test_bad_input_names_what_is_wrong(tmp_path):
    pic = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="must be a .png file"):
        write_attention_png(tmp_path / "m.jpg", [pic], _rows()[:1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_attention_png(tmp_path / "no" / "m.png", [pic], _rows()[:1])
    with pytest.raises(ValueError, match="square grid; 8 locations"):
        attention_figure([pic], [(["a"], np.ones((1, 8)) / 8)])
    with pytest.raises(ValueError, match="2 pictures but 1 rows"):
        attention_figure([pic, pic], _rows()[:1])
