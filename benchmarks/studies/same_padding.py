"""How much TensorFlow's "same" padding matters to EfficientNet-Lite0's features (docs/backbone.md).

Runs the pretrained network on the four sample photos (scikit-image's coffee, chelsea,
motorcycle_right, matplotlib's grace_hopper) twice: with TensorFlow's split of the padding
(the extra row and column after the image, what the weights were trained with) and with the
split reversed (the extra one before, which for every stride-2 layer here equals PyTorch's
symmetric ``padding=(k - 1) // 2``). Prints the relative L2 difference of each photo's pooled
features and the top-3 classes both ways.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/studies/same_padding.py
"""

from __future__ import annotations

import os

import numpy as np

import rnncap.vision.conv as conv
from rnncap.vision.backbone import EfficientNetExtractor
from rnncap.vision.imagenet import top_k


def photos():
    import matplotlib
    import skimage

    sk = os.path.join(os.path.dirname(skimage.__file__), "data")
    mpl = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    return [os.path.join(sk, f"{n}.png") for n in ("coffee", "chelsea", "motorcycle_right")] + [
        os.path.join(mpl, "grace_hopper.jpg")]


def main():
    ex = EfficientNetExtractor()
    crops = np.stack([ex.read_image(p) for p in photos()])
    tf = ex.features_prepared(crops, ("pooled", "logits"))
    original = conv.same_padding

    def reversed_split(size, kernel, stride):
        out, before, after = original(size, kernel, stride)
        return out, after, before

    conv.same_padding = reversed_split
    try:
        other = ex.features_prepared(crops, ("pooled", "logits"))
    finally:
        conv.same_padding = original
    rel = np.linalg.norm(tf["pooled"] - other["pooled"], axis=1) / np.linalg.norm(tf["pooled"], axis=1)
    for path, r, a, b in zip(photos(), rel, top_k(tf["logits"], 3), top_k(other["logits"], 3)):
        fmt = lambda top: ", ".join(f"{n.split(',')[0]} {p:.2f}" for n, p in top)  # noqa: E731
        print(f"{os.path.basename(path):22s} pooled rel. L2 diff {r:.2f} | TF split: {fmt(a)} | "
              f"reversed: {fmt(b)}")


if __name__ == "__main__":
    main()
