"""Image files -> 8-bit RGB pixels, or a one-line error that names the file.

Every image rnncap reads from disk (the built-in extractor's, the pretrained backbone's,
an ONNX model's) comes through :func:`open_rgb`, which decides what a file means:

- orientation: a camera's EXIF orientation tag is applied (``ImageOps.exif_transpose``),
  so a portrait photo stored sideways is seen upright;
- colour: greyscale and bilevel are repeated over three channels; CMYK and YCbCr are
  converted by Pillow; palette images are expanded; transparency (RGBA, LA, a palette's
  transparent index) is composited over white, the way a browser shows it on a page;
- depth: 16-bit images are scaled down by 257 (65535 -> 255), keeping their brightness;
  32-bit float images have no standard range and are stretched from their minimum to
  their maximum;
- integrity: an empty file, a file that is not an image, a truncated image, a PNG whose
  chunk checksums do not match its bytes (``Image.verify``), and an image with more than
  ``max_pixels`` pixels (a "decompression bomb": a small file that decodes to gigabytes)
  are refused before or while decoding, with :class:`ImageError`.

This module knows image files and Pillow; not sizes a network wants, features or captions.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

__all__ = ["ImageError", "MAX_PIXELS", "open_rgb", "read_rgb"]

# 64 megapixels: above any camera's photo a user is likely to caption (a 50 MP frame is
# 8192 x 6144), and at 3 bytes a pixel 192 MB decoded, which a laptop survives.
MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image file cannot be used; the message names it and says why."""


def _to_rgb(im):
    """A loaded Pillow image of any mode -> an RGB image (see the module docstring)."""
    from PIL import Image

    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
            or (mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im, dtype=np.float64)  # 16-bit values (mode I holds 16-bit PNGs too)
        if mode == "I" and (a.min() < 0 or a.max() > 65535):
            return _stretch(a)
        return Image.fromarray(np.round(a / 257).astype(np.uint8)).convert("RGB")
    if mode == "F":
        return _stretch(np.asarray(im, dtype=np.float64))
    return im.convert("RGB")


def _stretch(a):
    from PIL import Image

    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.round(a).astype(np.uint8)).convert("RGB")


def open_rgb(path, max_pixels: int = MAX_PIXELS):
    """Read an image file as an upright RGB Pillow image.

    Args:
        path: the file.
        max_pixels: refuse images with more pixels than this (width x height).

    Returns:
        a loaded ``PIL.Image.Image`` in mode "RGB".

    Raises:
        FileNotFoundError: no such file.
        ImageError: empty, not an image, truncated, corrupt, or too large; the message names
            the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: empty file (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS and raises above twice that; both
            # are refusals here, whatever our own cap.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_size(path, im.size, max_pixels)
                if im.format == "PNG":
                    im.verify()  # chunk CRCs and structure; leaves `im` unusable, so reopen
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return _to_rgb(im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: refused as a decompression bomb ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({type(e).__name__}: {e})") from None


def _check_size(path, size, max_pixels):
    w, h = size
    if w * h > max_pixels:
        raise ImageError(f"{path}: {w} x {h} = {w * h} pixels is more than the limit of "
                         f"{max_pixels} (a decompression bomb?)")
    if w < 1 or h < 1:
        raise ImageError(f"{path}: image has no pixels ({w} x {h})")


def read_rgb(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3), upright; see :func:`open_rgb`."""
    return np.asarray(open_rgb(path, max_pixels), dtype=np.uint8)
