"""Good / Not this marks: what a person said about a search's results, kept per collection as
JSON lines (one mark a line, appended; :func:`multimodal.paths.marks_path` says where), and
the training pairs they make.

A mark, as :mod:`indexer.marks` writes it::

    {"when": "2026-12-05T10:00:00+00:00", "collection": "recipes5k", "good": false,
     "query": {"text": "apple pie"},            # or a stored point: {"point": ID, "title": ...,
                                                #   "ingredients": [...], "image": PATH}
     "hit": {"id": ID, "image": "/photos/12.jpg", "title": "Tarte tatin",
             "ingredients": [...], "label": "apple_pie", "recipe_id": "..."}}

The hit (and a stored query point) is copied into the mark when it is made, so the marks still
train a model after the collection is rebuilt or its files move.

A training pair (what ``multimodal marks export`` writes and ``multimodal train --marks``
reads): the query's text (the words, or the stored point's caption) with the hit's photo,
``good`` true for a positive pair and false for a hard negative of that text::

    {"title": "apple pie", "ingredients": [], "image": "/photos/12.jpg", "good": false,
     "label": "apple_pie", "recipe_id": "...", "hit_title": "Tarte tatin",
     "hit_ingredients": [...], "when": "..."}
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

_APPEND_LOCK = threading.Lock()  # one writer at a time in this process (the server's threads)


def append_mark(path: Path, mark: dict) -> None:
    """Append ``mark`` as one line to the marks file ``path`` (made with its folder when
    missing), written and synced in one ``O_APPEND`` write: a crash leaves at most a torn last
    line, which :func:`read_marks` skips, and never touches the marks before it."""
    line = (json.dumps(mark, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _APPEND_LOCK:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


def read_lines(path: Path) -> list[dict]:
    """The JSON objects of a marks or pairs file, in order ([] for a missing file). A damaged
    line is one ValueError naming the file and line; a last line without its newline (a write
    cut short) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # what follows the last newline: "" or a torn write
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path}, line {number}, is not a mark: {err}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}, is not a mark: not a JSON object")
        rows.append(row)
    if torn.strip():
        with contextlib.suppress(ValueError):  # cut short by a crash: the marks before stand
            rows.append(json.loads(torn))
    return rows


def query_key(query: dict) -> str:
    """What makes two marks' queries the same: the stored point, else the words."""
    if query.get("point"):
        return f"point:{query['point']}"
    return "text:" + " ".join(str(query.get("text", "")).lower().split())


def latest(marks: Iterable[dict]) -> list[dict]:
    """Each (query, hit) once, as last marked (Good then Not this is Not this), in the order
    they were last marked."""
    last: dict[tuple[str, str], dict] = {}
    for mark in marks:
        key = (query_key(mark["query"]), str(mark["hit"]["id"]))
        last.pop(key, None)
        last[key] = mark
    return list(last.values())


def training_pair(mark: dict) -> dict | None:
    """The training pair of one mark (see the module's docstring); None when it has no text
    to learn from (a search by an uploaded photo only) or its hit has no photo."""
    query, hit = mark["query"], mark["hit"]
    title = (query.get("text") if not query.get("point") else query.get("title")) or ""
    ingredients = list(query.get("ingredients") or []) if query.get("point") else []
    if not (title.strip() or ingredients) or not hit.get("image"):
        return None
    return {
        "title": title.strip(),
        "ingredients": ingredients,
        "image": hit["image"],
        "good": bool(mark["good"]),
        "label": hit.get("label"),
        "recipe_id": hit.get("recipe_id"),
        "hit_title": hit.get("title") or "",
        "hit_ingredients": list(hit.get("ingredients") or []),
        "when": mark.get("when"),
    }


def training_pairs(marks: Iterable[dict]) -> list[dict]:
    """The training pairs of a collection's marks: each (query, hit) as last marked."""
    pairs = (training_pair(mark) for mark in latest(marks))
    return [pair for pair in pairs if pair is not None]


def read_pairs(path: Path) -> list[dict]:
    """Training pairs from ``path``: a collection's marks file or what ``marks export``
    wrote (told apart by their lines)."""
    rows = read_lines(path)
    if not rows:
        raise ValueError(f"{path} holds no marks: mark results Good / Not this first")
    if all("hit" in row and "query" in row for row in rows):
        return training_pairs(rows)
    if not all("image" in row and "good" in row for row in rows):
        raise ValueError(f"{path} is neither a marks file nor an export of training pairs")
    return rows


def write_pairs(path: Path, pairs: list[dict]) -> None:
    """Write training pairs as JSON lines (replacing ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(pair, ensure_ascii=False, sort_keys=True) + "\n" for pair in pairs)
    path.write_text(text, encoding="utf-8")
