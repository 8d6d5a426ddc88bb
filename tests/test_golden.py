"""Golden outputs of the ``recipe-starter`` model: the embeddings of one fixed drawn image and
one caption, stored in ``tests/golden/``. A timm, open_clip, transformers or torch upgrade that
changes what the model computes fails here loudly instead of shifting every figure quietly
(open_clip's ``tests/test_inference.py`` does the same for its models).

After a change that is meant to alter the outputs, rewrite the reference and commit it::

    .venv/bin/python tests/test_golden.py --update
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

GOLDEN = Path(__file__).parent / "golden" / "recipe-starter.json"
CAPTION = "Apple Pie. Ingredients: apples, flour, butter, sugar, cinnamon."
# Float differences between CPUs and BLAS builds stay around 1e-6; a changed model moves
# embedding components by orders of magnitude more.
TOLERANCE = 1e-4


def golden_image() -> Image.Image:
    """A fixed 160x120 drawing: a golden disc on a brown rim over a blue cloth, in memory
    (no file format, so no codec version can change the pixels)."""
    image = Image.new("RGB", (160, 120), (40, 70, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 10, 140, 110), fill=(120, 70, 30))
    draw.ellipse((32, 22, 128, 98), fill=(225, 170, 60))
    for x in range(40, 121, 16):
        draw.line((x, 30, x + 8, 90), fill=(170, 110, 40), width=3)
    return image


def embeddings(encoder) -> dict[str, np.ndarray]:
    return {
        "image": encoder.encode_images([golden_image()])[0],
        "text": encoder.encode_texts([CAPTION])[0],
    }


@pytest.mark.slow
def test_recipe_starter_matches_its_golden_embeddings(starter_encoder):
    reference = json.loads(GOLDEN.read_text())
    assert reference["caption"] == CAPTION
    for name, vector in embeddings(starter_encoder).items():
        expected = np.asarray(reference[name], np.float32)
        assert vector.shape == expected.shape == (512,)
        difference = float(np.abs(vector - expected).max())
        assert difference < TOLERANCE, (
            f"recipe-starter's {name} embedding moved by up to {difference:.2e} from "
            f"{GOLDEN.name}: a dependency upgrade changed the model's outputs"
        )


def test_golden_reference_is_well_formed():
    reference = json.loads(GOLDEN.read_text())
    for name in ("image", "text"):
        vector = np.asarray(reference[name], np.float64)
        assert vector.shape == (512,) and abs(np.linalg.norm(vector) - 1.0) < 1e-5
    # The two towers' projection heads are untrained, so a photo and a caption are unrelated.
    assert abs(float(np.dot(reference["image"], reference["text"]))) < 0.5


if __name__ == "__main__" and "--update" in sys.argv:
    from multimodal.encoder import load_encoder

    vectors = embeddings(load_encoder("recipe-starter", device="cpu"))
    GOLDEN.parent.mkdir(exist_ok=True)
    document = {"model": "recipe-starter", "caption": CAPTION}
    document.update(
        {name: [round(float(v), 7) for v in vector] for name, vector in vectors.items()}
    )
    GOLDEN.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
