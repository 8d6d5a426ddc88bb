"""How a collection is laid out: shards, replicas, vectors and graph on disk, quantization.

Settings apply when a collection is created and are recorded in its metadata under
``settings``; asking an existing collection for other ones is refused (:func:`check_settings`).
Each store maps them to its own configuration (:func:`indexer.edge_config.shard_config`,
:func:`indexer.server._collection_config`). ``bulk_load`` is a mode of one run, not a
setting of the collection: the store records "bulk load in progress" while it lasts
(:data:`BULK_LOAD`).

    >>> CollectionSettings(shards=3, replicas=2, quantization="binary", on_disk=True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

QUANTIZATIONS = ("int8", "binary")  # besides None: full float32 vectors
# Query-time oversampling when none is asked for: how many candidates per result the
# quantized vectors preselect before the originals rescore them. Measured on the recipe
# model's vectors (benchmarks/oversampling.py, docs/scaling-out.md): binary recall@10 is
# 0.66 at 1, 0.86 at 2, 0.95 at 4; int8 is 0.999 at 1.
DEFAULT_OVERSAMPLING = {"binary": 4.0, "int8": 1.0}
CLUSTER_FIELDS = ("shards", "replicas", "write_consistency")  # a server's or cluster's only
SETTINGS = "settings"  # the metadata key the settings are recorded under
BULK_LOAD = "bulk_load"  # the metadata key of a bulk load in progress (None when none is)


@dataclass(frozen=True)
class CollectionSettings:
    """How a collection is made; the defaults are a plain one-machine collection."""

    shards: int | None = None  # shards of a cluster collection (None: the server decides)
    replicas: int | None = None  # copies of each shard on different nodes (None: 1)
    write_consistency: int | None = None  # replicas that confirm a write (None: 1)
    on_disk: bool = False  # original vectors memory-mapped from disk, not held in RAM
    hnsw_on_disk: bool = False  # the HNSW graph memory-mapped from disk
    quantization: str | None = None  # None, "int8" (4x smaller) or "binary" (32x smaller)
    bulk_load: bool = False  # this run only: index building deferred until the load ends

    def __post_init__(self) -> None:
        """Refuse what no store could make, with one line naming the flag; one replica and a
        write consistency of one are the defaults, recorded as such (None)."""
        for name in CLUSTER_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
            if value == 1 and name != "shards":  # shards: None leaves it to the server
                object.__setattr__(self, name, None)
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            known = ", ".join(QUANTIZATIONS)
            raise ValueError(f"unknown quantization {self.quantization!r} (known: {known})")
        if (self.write_consistency or 1) > (self.replicas or 1):
            raise ValueError(
                f"--write-consistency {self.write_consistency} needs at least as many "
                f"--replicas (asked for {self.replicas or 1})"
            )

    def record(self) -> dict[str, Any]:
        """What the collection records (everything but the run's ``bulk_load``)."""
        recorded = asdict(self)
        recorded.pop("bulk_load")
        return recorded

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> CollectionSettings:
        """The settings a collection records; one made before settings existed recorded only
        its ``quantization`` (None or "int8")."""
        recorded = metadata.get(SETTINGS)
        if not isinstance(recorded, dict):
            return cls(quantization=metadata.get("quantization"))
        known = {f.name for f in fields(cls)} - {"bulk_load"}
        return cls(**{key: value for key, value in recorded.items() if key in known})

    @property
    def clustered(self) -> bool:
        """Whether any setting only a server or cluster has is asked for."""
        return any(getattr(self, name) not in (None, 1) for name in CLUSTER_FIELDS)

    def asked(self) -> dict[str, Any]:
        """The recorded settings that differ from the defaults: what was asked for."""
        default = CollectionSettings().record()
        return {key: value for key, value in self.record().items() if value != default[key]}

    def summary(self) -> str:
        """One readable line: "int8 quantization, vectors on disk, 3 shards x 2 replicas"."""
        parts = [f"{self.quantization} quantization" if self.quantization else "full vectors"]
        parts.append("vectors on disk" if self.on_disk else "vectors in RAM")
        if self.hnsw_on_disk:
            parts.append("HNSW on disk")
        if self.shards or self.replicas:
            shards = f"{self.shards} shards" if self.shards else "shards: server default"
            parts.append(f"{shards} x {self.replicas or 1} replicas")
        if self.write_consistency:
            parts.append(f"write consistency {self.write_consistency}")
        return ", ".join(parts)


def check_embedded(settings: CollectionSettings) -> None:
    """Refuse what only a server or cluster has, for the embedded store (one shard here)."""
    if settings.clustered:
        raise ValueError(
            "--shards, --replicas and --write-consistency need a Qdrant server or cluster "
            "(--qdrant-url URL); the embedded store is one shard on this machine"
        )


def check_settings(name: str, recorded: CollectionSettings, asked: CollectionSettings) -> None:
    """Refuse settings asked for (other than the defaults) that collection ``name`` was not
    made with: they only apply when a collection is created."""
    wanted = asked.asked()
    has = recorded.record()
    different = {key: value for key, value in wanted.items() if has[key] != value}
    if different:
        asking = ", ".join(f"{key} {value}" for key, value in different.items())
        raise ValueError(
            f"collection {name!r} was made with {recorded.summary()}, not {asking}: settings "
            f"apply only when a collection is created; leave the flags out to use it as it is, "
            f"or index into a new --collection, or rebuild it (multimodal collections drop "
            f"{name}, then index again)"
        )
