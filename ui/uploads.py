"""Uploaded photos, for the page and the JSON API alike: read once, decoded once in memory
into a checked RGB image.

An upload past the byte or pixel limit is :class:`PhotoTooLarge` (413); anything else that
is not a usable photo a ValueError with the reason (422); no room to decode it in time
:class:`~multimodal.data.decoding.BudgetExhausted` (503).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from multimodal.data.decoding import SHARED_BUDGET, decode_photo
from multimodal.data.images import ImageLoadError, TooManyPixels, reason_for
from multimodal.files import open_regular

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one uploaded photo (the page's cap too)
UPLOAD_SIDE = 2048  # an upload is shrunk to this many pixels a side as it is decoded


class PhotoTooLarge(ValueError):
    """An upload past the byte or the pixel limit."""


def read_upload(data: bytes, max_pixels: int) -> Image.Image:
    """An uploaded photo's bytes as an RGB image of at most :data:`UPLOAD_SIDE` pixels a side,
    decoded once, in memory, within the process's decoding budget (``SHARED_BUDGET``), its
    header's size checked before any pixel is decoded."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise PhotoTooLarge(too_many_bytes(len(data)))
    try:
        return decode_photo(data, "upload", max_pixels, max_side=UPLOAD_SIDE, budget=SHARED_BUDGET)
    except TooManyPixels as err:
        raise PhotoTooLarge(f"that photo cannot be used: {err.reason}") from None
    except ImageLoadError as err:
        raise ValueError(f"that photo cannot be used: {err.reason}") from None


def read_upload_file(path: str | Path, max_pixels: int) -> Image.Image:
    """:func:`read_upload` of a file the page's upload wrote (a regular file, read whole up
    to one byte past the limit)."""
    try:
        with open_regular(path) as file:
            data = file.read(MAX_UPLOAD_BYTES + 1)
    except (OSError, ValueError) as err:
        raise ValueError(f"that photo cannot be used: {reason_for(err)}") from None
    return read_upload(data, max_pixels)


def too_many_bytes(size: int | None, limit: int = MAX_UPLOAD_BYTES) -> str:
    """The one line that refuses an upload of ``size`` bytes (None: not known yet)."""
    sent = f"{size / 2**20:.1f} MB, " if size is not None else ""
    return f"the upload is {sent}over the {limit / 2**20:g} MB limit: send a smaller photo"
