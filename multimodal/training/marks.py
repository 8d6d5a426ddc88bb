"""A person's marks as training data (``multimodal train --marks``).

- A Good mark is a new training pair: the query's text with the hit's photo, in the hit's
  recipe group (so it is never a negative of the hit's own caption) and with the hit's dish
  type.
- A Not this mark is a fixed hard negative: the hit's photo joins the candidates of every pair
  of that query's text, each epoch, beside any mined negatives. A hit that is not a training
  item already joins as its own pair (its photo and caption), so it can be a candidate. A query
  with no Good mark has no pair to attach its negatives to: they are left out (counted in the
  run's log line).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from multimodal.data.marks import read_pairs, write_pairs
from multimodal.data.records import Record
from multimodal.training.config import TrainConfig
from multimodal.training.data import TrainSet
from multimodal.training.persistence import STATE_FILE

log = logging.getLogger(__name__)

SOURCE = "marks"  # the source of the records marks add
RUN_FILE = "marks.jsonl"  # the run's own copy of its pairs, so a resume trains on the same


def run_pairs(config: TrainConfig) -> list[dict]:
    """The training pairs of ``config.marks`` ([] without), copied into the run folder when
    the run starts and read from that copy when it resumes (marks made meanwhile wait for the
    next run)."""
    if not config.marks:
        return []
    kept = Path(config.out) / RUN_FILE
    if not (Path(config.out) / STATE_FILE).exists():
        source = Path(config.marks)
        if not source.is_file():
            raise ValueError(f"--marks: no file {source}")
        pairs = read_pairs(source)
        write_pairs(kept, pairs)
        return pairs
    return read_pairs(kept)


def text_key(title: str, ingredients) -> str:
    """A query's text as marks group it."""
    return " ".join(title.lower().split()) + " | " + ", ".join(ingredients or [])


def marked_records(pairs: list[dict], records: list[Record]) -> list[Record]:
    """The records ``pairs`` add to the training ``records``: each positive pair, and each
    negative photo that no training record has."""
    known = {str(r.image) for r in records if r.image is not None}
    added = []
    for pair in pairs:
        image = Path(pair["image"])
        if pair["good"]:
            added.append(
                Record(
                    image=image,
                    title=pair["title"],
                    ingredients=list(pair.get("ingredients") or []),
                    label=pair.get("label"),
                    recipe_id=pair.get("recipe_id") or f"{SOURCE}:{image}",
                    split="train",
                    source=SOURCE,
                    extra={"mark_query": text_key(pair["title"], pair.get("ingredients"))},
                )
            )
        elif str(image) not in known:
            added.append(
                Record(
                    image=image,
                    title=pair.get("hit_title") or "",
                    ingredients=list(pair.get("hit_ingredients") or []),
                    label=pair.get("label"),
                    recipe_id=pair.get("recipe_id") or f"{SOURCE}:{image}",
                    split="train",
                    source=SOURCE,
                )
            )
        known.add(str(image))
    return added


def marked_negatives(train_set: TrainSet, pairs: list[dict]) -> np.ndarray | None:
    """``(N, k)`` training-item indices of each pair's fixed negative photos (-1: none), or
    None when no Not this mark has a pair to join."""
    first_with_image: dict[str, int] = {}
    anchors: dict[str, list[int]] = {}
    for index, record in enumerate(train_set.records):
        first_with_image.setdefault(str(record.image), index)
        key = record.extra.get("mark_query") if record.source == SOURCE else None
        if key is not None:
            anchors.setdefault(key, []).append(index)
    negatives: dict[int, list[int]] = {}
    orphans = 0
    for pair in pairs:
        if pair["good"]:
            continue
        rows = anchors.get(text_key(pair["title"], pair.get("ingredients")), [])
        image = first_with_image.get(str(pair["image"]))
        if not rows or image is None:
            orphans += 1
            continue
        for row in rows:
            negatives.setdefault(row, []).append(image)
    if orphans:
        log.info("%d Not this marks have no Good mark of their query to join", orphans)
    if not negatives:
        return None
    table = np.full((len(train_set), max(map(len, negatives.values()))), -1, dtype=np.int64)
    for row, found in negatives.items():
        table[row, : len(found)] = found
    return table
