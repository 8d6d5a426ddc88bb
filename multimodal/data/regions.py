"""A region of a photo to search by: a box ``(x0, y0, x1, y1)`` in pixels, or in fractions of
the photo's width and height when every value is from 0 to 1.

    >>> box = parse_box("0.5,0,1,0.5")        # the top-right quarter
    >>> crop_box(photo, box).size
    >>> crop_box(photo, (40, 10, 200, 150))   # pixels
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

MIN_SIDE = 8  # pixels a region must keep on each side: less is a slip of the mouse

Box = tuple[float, float, float, float]


def parse_box(value: str | Sequence[float]) -> Box:
    """``"x0,y0,x1,y1"`` or four numbers -> a box; ValueError saying what is wrong."""
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        numbers = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise ValueError(
            f"a box is four numbers x0,y0,x1,y1 (pixels, or fractions from 0 to 1), not {value!r}"
        )
    x0, y0, x1, y1 = numbers
    if min(numbers) < 0 or x1 <= x0 or y1 <= y0:
        raise ValueError(f"a box needs 0 <= x0 < x1 and 0 <= y0 < y1, not {value!r}")
    return numbers


def is_relative(box: Box) -> bool:
    """Whether the box is in fractions of the photo (every value from 0 to 1)."""
    return max(box) <= 1.0


def pixel_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box in whole pixels of a ``width`` x ``height`` photo, clipped to it; ValueError
    when less than :data:`MIN_SIDE` pixels of it fall on the photo."""
    x0, y0, x1, y1 = box
    if is_relative(box):
        x0, x1, y0, y1 = x0 * width, x1 * width, y0 * height, y1 * height
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        raise ValueError(
            f"the box {','.join(f'{v:g}' for v in box)} leaves less than {MIN_SIDE} pixels a "
            f"side of the {width}x{height} photo: draw a larger region"
        )
    return left, top, right, bottom


def crop_box(image: Image.Image, box: Box | None) -> Image.Image:
    """The region of ``image`` the box covers (the whole image for None)."""
    if box is None:
        return image
    return image.crop(pixel_box(box, *image.size))
