"""The one record type every reader returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

# What a JSON store takes (Qdrant's payload parser stops at 128 levels and at 64-bit integers).
MAX_DEPTH = 32
INTEGER_RANGE = (-(2**63), 2**64)


@dataclass
class Record:
    image: Path | None  # absolute path of the image file; None for a text-only item
    title: str = ""  # the caption, or the recipe title; "" for an image-only item
    ingredients: list[str] = field(default_factory=list)  # ingredient phrases, as written
    ingredients_simplified: list[str] = field(default_factory=list)  # base ingredients
    label: str | None = None  # class for class-aware metrics (the dish type in Recipes5k)
    recipe_id: str | None = None  # items sharing an id are one recipe (never negatives)
    split: str | None = None  # train / val / test, when the data set has splits
    source: str = ""  # data-set name, e.g. "recipes5k"
    root: Path | None = None  # data-set root; ids and stored paths are relative to it
    extra: dict = field(default_factory=dict)  # any other manifest columns
    error: str | None = None  # why the reader could not use it (e.g. its caption file's bytes)

    @property
    def relative_image(self) -> str | None:
        """The image path relative to the data-set root, with forward slashes."""
        if self.image is None:
            return None
        if self.root is None:
            return self.image.as_posix()
        try:
            return self.image.relative_to(self.root).as_posix()
        except ValueError:
            return self.image.as_posix()

    @property
    def has_text(self) -> bool:
        return bool(self.title.strip() or self.ingredients)

    def metadata(self) -> dict:
        """A flat, JSON-ready description (what embed writes and the indexer stores)."""
        return {
            "image": self.relative_image,
            "title": self.title,
            "ingredients": self.ingredients,
            "ingredients_simplified": self.ingredients_simplified,
            "label": self.label,
            "recipe_id": self.recipe_id,
            "split": self.split,
            "source": self.source,
            **self.extra,
        }

    def problem(self) -> str | None:
        """Why this item cannot be stored or written out as JSON, or None: what its reader
        found, a file name that is not UTF-8 (from another system), or metadata JSON cannot
        hold (NaN, a lone surrogate, nesting deeper than a store takes)."""
        if self.error:
            return self.error
        if not all(path is None or _is_utf8(str(path)) for path in (self.image, self.root)):
            return "the file name is not valid UTF-8: rename the file"
        for key, value in self.metadata().items():
            reason = _json_problem(value) if _is_utf8(key) else "name is not valid UTF-8"
            if reason:
                return f"the {printable(key)!r} field {reason}"
        return None


def printable(text) -> str:
    """``text`` (a str or a path) as valid UTF-8, for messages and JSON: the bytes of a file
    name that are not UTF-8 show as ``\\xNN``."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_utf8(text) -> bool:
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_problem(value, depth: int = 0) -> str | None:
    """What keeps ``value`` from being strict JSON in a store, or None."""
    if depth > MAX_DEPTH:
        return f"is nested deeper than {MAX_DEPTH} levels"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return None if _is_utf8(value) else "is not valid UTF-8 text"
    if isinstance(value, int):
        low, high = INTEGER_RANGE
        return None if low <= value < high else "holds a number too large to store"
    if isinstance(value, float):
        return None if math.isfinite(value) else "holds NaN or infinity"
    if isinstance(value, dict):
        if not all(isinstance(key, str) and _is_utf8(key) for key in value):
            return "has a key that is not UTF-8 text"
        value = list(value.values())
    if not isinstance(value, list | tuple):
        return f"holds a {type(value).__name__}, which JSON cannot store"
    return next(filter(None, (_json_problem(item, depth + 1) for item in value)), None)
