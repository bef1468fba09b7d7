"""Pixels -> the input a pretrained network expects: centre crop, resize, scale.

ImageNet networks are evaluated on a centre crop: the largest centred square whose side is
``crop_fraction`` (0.875 = 224/256) of the image's shorter side is cut out and resized to
``size`` x ``size`` (bicubic), which is the "resize the shorter side to 256, keep the middle
224" recipe done in one resampling step, as EfficientNet's TensorFlow evaluation code
does. The uint8 values are then mapped to floats as ``(x - mean) / std`` per channel.

A :class:`Preprocessing` is a small frozen record, stored with every features file and
checkpoint made with it, so the same recipe is applied to a new photo later.

This module knows pixel arrays and Pillow's resampling; not files (:mod:`rnncap.vision.image`)
or networks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Preprocessing", "crop_resize", "prepare"]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How pixels become network input.

    Attributes:
        size: the side of the square input.
        crop_fraction: the centre crop's side as a fraction of the shorter image side.
        mean, std: per-channel (R, G, B) affine map of the 0..255 values.
        resample: Pillow's filter name for the resize.
    """

    size: int = 224
    crop_fraction: float = 0.875
    mean: tuple = (127.0, 127.0, 127.0)
    std: tuple = (128.0, 128.0, 128.0)
    resample: str = "bicubic"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "preprocessing") -> "Preprocessing":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{source}: unknown preprocessing fields {unknown}")
        try:
            p = cls(**{**d, "mean": tuple(float(v) for v in d.get("mean", cls.mean)),
                       "std": tuple(float(v) for v in d.get("std", cls.std))})
            ok = (int(p.size) == p.size >= 1 and 0 < float(p.crop_fraction) <= 1
                  and len(p.mean) == len(p.std) == 3 and all(s > 0 for s in p.std)
                  and p.resample in ("bicubic", "bilinear", "lanczos", "nearest"))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{source}: malformed preprocessing {d!r}")
        return dataclasses.replace(p, size=int(p.size), crop_fraction=float(p.crop_fraction))

    def scale(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> float32 (N, S, S, 3), ``(x - mean) / std``."""
        mean = np.asarray(self.mean, np.float32)
        inv = np.float32(1) / np.asarray(self.std, np.float32)
        return (pixels.astype(np.float32) - mean) * inv


def crop_resize(im, p: Preprocessing) -> np.ndarray:
    """A Pillow RGB image -> uint8 (size, size, 3): the centre crop, resized."""
    from PIL import Image

    w, h = im.size
    side = max(1, int(p.crop_fraction * min(w, h)))
    left, top = (w - side + 1) // 2, (h - side + 1) // 2
    filt = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "lanczos": Image.Resampling.LANCZOS, "nearest": Image.Resampling.NEAREST}[p.resample]
    out = im.resize((p.size, p.size), filt, box=(left, top, left + side, top + side))
    return np.asarray(out, dtype=np.uint8)


def prepare(images, p: Preprocessing) -> np.ndarray:
    """Decoded images -> uint8 (N, size, size, 3) crops ready for :meth:`Preprocessing.scale`.

    Args:
        images: uint8 (N, H, W, 3), or a list of uint8 (H_i, W_i, 3) arrays of any sizes
            (also 1 or 4 channels: grey is repeated, alpha composited over white).

    Raises:
        ValueError: naming the image index and the shape or dtype expected.
    """
    from PIL import Image

    out = np.empty((len(images), p.size, p.size, 3), dtype=np.uint8)
    for i, a in enumerate(images):
        a = np.asarray(a)
        if a.ndim == 2:
            a = a[..., None]
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] not in (1, 3, 4) or 0 in a.shape:
            raise ValueError(f"image {i}: expected uint8 (H, W, 3) (or 1/4 channels), "
                             f"got {a.dtype} {a.shape}")
        if a.shape[-1] == 1:
            a = np.repeat(a, 3, axis=-1)
        elif a.shape[-1] == 4:
            alpha = a[..., 3:].astype(np.float32) / 255
            a = (a[..., :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
        if a.shape[:2] == (p.size, p.size) and p.crop_fraction == 1:
            out[i] = a
        else:
            out[i] = crop_resize(Image.fromarray(np.ascontiguousarray(a)), p)
    return out
