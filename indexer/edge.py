"""The embedded store: Qdrant Edge (``qdrant-edge-py``), the Qdrant engine in this process.

One shard per collection, in ``<store>/<collection>/shard``; the collection's metadata (the
model that made its vectors, its roots) beside it in ``collection.json``. Every update goes
through the shard's write-ahead log, so a process killed at any moment loses at most the
batch it was writing, never what was indexed before.

A collection is made whole in a hidden staging folder and renamed into place, under a lock on
``<store>/.create.lock`` that other processes creating in the store wait on: two runs creating
the same collection make one, and a folder named after a collection is always a whole one.
An open shard is locked by Qdrant Edge itself (its write-ahead log); a second process that
opens it gets one line saying so.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from indexer.collection_settings import BULK_LOAD, CollectionSettings, check_embedded
from indexer.edge_config import copy_points, index_keyword, index_payload, index_text, shard_config
from indexer.edge_folders import (
    OLD,
    UPGRADE,
    remove_stale_builders,
    remove_stale_copies,
    restore_set_aside,
)
from indexer.edge_query import EDGE_FILTERS, shard_query
from indexer.qdrant_base import QdrantStore
from indexer.qdrant_records import plain_vectors
from indexer.store import (
    SPARSE_VECTOR,
    Point,
    SearchRequest,
    SparseVector,
    StoreError,
)
from multimodal.files import write_json

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CREATE_LOCK = ".create.lock"  # in the store folder: held while a collection is created
STAGING_PREFIX = ".creating-"  # a collection being made, renamed into place when whole


def check_collection_name(name: str) -> str:
    """``name`` if it is a safe folder name (ValueError otherwise)."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"bad collection name {name!r}: use letters, digits, '_', '-', '.' (at most 128)"
        )
    return name


class EdgeStore(QdrantStore):
    """Collections in folders under ``root``, each one Qdrant Edge shard."""

    filters = EDGE_FILTERS

    def __init__(self, root: str | Path):
        """The store in folder ``root`` (made on the first create)."""
        super().__init__()
        self.root = Path(root).expanduser()
        self.label = f"qdrant-edge {self.root}"
        self.place = f"in {self.root}"
        self._shards: dict[str, qe.EdgeShard] = {}

    def collections(self) -> list[str]:
        """The sub-folders of ``root`` holding a ``collection.json``, sorted (a staging folder
        is hidden: its name is not a collection name)."""
        if not self.root.is_dir():
            return []
        found = (p.parent.name for p in self.root.glob("*/collection.json"))
        return sorted(name for name in found if NAME_PATTERN.match(name))

    def drop(self, name: str) -> None:
        """Close the collection's shard and delete its folder."""
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        self._known_settings.pop(name, None)
        self._worded.discard(name)
        shutil.rmtree(self._folder(name), ignore_errors=True)

    def optimize(self, name: str) -> None:
        """Build the shard's HNSW (and quantized) indexes now, before the first query."""
        self._shard(name).optimize()

    def close(self) -> None:
        """Flush and close every open shard."""
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()

    # -- primitives ----------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        """Whether the collection's metadata file exists: a collection's folder appears with
        it, whole (:meth:`_created`), so a folder without it is a leftover."""
        return (self._folder(name) / "collection.json").is_file()

    @contextmanager
    def _creating(self) -> Iterator[None]:
        """Hold the store's create lock (``fcntl.flock``: the system drops it when a process
        dies, so a killed run leaves no stale lock); a second creator waits here, then finds
        the collection made."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / CREATE_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _open(self, name: str) -> None:
        """Load the shard now, so a store locked by another process fails here."""
        self._shard(name)

    def _discard_partial(self, name: str) -> None:
        """Remove what a create that died half-way left: its staging folder, or (made by an
        earlier version, which created in place) a collection folder without its metadata.
        The create lock is held, so no other process is making either."""
        for leftover in (self._staging(name), self._folder(name)):
            if leftover.exists():
                shutil.rmtree(leftover)

    def _check_settings(self, settings: CollectionSettings) -> None:
        """A shard on this machine has no shards, replicas or write consistency to set."""
        check_embedded(settings)

    def _create(self, name: str, dim: int, settings: CollectionSettings, metadata: dict) -> None:
        """Create the shard in the staging folder (:meth:`_created` moves it into place)."""
        config = shard_config(dim, settings, words="bm25" in metadata, bulk=False)
        self._shards[name] = qe.EdgeShard.create(str(self._staging(name) / "shard"), config)

    def _index_keyword(self, name: str, field: str) -> None:
        """A keyword index on payload ``field``."""
        index_keyword(self._shards[name], field)

    def _index_text(self, name: str, field: str) -> None:
        """A lowercase word index on payload ``field``."""
        index_text(self._shards[name], field)

    def _created(self, name: str, metadata: dict[str, Any]) -> None:
        """Close the staged shard, write its metadata beside it, rename the whole folder into
        place (one atomic step: the collection appears complete or not at all), and load the
        shard from there."""
        shard = self._shards.pop(name)
        shard.flush()
        shard.close()
        staging = self._staging(name)
        write_json(staging / "collection.json", metadata)
        staging.rename(self._folder(name))
        self._open(name)

    def _read_metadata(self, name: str) -> dict[str, Any]:
        """The collection's ``collection.json``; one :class:`StoreError` naming the file when
        it cannot be read or is not what :class:`~indexer.store.CollectionSpec` writes."""
        path = self._folder(name) / "collection.json"
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
            problem = "" if isinstance(metadata, dict) else "not a JSON object"
            if not problem and not isinstance(metadata.get("model"), dict):
                problem = "it records no model"
            if not problem and not isinstance(metadata.get("dim"), int):
                problem = "it records no vector size"
        except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
            problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        if problem:
            raise StoreError(
                f"the metadata of collection {name!r}, {path}, is damaged ({problem}): restore "
                f"it from a backup, or delete {path.parent} and index again"
            )
        return metadata

    def _write_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        """Replace ``collection.json`` atomically."""
        write_json(self._folder(name) / "collection.json", metadata)

    def _info(self, name: str) -> qe.ShardInfo:
        """The shard's info."""
        return self._shard(name).info()

    def _upsert(self, name: str, points: Sequence[Point]) -> None:
        """Upsert through the shard's write-ahead log."""
        edge_points = [
            qe.Point(uuid.UUID(p.id), plain_vectors(p, qe.SparseVector), p.payload) for p in points
        ]
        self._shard(name).update(qe.UpdateOperation.upsert_points(edge_points))

    def _search(self, name: str, request: SearchRequest, limit: int, filter, quantization) -> list:
        """One shard query (:func:`indexer.edge_query.shard_query`)."""
        return self._shard(name).query(shard_query(request, limit, filter, quantization))

    def _facet(self, name: str, field: str, filter: Any, limit: int) -> list:
        """Exact facet counts in the shard."""
        request = qe.FacetRequest(field, limit=limit, exact=True, filter=filter)
        return self._shard(name).facet(request).hits

    def _has_words(self, name: str) -> bool:
        """Whether the shard was made with the ``bm25`` sparse vector."""
        with open(self._folder(name) / "shard" / "edge_config.json", encoding="utf-8") as f:
            return SPARSE_VECTOR in (json.load(f).get("sparse_vectors") or {})

    def _add_words(self, name: str) -> None:
        """A shard's vectors are fixed when it is made, so: copy every point into a new shard
        made with the ``bm25`` vector (``shard.upgrade``, beside it), then swap the two by
        renames; a run killed in between leaves a state :meth:`_shard` recovers from (the old
        shard whole, or the new one in place)."""
        metadata = self.metadata(name)
        folder = self._folder(name)
        old = self._shard(name)
        shutil.rmtree(folder / UPGRADE, ignore_errors=True)
        words, bulk = True, bool(metadata.get(BULK_LOAD))
        new = qe.EdgeShard.create(
            str(folder / UPGRADE), shard_config(metadata["dim"], self.settings(name), words, bulk)
        )
        index_payload(new)
        copy_points(old, new)
        new.flush()
        new.close()
        self._shards.pop(name).close()
        (folder / "shard").rename(folder / OLD)
        (folder / UPGRADE).rename(folder / "shard")
        shutil.rmtree(folder / OLD)
        self._open(name)

    def _set_words(self, name: str, words: dict[str, SparseVector]) -> None:
        """One vector update through the shard's write-ahead log."""
        updates = [
            qe.PointVectors(
                uuid.UUID(point_id),
                {SPARSE_VECTOR: qe.SparseVector(list(v.indices), list(v.values))},
            )
            for point_id, v in words.items()
        ]
        self._shard(name).update(qe.UpdateOperation.update_vectors(updates))

    def _retrieve(
        self, name: str, ids: list[str], fields: list[str] | None, with_vectors: bool
    ) -> list:
        """Records by id from the shard."""
        return self._shard(name).retrieve(
            [uuid.UUID(i) for i in ids], with_payload=_payload(fields), with_vector=with_vectors
        )

    def _scroll_page(
        self,
        name: str,
        filter: Any,
        fields: list[str] | None,
        limit: int,
        offset: Any,
        with_vectors: bool,
    ) -> tuple[list, Any]:
        """One page of the shard's points."""
        request = qe.ScrollRequest(
            offset=offset,
            limit=limit,
            filter=filter,
            with_payload=_payload(fields),
            with_vector=with_vectors,
        )
        return self._shard(name).scroll(request)

    def _count(self, name: str, filter: Any) -> int:
        """Exact count in the shard."""
        return self._shard(name).count(qe.CountRequest(exact=True, filter=filter))

    def _set_payload(self, name: str, payload: dict[str, Any], filter: Any) -> None:
        """One payload update by filter through the shard's write-ahead log."""
        self._shard(name).update(qe.UpdateOperation.set_payload_by_filter(filter, payload))

    def _set_point_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        """One payload update per point through the shard's write-ahead log."""
        shard = self._shard(name)
        for point_id, payload in payloads.items():
            shard.update(qe.UpdateOperation.set_payload([uuid.UUID(point_id)], payload))

    def _delete(self, name: str, ids: list[str]) -> None:
        """Delete through the shard's write-ahead log."""
        operation = qe.UpdateOperation.delete_points([uuid.UUID(i) for i in ids])
        self._shard(name).update(operation)

    # -- helpers -------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        """The collection's folder (ValueError for an unsafe name)."""
        return self.root / check_collection_name(name)

    def _staging(self, name: str) -> Path:
        """Where the collection is made before it is renamed into place."""
        return self.root / (STAGING_PREFIX + check_collection_name(name))

    def _defer_indexing(self, name: str) -> None:
        """Indexing threshold 0 in the shard's configuration: no optimize builds the HNSW
        (upserts never do here; only :meth:`optimize`)."""
        self._reconfigure(name, bulk=True)

    def _resume_indexing(self, name: str, state: dict[str, Any], wait: bool) -> None:
        """The default threshold again, and the load's one optimize (here: always waited)."""
        self._reconfigure(name, bulk=False)
        self._shard(name).optimize()

    def _reconfigure(self, name: str, bulk: bool) -> None:
        """Load the shard again with the configuration
        :func:`~indexer.edge_config.shard_config` makes for it (Qdrant Edge writes a
        configuration given to ``load`` over the one on disk)."""
        metadata = self.metadata(name)
        config = shard_config(metadata["dim"], self.settings(name), self.has_words(name), bulk)
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.flush()
            shard.close()
        self._shard(name, config)

    def _shard(self, name: str, config: qe.EdgeConfig | None = None) -> qe.EdgeShard:
        """The collection's shard, loaded on first use (with ``config``, if given, in place of
        the one on disk)."""
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        self.metadata(name)  # a clear error for a collection that does not exist
        restore_set_aside(self._folder(name))
        path = self._folder(name) / "shard"
        try:
            shard = qe.EdgeShard.load(str(path), config)
        except Exception as err:
            if "WouldBlock" in str(err) or "lock" in str(err).lower():
                raise StoreError(
                    f"the store {self.root} is open in another process (a running "
                    "multimodal index or serve?); stop it or use another --store"
                ) from None
            raise StoreError(f"cannot open collection {name!r} at {path}: {err}") from None
        remove_stale_builders(path)
        remove_stale_copies(path.parent)
        self._shards[name] = shard
        return shard


def _payload(fields: list[str] | None):
    """The shard's payload selector: only ``fields``, or everything."""
    return qe.PayloadSelector.Include(fields) if fields else True
