"""Every pixel format becomes 8-bit RGB by a documented rule; unreadable files give clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tedloc.data.images import exif_orientation, load_image
from tedloc.errors import DataError


def _save(tmp_path, image, name):
    path = tmp_path / name
    image.save(path)
    return path


def test_grayscale_is_replicated(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    im = load_image(_save(tmp_path, Image.fromarray(arr, "L"), "g.png"))
    out = np.asarray(im)
    assert im.mode == "RGB" and out.shape == (3, 4, 3)
    assert (out == arr[..., None]).all()


def test_rgba_drops_alpha_like_wsolevaluation(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 0  # fully transparent: the stored colour stays
    out = np.asarray(load_image(_save(tmp_path, Image.fromarray(arr, "RGBA"), "a.png")))
    assert (out[..., 0] == 200).all() and (out[..., 1:] == 0).all()


def test_cmyk_uses_pil_conversion(tmp_path):
    im = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_image(_save(tmp_path, im, "c.jpg")))
    assert out[..., 0].min() > 200 and out[..., 1:].max() < 60


def test_16_bit_scaled_not_saturated(tmp_path):
    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    out = np.asarray(load_image(path))[..., 0]
    assert out.tolist() == [[0, 1, 128, 255]]


def test_palette_image(tmp_path):
    im = Image.new("P", (2, 2))
    im.putpalette([10, 20, 30] * 256)
    assert np.asarray(load_image(_save(tmp_path, im, "p.png")))[0, 0].tolist() == [10, 20, 30]


def test_exif_orientation_is_not_applied(tmp_path):
    im = Image.new("RGB", (6, 2), (1, 2, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    path = tmp_path / "r.jpg"
    im.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.size == (6, 2)  # stored grid, as in wsolevaluation
    with Image.open(path) as raw:
        assert exif_orientation(raw) == 6


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="not found") as e:
        load_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="cannot read image") as e:
        load_image(tmp_path / "t.jpg")
    assert "t.jpg" in str(e.value)
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image"):
        load_image(tmp_path / "x.png")


def test_float_images_are_rejected(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.ones((2, 2), np.float32)).save(path)
    with pytest.raises(DataError, match="unsupported image mode 'F'"):
        load_image(path)
