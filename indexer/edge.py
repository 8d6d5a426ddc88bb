"""The embedded store: Qdrant Edge (``qdrant-edge-py``), the Qdrant engine in this process.

One shard per collection, in ``<store>/<collection>/shard``; the collection's metadata (the
model that made its vectors, its roots) beside it in ``collection.json``. Every update goes
through the shard's write-ahead log, so a process killed at any moment loses at most the
batch it was writing, never what was indexed before.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from indexer.store import (
    KEYWORD_FIELDS,
    TEXT_FIELDS,
    VECTOR_NAMES,
    CollectionSpec,
    Point,
    SearchFilter,
    Store,
    StoredPoint,
    StoreError,
    as_record,
    check_compatible,
)
from multimodal.files import write_json

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_collection_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"bad collection name {name!r}: use letters, digits, '_', '-', '.' (at most 128)"
        )
    return name


class EdgeStore(Store):
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self._shards: dict[str, qe.EdgeShard] = {}

    # -- collections ---------------------------------------------------------------------

    def collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/collection.json"))

    def create_or_open(self, name: str, spec: CollectionSpec) -> dict[str, Any]:
        folder = self._folder(name)
        if (folder / "collection.json").is_file():
            metadata = self.metadata(name)
            check_compatible(name, metadata, spec)
            self._shard(name)
            return metadata
        if folder.exists():  # a create that died before its metadata was written
            shutil.rmtree(folder)
        quantization = None
        if spec.quantization == "int8":
            quantization = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99)
        elif spec.quantization is not None:
            raise ValueError(f"unknown quantization {spec.quantization!r} (known: int8)")
        vectors = {
            vector: qe.EdgeVectorParams(spec.dim, qe.Distance.Cosine) for vector in VECTOR_NAMES
        }
        config = qe.EdgeConfig(vectors=vectors, quantization_config=quantization)
        shard = qe.EdgeShard.create(str(folder / "shard"), config)
        for field in KEYWORD_FIELDS:
            shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))
        for field in TEXT_FIELDS:
            params = qe.TextIndexParams(tokenizer=qe.TokenizerType.Word, lowercase=True)
            shard.update(qe.UpdateOperation.create_field_index(field, params))
        shard.flush()
        self._shards[name] = shard
        metadata = spec.metadata()
        self._write_metadata(name, metadata)  # last: its presence means "created"
        return metadata

    def metadata(self, name: str) -> dict[str, Any]:
        path = self._folder(name) / "collection.json"
        if not path.is_file():
            known = ", ".join(self.collections()) or "none"
            raise StoreError(
                f"no collection {name!r} in {self.root} (collections: {known}); "
                "build it with multimodal index"
            )
        return json.loads(path.read_text())

    def update_metadata(self, name: str, changes: dict[str, Any]) -> None:
        self._write_metadata(name, {**self.metadata(name), **changes})

    def drop(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self._folder(name), ignore_errors=True)

    # -- points --------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        edge_points = [
            qe.Point(
                uuid.UUID(p.id),
                {k: [float(x) for x in v] for k, v in p.vectors.items()},
                p.payload,
            )
            for p in points
        ]
        self._shard(name).update(qe.UpdateOperation.upsert_points(edge_points))

    def query(
        self,
        name: str,
        vector: Sequence[float],
        using: str,
        limit: int = 10,
        filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[StoredPoint]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest([float(x) for x in vector], using=using),
            filter=_edge_filter(filter),
            with_payload=True,
            params=qe.SearchParams(exact=True) if exact else None,
        )
        return [
            StoredPoint(str(p.id), p.payload or {}, score=p.score)
            for p in self._shard(name).query(request)
        ]

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, fields=None
    ) -> list[StoredPoint]:
        if not ids:
            return []
        payload = qe.PayloadSelector.Include(list(fields)) if fields else True
        records = self._shard(name).retrieve(
            [uuid.UUID(i) for i in ids], with_payload=payload, with_vector=with_vectors
        )
        return [as_record(r, with_vectors) for r in records]

    def scroll(
        self,
        name: str,
        filter: SearchFilter | None = None,
        fields=None,
        page: int = 1000,
        with_vectors: bool = False,
    ) -> Iterator[StoredPoint]:
        payload = qe.PayloadSelector.Include(list(fields)) if fields else True
        shard, offset = self._shard(name), None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=page,
                filter=_edge_filter(filter),
                with_payload=payload,
                with_vector=with_vectors,
            )
            records, offset = shard.scroll(request)
            for record in records:
                yield as_record(record, with_vectors)
            if offset is None:
                return

    def count(self, name: str, filter: SearchFilter | None = None) -> int:
        return self._shard(name).count(qe.CountRequest(exact=True, filter=_edge_filter(filter)))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            operation = qe.UpdateOperation.delete_points([uuid.UUID(i) for i in ids])
            self._shard(name).update(operation)

    def describe(self, name: str) -> dict[str, Any]:
        info = self._shard(name).info()
        return {
            "store": f"qdrant-edge {self.root}",
            "collection": name,
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
            "segments": info.segments_count,
            "payload_indexes": sorted(info.payload_schema),
            "metadata": self.metadata(name),
        }

    def optimize(self, name: str) -> None:
        self._shard(name).optimize()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()

    # -- helpers -------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return self.root / check_collection_name(name)

    def _shard(self, name: str) -> qe.EdgeShard:
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        self.metadata(name)  # a clear error for a collection that does not exist
        path = self._folder(name) / "shard"
        try:
            shard = qe.EdgeShard.load(str(path))
        except Exception as err:
            if "WouldBlock" in str(err) or "lock" in str(err).lower():
                raise StoreError(
                    f"the store {self.root} is open in another process (a running "
                    "multimodal index or serve?); stop it or use another --store"
                ) from None
            raise StoreError(f"cannot open collection {name!r} at {path}: {err}") from None
        self._shards[name] = shard
        return shard

    def _write_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        write_json(self._folder(name) / "collection.json", metadata)


def _ingredient_match(ingredient: str) -> qe.Filter:
    """An ingredient appears as a base ingredient (exact) or as a word of an ingredient line."""
    word = ingredient.strip().lower()
    return qe.Filter(
        should=[
            qe.FieldCondition(key="base_ingredients", match=qe.MatchValue(word)),
            qe.FieldCondition(key="ingredients", match=qe.MatchText(word)),
        ]
    )


def _edge_filter(spec: SearchFilter | None) -> qe.Filter | None:
    must: list = []
    must_not: list = []
    if spec:
        if spec.labels:
            must.append(qe.FieldCondition(key="label", match=qe.MatchAny(list(spec.labels))))
        if spec.splits:
            must.append(qe.FieldCondition(key="split", match=qe.MatchAny(list(spec.splits))))
        if spec.root:
            must.append(qe.FieldCondition(key="root", match=qe.MatchValue(spec.root)))
        if spec.ids:
            must.append(qe.HasIdCondition({uuid.UUID(i) for i in spec.ids}))
        if spec.has_vector:
            must.append(qe.HasVectorCondition(spec.has_vector))
        must += [_ingredient_match(i) for i in spec.with_ingredients]
        must_not += [_ingredient_match(i) for i in spec.without_ingredients]
    if not must and not must_not:
        return None
    return qe.Filter(must=must or None, must_not=must_not or None)
