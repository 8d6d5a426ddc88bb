"""What the indexer's subcommands share: where the Qdrant store is."""

from __future__ import annotations

import argparse

from indexer.factory import open_store


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", required=True, help="collection name, e.g. recipes5k")
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
