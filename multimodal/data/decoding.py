"""Photos that arrive as bytes (a server's uploads), decoded under a memory budget.

A compressed photo says little about the memory it decodes into: a 250 KB PNG of 8000 x 8000
RGBA pixels is 256 MB of raster, and each full-size conversion after it (RGBA to RGB over
white, the orientation) another 200 MB or so. :func:`decode_photo` keeps that to one raster:

- the header's size is checked first (:func:`multimodal.data.images.check_image_size`);
- a JPEG is decoded at the smallest of its 1/1 ... 1/8 scales that still has ``max_side``
  pixels (``Image.draft``), so it never takes its full size in memory;
- any other image is shrunk to ``max_side`` right after decoding, in its own mode, before
  the conversions;
- the decoding itself holds the image's pixels of a :class:`PixelBudget` shared by the
  process's threads, so many large uploads at once decode one after another, in the order
  they came, instead of together, while small ones pass side by side;
- when a burst that held a large decoding ends, the freed memory is handed back to the
  system (:func:`release_free_memory`), not kept by the allocator for the next one;
- only photo formats are opened (:data:`PHOTO_FORMATS`), not every format Pillow knows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import BinaryIO

from PIL import Image, ImageOps

from multimodal.data.images import (
    DEFAULT_MAX_ASPECT,
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    TooManyPixels,
    check_image_size,
    reason_for,
    to_rgb,
)

# A side of 2,048 pixels keeps every detail a 224 to 448-pixel model (and its zoomed test-time
# views) can see, and crops of a region, while the decoded photo stays under 17 MB.
DEFAULT_MAX_SIDE = 2048
BUDGET_WAIT = 20.0  # seconds an upload waits for room to decode before it is refused
MAX_WAITING = 16  # uploads waiting for room at once; more are refused at once, not queued
LARGE = 4_000_000  # pixels from which a burst's memory is handed back when it ends
# The formats an upload may be in: photos, nothing exotic (Pillow opens some thirty formats,
# each a parser an attacker may aim at). JPEG includes MPO, the JPEG with a depth map or a
# second view that some phones and cameras write.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")


BUSY = "the server is busy decoding other photos: try again in a moment"


class BudgetExhausted(RuntimeError):
    """No room to decode within :data:`BUDGET_WAIT` seconds, or too many waiting: the server
    is busy."""


class PixelBudget:
    """At most ``capacity`` pixels being decoded at once, across threads, first come first
    served; at most ``max_waiting`` callers wait (up to ``wait`` seconds each), and any more
    are refused at once (:class:`BudgetExhausted`), so a flood of large photos cannot hold
    every thread of a server.

    >>> budget = PixelBudget(64_000_000)
    >>> with budget.hold(12_000_000):  # waits while others hold more than 52 million
    ...     pass
    """

    def __init__(
        self,
        capacity: int = DEFAULT_MAX_PIXELS,
        wait: float = BUDGET_WAIT,
        max_waiting: int = MAX_WAITING,
    ):
        self.capacity, self.wait, self.max_waiting = capacity, wait, max_waiting
        self.in_use = 0
        self.peak = 0  # the most pixels held at once so far
        self._queue: deque[object] = deque()  # the waiting callers' tickets, in arrival order
        self._large = False  # a large decoding ran since the memory was last handed back
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(max(pixels, 1), self.capacity)  # one image never waits for more than all
        with self._changed:
            self._enter(pixels)
            self._large = self._large or pixels >= LARGE
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                trim = self.in_use == 0 and self._large
                self._large = self._large and not trim
                self._changed.notify_all()
            if trim:
                release_free_memory()

    def _enter(self, pixels: int) -> None:
        """Wait (the lock held) until it is this caller's turn and ``pixels`` fit."""
        if len(self._queue) >= self.max_waiting:
            raise BudgetExhausted(BUSY)
        ticket = object()
        self._queue.append(ticket)
        try:
            if not self._changed.wait_for(
                lambda: self._queue[0] is ticket and self.in_use + pixels <= self.capacity,
                self.wait,
            ):
                raise BudgetExhausted(BUSY)
        finally:
            self._queue.remove(ticket)
            self._changed.notify_all()  # the next in line may fit now
        self.in_use += pixels
        self.peak = max(self.peak, self.in_use)


# The process's budget, for whoever decodes what others send (a server's uploads and
# previews): one photo at the default pixel cap (a 64-megapixel RGBA raster is 256 MB) at a
# time, or many ordinary ones side by side.
SHARED_BUDGET = PixelBudget(DEFAULT_MAX_PIXELS)


def decode_photo(
    data: bytes | BinaryIO,
    name: str = "upload",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float = DEFAULT_MAX_ASPECT,
    max_side: int | None = DEFAULT_MAX_SIDE,
    budget: PixelBudget | None = None,
) -> Image.Image:
    """``data`` (an encoded photo, or a file open on one) in one of :data:`PHOTO_FORMATS` as
    an upright 8-bit RGB image of at most ``max_side`` pixels a side (None: its own size),
    decoded within ``budget``; an :class:`ImageLoadError` (with ``name``) for anything
    unusable or past the limits."""
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's warnings on large or odd files: ours rule
            with Image.open(source, formats=PHOTO_FORMATS) as image:
                check_image_size(name, *image.size, max_pixels, max_aspect)
                held = budget.hold(image.width * image.height) if budget else nullcontext()
                with held:
                    try:
                        return _decoded(image, name, max_pixels, max_aspect, max_side)
                    finally:  # the full-size raster freed before the next decoding starts
                        image.close()
    except (ImageLoadError, BudgetExhausted):
        raise
    except Image.DecompressionBombError as err:  # PIL's own limit, far past ours
        raise TooManyPixels(name, f"decompression bomb: {err}") from None
    except Exception as err:  # anything a hostile file makes PIL raise is a reason, not a crash
        raise ImageLoadError(name, reason_for(err)) from None


def _decoded(image, name, max_pixels, max_aspect, max_side) -> Image.Image:
    if max_side is not None:
        image.draft(image.mode, (max_side, max_side))  # JPEG: decode at a smaller scale
    image.load()
    check_image_size(name, *image.size, max_pixels, max_aspect)  # formats that lied
    if max_side is not None and max(image.size) > max_side:
        image = _shrunk(image, max_side)
    return to_rgb(ImageOps.exif_transpose(image))


def _shrunk(image: Image.Image, side: int) -> Image.Image:
    """``image`` resized to ``side`` pixels on its long side, in its own mode where PIL can
    (a conversion first would copy the full-size raster, or more: 16-bit greyscale goes
    through float64 in :func:`to_rgb`)."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if image.mode.startswith("I;16"):
        return image.resize(size)  # Image.reduce has no 16-bit kernel
    try:
        return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    except ValueError:  # a mode PIL cannot resize: converted at full size, then resized
        return to_rgb(image).resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def release_free_memory() -> None:
    """Hand the memory freed since the last call back to the system. glibc keeps freed blocks
    for reuse (per thread arena, and large ones once its mmap threshold has grown), so the
    server's size would stay at its peak after a burst of large uploads. No-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _libc():
    """glibc, if this process runs on it (malloc_trim is glibc's); None elsewhere."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path) if path else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None
