"""Tests for rnncap.data.precision: attention shares on the named objects' cells, by hand."""

import numpy as np
import pytest

from rnncap.data.precision import named_attribute, word_precisions

OBJECTS = [{"shape": "circle", "colour": "red", "size": "small", "row": 0, "col": 0},
           {"shape": "square", "colour": "red", "size": "large", "row": 2, "col": 1}]


def test_named_attributes_include_synonyms_and_plurals():
    assert named_attribute("violet") == ("colour", "purple")
    assert named_attribute("circles") == ("shape", "circle")
    assert named_attribute("above") is None


def test_precision_is_the_weight_on_the_named_objects_cells():
    words = ["a", "red", "circle", "and", "a", "blue", "square"]
    w = np.zeros((7, 9))
    w[:, 0] = 0.25  # top left: the circle
    w[:, 7] = 0.5  # bottom middle: the square
    w[:, 4] = 0.25
    got = word_precisions(words, w, OBJECTS)
    assert [(g["word"], g["t"], g["n_objects"]) for g in got] == [
        ("red", 1, 2), ("circle", 2, 1), ("blue", 5, 0), ("square", 6, 1)]
    assert got[0]["precision"] == pytest.approx(0.75)  # both red objects
    assert got[1]["precision"] == pytest.approx(0.25)
    assert got[2]["precision"] is None  # no blue object: nothing to look at
    assert got[3]["precision"] == pytest.approx(0.5)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 9\)"):
        word_precisions(["a", "red"], np.zeros((2, 4)), OBJECTS)
    with pytest.raises(ValueError, match="3x3"):
        word_precisions(["a"], np.zeros((1, 49)), OBJECTS, grid=7)
