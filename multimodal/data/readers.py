"""Read any supported data set into records: Recipes5k, a CSV/JSONL manifest, or a folder.

>>> records = read_records("../shared/datasets/recipes5k", split="val")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from multimodal.data.images import IMAGE_SUFFIXES
from multimodal.data.recipes5k import is_recipes5k, read_recipes5k, recipes5k_splits
from multimodal.data.records import Record

IMAGE_COLUMNS = ("image", "image_path", "filepath", "file", "path", "filename")
CAPTION_COLUMNS = ("caption", "text", "title")
LABEL_COLUMNS = ("label", "class", "category", "dish_type")
GROUP_COLUMNS = ("recipe_id", "group", "group_id")
MANIFEST_SUFFIXES = (".csv", ".jsonl")


def read_records(
    path: str | Path,
    split: str | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
) -> list[Record]:
    """Records of the data set at ``path``; ``split`` None means all of it."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no data set at {path}: give a Recipes5k folder, a manifest or a folder")
    if path.is_dir() and is_recipes5k(path):
        return read_recipes5k(path, split)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(path, split, image_column, caption_column)
    if path.is_dir():
        if split is not None:
            raise ValueError(f"{path} is a plain folder of images and has no split {split!r}")
        return read_image_folder(path)
    raise ValueError(f"{path}: not a Recipes5k folder, a .csv/.jsonl manifest or a folder")


def dataset_splits(path: str | Path) -> list[str]:
    """The splits a data set declares (empty when it has none)."""
    path = Path(path)
    if path.is_dir() and is_recipes5k(path):
        return recipes5k_splits(path)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        splits = {r.split for r in read_manifest(path) if r.split}
        return sorted(splits)
    return []


def read_manifest(
    path: str | Path,
    split: str | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
) -> list[Record]:
    """A CSV or JSONL file with an image column and a caption column; other columns are kept
    as metadata. Relative image paths are resolved against the manifest's folder."""
    path = Path(path).resolve()
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"manifest {path} has no rows")
    columns = list(rows[0])
    image_key = _pick_column(columns, image_column, IMAGE_COLUMNS)
    caption_key = _pick_column(columns, caption_column, CAPTION_COLUMNS)
    if image_key is None and caption_key is None:
        raise ValueError(
            f"manifest {path} has no image or caption column (columns: {', '.join(columns)}); "
            "name them with --image-column and --caption-column"
        )
    label_key = _pick_column(columns, None, LABEL_COLUMNS)
    group_key = _pick_column(columns, None, GROUP_COLUMNS)
    records = []
    for row in rows:
        if split is not None and str(row.get("split", "")) != split:
            continue
        image = str(row.get(image_key) or "").strip() if image_key else ""
        used = {image_key, caption_key, label_key, group_key, "split", "ingredients"}
        records.append(
            Record(
                image=(path.parent / image).resolve() if image else None,
                title=str(row.get(caption_key) or "").strip() if caption_key else "",
                ingredients=_as_list(row.get("ingredients")),
                label=_optional_str(row.get(label_key)) if label_key else None,
                recipe_id=_optional_str(row.get(group_key)) if group_key else None,
                split=_optional_str(row.get("split")),
                source=path.stem,
                root=path.parent,
                extra={k: v for k, v in row.items() if k not in used},
            )
        )
    if split is not None and not records:
        raise ValueError(f"manifest {path} has no rows with split {split!r}")
    return records


def read_image_folder(folder: str | Path) -> list[Record]:
    """Every image below ``folder``; a ``.txt`` file beside an image is its caption, and the
    first sub-folder is its label."""
    folder = Path(folder).resolve()
    records = []
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if not image.is_file() or any(part.startswith(".") for part in image.parts):
            continue
        caption_file = image.with_suffix(".txt")
        relative = image.relative_to(folder)
        records.append(
            Record(
                image=image,
                title=caption_file.read_text(encoding="utf-8").strip()
                if caption_file.is_file()
                else "",
                label=relative.parts[0] if len(relative.parts) > 1 else None,
                source=folder.name,
                root=folder,
            )
        )
    if not records:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    return records


def _read_rows(path: Path) -> list[dict]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number} is not JSON: {err}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {number} is not a JSON object")
            rows.append(row)
    return rows


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...]):
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(
                f"no column {wanted!r} in the manifest (columns: {', '.join(columns)})"
            )
        return wanted
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _as_list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    separator = ";" if ";" in str(value) else ","
    return [part.strip() for part in str(value).split(separator) if part.strip()]


def _optional_str(value) -> str | None:
    return None if value is None or value == "" else str(value)
