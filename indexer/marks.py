"""Recording a person's Good / Not this marks on a collection's results, so that
``multimodal train --marks`` can learn from them (the format: :mod:`multimodal.data.marks`).

The marks of a collection live in one file beside the store (:meth:`Store.marks_path`), never
only in a browser: the page's 👍 / 👎, ``POST /api/marks`` and this Python API all append to
it::

    book = MarkBook(store, "recipes5k")
    book.record({"text": "apple pie"}, hit_id, good=False)
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from indexer.point_ids import UnknownPoint, point_id
from indexer.store import Store, StoredPoint, StoreError
from multimodal.data.marks import append_mark, read_lines

MAX_QUERY_CHARS = 2000  # a mark's words, as long as a search's (indexer.query)
# A file of about 100,000 marks: past it, marking stops (a flood cannot fill the disk) until
# the marks are exported and the file moved away.
MAX_MARKS_BYTES = 64 * 2**20
HIT_FIELDS = ("title", "ingredients", "label", "recipe_id")


def snapshot(point: StoredPoint) -> dict:
    """What a mark keeps of a stored point: its photo's path and its caption's parts."""
    image = point.image_path
    found = {"id": point.id, "image": str(image) if image else None}
    found.update({name: point.payload.get(name) for name in HIT_FIELDS})
    return found


class MarkBook:
    """The marks of one collection of ``store``."""

    def __init__(self, store: Store, collection: str):
        self.store, self.collection = store, collection
        self.path = store.marks_path(collection)
        self._count: int | None = None  # the file's lines, counted once, then kept up
        self._lock = threading.Lock()

    def record(self, query: dict, hit: str, good: bool) -> dict:
        """Append the mark "``hit`` is (``good``) / is not a good result for ``query``" and
        return it. ``query`` is ``{"text": WORDS}`` or ``{"point": ID}`` (a stored point, as
        "more like this" asks). An unknown id, empty words or a query of neither kind is one
        ValueError (:class:`UnknownPoint` for an id), and nothing is written."""
        if not isinstance(good, bool):
            raise ValueError("good must be true (Good) or false (Not this)")
        hit_id = point_id(hit, self.collection)
        asked = self._query(query)
        ids = [hit_id] + ([asked["point"]] if "point" in asked else [])
        found = {p.id: p for p in self.store.retrieve(self.collection, ids)}
        for wanted in ids:
            if wanted not in found:
                raise UnknownPoint(wanted, self.collection)
        if "point" in asked:
            asked = {"point": asked["point"], **_without_id(snapshot(found[asked["point"]]))}
        mark = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "collection": self.collection,
            "query": asked,
            "hit": snapshot(found[hit_id]),
            "good": good,
        }
        if self.path.is_file() and self.path.stat().st_size >= MAX_MARKS_BYTES:
            raise StoreError(
                f"the collection's marks file is full ({MAX_MARKS_BYTES // 2**20} MB): export "
                "the marks (multimodal marks export), then move the file away"
            )
        with self._lock:
            count = self.count()
            try:
                append_mark(self.path, mark)
            except OSError as err:  # a full or read-only disk: said, and the search goes on
                raise StoreError(f"the mark cannot be saved: {err.strerror or err}") from None
            self._count = count + 1
        return mark

    def count(self) -> int:
        """How many marks the file holds (counted once, then kept up by :meth:`record`)."""
        if self._count is None:
            self._count = self.path.read_bytes().count(b"\n") if self.path.is_file() else 0
        return self._count

    def marks(self) -> list[dict]:
        """Every mark recorded, oldest first."""
        return read_lines(self.path)

    def _query(self, query) -> dict:
        if not isinstance(query, dict):
            raise ValueError('the query must be {"text": WORDS} or {"point": ID}')
        if query.get("point"):
            return {"point": point_id(query["point"], self.collection)}
        text = query.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("a mark needs the words searched (or the point searched from)")
        if len(text) > MAX_QUERY_CHARS:
            raise ValueError(f"the words searched are over {MAX_QUERY_CHARS} characters")
        return {"text": text.strip()}


def _without_id(found: dict) -> dict:
    return {key: value for key, value in found.items() if key != "id"}
