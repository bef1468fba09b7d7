"""Image files -> upright RGB, or one-line errors naming the file (rnncap.vision.image)."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from rnncap.data.features import load_image
from rnncap.vision.image import ImageError, open_rgb, read_rgb


def gradient(h=40, w=60):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 100)], -1).astype(np.uint8)


def test_rgb_png_round_trips_exactly(tmp_path):
    a = gradient()
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), a)


def test_greyscale_and_bilevel_are_repeated_over_channels(tmp_path):
    g = gradient()[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    Image.fromarray(g > 127).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), np.repeat(g[..., None], 3, -1))
    np.testing.assert_array_equal(read_rgb(tmp_path / "b.png")[..., 1], np.where(g > 127, 255, 0))


def test_sixteen_bit_is_scaled_by_257_not_stretched(tmp_path):
    # values 0..25700 (a dark 16-bit image) must stay dark: 25700 / 257 = 100
    g16 = (np.arange(40 * 60).reshape(40, 60) % 101 * 257).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "deep.png")
    out = read_rgb(tmp_path / "deep.png")
    np.testing.assert_array_equal(out[..., 2], g16 // 257)
    assert out.max() == 100


def test_rgba_and_palette_transparency_composite_over_white(tmp_path):
    a = gradient()
    alpha = np.zeros(a.shape[:2], np.uint8)
    alpha[:, 30:] = 255  # left half transparent, right half opaque
    Image.fromarray(np.dstack([a, alpha])).save(tmp_path / "t.png")
    out = read_rgb(tmp_path / "t.png")
    assert (out[:, :30] == 255).all()
    np.testing.assert_array_equal(out[:, 30:], a[:, 30:])
    pal = Image.fromarray(a).quantize(8)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    out = read_rgb(tmp_path / "p.png")
    index = np.asarray(pal)
    assert (out[index == 0] == 255).all() and out.shape == (40, 60, 3)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    a = gradient()
    Image.fromarray(a).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    out = read_rgb(tmp_path / "c.jpg")
    assert out.shape == (40, 60, 3)
    assert np.abs(out.astype(int) - a).mean() < 6  # JPEG loss only


def test_exif_orientation_is_applied(tmp_path):
    a = gradient(40, 60)  # landscape; stored as is, tagged "rotate 90 CW to display"
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_rgb(tmp_path / "r.jpg")
    assert out.shape == (60, 40, 3)  # shown upright: portrait
    expect = np.rot90(a, k=-1)  # 90 degrees clockwise
    assert np.abs(out.astype(int) - expect).mean() < 4


def test_zero_bytes_not_an_image_and_missing_are_refused_by_name(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageError, match=r"empty\.jpg: empty file"):
        open_rgb(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match=r"notes\.png: not an image"):
        open_rgb(tmp_path / "notes.png")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        open_rgb(tmp_path / "gone.png")


def test_truncated_files_are_refused_by_name(tmp_path):
    for fmt in ("png", "jpeg"):
        buf = io.BytesIO()
        Image.fromarray(gradient(200, 200)).save(buf, fmt)
        (tmp_path / f"cut.{fmt}").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(ImageError, match=rf"cut\.{fmt}: corrupt or truncated"):
            open_rgb(tmp_path / f"cut.{fmt}")


def test_png_with_a_flipped_byte_is_refused(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(gradient()).save(buf, "png")
    data = bytearray(buf.getvalue())
    at = data.index(b"IDAT") + 4 + 20  # inside the compressed pixel data
    data[at] ^= 0x01
    (tmp_path / "flip.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"flip\.png: corrupt"):
        open_rgb(tmp_path / "flip.png")


def _png_header_only(w, h):
    """A valid-looking PNG that claims w x h pixels (a bomb needs no more to be refused)."""
    def chunk(kind, body):
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    (tmp_path / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels
    with pytest.raises(ImageError, match=r"bomb\.png: .*decompression bomb"):
        open_rgb(tmp_path / "bomb.png")
    Image.fromarray(gradient(100, 100)).save(tmp_path / "small.png")
    with pytest.raises(ImageError, match=r"small\.png: 100 x 100 = 10000 pixels is more than"):
        open_rgb(tmp_path / "small.png", max_pixels=9999)


def test_pillow_bomb_warning_becomes_an_error(tmp_path, monkeypatch):
    Image.fromarray(gradient(100, 100)).save(tmp_path / "w.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # warns above 6000, raises above 12000
    with pytest.raises(ImageError, match=r"w\.png: refused as a decompression bomb"):
        open_rgb(tmp_path / "w.png", max_pixels=10**9)


def test_builtin_extractor_uses_the_same_loader(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png: empty file"):
        load_image(tmp_path / "empty.png", 32)
    a = gradient(40, 60)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    upright = np.asarray(Image.fromarray(read_rgb(tmp_path / "r.jpg")).resize((32, 32), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(load_image(tmp_path / "r.jpg", 32), upright)


def test_float_and_wide_integer_images_are_stretched_to_their_range(tmp_path):
    f = np.linspace(-2.0, 3.0, 40 * 60, dtype=np.float32).reshape(40, 60)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    out = read_rgb(tmp_path / "f.tif")
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and (out[..., 0] == out[..., 2]).all()
    i32 = (np.arange(40 * 60, dtype=np.int32).reshape(40, 60) - 1000) * 100  # beyond 16 bits
    Image.fromarray(i32, mode="I").save(tmp_path / "i.tif")
    out = read_rgb(tmp_path / "i.tif")
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
