"""Read any supported data set into records: Recipes5k, a CSV/JSONL manifest, or a folder.

>>> records = read_records("../shared/datasets/recipes5k", split="val")  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from pathlib import Path

from multimodal.data.folders import Photo, link_problem, list_folder
from multimodal.data.images import IMAGE_SUFFIXES
from multimodal.data.recipes5k import is_recipes5k, read_recipes5k, recipes5k_splits
from multimodal.data.records import Record, printable
from multimodal.files import open_regular

IMAGE_COLUMNS = ("image", "image_path", "filepath", "file", "path", "filename")
CAPTION_COLUMNS = ("caption", "text", "title")
LABEL_COLUMNS = ("label", "class", "category", "dish_type")
GROUP_COLUMNS = ("recipe_id", "group", "group_id")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
MORE_CELLS = "\0more cells"  # where a CSV row keeps cells past the header (no column has a NUL)
BYTE_ORDER_MARKS = (  # UTF-32's marks first: UTF-32-LE's starts with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ENCODING_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}


def read_records(
    path: str | Path,
    split: str | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    follow_links: bool = False,
) -> list[Record]:
    """Records of the data set at ``path``; ``split`` None means all of it. A file the data
    set names or holds that is not read (a link that leaves the data folder, unless
    ``follow_links``; in a folder, a file that is no photo) is a record with its reason in
    ``error``, for the indexer's rejects."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no data set at {path}: give a Recipes5k folder, a manifest or a folder")
    if path.is_dir() and is_recipes5k(path):
        return read_recipes5k(path, split, follow_links)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(path, split, image_column, caption_column, follow_links)
    if path.is_dir():
        if split is not None:
            raise ValueError(f"{path} is a plain folder of images and has no split {split!r}")
        return read_image_folder(path, follow_links)
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
    follow_links: bool = False,
) -> list[Record]:
    """A CSV or JSONL file (UTF-8, or UTF-8/16/32 with a byte-order mark) with an image column
    and a caption column; other columns are kept as metadata. Relative image paths are resolved
    against the manifest's folder. A row that cannot be used keeps its reason in ``error``: a
    photo in the manifest's folder that a link takes outside it, unless ``follow_links``."""
    path = Path(path).resolve()
    columns, rows = _read_rows(path)
    if not rows:
        raise ValueError(f"manifest {path} has no rows")
    keys = {
        "image": _pick_column(path, columns, image_column, IMAGE_COLUMNS),
        "caption": _pick_column(path, columns, caption_column, CAPTION_COLUMNS),
        "label": _pick_column(path, columns, None, LABEL_COLUMNS),
        "group": _pick_column(path, columns, None, GROUP_COLUMNS),
    }
    _require_columns(path, columns, keys["image"], keys["caption"])
    records = [
        _manifest_record(path, row, keys, follow_links)
        for row in rows
        if split is None or str(row.get("split", "")) == split
    ]
    if split is not None and not records:
        raise ValueError(f"manifest {path} has no rows with split {split!r}")
    return records


def read_image_folder(folder: str | Path, follow_links: bool = False) -> list[Record]:
    """Every photo below ``folder`` (:func:`~multimodal.data.folders.list_folder`); a ``.txt``
    file beside a photo is its caption, and the first sub-folder is its label. Each other
    file, hidden file or folder, and a photo or caption that a link takes outside ``folder``
    (unless ``follow_links``) is a record with its reason in ``error``, never left out in
    silence."""
    folder = Path(folder).resolve()
    listing = list_folder(folder, follow_links)
    if not listing.photos:
        raise ValueError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}, in any letter case) found under {folder}"
        )
    records = [_folder_record(folder, photo) for photo in listing.photos]
    return records + [
        Record(image=skipped.path, source=folder.name, root=folder, error=skipped.reason)
        for skipped in listing.skipped
    ]


def read_text(path: str | Path) -> str:
    """The text of a file in UTF-8, or in UTF-8/16/32 with a byte-order mark (what spreadsheets
    and Windows editors write); anything else is a ValueError naming the file and the fix."""
    with open_regular(path) as handle:  # a named pipe as a caption file would block the run
        data = handle.read()
    encoding = next((name for bom, name in BYTE_ORDER_MARKS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].decode(encoding, "replace").count("\n") + 1
        hint = ' (a spreadsheet\'s "CSV UTF-8")' if Path(path).suffix.lower() == ".csv" else ""
        raise ValueError(
            f"{printable(path)} is not {_ENCODING_NAMES[encoding]} text (byte "
            f"{data[err.start]:#04x} on line {line}): save it as UTF-8{hint}"
        ) from None
    if "\0" in text:
        raise ValueError(
            f"{printable(path)} holds NUL characters (UTF-16 without a byte-order mark?): "
            "save it as UTF-8"
        )
    return text


def _folder_record(folder: Path, photo: Photo) -> Record:
    relative = photo.path.relative_to(folder)
    title, error = ("", photo.problem) if photo.problem else _sidecar_caption(photo.caption)
    return Record(
        image=photo.path,
        title=title,
        label=relative.parts[0] if len(relative.parts) > 1 else None,
        source=folder.name,
        root=folder,
        error=error,
    )


def _sidecar_caption(caption_file: Path | None) -> tuple[str, str | None]:
    """The caption in a photo's ``.txt`` file ("" without one), and why it could not be
    read: that makes only this photo a reject, never the whole folder."""
    if caption_file is None:
        return "", None
    try:
        return read_text(caption_file).strip(), None
    except ValueError as err:
        return "", str(err)
    except OSError as err:
        return "", f"cannot read {printable(caption_file)}: {err.strerror or err}"


def _read_rows(path: Path) -> tuple[list[str], list[dict]]:
    """The manifest's column names and its rows."""
    text = read_text(path)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey=MORE_CELLS)
        try:
            rows = list(reader)
        except csv.Error as err:
            raise ValueError(f"{path} line {reader.line_num} is not CSV: {err}") from None
        return list(reader.fieldnames or []), rows
    rows = []
    for number, line in enumerate(re.split(r"\r\n?|\n", text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:  # bad JSON, too many digits, too deep
            raise ValueError(f"{path} line {number} is not JSON: {err}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {number} is not a JSON object")
        rows.append(row)
    return list(dict.fromkeys(key for row in rows for key in row)), rows


def _pick_column(path: Path, columns: list[str], wanted: str | None, candidates: tuple[str, ...]):
    """``wanted`` (exactly, else ignoring case and spaces around it), or the first of
    ``candidates`` that the manifest has; None when none is there."""
    normalised: dict[str, str] = {}
    for column in columns:
        normalised.setdefault(column.strip().lower(), column)
    if wanted is None:
        return next((normalised[c] for c in candidates if c in normalised), None)
    found = wanted if wanted in columns else normalised.get(wanted.strip().lower())
    if found is None:
        raise ValueError(f"{path} has no column {wanted!r} (its columns: {_listed(columns)})")
    return found


def _require_columns(path: Path, columns: list[str], image_key, caption_key) -> None:
    """Both columns there, and once: a CSV row keeps only the last of two same-named cells."""
    for key in (image_key, caption_key):
        if key is not None and columns.count(key) > 1:
            raise ValueError(f"manifest {path} has the column {key!r} twice: rename one")
    if image_key is None and caption_key is None:
        raise ValueError(
            f"manifest {path} has no image column and no caption column (its columns: "
            f"{_listed(columns)}); name them with --image-column and --caption-column"
        )
    for key, kind, candidates in (
        (image_key, "image", IMAGE_COLUMNS),
        (caption_key, "caption", CAPTION_COLUMNS),
    ):
        if key is None:
            raise ValueError(
                f"manifest {path} has no {kind} column (one of {', '.join(candidates)}; its "
                f"columns: {_listed(columns)}); name it with --{kind}-column"
            )


def _listed(columns: list[str], most: int = 20) -> str:
    shown = ", ".join(repr(column) for column in columns[:most])  # repr shows spaces and BOMs
    return shown + (f", ... ({len(columns)} in all)" if len(columns) > most else "")


def _manifest_record(path: Path, row: dict, keys: dict[str, str | None], follow_links) -> Record:
    image, error = _image_path(path.parent, str(row.get(keys["image"]) or "").strip(), follow_links)
    more = [cell for cell in row.get(MORE_CELLS) or [] if str(cell).strip()]
    if more and not error:
        error = (
            f"its row has {len(more)} more cells than the header (a caption that holds a "
            "comma needs quotes)"
        )
    used = {*keys.values(), "split", "ingredients", MORE_CELLS}
    record = Record(
        image=image,
        title=str(row.get(keys["caption"]) or "").strip(),
        ingredients=_as_list(row.get("ingredients")),
        label=_optional_str(row.get(keys["label"])),
        recipe_id=_optional_str(row.get(keys["group"])),
        split=_optional_str(row.get("split")),
        source=path.stem,
        root=path.parent,
        extra={k: v for k, v in row.items() if k not in used},
        error=error,
    )
    if image is None and not record.has_text and not error:
        record.error = "its row has no image, no caption and no ingredients: nothing to index"
    return record


def _image_path(folder: Path, value: str, follow_links: bool) -> tuple[Path | None, str | None]:
    """The absolute image path of a manifest cell (its links not followed: a link inside the
    folder keeps its own name), and why it is not read: no file name (a NUL, ...), or a link
    that leaves the manifest's folder (unless ``follow_links``)."""
    if not value:
        return None, None
    image = Path(os.path.normpath(folder / value))
    if "\0" in value:  # never a file name: said whether or not links are followed
        return image, f"{printable(value)!r} is not a valid file name (a NUL in it)"
    return image, link_problem(image, folder, follow_links)


def _as_list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    separator = ";" if ";" in str(value) else ","
    return [part.strip() for part in str(value).split(separator) if part.strip()]


def _optional_str(value) -> str | None:
    return None if value is None or value == "" else str(value)
