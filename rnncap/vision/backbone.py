"""The pretrained EfficientNet-Lite0 as a feature extractor of rnncap's registry.

:class:`EfficientNetExtractor` has the interface of :mod:`rnncap.data.features`'s
extractors (``name``, ``dim``, ``extract(images)``, ``save(folder)``,
``from_saved(spec, arrays)``), so a captioner trained on its features carries it in its
checkpoint and ``rnncap caption CHECKPOINT photo.jpg`` runs it on a new photo. What it saves
is only a description: the network's name, the output kind, the preprocessing and the
weights file's SHA-256; the weights themselves stay in their package and are checked
against that hash when the checkpoint is loaded, so a checkpoint cannot silently run with
other weights.

Two kinds of output:

- ``"pooled"``: the 1280-d average of the last feature map, one vector per image (what a
  CS231n-style captioner takes in place of VGG fc7 features);
- ``"grid"``: the 7 x 7 x 1280 feature map itself, one 1280-d vector per image region
  (what an attention model looks at).

``features(images, outputs)`` returns any of pooled, grid and ImageNet logits from one pass.

:func:`make_backbone` turns the names users type (``efficientnet-lite0``, ``onnx:PATH``,
``randconv``) into extractors.

This module knows the extractor interface and the backbone's options; not datasets,
features files or captions.
"""

from __future__ import annotations

import numpy as np

from rnncap.data.features import (SPEC_FILE, PretrainedExtractor, _save_folder, make_extractor,
                                  register_extractor, spec_error)
from rnncap.vision.efficientnet import WEIGHTS_PACKAGE, WEIGHTS_SHA256, EfficientNetLite0
from rnncap.vision.image import open_rgb
from rnncap.vision.preprocess import Preprocessing, crop_resize, prepare

__all__ = ["EfficientNetExtractor", "make_backbone", "OUTPUT_KINDS"]

OUTPUT_KINDS = ("pooled", "grid")


@register_extractor
class EfficientNetExtractor(PretrainedExtractor):
    """EfficientNet-Lite0 ImageNet features (see the module docstring).

    Args:
        output: "pooled" -> ``extract`` gives (N, 1280); "grid" -> (N, 7, 7, 1280).
        preprocessing: a dict of :class:`Preprocessing` fields; None: the weights' own recipe
            (centre crop 0.875, bicubic to 224, (x - 127) / 128).
        weights_sha256: the weights file's expected hash (the released file's by default).
        chunk: images through the network at once.

    Attributes:
        dim: 1280, the size of each feature vector (pooled, or per grid cell).
        feature_shape: the shape of one image's features: (1280,) or (7, 7, 1280).
        image_size: the side of the network's square input.
    """

    name = "efficientnet-lite0"
    fitted = True  # nothing to fit: the weights are pretrained

    def __init__(self, *, output="pooled", preprocessing=None, weights_sha256=WEIGHTS_SHA256,
                 chunk=2):
        if output not in OUTPUT_KINDS:
            raise ValueError(f"backbone output must be one of {OUTPUT_KINDS}, got {output!r}")
        self.output = output
        self.preprocessing = (Preprocessing() if preprocessing is None
                              else Preprocessing.from_dict(dict(preprocessing)))
        if weights_sha256 != WEIGHTS_SHA256:
            raise ValueError(f"these features were made with other EfficientNet-Lite0 weights "
                             f"(SHA-256 {weights_sha256}); this rnncap uses the {WEIGHTS_PACKAGE} "
                             f"release {WEIGHTS_SHA256}")
        self.net = EfficientNetLite0(chunk=chunk)
        self.image_size = self.preprocessing.size
        self.dim = 1280
        cells = -(-self.image_size // 32)
        self.feature_shape = (1280,) if output == "pooled" else (cells, cells, 1280)
        self.grid_shape = (cells * cells, 1280)  # what an attention model takes: (L, C)
        self.raw_dim = self.dim

    # ------------------------------------------------------------------ pixels

    def read_image(self, path) -> np.ndarray:
        """An image file -> uint8 (size, size, 3), cropped and resized for the network."""
        return crop_resize(open_rgb(path), self.preprocessing)

    def features(self, images, outputs=("pooled",), threads=None) -> dict:
        """Any of "pooled" (N, 1280), "grid" (N, 7, 7, 1280), "logits" (N, 1000), in one pass.

        Args:
            images: uint8 (N, H, W, 3) or a list of uint8 (H_i, W_i, 3) of any sizes.
            threads: chunks computed side by side; None: rnncap.parallel.get_threads().
        """
        return self.features_prepared(prepare(images, self.preprocessing), outputs, threads)

    def features_prepared(self, pixels, outputs=("pooled",), threads=None) -> dict:
        """:meth:`features` of crops already made by :meth:`read_image`: uint8 (N, S, S, 3)."""
        pixels = np.asarray(pixels)
        S = self.preprocessing.size
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (S, S, 3):
            raise ValueError(f"prepared images must be uint8 (N, {S}, {S}, 3), "
                             f"got {pixels.dtype} {pixels.shape}")
        return self.net.forward(self.preprocessing.scale(pixels), outputs, threads=threads)

    def extract(self, images) -> np.ndarray:
        """uint8 images (N, H, W, 3) of any size -> float32 (N, *feature_shape)."""
        return self.features(images, (self.output,))[self.output]

    def extract_prepared(self, pixels) -> np.ndarray:
        """:meth:`extract` of crops made by :meth:`read_image` (what ``extract_files`` calls)."""
        return self.features_prepared(pixels, (self.output,))[self.output]

    def grid(self, pixels) -> np.ndarray:
        """The grid of crops made by :meth:`read_image` as attention models take it:
        float32 (N, L, 1280), the G x G cells in reading order (``extract_files(grid=True)``)."""
        g = self.features_prepared(pixels, ("grid",))["grid"]  # (N, G, G, 1280)
        return g.reshape(len(g), -1, g.shape[-1])

    # ------------------------------------------------------------------ storage

    def spec(self) -> dict:
        """What identifies these features: enough to make the same extractor again."""
        return {"name": self.name, "output": self.output, "dim": self.dim,
                "feature_shape": list(self.feature_shape),
                "preprocessing": self.preprocessing.to_dict(),
                "weights": {"package": WEIGHTS_PACKAGE, "sha256": WEIGHTS_SHA256}}

    def save(self, folder):
        """Write the spec (no weights: they stay in their package) into ``folder`` atomically."""
        _save_folder(folder, self.spec(), {})

    @classmethod
    def from_saved(cls, spec, arrays=None, source="extractor"):
        try:
            weights, preprocessing = spec["weights"], spec["preprocessing"]
            if not isinstance(weights, dict) or not isinstance(preprocessing, dict):
                raise TypeError("weights and preprocessing must be JSON objects")
            if "sha256" not in weights:
                raise KeyError("weights.sha256")
            return cls(output=spec["output"], preprocessing=preprocessing,
                       weights_sha256=weights["sha256"])
        except (KeyError, TypeError) as e:
            raise spec_error(source, "saved backbone", e, spec) from None
        except ValueError as e:  # a value the backbone refuses: the message says which
            raise ValueError(f"{source}/{SPEC_FILE}: {e}") from None


def make_backbone(name: str, *, output: str = "pooled", **options):
    """An extractor from the name a user types.

    Args:
        name: "efficientnet-lite0", "onnx:PATH" (an ONNX image model), or any registered
            extractor name such as "randconv" (which must then be fitted).
        output: "pooled" or "grid" for the pretrained backbones.

    Raises:
        ValueError: an unknown name, naming the known ones.
    """
    if name.startswith("onnx:"):
        from rnncap.vision.onnx_backbone import OnnxExtractor

        return OnnxExtractor(path=name[len("onnx:"):], output=output, **options)
    if name == EfficientNetExtractor.name:
        return EfficientNetExtractor(output=output, **options)
    return make_extractor(name, **options)
