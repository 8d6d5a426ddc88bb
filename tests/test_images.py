"""Real image files the tests draw: every mode to RGB, EXIF rotation, bombs, broken files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import draw_image
from PIL import Image

from multimodal.data.images import ImageLoadError, load_image
from multimodal.data.loading import iter_image_batches
from multimodal.encoder import load_encoder


def _centre(image: Image.Image) -> tuple[int, int, int]:
    return image.getpixel((image.width // 2, image.height // 2))


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (5, 5, 15, 15))
    image.info["transparency"] = 0  # the red background is transparent
    image.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert _centre(loaded) == (0, 0, 255)


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("RGBA", (0, 200, 0, 255), (0, 200, 0)),
        ("RGBA", (0, 200, 0, 0), (255, 255, 255)),
        ("LA", (100, 255), (100, 100, 100)),
        ("L", 77, (77, 77, 77)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, colour, expected):
    suffix = "jpg" if mode == "CMYK" else "png"
    path = tmp_path / f"image.{suffix}"
    Image.new(mode, (16, 16), colour).save(path, quality=100) if suffix == "jpg" else Image.new(
        mode, (16, 16), colour
    ).save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert np.allclose(_centre(loaded), expected, atol=3)


def test_sixteen_bit_greyscale_keeps_its_range(tmp_path):
    pixels = np.full((8, 8), 40000, dtype=np.uint16)
    pixels[:, :4] = 1000
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    loaded = load_image(tmp_path / "deep.png")
    # 40000 / 65535 of full scale, not clipped to white as a plain convert("RGB") would do
    assert loaded.getpixel((6, 4)) == (156, 156, 156)
    assert loaded.getpixel((1, 4)) == (4, 4, 4)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    loaded = load_image(tmp_path / "rotated.jpg")
    assert loaded.size == (20, 40)
    assert loaded.getpixel((10, 2))[1] < 60  # the red band is now on top


def test_pixel_limit_refuses_before_decoding(tmp_path):
    draw_image(tmp_path / "big.png", size=(400, 300))
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(tmp_path / "big.png", max_pixels=100_000)
    assert load_image(tmp_path / "big.png", max_pixels=120_000).size == (400, 300)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:300]), "unreadable image data"),
        (lambda p: p.write_text("this is not a picture"), "not an image file"),
        (lambda p: p.unlink(), "file not found"),
    ],
)
def test_broken_files_are_reported_with_path_and_reason(tmp_path, make, reason):
    path = draw_image(tmp_path / "photo.jpg", size=(256, 256))
    make(path)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_image(path)
    assert info.value.path == str(path)


def test_batches_go_on_past_bad_files(tmp_path):
    encoder = load_encoder("tiny-random", device="cpu")
    paths = [draw_image(tmp_path / f"{i}.png", "blue", "circle") for i in range(5)]
    (tmp_path / "bad.jpg").write_text("junk")
    paths.insert(2, tmp_path / "bad.jpg")
    batches = list(iter_image_batches(paths, encoder.preprocess, batch_size=4, workers=0))
    kept = [i for batch in batches for i in batch.indices]
    rejects = [r for batch in batches for r in batch.rejects]
    assert kept == [0, 1, 3, 4, 5]
    assert [(r.index, r.path) for r in rejects] == [(2, str(tmp_path / "bad.jpg"))]
    assert sum(b.pixels.shape[0] for b in batches if b.pixels is not None) == 5
