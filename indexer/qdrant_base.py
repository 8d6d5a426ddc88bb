"""What the two Qdrant stores share, written once over a few backend primitives.

:class:`QdrantStore` implements the :class:`~indexer.store.Store` interface: creating a
collection (vectors, quantization, payload indexes, metadata), reading and checking its
metadata, turning :class:`~indexer.store.SearchFilter` into the backend's filter, paging
through a scroll, and converting what Qdrant returns into
:class:`~indexer.store.StoredPoint`. A backend (:class:`indexer.edge.EdgeStore`,
:class:`indexer.server.ServerStore`) supplies the ``_`` primitives that talk to its API.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from typing import Any, ClassVar

from indexer.collection_settings import BULK_LOAD, CollectionSettings
from indexer.filters import FilterConstructors, build_filter
from indexer.qdrant_records import payload_fields, plain_value, stored_point
from indexer.store import (
    KEYWORD_FIELDS,
    TEXT_FIELDS,
    CollectionSpec,
    NoWords,
    Point,
    SearchFilter,
    SearchRequest,
    SparseVector,
    Store,
    StoredPoint,
    StoreError,
    check_compatible,
)


class QdrantStore(Store):
    """A :class:`Store` over one Qdrant API; subclasses supply its primitives."""

    filters: ClassVar[FilterConstructors]  # the backend's filter classes
    label: str  # what :meth:`describe` calls the store, e.g. "qdrant-edge /path"
    place: str  # where, in an error: "in /path" or "at http://host:6333"

    def __init__(self) -> None:
        self._known_settings: dict[str, CollectionSettings] = {}
        self._worded: set[str] = set()  # collections known to have their BM25 words

    # -- collections ---------------------------------------------------------------------

    def create_or_open(self, name: str, spec: CollectionSpec) -> dict[str, Any]:
        """Check an existing collection against ``spec``; or create one: cosine vectors laid
        out as its settings say, the payload indexes, then the metadata. One process at a time
        decides (:meth:`_creating`), so two creating the same collection make one."""
        self._check_settings(spec.settings)
        with self._creating():
            if self._exists(name):
                metadata = self.metadata(name)
                check_compatible(name, metadata, spec)
                self._open(name)
                return metadata
            self._discard_partial(name)
            metadata = spec.metadata()
            self._known_settings.pop(name, None)
            self._worded.discard(name)
            self._create(name, spec.dim, spec.settings, metadata)
            for field in KEYWORD_FIELDS:
                self._index_keyword(name, field)
            for field in TEXT_FIELDS:
                self._index_text(name, field)
            self._created(name, metadata)
            return metadata

    def metadata(self, name: str) -> dict[str, Any]:
        """The backend's recorded metadata, or a :class:`StoreError` naming the collections
        there are."""
        if not self._exists(name):
            known = ", ".join(self.collections()) or "none"
            raise StoreError(
                f"no collection {name!r} {self.place} (collections: {known}); "
                "build it with multimodal index"
            )
        return self._read_metadata(name)

    def update_metadata(self, name: str, changes: dict[str, Any]) -> None:
        """Read, merge and write back the whole metadata record."""
        self._write_metadata(name, {**self.metadata(name), **changes})

    def settings(self, name: str) -> CollectionSettings:
        """The recorded settings, read once and kept: every search needs the quantization."""
        if name not in self._known_settings:
            self._known_settings[name] = CollectionSettings.from_metadata(self.metadata(name))
        return self._known_settings[name]

    def describe(self, name: str) -> dict[str, Any]:
        """The backend's collection info as a plain dict (``status``: a server's only)."""
        info, metadata = self._info(name), self.metadata(name)
        status = getattr(info, "status", None)
        return {
            "store": self.label,
            "collection": name,
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
            "segments": info.segments_count,
            "status": getattr(status, "value", status),
            "payload_indexes": sorted(info.payload_schema),
            "settings": CollectionSettings.from_metadata(metadata).record(),
            "bulk_load": metadata.get(BULK_LOAD),
            "metadata": metadata,
        }

    def begin_bulk(self, name: str) -> None:
        """Record the load (and what to restore after it) first, then turn index building
        off: after a kill in between, the next call finds the record and turns it off."""
        if self.bulk_state(name) is None:
            since = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.update_metadata(name, {BULK_LOAD: {"since": since, **self._indexing(name)}})
        self._defer_indexing(name)

    def end_bulk(self, name: str, wait: bool = False) -> None:
        """Turn index building back on, then clear the record (a kill in between: the next
        call does both again)."""
        state = self.bulk_state(name)
        if state is not None:
            self._resume_indexing(name, state, wait)
            self.update_metadata(name, {BULK_LOAD: None})

    # -- points --------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Hand a non-empty batch to the backend (an empty one is a no-op)."""
        if points:
            self._upsert(name, points)

    def query(
        self,
        name: str,
        vector: Sequence[float],
        using: str,
        limit: int = 10,
        filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[StoredPoint]:
        """:meth:`search` with a plain nearest-vector request."""
        return self.search(name, SearchRequest(using, vector, exact=exact), limit, filter)

    def search(
        self,
        name: str,
        request: SearchRequest,
        limit: int = 10,
        filter: SearchFilter | None = None,
    ) -> list[StoredPoint]:
        """Ask the backend with plain floats and its own filter; its scored points come back
        as :class:`StoredPoint` with their score. Words against a collection without them
        are one :class:`NoWords` that says how to add them."""
        if request.mode != "dense" and not self.has_words(name):
            raise NoWords(name)
        quantization = request.quantization(self.settings(name).quantization)
        found = self._search(name, request, limit, self._filter(filter), quantization)
        return [StoredPoint(str(p.id), p.payload or {}, score=p.score) for p in found]

    def facet(
        self, name: str, field: str, filter: SearchFilter | None = None, limit: int = 100
    ) -> list[tuple[Any, int]]:
        """The backend's facet counts as plain ``(value, count)`` pairs, most first."""
        hits = self._facet(name, field, self._filter(filter), limit)
        return sorted(((plain_value(hit.value), hit.count) for hit in hits), key=lambda h: -h[1])

    def has_words(self, name: str) -> bool:
        """Whether the backend's collection has the ``bm25`` sparse vector (once it has,
        known without asking again: every hybrid search asks)."""
        if name not in self._worded and self._has_words(name):
            self._worded.add(name)
        return name in self._worded

    def add_words(self, name: str) -> None:
        """Add the ``bm25`` sparse vector unless the collection has it."""
        if not self.has_words(name):
            self._add_words(name)

    def set_words(self, name: str, words: dict[str, SparseVector]) -> None:
        """Hand the backend the non-empty word vectors (an item without words gets none)."""
        words = {point_id: vector for point_id, vector in words.items() if vector}
        if words:
            self._set_words(name, words)

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, fields=None
    ) -> list[StoredPoint]:
        """Ask the backend (not at all for no ids); its records come back as
        :class:`StoredPoint`."""
        if not ids:
            return []
        records = self._retrieve(name, list(ids), payload_fields(fields), with_vectors)
        return [stored_point(record, with_vectors) for record in records]

    def scroll(
        self,
        name: str,
        filter: SearchFilter | None = None,
        fields=None,
        page: int = 1000,
        with_vectors: bool = False,
    ) -> Iterator[StoredPoint]:
        """Follow the backend's next-page offsets until it returns none, yielding each
        record as a :class:`StoredPoint`."""
        backend_filter, offset = self._filter(filter), None
        while True:
            records, offset = self._scroll_page(
                name, backend_filter, payload_fields(fields), page, offset, with_vectors
            )
            for record in records:
                yield stored_point(record, with_vectors)
            if offset is None:
                return

    def count(self, name: str, filter: SearchFilter | None = None) -> int:
        """The backend's exact count under its own filter."""
        return self._count(name, self._filter(filter))

    def set_payload(self, name: str, payload: dict[str, Any], filter: SearchFilter) -> None:
        """Hand the backend its own filter; refuse one that would select every point."""
        backend_filter = self._filter(filter)
        if backend_filter is None:
            raise ValueError("set_payload needs a filter that selects some points")
        self._set_payload(name, payload, backend_filter)

    def set_point_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        """Ask the backend for one update, unless there is nothing to set."""
        if payloads:
            self._set_point_payloads(name, payloads)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Ask the backend to delete, unless there is nothing to delete."""
        if ids:
            self._delete(name, list(ids))

    def _filter(self, spec: SearchFilter | None) -> Any:
        """``spec`` as this backend's filter (None when it restricts nothing)."""
        return build_filter(spec, self.filters)

    # -- backend primitives --------------------------------------------------------------

    @abstractmethod
    def _exists(self, name: str) -> bool:
        """Whether collection ``name`` exists (and was completely created)."""

    def _check_settings(self, settings: CollectionSettings) -> None:
        """Refuse settings this backend cannot make (ValueError naming the fix)."""

    def _creating(self) -> AbstractContextManager:
        """Held while :meth:`create_or_open` checks for and creates a collection: a lock that
        other processes creating in the same store wait on (a no-op unless the backend needs
        it; a server decides itself)."""
        return nullcontext()

    def _open(self, name: str) -> None:
        """Get an existing collection ready for use (a no-op unless the backend needs it)."""

    def _discard_partial(self, name: str) -> None:
        """Remove what a create that died half-way left behind (a no-op unless it can); runs
        inside :meth:`_creating`."""

    @abstractmethod
    def _create(self, name: str, dim: int, settings: CollectionSettings, metadata: dict) -> None:
        """Create the collection: cosine ``image`` and ``text`` vectors of ``dim`` floats, the
        ``bm25`` sparse vector with the IDF modifier when ``metadata`` records BM25 settings,
        laid out as ``settings`` say, and (where the backend keeps it there) the metadata."""

    def _indexing(self, name: str) -> dict[str, Any]:
        """What :meth:`_resume_indexing` will restore, recorded with the bulk load."""
        return {}

    @abstractmethod
    def _defer_indexing(self, name: str) -> None:
        """Turn index building (HNSW) off for a bulk load; harmless when it is off."""

    @abstractmethod
    def _resume_indexing(self, name: str, state: dict[str, Any], wait: bool) -> None:
        """Index building back on as ``state`` recorded it, and started (waited for only if
        ``wait``, where it runs in the background)."""

    @abstractmethod
    def _index_keyword(self, name: str, field: str) -> None:
        """Index payload ``field`` for exact matches."""

    @abstractmethod
    def _index_text(self, name: str, field: str) -> None:
        """Index payload ``field`` for lowercase word matches."""

    def _created(self, name: str, metadata: dict[str, Any]) -> None:
        """Finish a create: whatever makes the new collection count as existing."""

    @abstractmethod
    def _read_metadata(self, name: str) -> dict[str, Any]:
        """The metadata recorded in an existing collection."""

    @abstractmethod
    def _write_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        """Record ``metadata`` in the collection, replacing what was there."""

    @abstractmethod
    def _info(self, name: str) -> Any:
        """The backend's collection info: ``points_count``, ``indexed_vectors_count``,
        ``segments_count`` and ``payload_schema``."""

    @abstractmethod
    def _upsert(self, name: str, points: Sequence[Point]) -> None:
        """Write a non-empty batch of points."""

    @abstractmethod
    def _search(self, name: str, request: SearchRequest, limit: int, filter, quantization) -> list:
        """The backend's scored points (``id``, ``score``, ``payload``) for ``request``,
        best first, ``filter`` applied at every stage; the dense stage with the
        ``quantization`` search parameters (:meth:`SearchRequest.quantization`) if any."""

    @abstractmethod
    def _facet(self, name: str, field: str, filter: Any, limit: int) -> list:
        """The backend's facet hits (``value``, ``count``) of ``field``, exactly counted."""

    @abstractmethod
    def _has_words(self, name: str) -> bool:
        """Whether the collection has the ``bm25`` sparse vector."""

    @abstractmethod
    def _add_words(self, name: str) -> None:
        """Add the ``bm25`` sparse vector (IDF modifier) to a collection without it, keeping
        every point as it is."""

    @abstractmethod
    def _set_words(self, name: str, words: dict[str, SparseVector]) -> None:
        """Set the ``bm25`` vector of each point in ``words`` (non-empty vectors)."""

    @abstractmethod
    def _retrieve(
        self, name: str, ids: list[str], fields: list[str] | None, with_vectors: bool
    ) -> list:
        """The backend's records (``id``, ``payload``, ``vector``) of a non-empty ``ids``."""

    @abstractmethod
    def _scroll_page(
        self,
        name: str,
        filter: Any,
        fields: list[str] | None,
        limit: int,
        offset: Any,
        with_vectors: bool,
    ) -> tuple[list, Any]:
        """One page of records from ``offset`` (None: the start), and the next offset
        (None after the last page)."""

    @abstractmethod
    def _count(self, name: str, filter: Any) -> int:
        """The exact number of points matching the backend filter."""

    @abstractmethod
    def _set_payload(self, name: str, payload: dict[str, Any], filter: Any) -> None:
        """Merge ``payload`` into every point matching the backend filter, and wait."""

    @abstractmethod
    def _set_point_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        """Merge each point's payload, and wait."""

    @abstractmethod
    def _delete(self, name: str, ids: list[str]) -> None:
        """Delete a non-empty list of point ids."""
