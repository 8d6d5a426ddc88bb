"""Real image files the tests draw: every mode to RGB, EXIF rotation, bombs, extreme aspect
ratios, broken files and special files, on every path that loads images."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import draw_image
from PIL import Image

from indexer.commands.index import build_parser as index_parser
from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.commands.embed import build_parser as embed_parser
from multimodal.commands.eval import build_parser as eval_parser
from multimodal.data.images import ImageLoadError, load_image
from multimodal.data.loading import WORKER_NICENESS, iter_image_batches
from multimodal.data.readers import read_records
from multimodal.embedding import embed_images
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
    with pytest.raises(ImageLoadError, match="120,000 pixels, over the 100,000-pixel limit"):
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


def _priority_and_threads(image) -> torch.Tensor:
    """A 'preprocess' that reports where it ran: the process's niceness and torch threads."""
    return torch.tensor([os.nice(0), torch.get_num_threads()])


def test_decoding_workers_yield_the_cores_to_the_model(tmp_path):
    """Workers decode with one torch thread, below the model's priority (os.nice)."""
    paths = [draw_image(tmp_path / f"{i}.png", "blue", "circle") for i in range(6)]
    before = os.nice(0)
    batches = iter_image_batches(paths, _priority_and_threads, batch_size=2, workers=2)
    reports = torch.cat([batch.pixels for batch in batches])
    assert reports[:, 0].tolist() == [min(before + WORKER_NICENESS, 19)] * 6  # 19: the lowest
    assert reports[:, 1].tolist() == [1] * 6
    assert os.nice(0) == before  # the model's process keeps its priority


def _wide_png(path: Path, size=(60000, 1)) -> Path:
    """A strip of grey: a few hundred bytes on disk, 60 000 pixels wide."""
    Image.new("L", size, 128).save(path)
    return path


def test_extreme_aspect_ratio_is_refused_before_decoding(tmp_path):
    wide = _wide_png(tmp_path / "wide.png")
    tall = _wide_png(tmp_path / "tall.png", (1, 60000))
    assert wide.stat().st_size < 1000  # far under the pixel cap: the ratio is what refuses it
    for path in (wide, tall):
        with pytest.raises(ImageLoadError, match="aspect ratio 60000:1 is over the 20:1 limit"):
            load_image(path)
    # a strip at the limit loads; one pixel wider does not
    assert load_image(draw_image(tmp_path / "strip.png", size=(400, 20))).size == (400, 20)
    with pytest.raises(ImageLoadError, match="aspect ratio"):
        load_image(draw_image(tmp_path / "wider.png", size=(401, 20)))


def test_a_wide_image_is_a_reject_on_every_path(tmp_path, tiny_encoder):
    """Index, embed and search all refuse a 60000x1 image instead of resizing it to
    millions of pixels per row (13 gigapixels at 224 px)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    wide = _wide_png(folder / "wide.png")
    good = draw_image(folder / "good.png")
    # embed / eval
    kept, _, rejects = embed_images(tiny_encoder, [wide, good], workers=0, progress=False)
    assert kept == [1] and [r.path for r in rejects] == [str(wide)]
    assert "aspect ratio" in rejects[0].reason
    # index
    store = EdgeStore(tmp_path / "store")
    report = index_records(
        tiny_encoder, store, "photos", read_records(folder), workers=0, progress=False
    )
    assert report.indexed == 1 and [r.path for r in report.rejects] == [str(wide)]
    assert "aspect ratio" in report.rejects[0].reason
    # search: a query photo by path, and a PIL image handed to the library
    searcher = Searcher(tiny_encoder, store, "photos")
    for query in (wide, Image.new("L", (60000, 1))):
        with pytest.raises(ImageLoadError, match="aspect ratio"):
            searcher.search(query)
    store.close()


def _fifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(path)
    return path


def _finishes(work, fifo: Path, seconds: float = 30.0):
    """``work()``, run in a thread; if it is still blocked on ``fifo`` after ``seconds``, open
    the pipe's other end to release it and fail (a guard against a hang, not a timing check)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = work()
        except Exception as err:
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the reader sees end of file
        thread.join(seconds)
        pytest.fail(f"blocked reading the named pipe {fifo}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_special_files_are_refused_without_opening_them(tmp_path):
    fifo = _fifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageLoadError, match="named pipe.*not a regular file") as info:
        _finishes(lambda: load_image(fifo), fifo)
    assert info.value.path == str(fifo)
    with pytest.raises(ImageLoadError, match="character device, not a regular file"):
        load_image(os.devnull)


def test_a_named_pipe_in_a_manifest_does_not_hang_indexing(tmp_path, tiny_encoder):
    fifo = _fifo(tmp_path / "pipe.jpg")
    draw_image(tmp_path / "good.jpg")
    manifest = tmp_path / "photos.csv"
    manifest.write_text("image,caption\npipe.jpg,a pipe\ngood.jpg,a red square\n")
    store = EdgeStore(tmp_path / "store")
    records = read_records(manifest)
    report = _finishes(
        lambda: index_records(tiny_encoder, store, "photos", records, workers=0, progress=False),
        fifo,
    )
    assert report.indexed == 1 and store.count("photos") == 1
    assert [r.path for r in report.rejects] == [str(fifo)]
    assert "not a regular file" in report.rejects[0].reason
    store.close()


@pytest.mark.parametrize("value", ["0", "-5", "1.5"])
@pytest.mark.parametrize(
    ("parser", "required"),
    [
        (embed_parser, ["--out", "vectors"]),
        (eval_parser, []),
        (index_parser, ["--collection", "photos"]),
    ],
    ids=["embed", "eval", "index"],
)
def test_max_pixels_must_be_a_positive_whole_number(parser, required, value, capsys):
    argv = ["--model", "tiny-random", "--data", "photos", *required, "--max-pixels", value]
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert "--max-pixels" in capsys.readouterr().err
    assert parser().parse_args(argv[:-1] + ["1000"]).max_pixels == 1000
