"""Query expressions: ``'"2:strawberry tart" + photo.jpg - chocolate'`` -> weighted terms.

A mixed query is a sum of unit vectors, each with a sign and a weight (rclip's and Marqo's
convention), normalised again; every term is text unless it is a stored point (``id:UUID``)
or, where the caller allows paths (the command line does, the page never), an image file.
:class:`indexer.search.Searcher` turns the terms into one query vector.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from indexer.point_ids import point_id
from indexer.store import MODES, StoredPoint
from multimodal.data.images import IMAGE_SUFFIXES

TARGETS = ("image", "text")
MAX_RESULTS = 10_000  # results one search may ask for: more is a typo, not a page of hits

MAX_WEIGHT = 1000.0  # a term's weight; the sum is normalised, so only ratios matter
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*:\s*(.*)$", re.S)


@dataclass
class Term:
    kind: str  # "text", "image" or "point"
    value: object  # the text, an image path or PIL image, or a point id
    weight: float = 1.0  # negative: steer away


def parse_query(expression: str, allow_paths: bool = False) -> list[Term]:
    """``'"2:strawberry tart" + photo.jpg - chocolate'`` -> three weighted terms.

    A quoted term is always text. ``allow_paths``: an unquoted term naming an image file
    (by its suffix) is that file, read from this machine's disk. Off by default, because
    the expression may come from someone who must not read the disk (the page, an API):
    then such a term is refused with the same message whether or not the file exists, and
    photos come as images (a PIL image or a ``Path`` passed on purpose) or ``id:`` terms.
    """
    terms = []
    for sign, part in _split_terms(expression):
        part = part.strip()
        quoted = len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'"
        if quoted:
            part = part[1:-1]
        weight = 1.0
        match = _WEIGHT.match(part)
        if match:
            weight, part = float(match.group(1)), match.group(2)
            if weight > MAX_WEIGHT:  # 1e40 overflows the float32 sum; 400 digits parse as inf
                raise ValueError(
                    f"weight {match.group(1)[:20]} is too large; at most {MAX_WEIGHT:g}"
                )
        part = part.strip()
        if not part:
            continue
        kind = "text" if quoted else _term_kind(part, allow_paths)
        terms.append(_term(kind, part, sign * weight))
    if not terms:
        raise ValueError("empty query: type a dish, some ingredients, or give an image")
    if all(term.weight <= 0 for term in terms):
        raise ValueError("a query needs at least one positive term, not only '- ...' ones")
    return terms


def _term_kind(part: str, allow_paths: bool) -> str:
    """The kind of a term: point, image (a path) or text. A path where paths are not allowed is
    refused without looking at the disk, so the answer tells nothing about which files exist."""
    if part.startswith("id:"):
        return "point"
    if Path(part).suffix.lower() not in IMAGE_SUFFIXES:
        return "text"
    if not allow_paths:
        raise ValueError(
            f"{part!r} looks like a file name, and this search does not read paths on the "
            "server: upload the photo instead, or quote the words to search them as text"
        )
    return "image"


def _term(kind: str, part: str, weight: float) -> Term:
    if kind == "point":  # as the store spells it (UnknownPoint for what is not an id)
        return Term("point", point_id(part[3:]), weight)
    if kind == "image":
        try:
            path = Path(part).expanduser()
            found = path.is_file()
        except (OSError, RuntimeError):  # a name too long, ~nobody: no such file either
            found = False
        if not found:
            raise ValueError(f"no image file {part!r} (quote it if you meant it as text)")
        return Term("image", path, weight)
    return Term("text", part, weight)


def _split_terms(expression: str) -> list[tuple[int, str]]:
    """Split at `` + `` and `` - `` outside quotes; a leading sign applies to the first term."""
    parts, sign, current, quote = [], 1, [], None
    text = expression.strip()
    if text[:1] in "+-" and text[1:2] == " ":
        sign, text = (1 if text[0] == "+" else -1), text[2:]
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'" and (not current or "".join(current).strip() == ""):
            quote = char
        elif char in "+-" and text[i - 1 : i] == " " and text[i + 1 : i + 2] == " ":
            parts.append((sign, "".join(current)))
            sign, current = (1 if char == "+" else -1), []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append((sign, "".join(current)))
    return parts


def check_request(target: str, limit: int, mode: str = "dense", diversity: float = 0.0) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be image or text, not {target!r}")
    if not 1 <= limit <= MAX_RESULTS:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_RESULTS}, not {limit}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use {', '.join(MODES)}")
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be from 0 to 1, not {diversity}")


def grouped(hits: list[StoredPoint], field: str, size: int) -> list[StoredPoint]:
    counts: dict[object, int] = defaultdict(int)
    kept = []
    for hit in hits:
        key = hit.payload.get(field)
        key = tuple(key) if isinstance(key, list) else key
        if key is not None and counts[key] >= size:
            continue
        counts[key] += 1
        kept.append(hit)
    return kept
