"""A photo's picture fingerprint: is this the same picture, whatever its size, compression,
light crop or mirroring?

A model's image vectors say what a photo shows, not whether two photos are one picture: on
Recipes5k val, the recipe model puts a photo downscaled to half its size at a cosine of 0.49
to 0.99 from its original (median 0.84), while distinct photos of one dish reach 0.76. The
fingerprint looks at the pixels instead: the photo blurred and shrunk to 24 x 24 (its three
colour channels side by side, so a recoloured picture is another one), as is and mirrored, at
three centre crops (100%, 90%, 80%), each channel centred (a colour cast is no likeness) and
each row of unit length.
Two photos' picture similarity is the best correlation between their rows: 1.0 for a resized,
recompressed (JPEG quality 30), 90%-cropped or mirrored copy; 0.18 in the median for distinct
photos the model finds alike (``benchmarks/duplicates.py``).

    >>> picture_similarity(fingerprint(photo), fingerprint(photo.resize((90, 60))))
    1.0
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

SIDE = 24  # pixels a side of the shrunk photo
CROPS = (1.0, 0.9, 0.8)  # centre crops compared, as shares of each side
BLUR = 1.0  # Gaussian radius on the shrunk photo: what recompression changes, blurred away


def fingerprint(image: Image.Image) -> np.ndarray:
    """``(2 * len(CROPS), 3 * SIDE * SIDE)`` float32 unit rows: each centre crop, as is and
    mirrored."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    rows = []
    for share in CROPS:
        w, h = max(1, round(width * share)), max(1, round(height * share))
        left, top = (width - w) // 2, (height - h) // 2
        crop = rgb.crop((left, top, left + w, top + h))
        small = ImageOps.fit(crop, (SIDE, SIDE), Image.BILINEAR).filter(
            ImageFilter.GaussianBlur(BLUR)
        )
        pixels = np.asarray(small, np.float32)
        for view in (pixels, pixels[:, ::-1, :]):
            row = (view - view.mean(axis=(0, 1))).ravel()  # each channel centred: no cast
            rows.append(row / max(float(np.linalg.norm(row)), 1e-6))
    return np.array(rows, np.float32)


def picture_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation between two fingerprints' rows (-1 to 1; 1: one picture)."""
    return float((a @ b.T).max())
