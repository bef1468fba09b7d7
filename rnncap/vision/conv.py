"""The convolutions of a mobile CNN, forward only, on channels-last float32 arrays.

Everything here works on NHWC arrays (N images, H rows, W columns, C channels), where a
pixel's channels are contiguous: a 1x1 convolution is then one matrix product of an
(N*H*W, C_in) matrix with a (C_in, C_out) weight, and a depthwise convolution is k*k
multiply-adds of whole shifted views of the input with a per-channel weight vector, each
a vectorised NumPy operation over the output.

"Same" padding is TensorFlow's: the output has ceil(H / stride) rows, and the padding the
kernel needs is split with the extra row at the bottom (and the extra column at the right).
For a stride-2, 3x3 convolution of an even-sized input that is no row above and one below,
which is not what a symmetric ``padding=1`` would do; weights trained in TensorFlow expect it.

This module knows arrays and shapes; not weights files, networks or images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["same_padding", "pad_same", "conv2d_same", "pointwise", "split_phases",
           "depthwise_conv_same", "depthwise_phases", "relu6_"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TensorFlow "same" padding along one axis.

    Returns:
        (output size ceil(size / stride), padding before, padding after).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def pad_same(x: np.ndarray, kernel: int, stride: int) -> tuple[np.ndarray, int, int]:
    """Zero-pad an NHWC array for a "same" convolution.

    Args:
        x: (N, H, W, C).

    Returns:
        (padded (N, H + pads, W + pads, C), output rows Ho, output columns Wo).
    """
    N, H, W, C = x.shape
    Ho, top, bottom = same_padding(H, kernel, stride)
    Wo, left, right = same_padding(W, kernel, stride)
    if top == bottom == left == right == 0:
        return x, Ho, Wo
    xp = np.zeros((N, H + top + bottom, W + left + right, C), dtype=x.dtype)
    xp[:, top:top + H, left:left + W] = x
    return xp, Ho, Wo


def relu6_(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6), in place; returns x."""
    return np.clip(x, 0, 6, out=x)


def pointwise(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1x1 convolution: x (N, H, W, C_in), w (C_in, C_out), b (C_out,) -> (N, H, W, C_out)."""
    N, H, W, C = x.shape
    out = x.reshape(N * H * W, C) @ w  # (N*H*W, C_out)
    out += b
    return out.reshape(N, H, W, -1)


def conv2d_same(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """A full k x k convolution with "same" padding, as one matrix product (im2col).

    Used for the stem, whose input has 3 channels: the patch matrix is only k*k*3 wide.

    Args:
        x: (N, H, W, C_in).
        w: (k, k, C_in, C_out).
        b: (C_out,).

    Returns:
        (N, ceil(H / stride), ceil(W / stride), C_out).
    """
    k = w.shape[0]
    xp, Ho, Wo = pad_same(x, k, stride)
    N, C = x.shape[0], x.shape[3]
    cols = np.empty((N, Ho, Wo, k, k, C), dtype=x.dtype)  # (N, Ho, Wo, k, k, C_in)
    for i in range(k):
        for j in range(k):
            cols[:, :, :, i, j] = xp[:, i:i + stride * (Ho - 1) + 1:stride,
                                     j:j + stride * (Wo - 1) + 1:stride]
    out = cols.reshape(N * Ho * Wo, k * k * C) @ w.reshape(k * k * C, -1)  # (N*Ho*Wo, C_out)
    out += b
    return out.reshape(N, Ho, Wo, -1)


def split_phases(x: np.ndarray, stride: int) -> dict:
    """The s*s phases of x: phase (a, c) is x[:, a::s, c::s], each made contiguous.

    A stride-s convolution reads, for each filter tap, every s-th row and column of its
    input starting at some offset: exactly one phase, read at stride 1. For s = 1 the one
    phase is x itself (no copy).

    Args:
        x: (N, H, W, C).

    Returns:
        dict (a, c) -> (N, ceil((H - a) / s), ceil((W - c) / s), C).
    """
    if stride == 1:
        return {(0, 0): x}
    return {(a, c): np.ascontiguousarray(x[:, a::stride, c::stride])
            for a in range(stride) for c in range(stride)}


def depthwise_conv_same(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, *,
                        relu6_out: bool = False, band_bytes: int = 256 * 1024) -> np.ndarray:
    """Depthwise convolution (one k x k filter per channel) with "same" padding.

    Each output channel sees only its own input channel, so there is no matrix product to
    make: the output is the sum over the k*k filter taps of a shifted (for stride s, every
    s-th) view of the input times that tap's weight vector. See :func:`depthwise_phases`.

    Args:
        x: (N, H, W, C).
        w: (k, k, C).
        b: (C,).
        relu6_out: apply ReLU6 to the output (fused into the band loop).

    Returns:
        (N, ceil(H / stride), ceil(W / stride), C).
    """
    N, H, W, C = x.shape
    return depthwise_phases(split_phases(x, stride), (H, W), w, b, stride,
                            relu6_out=relu6_out, band_bytes=band_bytes)


def depthwise_phases(phases: dict, size: tuple, w: np.ndarray, b: np.ndarray, stride: int, *,
                     relu6_out: bool = False, band_bytes: int = 256 * 1024) -> np.ndarray:
    """Depthwise "same" convolution of an input given as its phases (:func:`split_phases`).

    Output pixel (y, x) of tap (i, j) reads input row s*y + i - top (top: the padding
    above), which is row y + (i - top) // s of phase (i - top) mod s; rows that fall in the
    padding are zeros and contribute nothing, so each tap just skips them: it adds its
    product only over the output rows and columns whose input is inside the image. No
    padded copy of the input is ever made. What makes these k*k NumPy passes fast:

    - every tap reads its phase at stride 1, a contiguous run of pixels (a network can
      make the phases of a wide layer cheaply by splitting its narrow input before the
      1x1 convolution that widens it, since a 1x1 convolution commutes with subsampling);
    - the weight vector of each tap is tiled along the row (Wo, C), so that NumPy sees one
      long contiguous inner loop per output row instead of one of length C;
    - the output is summed in bands of rows of about ``band_bytes``, which stay in the CPU's
      cache during their k*k passes.

    Args:
        phases: dict (a, c) -> phase (N, ceil((H - a) / s), ceil((W - c) / s), C).
        size: (H, W) of the input the phases come from.
        w: (k, k, C).
        b: (C,).
        stride: s.
        relu6_out: apply ReLU6 to the output.

    Returns:
        (N, ceil(H / s), ceil(W / s), C).
    """
    k, s = w.shape[0], stride
    H, W = size
    first = phases[(0, 0)]
    N, C, dtype = first.shape[0], first.shape[3], first.dtype
    Ho, top, _ = same_padding(H, k, s)
    Wo, left, _ = same_padding(W, k, s)
    taps = []  # (phase, row shift, col shift, valid output rows [y0, y1), cols [x0, x1), i, j)
    for i in range(k):
        a, di = (i - top) % s, (i - top) // s
        rows = phases[(a, 0)].shape[1]
        y0, y1 = max(0, -di), min(Ho, rows - di)
        for j in range(k):
            c, dj = (j - left) % s, (j - left) // s
            cols = phases[(a, c)].shape[2]
            x0, x1 = max(0, -dj), min(Wo, cols - dj)
            if y1 > y0 and x1 > x0:
                taps.append((phases[(a, c)], di, dj, y0, y1, x0, x1, i, j))
    wt = np.ascontiguousarray(np.broadcast_to(w[:, :, None, :], (k, k, Wo, C)))  # (k, k, Wo, C)
    bt = np.ascontiguousarray(np.broadcast_to(b, (Wo, C)))
    out = np.empty((N, Ho, Wo, C), dtype=dtype)
    R = max(1, band_bytes // (N * Wo * C * first.itemsize))  # output rows per band
    tmp = np.empty((N, min(R, Ho), Wo, C), dtype=dtype)
    for r0 in range(0, Ho, R):
        r1 = min(Ho, r0 + R)
        o = out[:, r0:r1]  # (N, rows, Wo, C)
        o[...] = bt
        for ph, di, dj, y0, y1, x0, x1, i, j in taps:
            ya, yb = max(y0, r0), min(y1, r1)
            if yb <= ya:
                continue
            t = tmp[:, :yb - ya, :x1 - x0]
            np.multiply(ph[:, ya + di:yb + di, x0 + dj:x1 + dj], wt[i, j, :x1 - x0], out=t)
            o[:, ya - r0:yb - r0, x0:x1] += t
        if relu6_out:
            np.clip(o, 0, 6, out=o)
    return out
