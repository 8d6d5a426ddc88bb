"""Reader for the official Recipes5k layout (Bolaños et al., 2017).

images/<dish_type>/<image>.jpg
annotations/<split>_images.txt     image paths relative to images/, one per line
annotations/<split>_labels.txt     for each image, a 0-based line number into:
annotations/classes_Recipes5k.txt                 recipe titles
annotations/ingredients_Recipes5k.txt             raw ingredients, comma-separated
annotations/ingredients_simplified_Recipes5k.txt  the same, as base ingredients
"""

from __future__ import annotations

import os
from pathlib import Path

from multimodal.data.download import RECIPES5K_SHA256, RECIPES5K_URL, fetch_dataset
from multimodal.data.folders import link_problem
from multimodal.data.records import Record
from multimodal.paths import data_home

SOURCE = "recipes5k"
KNOWN_SPLITS = ("train", "val", "test")
TITLES = "classes_Recipes5k.txt"
INGREDIENTS = "ingredients_Recipes5k.txt"
INGREDIENTS_SIMPLIFIED = "ingredients_simplified_Recipes5k.txt"
DATA_ENV = "MULTIMODAL_RECIPES5K"
# Where the project's checkout keeps the shared copy (from the repository root).
SHARED_COPY = Path("../shared/datasets/recipes5k")


def is_recipes5k(root: str | Path) -> bool:
    root = Path(root)
    return (root / "annotations" / TITLES).is_file() and (root / "images").is_dir()


def recipes5k_splits(root: str | Path) -> list[str]:
    """The splits present, known ones first in train/val/test order."""
    annotations = Path(root) / "annotations"
    found = {p.name[: -len("_images.txt")] for p in annotations.glob("*_images.txt")}
    return [s for s in KNOWN_SPLITS if s in found] + sorted(found - set(KNOWN_SPLITS))


def read_recipes5k(
    root: str | Path, split: str | None = None, follow_links: bool = False
) -> list[Record]:
    """Records of one split, or of every split present when ``split`` is None. A photo that
    a link takes outside ``root`` keeps the reason in ``error`` (unless ``follow_links``)."""
    root = Path(root).resolve()
    present = recipes5k_splits(root)
    if split is not None and split not in present:
        raise ValueError(
            f"Recipes5k at {root} has no split {split!r}; present: {', '.join(present) or 'none'}"
        )
    annotations = root / "annotations"
    titles = _lines(annotations / TITLES)
    ingredients = _lines(annotations / INGREDIENTS)
    simplified = _lines(annotations / INGREDIENTS_SIMPLIFIED)
    if not len(titles) == len(ingredients) == len(simplified):
        raise ValueError(
            f"Recipes5k annotations at {annotations} disagree: {len(titles)} titles, "
            f"{len(ingredients)} ingredient lists, {len(simplified)} simplified lists"
        )
    records = []
    for name in [split] if split else present:
        for image, label in _split_entries(annotations, name, len(titles)):
            path = root / "images" / image
            records.append(
                Record(
                    image=path,
                    title=titles[label].strip(),
                    ingredients=_split_list(ingredients[label]),
                    ingredients_simplified=_split_list(simplified[label]),
                    label=image.split("/")[0],
                    recipe_id=str(label),
                    split=name,
                    source=SOURCE,
                    root=root,
                    error=link_problem(path, root, follow_links),
                )
            )
    return records


def _split_entries(annotations: Path, split: str, n_recipes: int) -> list[tuple[str, int]]:
    images = [line.strip() for line in _lines(annotations / f"{split}_images.txt")]
    labels = [line.strip() for line in _lines(annotations / f"{split}_labels.txt")]
    if len(images) != len(labels):
        raise ValueError(
            f"Recipes5k split {split!r}: {len(images)} images but {len(labels)} labels"
        )
    entries = []
    for number, (image, label) in enumerate(zip(images, labels, strict=True), start=1):
        if not image:
            continue
        if not label.isdigit() or int(label) >= n_recipes:
            raise ValueError(
                f"{annotations / f'{split}_labels.txt'} line {number}: {label!r} is not a "
                f"recipe line number below {n_recipes}"
            )
        entries.append((image, int(label)))
    return entries


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"Recipes5k file missing: {path}") from None


def _split_list(line: str) -> list[str]:
    return [item.strip() for item in line.split(",") if item.strip()]


def find_recipes5k(explicit: str | None = None) -> Path | None:
    """``--data``, then ``$MULTIMODAL_RECIPES5K``, then the checkout's shared copy, then a
    copy the demo downloaded before."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no data set at {path}")
        if not is_recipes5k(path):
            raise ValueError(f"{path} is not a Recipes5k folder (no annotations/ and images/)")
        return path
    candidates = [os.environ.get(DATA_ENV), SHARED_COPY, data_home() / "datasets" / "recipes5k"]
    for candidate in candidates:
        if candidate:
            found = recipes5k_root(Path(candidate).expanduser())
            if found is not None:
                return found
    return None


def ensure_recipes5k(
    explicit: str | None = None,
    url: str = RECIPES5K_URL,
    sha256: str | None = RECIPES5K_SHA256,
    progress: bool = True,
) -> Path:
    """A Recipes5k folder: one found by :func:`find_recipes5k`, else the official archive
    downloaded (with a progress bar, checked against ``sha256`` when given) into the data home."""
    found = find_recipes5k(explicit)
    if found is not None:
        return found
    target = data_home() / "datasets" / "recipes5k"
    print(f"Recipes5k not found locally; downloading it to {target}")
    return fetch_dataset(url, target, recipes5k_root, sha256, progress)


def recipes5k_root(path: Path) -> Path | None:
    """The Recipes5k folder at ``path`` or one level inside it (archives wrap it)."""
    if path.is_dir() and is_recipes5k(path):
        return path
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_dir() and is_recipes5k(child):
                return child
    return None
