"""A user's own ONNX image model as a feature extractor (``onnx:PATH``), run by ONNX Runtime.

Any network exported to ONNX (from PyTorch, TensorFlow, ...) that takes a batch of images
and returns either a vector per image (N, D) or a feature map per image can be a
backbone: ``rnncap features --extractor onnx:model.onnx`` and, through the checkpoint,
``rnncap caption``. What is saved is a description: the model file's absolute path and
SHA-256, the input layout, the output kind and the preprocessing; the model file is not
copied, and a checkpoint refuses to run if the file has changed since.

Assumptions, each overridable:

- the first graph input takes float32 images, channels first (N, 3, H, W) unless the
  input's static shape says channels last (N, H, W, 3) or ``layout="nhwc"``;
- the input size is the input's static H (224 when it is dynamic);
- the scaling is torchvision's ImageNet normalisation (mean 0.485/0.456/0.406, std
  0.229/0.224/0.225, times 255), as most exported classifiers expect; pass
  ``preprocessing`` for another;
- the first graph output is the features: (N, D) is used as is; a 4-d feature map is
  averaged over its positions for ``"pooled"`` or returned as (N, h, w, C) for ``"grid"``
  (``rnncap features --grid`` stores both from one run; an attention model reads the map's
  h x w positions as its L grid cells).

ONNX Runtime is an optional dependency: ``pip install 'rnncap[onnx]'``.

This module knows ONNX Runtime sessions and the extractor interface; not the graph's
contents, datasets or captions.
"""

from __future__ import annotations

import os

import numpy as np

from rnncap.data.features import (SPEC_FILE, PretrainedExtractor, _save_folder, register_extractor,
                                  spec_error)
from rnncap.vision.image import open_rgb
from rnncap.vision.preprocess import Preprocessing, crop_resize, prepare
from rnncap.atomic import sha256_file

__all__ = ["OnnxExtractor"]

IMAGENET_TORCHVISION = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ValueError("ONNX backbones need ONNX Runtime: pip install 'rnncap[onnx]' "
                         "(or pip install onnxruntime)") from None
    return onnxruntime



@register_extractor
class OnnxExtractor(PretrainedExtractor):
    """An ONNX image model as an extractor (see the module docstring).

    Args:
        path: the .onnx file.
        output: "pooled" (N, D) or "grid" (N, h, w, C).
        preprocessing: dict of :class:`Preprocessing` fields; None: see the module docstring.
        layout: "nchw" or "nhwc"; None: from the input's static shape, else "nchw".
        sha256: the file's expected hash (set when loading a saved spec).
        threads: ONNX Runtime's intra-op threads; None: rnncap.parallel.get_threads().
    """

    name = "onnx"
    fitted = True

    def __init__(self, *, path, output="pooled", preprocessing=None, layout=None, sha256=None,
                 threads=None):
        from rnncap.parallel import get_threads

        ort = _ort()
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.sha256 = sha256_file(self.path)
        if sha256 is not None and sha256 != self.sha256:
            raise ValueError(f"{self.path} has changed since these features were made "
                             f"(SHA-256 {self.sha256}, expected {sha256})")
        if output not in ("pooled", "grid"):
            raise ValueError(f"backbone output must be one of ('pooled', 'grid'), got {output!r}")
        self.output = output
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or get_threads())
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: ONNX Runtime cannot load it ({e})") from None
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4 or inp.type != "tensor(float)":
            raise ValueError(f"{self.path}: input {inp.name!r} is {inp.type} {shape}; "
                             f"expected float images (N, 3, H, W) or (N, H, W, 3)")
        if layout is None:
            layout = "nhwc" if shape[3] == 3 and shape[1] != 3 else "nchw"
        if layout not in ("nchw", "nhwc"):
            raise ValueError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
        self.layout, self.input_name = layout, inp.name
        self.output_name = self.session.get_outputs()[0].name
        if preprocessing is None:
            side = shape[2] if layout == "nchw" else shape[1]
            preprocessing = {"size": side if isinstance(side, int) and side > 0 else 224,
                             **IMAGENET_TORCHVISION}
        self.preprocessing = Preprocessing.from_dict(dict(preprocessing), f"{self.path} preprocessing")
        self.image_size = self.preprocessing.size
        probe = self._run(np.zeros((1, self.image_size, self.image_size, 3), np.uint8))
        self._map_shape = probe.shape[1:] if probe.ndim == 4 else None  # (h, w, C) of a feature map
        if probe.ndim == 2:
            if output == "grid":
                raise ValueError(self._no_grid(probe.shape))
            self.feature_shape = probe.shape[1:]
        elif probe.ndim == 4:
            self.feature_shape = (probe.shape[3],) if output == "pooled" else probe.shape[1:]
        else:
            raise ValueError(f"{self.path}: output {self.output_name!r} has shape {probe.shape}; "
                             f"expected (N, D) or a feature map")
        self.dim = int(self.feature_shape[-1])
        self.raw_dim = self.dim

    def _run(self, pixels):
        """uint8 (N, S, S, 3) crops -> the model's output, a 4-d map made channels-last."""
        x = self.preprocessing.scale(pixels)  # (N, S, S, 3)
        if self.layout == "nchw":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        try:
            y = self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as e:
            raise ValueError(f"{self.path}: ONNX Runtime failed on input {x.shape} ({e})") from None
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 4 and self.layout == "nchw":
            y = y.transpose(0, 2, 3, 1)  # (N, h, w, C)
        return y

    def _no_grid(self, shape) -> str:
        return (f"{self.path}: output {self.output_name!r} is a vector per image {tuple(shape)}; "
                f"it has no grid")

    @property
    def grid_shape(self):
        """(L, C) of one image's grid as an attention model takes it: the h x w positions of
        the feature map in reading order; a ValueError for a model that gives vectors."""
        if self._map_shape is None:
            raise ValueError(self._no_grid((1, self.dim)))
        h, w, c = self._map_shape
        return (h * w, c)

    def features_prepared(self, pixels, outputs=("pooled",)) -> dict:
        """Any of "pooled" (N, C) and "grid" (N, h, w, C) of crops made by :meth:`read_image`,
        from one run of the model (what ``rnncap features --grid`` stores)."""
        pixels = np.asarray(pixels)
        S = self.image_size
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (S, S, 3):
            raise ValueError(f"prepared images must be uint8 (N, {S}, {S}, 3), got {pixels.dtype} {pixels.shape}")
        y = self._run(pixels)
        out = {}
        for kind in outputs:
            if kind == "pooled":
                out[kind] = np.ascontiguousarray(y if y.ndim == 2 else y.mean(axis=(1, 2), dtype=np.float32))
            elif kind == "grid":
                if y.ndim != 4:
                    raise ValueError(self._no_grid(y.shape))
                out[kind] = np.ascontiguousarray(y)
            else:
                raise ValueError(f"an ONNX backbone's outputs are 'pooled' and 'grid', got {kind!r}")
        return out

    def features(self, images, outputs=("pooled",)) -> dict:
        """:meth:`features_prepared` of uint8 images (N, H, W, 3) of any size."""
        return self.features_prepared(prepare(images, self.preprocessing), outputs)

    def grid(self, pixels) -> np.ndarray:
        """Crops made by :meth:`read_image` -> float32 grids (N, L, C), positions in reading order
        (what ``extract_files(grid=True)`` runs for an attention model)."""
        g = self.features_prepared(pixels, ("grid",))["grid"]  # (N, h, w, C)
        return g.reshape(len(g), -1, g.shape[-1])

    def read_image(self, path) -> np.ndarray:
        return crop_resize(open_rgb(path), self.preprocessing)

    def extract_prepared(self, pixels) -> np.ndarray:
        pixels = np.asarray(pixels)
        S = self.image_size
        if pixels.dtype != np.uint8 or pixels.shape[1:] != (S, S, 3):
            raise ValueError(f"prepared images must be uint8 (N, {S}, {S}, 3), got {pixels.dtype} {pixels.shape}")
        y = self._run(pixels)
        if y.ndim == 4 and self.output == "pooled":
            y = y.mean(axis=(1, 2), dtype=np.float32)  # (N, C)
        return np.ascontiguousarray(y, dtype=np.float32)

    def extract(self, images) -> np.ndarray:
        """uint8 images (N, H, W, 3) of any size -> float32 (N, *feature_shape)."""
        return self.extract_prepared(prepare(images, self.preprocessing))

    def spec(self) -> dict:
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "output": self.output,
                "layout": self.layout, "dim": self.dim, "feature_shape": list(self.feature_shape),
                "preprocessing": self.preprocessing.to_dict()}

    def save(self, folder):
        """Write the spec (the model file is referred to by path and hash, not copied)."""
        _save_folder(folder, self.spec(), {})

    @classmethod
    def from_saved(cls, spec, arrays=None, source="extractor"):
        try:
            if not isinstance(spec["preprocessing"], dict):
                raise TypeError("preprocessing must be a JSON object")
            return cls(path=spec["path"], output=spec["output"], layout=spec["layout"],
                       preprocessing=spec["preprocessing"], sha256=spec["sha256"])
        except (KeyError, TypeError) as e:
            raise spec_error(source, "saved ONNX backbone", e, spec) from None
        except ValueError as e:  # a value the backbone refuses: the message says which
            raise ValueError(f"{source}/{SPEC_FILE}: {e}") from None
