"""The convolutions (rnncap.vision.conv) against direct loops written from the definitions."""

import numpy as np
import pytest

from rnncap.vision.conv import (conv2d_same, depthwise_conv_same, pad_same, pointwise,
                                relu6_, same_padding)


def test_same_padding_matches_tensorflow_by_hand():
    # out = ceil(size / stride); total = (out - 1) * stride + k - size; extra row at the end
    assert same_padding(224, 3, 2) == (112, 0, 1)
    assert same_padding(7, 3, 1) == (7, 1, 1)
    assert same_padding(14, 5, 2) == (7, 1, 2)
    assert same_padding(7, 5, 2) == (4, 2, 2)
    assert same_padding(5, 1, 1) == (5, 0, 0)


def naive_conv(x, w, b, stride, groups_depthwise=False):
    """Direct loops over output pixels: TF 'same' padding written out from its definition."""
    N, H, W, C = x.shape
    k = w.shape[0]
    Ho, Wo = -(-H // stride), -(-W // stride)
    ph = max((Ho - 1) * stride + k - H, 0)
    pw = max((Wo - 1) * stride + k - W, 0)
    top, left = ph // 2, pw // 2
    C_out = C if groups_depthwise else w.shape[3]
    out = np.zeros((N, Ho, Wo, C_out))
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for di in range(k):
                    for dj in range(k):
                        r, c = i * stride + di - top, j * stride + dj - left
                        if 0 <= r < H and 0 <= c < W:
                            if groups_depthwise:
                                out[n, i, j] += x[n, r, c] * w[di, dj]
                            else:
                                out[n, i, j] += x[n, r, c] @ w[di, dj]
    return out + b


@pytest.mark.parametrize("H,W,k,stride", [(7, 7, 3, 1), (8, 6, 3, 2), (9, 7, 5, 2), (5, 5, 5, 1),
                                          (2, 3, 5, 1), (3, 2, 5, 2), (10, 10, 3, 3)])
def test_depthwise_equals_loops(H, W, k, stride):
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.standard_normal((2, H, W, 4)).astype(np.float32)
    w = rng.standard_normal((k, k, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    expect = naive_conv(x.astype(np.float64), w, b, stride, True)
    for band_bytes in (1 << 20, 200):  # one band, and bands of one or two output rows
        out = depthwise_conv_same(x, w, b, stride, band_bytes=band_bytes)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)
    fused = depthwise_conv_same(x, w, b, stride, relu6_out=True, band_bytes=200)
    np.testing.assert_allclose(fused, np.clip(expect, 0, 6), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("H,W,stride", [(8, 8, 2), (7, 9, 2), (6, 6, 1)])
def test_full_convolution_equals_loops(H, W, stride):
    rng = np.random.default_rng(H + W)
    x = rng.standard_normal((2, H, W, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    out = conv2d_same(x, w, b, stride)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, naive_conv(x.astype(np.float64), w, b, stride), rtol=1e-5, atol=1e-5)


def test_pointwise_is_a_per_pixel_matrix_product():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    np.testing.assert_allclose(pointwise(x, w, b), np.einsum("nhwc,cd->nhwd", x, w) + b, rtol=1e-5, atol=1e-5)


def test_pad_same_and_relu6():
    x = np.ones((1, 4, 4, 1), np.float32)
    xp, Ho, Wo = pad_same(x, 3, 2)
    assert (Ho, Wo) == (2, 2) and xp.shape == (1, 5, 5, 1)
    assert xp[0, :4, :4].all() and not xp[0, 4].any() and not xp[0, :, 4].any()
    np.testing.assert_array_equal(relu6_(np.array([-1, 0, 3, 6, 9], np.float32)), [0, 0, 3, 6, 6])
