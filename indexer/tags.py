"""Labels from the user's own words: each photo gets the labels of a list whose text matches it.

    >>> labels = read_labels("assets/labels/course.txt")   # "dessert: a sweet dish, cake"
    >>> tagged = tag_points(encoder, store, "recipes5k", "course", labels)

A label file has one label a line, optionally ``label: a longer description`` (the
description is what the text tower reads; the label is what is written). Each photo gets its
best label and any other whose similarity is within ``margin`` of the best, written to the
payload field ``FIELD`` (a list, best first, so ``--where FIELD=VALUE`` filters on any of
them) and ``FIELD_scores`` (label -> cosine). A rerun replaces both fields.

The collection records each field's labels and margin (metadata ``tags``), so photos indexed
later, by a rerun of ``multimodal index`` or a watched folder, are tagged as they are written
(:class:`Tagger`), and the page offers the labels as filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.store import Store

FIELD_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
RESERVED = {"image", "root", "title", "label", "ingredients", "base_ingredients", "text", "split"}
RESERVED |= {"recipe_id", "source", "content_hash"}
DEFAULT_MARGIN = 0.02  # cosine below the best label at which another label is also given
MAX_LABELS = 1000
PAGE = 256  # points tagged per store update
TAGS = "tags"  # collection metadata: field -> {"labels": [[name, text], ...], "margin": m}


@dataclass(frozen=True)
class Label:
    name: str  # what is written to the payload
    text: str  # what the text tower reads


def read_labels(path: str | Path) -> list[Label]:
    """The labels of a file: one a line, ``label`` or ``label: description``; blank lines and
    ``#`` comments skipped; a label twice, an empty file or more than :data:`MAX_LABELS` is a
    ValueError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no labels file {path}")
    labels: dict[str, Label] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, description = (part.strip() for part in line.partition(":"))
        if not name:
            raise ValueError(f"{path}:{number}: a label before the ':' is missing")
        if name in labels:
            raise ValueError(f"{path}:{number}: the label {name!r} is given twice")
        labels[name] = Label(name, description or name)
    if len(labels) < 2:
        raise ValueError(f"{path}: give at least two labels, one a line")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{path}: {len(labels)} labels; at most {MAX_LABELS}")
    return list(labels.values())


def check_field(field: str) -> str:
    """``field`` if it may hold tags: a plain name that is not one the indexer writes."""
    if not FIELD_PATTERN.match(field):
        raise ValueError(f"bad field name {field!r}: a letter, then letters, digits or '_'")
    if field in RESERVED or (field.endswith("_scores") and field[: -len("_scores")] in RESERVED):
        raise ValueError(f"the field {field!r} is written by multimodal index; pick another")
    return field


def choose(scores: np.ndarray, names: list[str], margin: float) -> tuple[list[str], dict]:
    """The best label and those within ``margin`` of it, best first, and every score."""
    order = np.argsort(-scores, kind="stable")
    best = float(scores[order[0]])
    chosen = [names[i] for i in order if float(scores[i]) >= best - margin]
    return chosen, {names[i]: round(float(scores[i]), 4) for i in order}


def tag_points(
    encoder,
    store: Store,
    collection: str,
    field: str,
    labels: list[Label],
    margin: float = DEFAULT_MARGIN,
    dry_run: bool = False,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> list[tuple[str, list[str], dict]]:
    """Tag every photo of ``collection``: (point id, labels chosen, scores) for each, written
    to ``field`` and ``field_scores`` unless ``dry_run``. Points without a photo are left
    as they are."""
    check_field(field)
    names = [label.name for label in labels]
    label_vectors = encoder.encode_texts([label.text for label in labels])
    tagged = []
    points = store.scroll(collection, fields=["image"], with_vectors=True)
    page: dict[str, dict] = {}
    for point in progress(points):
        vector = point.vectors.get("image")
        if not vector:
            continue
        scores = label_vectors @ np.asarray(vector, np.float32)
        chosen, every = choose(scores, names, margin)
        tagged.append((point.id, chosen, every))
        page[point.id] = {field: chosen, f"{field}_scores": every}
        if len(page) >= PAGE and not dry_run:
            _write(store, collection, page)
            page = {}
    if page and not dry_run:
        _write(store, collection, page)
    if not dry_run:
        record_field(store, collection, field, labels, margin)
    return tagged


def record_field(
    store: Store, collection: str, field: str, labels: list[Label], margin: float
) -> None:
    """Note ``field`` as one of the collection's tag fields, with its labels and margin."""
    recorded = dict(store.metadata(collection).get(TAGS) or {})
    recorded[field] = {"labels": [[lb.name, lb.text] for lb in labels], "margin": margin}
    store.update_metadata(collection, {TAGS: recorded})


def tag_choices(metadata: dict) -> dict[str, list[str]]:
    """The collection's tag fields and their labels, as ``multimodal tag`` recorded them."""
    return {
        field: [name for name, _ in spec["labels"]]
        for field, spec in sorted((metadata.get(TAGS) or {}).items())
    }


@dataclass
class Tagger:
    """The recorded tag fields of a collection, ready to tag a photo vector as it is indexed
    (plain arrays: it travels to Ray's writers pickled)."""

    fields: dict[str, tuple[list[str], np.ndarray, float]]  # field -> (names, vectors, margin)

    @classmethod
    def for_collection(cls, encoder, metadata: dict) -> Tagger | None:
        """None when the collection has no tag fields."""
        fields = {}
        for field, spec in (metadata.get(TAGS) or {}).items():
            names = [name for name, _ in spec["labels"]]
            vectors = encoder.encode_texts([text for _, text in spec["labels"]])
            fields[field] = (names, np.asarray(vectors, np.float32), float(spec["margin"]))
        return cls(fields) if fields else None

    def payload(self, image_vector) -> dict:
        """Every tag field (and its scores) for one photo vector."""
        found = {}
        for field, (names, vectors, margin) in self.fields.items():
            chosen, every = choose(vectors @ np.asarray(image_vector, np.float32), names, margin)
            found.update({field: chosen, f"{field}_scores": every})
        return found


def _write(store: Store, collection: str, payloads: dict[str, dict]) -> None:
    """Each point's tag fields, set in one store update (other fields kept)."""
    store.set_point_payloads(collection, payloads)
