"""Shared fixtures: a tiny random model, drawn images, a small Recipes5k-shaped folder."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from multimodal import towers
from multimodal.data.records import Record

# Tests never reach a model hub: a hub lookup fails at once instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
RECIPES5K = REPO.parent / "shared" / "datasets" / "recipes5k"

# The test being set up or run; fixtures of any scope are set up inside it.
_running: dict[str, pytest.Item | None] = {"item": None}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _running["item"] = item


def _slow_only(find_weights):
    """``pytest -m "not slow"`` is the fast loop: a test that finds the packaged pretrained
    weights (the starting towers) without the ``slow`` marker fails and says so."""

    @functools.wraps(find_weights)
    def guarded(*args, **kwargs):
        path = find_weights(*args, **kwargs)
        item = _running["item"]
        if item is not None and item.get_closest_marker("slow") is None:
            pytest.fail(
                f"{item.nodeid} loads pretrained towers: mark it @pytest.mark.slow", pytrace=False
            )
        return path

    return guarded


towers.minilm_path = _slow_only(towers.minilm_path)
towers.efficientnet_lite_weights = _slow_only(towers.efficientnet_lite_weights)

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220)}
SHAPES = ("square", "circle", "triangle")


def paint_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple, colour: str) -> None:
    """A square, circle or triangle filling ``box`` (left, top, right, bottom)."""
    left, top, right, bottom = box
    fill = COLOURS[colour]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([((left + right) // 2, top), (left, bottom), (right, bottom)], fill=fill)


def draw_image(path: Path, colour: str = "red", shape: str = "square", size=(96, 64)) -> Path:
    """A coloured shape on white, saved in the format the suffix names."""
    image = Image.new("RGB", size, (255, 255, 255))
    w, h = size
    paint_shape(ImageDraw.Draw(image), shape, (w // 4, h // 4, 3 * w // 4, 3 * h // 4), colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def index_args(
    data: Path, store: Path, *more: str, collection: str = "c", workers=0, progress=False
) -> list[str]:
    """``multimodal index`` arguments: ``data`` into ``collection`` of the store folder
    ``store`` with the tiny random model and ``workers`` decoding workers, progress bars only
    with ``progress`` (:func:`kill_once_written` reads them), then ``more``."""
    args = ["index", "--model", "tiny-random", "--data", str(data), "--collection", collection]
    args += ["--store", str(store), "--workers", str(workers)]
    return [*args, *([] if progress else ["--no-progress"]), *more]


def write_recipes5k(root: Path, splits=("train", "val"), per_split: int = 6) -> Path:
    """A Recipes5k-shaped folder in the official layout, with drawn dish photos.

    Dish types are shapes; each recipe's title and ingredients name its colour and shape.
    """
    annotations = root / "annotations"
    annotations.mkdir(parents=True)
    titles, ingredients, simplified = [], [], []
    for split in splits:
        image_lines, label_lines = [], []
        for i in range(per_split):
            shape = SHAPES[i % len(SHAPES)]
            colour = list(COLOURS)[(i // len(SHAPES)) % len(COLOURS)]
            label = len(titles)
            name = f"{shape}/{i}_{split}_{colour}_{shape}.jpg"
            draw_image(root / "images" / name, colour, shape)
            titles.append(f"{colour.title()} {shape.title()} Cake")
            ingredients.append(f"{colour} food colouring,all-purpose flour,{shape} mould,sugar")
            simplified.append("colouring,flour,mould,sugar")
            image_lines.append(name)
            label_lines.append(str(label))
        (annotations / f"{split}_images.txt").write_text("\n".join(image_lines) + "\n")
        (annotations / f"{split}_labels.txt").write_text("\n".join(label_lines) + "\n")
    (annotations / "classes_Recipes5k.txt").write_text("\n".join(titles) + "\n")
    (annotations / "ingredients_Recipes5k.txt").write_text("\n".join(ingredients) + "\n")
    (annotations / "ingredients_simplified_Recipes5k.txt").write_text("\n".join(simplified) + "\n")
    return root


@pytest.fixture
def recipes5k_folder(tmp_path: Path) -> Path:
    return write_recipes5k(tmp_path / "recipes5k")


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    """Each store in turn: Qdrant Edge on a temporary folder, and qdrant-client's in-process
    mode (the server's API; no Qdrant server binary can be installed here)."""
    from indexer.edge import EdgeStore
    from indexer.server import ServerStore

    made = EdgeStore(tmp_path / "store") if request.param == "edge" else ServerStore(":memory:")
    yield made
    made.close()


@pytest.fixture(scope="session")
def tiny_encoder():
    from multimodal.encoder import load_encoder

    return load_encoder("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def starter_encoder():
    from multimodal.encoder import load_encoder

    return load_encoder("recipe-starter", device="cpu")


def _draw(path, colour, shape, rng):
    """A shape of one colour on a noisy background, at a random place and size."""
    size = 48
    background = tuple(int(v) for v in rng.integers(170, 256, 3))
    image = Image.new("RGB", (size, size), background)
    half = int(rng.integers(10, 17))
    cx, cy = (int(v) for v in rng.integers(half + 1, size - half - 1, 2))
    paint_shape(ImageDraw.Draw(image), shape, (cx - half, cy - half, cx + half, cy + half), colour)
    image.save(path)
    return path


def shape_records(folder, variants: int, seed: int) -> list[Record]:
    """Records of every colour x shape, ``variants`` drawings each; the caption names both."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for colour in COLOURS:
        for shape in SHAPES:
            for v in range(variants):
                path = _draw(folder / f"{colour}_{shape}_{v}.png", colour, shape, rng)
                records.append(
                    Record(
                        image=path,
                        title=f"a {colour} {shape}",
                        label=f"{colour} {shape}",
                        recipe_id=f"{colour} {shape}",
                    )
                )
    return records


def kill_once_written(process, total: int, at_least: int, timeout: float) -> int:
    """SIGKILL ``process`` (text stderr piped) as soon as its progress bar shows at least
    ``at_least`` of ``total`` items written; returns the count it showed. Fails the test if
    the run ended before it was killed."""
    import re
    import signal
    import threading

    seen = []

    def watch():
        buffer = ""
        while (char := process.stderr.read(1)) != "":
            buffer = buffer[-300:] + char
            done = re.findall(rf"(\d+)/{total}", buffer)
            if done and int(done[-1]) >= at_least:
                seen.append(int(done[-1]))
                process.send_signal(signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    process.wait(timeout=timeout)
    watcher.join(timeout=5)
    assert process.returncode == -signal.SIGKILL and seen, "the run ended before it was killed"
    return seen[0]
