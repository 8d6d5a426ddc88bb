"""What the indexer's subcommands share: where the Qdrant store is, and how a collection is
laid out when it is created."""

from __future__ import annotations

import argparse

from indexer.collection_settings import (
    QUANTIZATIONS,
    CollectionSettings,
    check_embedded,
    check_settings,
)
from indexer.factory import open_store
from indexer.store import Store
from multimodal.commands.common import positive_int


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--collection`` (required) and where the store is (:func:`add_where_arguments`)."""
    parser.add_argument("--collection", required=True, help="collection name, e.g. recipes5k")
    add_where_arguments(parser)


def add_where_arguments(parser: argparse.ArgumentParser) -> None:
    """The embedded store's folder or a server's URL, its API key and protocol."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--store",
        default=None,
        help="embedded Qdrant Edge folder (default: $MULTIMODAL_HOME/qdrant or "
        "~/.local/share/multimodal/qdrant)",
    )
    where.add_argument("--qdrant-url", default=None, help="a Qdrant server, e.g. http://host:6333")
    parser.add_argument(
        "--api-key-env",
        default="QDRANT_API_KEY",
        help="environment variable holding the server's API key",
    )
    parser.add_argument("--grpc", action="store_true", help="talk to the server over gRPC")


def open_store_from_args(args: argparse.Namespace):
    return open_store(args.store, args.qdrant_url, args.api_key_env, args.grpc)


def claim_collection(store: Store, name: str, settings: CollectionSettings) -> None:
    """Open collection ``name``, if it exists, before any slow work: a store that another
    process holds (a running serve or index) is a StoreError now, not after the model has
    loaded, and so are settings the collection was not made with (a ValueError)."""
    metadata = store.open_existing(name)
    if metadata is not None:
        check_settings(name, CollectionSettings.from_metadata(metadata), settings)


def add_collection_arguments(parser: argparse.ArgumentParser) -> None:
    """How a new collection is laid out (:class:`CollectionSettings`; an existing one keeps
    its own), and ``--bulk-load``. docs/scaling-out.md says when to use each."""
    group = parser.add_argument_group("collection settings (only a new collection takes them)")
    cluster = "; a Qdrant server or cluster only (--qdrant-url)"
    group.add_argument(
        "--shards",
        type=positive_int,
        default=None,
        help="shards the collection is split into across the cluster's nodes (default: the "
        f"server's choice){cluster}",
    )
    group.add_argument(
        "--replicas",
        type=positive_int,
        default=None,
        help=f"copies of each shard, on different nodes (default: 1){cluster}",
    )
    group.add_argument(
        "--write-consistency",
        type=positive_int,
        default=None,
        help=f"replicas that must confirm a write, at most --replicas (default: 1){cluster}",
    )
    group.add_argument(
        "--on-disk",
        action="store_true",
        help="keep the original vectors on disk (memory-mapped), not in RAM",
    )
    group.add_argument(
        "--hnsw-on-disk",
        action="store_true",
        help="keep the HNSW graph on disk (memory-mapped), not in RAM",
    )
    group.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default=None,
        help="compress the vectors searched first: int8 (4x smaller) or binary (32x smaller); "
        "the originals rescore the candidates (default: none)",
    )
    group.add_argument(
        "--bulk-load",
        action="store_true",
        help="defer building the search index (HNSW) until this run's load ends, then build "
        "it once; for large loads",
    )


def collection_settings(args: argparse.Namespace) -> CollectionSettings:
    """The :class:`CollectionSettings` of :func:`add_collection_arguments`' flags; what the
    chosen store cannot make is refused here, before any work."""
    settings = CollectionSettings(
        shards=args.shards,
        replicas=args.replicas,
        write_consistency=args.write_consistency,
        on_disk=args.on_disk,
        hnsw_on_disk=args.hnsw_on_disk,
        quantization=args.quantization,
        bulk_load=args.bulk_load,
    )
    if args.qdrant_url is None:
        check_embedded(settings)
    return settings
