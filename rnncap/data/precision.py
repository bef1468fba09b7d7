"""Attention precision on the shapes data: does a word's attention fall on the object it names?

The shapes generator knows where every object is (its 3x3 grid cell), so for a generated
word that names a colour or a shape, the objects it can be about are the image's objects
with that colour or shape. The word's *attention precision* is the share of its
attention weight on those objects' cells (on a grid of the same 3x3 cells, reading order).

A word is *unambiguous* when exactly one object of the image carries its attribute;
when two objects share it ("a red circle and a red square") the share on both cells is
reported separately, and a word naming an attribute no object has (a false word) has no
object to look at and is counted, not scored.

This module knows the shapes vocabulary and the ground-truth object lists; it does not
know models, features or how the weights were made.
"""

from __future__ import annotations

import numpy as np

from rnncap.data.shapes import COLOUR_WORDS, SHAPES

__all__ = ["named_attribute", "word_precisions"]

_ATTRIBUTE = {w: ("colour", c) for c, ws in COLOUR_WORDS.items() for w in ws}
_ATTRIBUTE.update({s: ("shape", s) for s in SHAPES})
_ATTRIBUTE.update({s + "s": ("shape", s) for s in SHAPES})  # "two circles"


def named_attribute(word):
    """('colour', name) or ('shape', name) for a word naming one, else None."""
    return _ATTRIBUTE.get(word)


def word_precisions(words, weights, objects, grid=3):
    """Attention precision of every colour or shape word of one caption.

    Args:
        words: the caption's generated words, in order.
        weights: the attention each word was generated with, shape (len(words), grid*grid).
        objects: the image's ground truth (dicts with shape, colour, row, col).
        grid: the side of the attention grid, aligned with the generator's 3x3 cells.

    Returns:
        List of dicts, one per colour or shape word: word, position t, n_objects (how
        many objects carry the attribute), precision (the share of its weight on their
        cells; None when n_objects is 0).
    """
    weights = np.asarray(weights)
    if grid != 3:
        raise ValueError(f"attention precision needs a grid aligned with the 3x3 object cells; got {grid}x{grid}")
    if weights.shape != (len(words), grid * grid):
        raise ValueError(f"weights must have shape ({len(words)}, {grid * grid}); got {weights.shape}")
    out = []
    for t, word in enumerate(words):
        attr = named_attribute(word)
        if attr is None:
            continue
        key, value = attr
        cells = sorted({o["row"] * grid + o["col"] for o in objects if o[key] == value})
        precision = float(weights[t, cells].sum()) if cells else None
        out.append({"word": word, "t": t, "n_objects": len(cells), "precision": precision})
    return out
