"""Attention maps to look at: each generated word's attention weights over its image.

`word_attention` turns an attention model's decoded tokens into, per image, the list of
words and the (T, L) weights each was generated with; `attention_figure` draws one row
of panels per image (the picture, then one panel per word with its map laid over the
picture); `write_attention_png` saves that (atomically) for `rnncap caption --attention`,
and `attention_png` gives one image's row as PNG bytes, for a report or a web page.

The L locations are drawn as a square grid (L = g*g, rows in reading order, as the
extractors flatten them) stretched over the whole picture.

This module knows matplotlib, the model's `attention_weights` and the vocabulary's
`idx_to_word`; it does not know how the tokens were decoded or where pictures come from.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

__all__ = ["word_attention", "attention_figure", "attention_png", "write_attention_png"]


def word_attention(model, vocab, features, tokens):
    """Per image: the generated words and the attention weights each was produced with.

    Args:
        model: an attention model (``attention_weights(features, tokens)``).
        vocab: the vocabulary (``idx_to_word``).
        features: the grid features the tokens were decoded from, shape (N, L, D).
        tokens: decoded ids, shape (N, T), first generated word first (decoders' output).

    Returns:
        List of N pairs (words: list of str, weights: float array (len(words), L)); the
        words stop before <END>.
    """
    weights = model.attention_weights(features, tokens)  # (N, T, L)
    end, null = vocab.word_to_idx["<END>"], vocab.word_to_idx["<NULL>"]
    rows = []
    for n in range(len(tokens)):
        words, maps = [], []
        for t, tok in enumerate(tokens[n]):
            if tok in (end, null):
                break
            words.append(vocab.idx_to_word[int(tok)])
            maps.append(weights[n, t])
        L = weights.shape[2]
        rows.append((words, np.asarray(maps, dtype=np.float64).reshape(len(words), L)))
    return rows


def _grid_side(L):
    g = math.isqrt(L)
    if g * g != L:
        raise ValueError(f"attention maps are drawn on a square grid; {L} locations is not one")
    return g


def attention_figure(pictures, rows, panel_inches=1.6):
    """A matplotlib Figure: one row per image, the picture then one panel per word.

    Args:
        pictures: N images, uint8 (H, W, 3) each.
        rows: N pairs (words, weights (T_i, L)) from `word_attention`.
        panel_inches: the size of one panel.

    Returns:
        matplotlib.figure.Figure (no pyplot state is touched).
    """
    from matplotlib.figure import Figure

    if len(pictures) != len(rows):
        raise ValueError(f"{len(pictures)} pictures but {len(rows)} rows of attention weights")
    cols = 1 + max((len(w) for w, _ in rows), default=0)
    fig = Figure(figsize=(panel_inches * cols, (panel_inches + 0.25) * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (picture, (words, weights)) in enumerate(zip(pictures, rows)):
        h, w = picture.shape[:2]
        for ax in axes[r]:
            ax.axis("off")
        axes[r, 0].imshow(picture)
        axes[r, 0].set_title("image", fontsize=8)
        for k, word in enumerate(words):
            g = _grid_side(weights.shape[1])
            ax = axes[r, k + 1]
            ax.imshow(picture)
            # Nearest neighbour: each cell of the grid is one block of the picture.
            ax.imshow(weights[k].reshape(g, g), cmap="magma", alpha=0.6, vmin=0.0, vmax=1.0,
                      extent=(0, w, h, 0), interpolation="nearest")
            ax.set_title(f"{word} ({weights[k].max():.2f})", fontsize=8)
    fig.tight_layout()
    return fig


def attention_png(picture, words, weights):
    """One image's row of panels as PNG bytes (for a report or a web page)."""
    buf = io.BytesIO()
    attention_figure([picture], [(words, weights)]).savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def write_attention_png(path, pictures, rows):
    """Write `attention_figure(pictures, rows)` to the PNG file `path`, atomically
    (a temporary name in the same folder, then a rename).

    Returns:
        The path written, a Path.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--attention: {path} must be a .png file")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--attention: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        attention_figure(pictures, rows).savefig(tmp, format="png", dpi=80)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
