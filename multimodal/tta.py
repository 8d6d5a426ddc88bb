"""Test-time augmentation for photos: a few views of each photo, embedded together, averaged.

:class:`FlipCropViews` turns one decoded photo into four views, stacked as ``(4, 3, H, W)``:

0. the model's own preprocessed view (resize, centre crop);
1. that view mirrored left to right;
2. a zoomed crop: the photo resized ``ZOOM`` times larger (256 pixels for a 224-pixel model,
   the classic resize-256-crop-224 ratio), the left part of its centre square;
3. the right part of that square, mirrored.

The set is closed under mirroring: a mirrored photo gives the same four views in another
order, hence the same averaged embedding (exactly when the centre crops have an even margin
on each side; otherwise within the one-pixel shift of a centre crop that cannot be centred).
The image tower runs once on every view (:meth:`multimodal.encoder.DualEncoder.encode_pixels`),
so a photo costs ``VIEWS`` (4) forward passes instead of one; texts are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

VIEWS = 4  # forward passes of the image tower per photo
ZOOM = 8 / 7  # resize factor of the zoomed crops


class FlipCropViews:
    """A photo -> its ``VIEWS`` views as one ``(VIEWS, 3, H, W)`` tensor.

    Runs where the model's own preprocess runs (the DataLoader workers of the indexer), so
    decoding and view making overlap the model.

    >>> loaded = create_model_and_transforms("tiny-random")  # doctest: +SKIP
    >>> FlipCropViews(loaded.preprocess, loaded.info.preprocess_cfg)(photo).shape  # doctest: +SKIP
    torch.Size([4, 3, 32, 32])
    """

    def __init__(self, preprocess: Callable, preprocess_cfg: dict):
        self.preprocess = preprocess
        height, width = _height_width(preprocess_cfg["size"])
        self.size = (height, width)
        # The model's inference transform at the larger size: same resize mode, interpolation
        # and normalisation, so the crops differ from the plain view only in scale and place.
        zoomed = {**preprocess_cfg, "size": (round(height * ZOOM), round(width * ZOOM))}
        self.zoomed = image_transform_v2(PreprocessCfg(**zoomed), is_train=False)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        plain = self.preprocess(image)
        left, right = self.side_crops(self.zoomed(image))
        return torch.stack([plain, plain.flip(-1), left, right.flip(-1)])

    def side_crops(self, canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The left and right ``size`` crops of ``canvas``, vertically centred."""
        height, width = self.size
        top = (canvas.shape[-2] - height) // 2
        rows = canvas[..., top : top + height, :]
        return rows[..., :width], rows[..., canvas.shape[-1] - width :]


def _height_width(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])
