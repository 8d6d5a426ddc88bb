"""Image loading that survives real-world files: any mode, EXIF rotation, bombs, broken files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 64 megapixels: far above any photo worth embedding at 224 px, far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageLoadError(Exception):
    """An image that cannot be used, with the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open ``path`` as an upright 8-bit RGB image, or raise :class:`ImageLoadError`.

    The pixel count is checked from the header before any pixel is decoded.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    path, f"{width}x{height} pixels is over the limit of {max_pixels:,}"
                )
            with warnings.catch_warnings():
                # PIL warns on large images and odd metadata; the limit above is ours.
                warnings.simplefilter("ignore")
                image.load()
                image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image file (unknown format)") from None
    except Image.DecompressionBombError as err:
        raise ImageLoadError(path, f"decompression bomb: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        # Truncated JPEG/PNG data, bad headers and broken chunks surface here.
        raise ImageLoadError(path, f"unreadable image data ({err})") from None


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
