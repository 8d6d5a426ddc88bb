"""Search by a region of the photo: two clicks on the uploaded photo draw a box (one corner,
then the opposite one); the region is shown beside it and "Find recipes" embeds it alone.

The box lives in a hidden textbox as ``x0,y0,x1,y1`` in the photo's pixels (a first corner
alone is ``x,y``), the form the JSON API's ``box`` and ``multimodal search --box`` take, so
one parser (:func:`multimodal.data.regions.parse_box`) and one crop serve all three.
"""

from __future__ import annotations

import gradio as gr
from PIL import Image

from multimodal.data.images import ImageLoadError
from multimodal.data.regions import crop_box, parse_box
from ui.uploads import read_upload_file

NO_REGION = "Whole photo. To search a part of it, click one corner of a region, then the other."


def box_of(text: str | None) -> str | None:
    """The box the page searches: ``x0,y0,x1,y1``, or None for the whole photo (nothing
    drawn, or only a first corner)."""
    return text if text and text.count(",") == 3 else None


class RegionPicker:
    """The page's region controls' handlers, reading uploads within ``max_pixels``."""

    def __init__(self, max_pixels: int):
        self.max_pixels = max_pixels

    def pick(self, photo, box: str, event: gr.SelectData):
        """A click on the photo: the first corner, or with one already there, the region
        (the box, its preview and a line saying what will be searched)."""
        if photo is None or not isinstance(event.index, (list, tuple)):
            return "", None, NO_REGION
        x, y = (int(round(float(v))) for v in event.index[:2])
        if not box or box_of(box):
            return f"{x},{y}", None, f"First corner at ({x}, {y}): click the opposite corner."
        x0, y0 = (int(v) for v in box.split(","))
        drawn = f"{min(x, x0)},{min(y, y0)},{max(x, x0)},{max(y, y0)}"
        try:
            region = crop_box(self._photo(photo), parse_box(drawn))
        except (ValueError, ImageLoadError) as err:
            return "", None, f"{err}. {NO_REGION}"
        width, height = region.size
        return drawn, region, f"Region {drawn} ({width}x{height} px): **Find recipes** searches it."

    def _photo(self, photo) -> Image.Image:
        return read_upload_file(photo, self.max_pixels)


def clear_region():
    """The whole photo again (a new upload, or "Whole photo")."""
    return "", None, NO_REGION
