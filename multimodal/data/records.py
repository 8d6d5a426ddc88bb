"""The one record type every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
