"""Property-based tests of the image loader and the page's upload handler, and the memory one
wide image may take: random sizes (extreme aspect ratios included), modes, formats,
truncations and byte flips of real encoded files, and random bytes. Nothing escapes but the
project's own errors: :class:`ImageLoadError` from the loader, ``gr.Error`` from the page."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import REPO, write_recipes5k
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.data.images import DEFAULT_MAX_ASPECT, ImageLoadError, load_image
from multimodal.data.loading import ImageFiles
from multimodal.data.readers import read_records
from ui.app import RecipeApp

# Hundreds of generated files per property: CI runs them; the quick loop leaves them out.
pytestmark = pytest.mark.slow

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif"}
MODES = ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I", "I;16", "F")
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@st.composite
def image_sizes(draw) -> tuple[int, int]:
    """Ordinary small sizes, and strips up to 5000x1 (a few kilobytes, far past the ratio)."""
    if draw(st.booleans()):
        return draw(st.integers(1, 48)), draw(st.integers(1, 48))
    long, short = draw(st.integers(1, 5000)), draw(st.integers(1, 3))
    return (long, short) if draw(st.booleans()) else (short, long)


@st.composite
def encoded_images(draw) -> tuple[bytes, tuple[int, int], str]:
    """A real file's bytes in a random format and mode, with its size and suffix."""
    size = draw(image_sizes())
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(sorted(FORMATS)))
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grey = Image.fromarray(noise.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 65535]))  # orientation
    buffer = io.BytesIO()
    try:
        grey.convert(mode).save(buffer, fmt, exif=exif)
    except (OSError, ValueError, KeyError):
        assume(False)  # a mode the format cannot hold
    return buffer.getvalue(), size, FORMATS[fmt]


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` cut short and/or with a few bytes flipped."""
    data = bytearray(data)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


@st.composite
def uploads(draw) -> tuple[bytes, str]:
    """What a page might receive: random bytes, or a real image, damaged or not."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048)), draw(st.sampled_from(list(FORMATS.values())))
    data, _, suffix = draw(encoded_images())
    return (draw(damaged(data)) if draw(st.booleans()) else data), suffix


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _written(folder: Path, data: bytes, suffix: str) -> Path:
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(encoded_images())
def test_whole_images_load_within_the_limits_or_are_refused_for_their_size(scratch, image):
    data, (width, height), suffix = image
    path = _written(scratch, data, suffix)
    if max(width, height) > DEFAULT_MAX_ASPECT * min(width, height):
        with pytest.raises(ImageLoadError, match="aspect ratio"):
            load_image(path)
        return
    loaded = load_image(path)
    assert loaded.mode == "RGB" and sorted(loaded.size) == sorted((width, height))  # or turned


@FUZZ
@given(st.data())
def test_damaged_images_load_or_raise_image_load_error(scratch, tiny_encoder, data):
    encoded, _, suffix = data.draw(encoded_images())
    path = _written(scratch, data.draw(damaged(encoded)), suffix)
    try:
        loaded = load_image(path)
    except ImageLoadError as err:
        assert err.path == str(path) and err.reason
    else:
        assert loaded.mode == "RGB"
        long, short = max(loaded.size), min(loaded.size)
        assert long <= DEFAULT_MAX_ASPECT * short
    # the indexing path: a tensor of the model's size, or a reason; never an exception
    _, pixels, reason = ImageFiles([path], tiny_encoder.preprocess, 64_000_000)[0]
    assert (pixels is None) != (reason is None)
    if pixels is not None:
        assert tuple(pixels.shape) == (3, tiny_encoder.image_size, tiny_encoder.image_size)


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_encoder):
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=3)
    store = EdgeStore(tmp_path_factory.mktemp("store"))
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    yield RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=root.parent / "maps")
    store.close()


@settings(FUZZ, max_examples=40)
@given(uploads())
def test_the_page_answers_any_upload_with_results_or_a_message(page, scratch, upload):
    path = str(_written(scratch, *upload))
    for search in (
        lambda: page.image_to_text(path, [], "", ""),
        lambda: page.text_to_image("cake", path, 1.0, [], "", ""),
    ):
        try:
            search()
        except gr.Error as err:
            assert err.message.startswith("That photo cannot be used: ")
            assert str(scratch) not in err.message


MEMORY_PROBE = """
import json, resource, sys
from open_clip.transform import PreprocessCfg, image_transform_v2
from multimodal.data.loading import ImageFiles

def peak_mb():
    # This process's own high-water mark (VmHWM). Not ru_maxrss: Linux carries that across
    # exec, so it would start at the peak of the pytest process that started this one.
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kB

# The real models' resize: short side to 224 px (bicubic), centre crop, tensor.
transform = image_transform_v2(PreprocessCfg(size=224), is_train=False)
before = peak_mb()
# A guard, so that a regression fails here instead of taking the machine's memory.
status = open("/proc/self/status").read()
virtual = int(status.split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (virtual + (2 << 30), resource.RLIM_INFINITY))
results = []
for path in sys.argv[1:]:
    _, pixels, reason = ImageFiles([path], transform, 64_000_000)[0]
    results.append([None if pixels is None else list(pixels.shape), reason])
print(json.dumps({"before_mb": before, "peak_mb": peak_mb(), "results": results}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, RLIMIT_AS")
def test_wide_images_take_bounded_memory_on_the_indexing_path(tmp_path):
    """A 100000x1 PNG is 300 bytes; resized for the model it was 22 million x 224 pixels."""
    sizes = [(100_000, 1), (60_000, 1), (1, 100_000), (20, 1), (4480, 224)]
    paths = []
    for width, height in sizes:
        paths.append(tmp_path / f"{width}x{height}.png")
        Image.new("L", (width, height), 200).save(paths[-1])
    probe = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_PROBE), *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a timing check
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    refused, kept = report["results"][:3], report["results"][3:]
    assert all(shape is None and "aspect ratio" in reason for shape, reason in refused), refused
    assert all(shape == [3, 224, 224] and reason is None for shape, reason in kept), kept
    assert report["peak_mb"] - report["before_mb"] < 256, report
    assert report["peak_mb"] < 1536, report
