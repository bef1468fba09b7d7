"""Assemble the CS231n data dictionary from per-image captions and features.

Every raw-text format (Karpathy's ``dataset.json``, COCO's ``captions_*.json``,
the built-in shapes dataset) comes down to, per split, a list of images, each
with its raw captions, and one feature row per image. This module turns that
into the dictionary every rnncap loader returns, for each split s present::

    s_captions     int32 (M, T)   <START> tokens... <END> <NULL>..., T = max_length + 2
    s_image_idxs   int32 (M,)     row of s_features for each caption
    s_features     float32 (I, D), or (I, L, D) for grid features (attention models)
    s_image_files  list of I str (or None where unknown)
    s_references   list of I lists of raw caption strings (for metrics)
    s_truth        list of I ground-truth object lists (shapes only)
    idx_to_word, word_to_idx, vocab

The vocabulary is built from the training split only, so validation and test
words the model never saw become <UNK> in the arrays (the references keep the
raw text).

This module does NOT know file formats, images or models.
"""

import numpy as np

from rnncap.data.vocab import Vocabulary

SPLITS = ("train", "val", "test")


def nonfinite_rows(features):
    """Indices of the rows of features (I, D) that hold a NaN or an infinity.

    Two reductions and no (I, D) temporary when every value is finite (the usual case:
    max and min propagate NaN and reach +-inf); the rows are only looked for otherwise.
    Loaders use it to name the file and row of bad features at load time, instead of
    a training step failing later on a batch.
    """
    features = np.asarray(features)
    if features.size == 0 or (np.isfinite(features.max()) and np.isfinite(features.min())):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(~np.isfinite(features.reshape(features.shape[0], -1)).all(axis=1))


def check_feature_array(a, path, what="features", grid_ok=False):
    """Refuse a features array that is not 2-D (I, D) of real numbers (ValueError naming `path`).

    With `grid_ok`, 3-D grids (I, L, D) pass too. Complex numbers would lose their imaginary
    part in the float32 cast (NumPy only warns), booleans, strings, dates and records are no
    features at all.
    """
    if not (a.ndim == 2 or (grid_ok and a.ndim == 3)) or 0 in a.shape[1:]:
        shapes = "2-D (I, D) or a 3-D grid (I, L, D)" if grid_ok else "2-D (I, D)"
        raise ValueError(f"{path}: {what} must be {shapes} with D >= 1, got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{path}: {what} must be real numbers (float or int), got dtype {a.dtype}")
    return a


def build_data(images, features, *, level="word", min_count=1, max_size=None, max_length=None,
               max_train=None, seed=0, source="data"):
    """Build the data dictionary.

    Args:
        images: dict split -> list of I dicts with "captions" (list of raw str),
            optional "file" (str) and "truth" (object list).
        features: dict split -> float array (I, D), one row per image, same order.
        level, min_count, max_size: vocabulary options (see Vocabulary.build).
        max_length: tokens between <START> and <END> (Vocabulary.encode).
        max_train: keep this many training captions, sampled without replacement.
        seed: int or np.random.Generator for that sample.
        source: name used in error messages (the file the data came from).

    Returns:
        the data dictionary (see module docstring).
    """
    if not images.get("train"):
        raise ValueError(f"{source}: no training images; the vocabulary is built from the "
                         "training split")
    train_text = [c for im in images["train"] for c in im["captions"]]
    vocab = Vocabulary.build(train_text, level=level, min_count=min_count, max_size=max_size)
    data = {"idx_to_word": vocab.idx_to_word, "word_to_idx": vocab.word_to_idx, "vocab": vocab}
    dims = set()
    for split in SPLITS:
        if split not in images:
            continue
        ims = images[split]
        feats = np.asarray(features[split])
        if feats.ndim not in (2, 3) or feats.shape[0] != len(ims):
            raise ValueError(f"{source}: split '{split}' has {len(ims)} images but its features "
                             f"have shape {feats.shape}; expected ({len(ims)}, D) or a grid "
                             f"({len(ims)}, L, D)")
        dims.add(feats.shape[1:])
        raws = [c for im in ims for c in im["captions"]]
        idxs = np.repeat(np.arange(len(ims), dtype=np.int32),
                         [len(im["captions"]) for im in ims])  # (M,)
        data[f"{split}_captions"] = vocab.encode(raws, max_length)
        data[f"{split}_image_idxs"] = idxs
        data[f"{split}_features"] = feats.astype(np.float32, copy=False)
        data[f"{split}_image_files"] = [im.get("file") for im in ims]
        data[f"{split}_references"] = [list(im["captions"]) for im in ims]
        if ims and all("truth" in im for im in ims):
            data[f"{split}_truth"] = [im["truth"] for im in ims]
    if len(dims) > 1:
        raise ValueError(f"{source}: splits have features of different shapes {sorted(dims)}")
    if max_train is not None:
        subsample_train(data, max_train, seed)
    return data


def subsample_train(data, max_train, seed=0):
    """Keep ``max_train`` training captions (without replacement), in place."""
    if max_train < 1:
        raise ValueError(f"max_train must be positive, got {max_train}")
    n = data["train_captions"].shape[0]
    if max_train < n:
        keep = np.sort(np.random.default_rng(seed).choice(n, size=max_train, replace=False))
        data["train_captions"] = data["train_captions"][keep]
        data["train_image_idxs"] = data["train_image_idxs"][keep]
    return data
