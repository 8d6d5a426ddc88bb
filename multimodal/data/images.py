"""Image loading that survives real-world files: any mode, EXIF rotation, bombs, extreme
aspect ratios, broken files, and paths that are not files at all.

Importing this module teaches PIL to open HEIC/HEIF, the format of most phone photos
(``pillow-heif``; AVIF is Pillow's own), in this process and in every process forked from it:
:func:`load_image`, the indexer's decoding workers, the Ray workers and a server's uploads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from multimodal.files import NotARegularFile, open_regular

register_heif_opener()  # once per process: Image.open then reads .heic and .heif files

# 64 megapixels: far above any photo worth embedding at 224 px, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000
# 20:1. A phone's 360-degree panorama is about 8:1 to 10:1; past 20:1 an image is a strip, of
# which the model's centre crop would see a twentieth anyway. The ratio is what bounds the
# model's resize, which scales the short side to S pixels: a 60000x1 image would become
# 13.4 million x 224 (3 gigapixels); at 20:1 nothing grows past 20 * S * S (1 million at 224).
DEFAULT_MAX_ASPECT = 20
# What a file of a folder must end with to be read as a photo, compared ignoring case
# (:func:`is_photo_name`): ``.JPG`` and ``.HEIC`` are what cameras and phones write.
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".heic",
    ".heif",
    ".avif",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
)
# The formats named when a file is none of them (PIL reads a few more).
PHOTO_FORMATS = "JPEG, PNG, WebP, HEIC/HEIF, AVIF, BMP, GIF or TIFF"


def is_photo_name(path: str | Path) -> bool:
    """Whether ``path`` ends with a photo suffix, in any letter case.

    >>> is_photo_name("IMG_0042.HEIC"), is_photo_name("notes.txt")
    (True, False)
    """
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


class ImageLoadError(Exception):
    """An image that cannot be used, with the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class TooManyPixels(ImageLoadError):
    """An image past the pixel limit (a server answers 413, not 422)."""


def check_image_size(
    path: str | Path,
    width: int,
    height: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> None:
    """Raise :class:`ImageLoadError` unless a ``width`` x ``height`` image is safe to decode
    (``max_pixels``) and to resize for a model (``max_aspect``, long side : short side).

    >>> check_image_size("photo.jpg", 4000, 3000)
    >>> check_image_size("strip.png", 60000, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    multimodal.data.images.ImageLoadError: strip.png: ...aspect ratio 60000:1 is over the 20:1 limit
    """
    if width < 1 or height < 1:
        raise ImageLoadError(path, f"{width}x{height} pixels: the image is empty")
    if width * height > max_pixels:
        raise TooManyPixels(
            path,
            f"{width}x{height} is {width * height:,} pixels, over the {max_pixels:,}-pixel limit",
        )
    long, short = max(width, height), min(width, height)
    if long > max_aspect * short:
        raise ImageLoadError(
            path,
            f"{width}x{height} pixels: aspect ratio {_number(long / short)}:1 is over the "
            f"{_number(max_aspect)}:1 limit",
        )


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def load_image(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> Image.Image:
    """Open ``path`` as an upright 8-bit RGB image, or raise :class:`ImageLoadError`.

    Only a regular file is opened (a named pipe would block forever), and its size from the
    header is checked (:func:`check_image_size`) before any pixel is decoded, and again after,
    for formats whose header does not tell the size decoded.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # PIL warns on large images, odd metadata and short reads; the limits are ours.
            warnings.simplefilter("ignore")
            with open_regular(path) as file, Image.open(file) as image:
                check_image_size(path, *image.size, max_pixels, max_aspect)
                image.load()
                check_image_size(path, *image.size, max_pixels, max_aspect)
                return to_rgb(ImageOps.exif_transpose(image))
    except ImageLoadError:
        raise
    except Exception as err:  # anything a hostile file makes PIL raise is a reason, not a crash
        raise ImageLoadError(path, reason_for(err)) from None


def reason_for(err: Exception) -> str:
    """Why a file could not be loaded, in words, without the path (the caller has it)."""
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a directory, not an image"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, NotARegularFile):
        return err.strerror
    if isinstance(err, UnidentifiedImageError):
        return f"not an image file (unknown format: not {PHOTO_FORMATS})"
    if isinstance(err, Image.DecompressionBombError):
        return f"decompression bomb: {err}"
    # Truncated JPEG/PNG data, bad headers and broken chunks surface here.
    return f"unreadable image data ({type(err).__name__}: {err})"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float greyscale to 0..255 (``convert`` would clip at 255)."""
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = pixels / 257.0
    else:
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
    grey = Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8))  # 2-D uint8: mode L
    return grey.convert("RGB")
