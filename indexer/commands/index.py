"""``multimodal index``: load a data set's vectors and metadata into Qdrant, incrementally.

    multimodal index --model runs/recipe/best --data ../shared/datasets/recipes5k \\
        --collection recipes5k

Embedded Qdrant Edge in the user's data folder by default (``--store PATH`` to choose it), or
a Qdrant server with ``--qdrant-url URL``. A rerun skips what is unchanged, re-embeds what
changed, and (``--prune``) removes points whose files are gone; killed at any moment, a
rerun finishes the job.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from indexer.commands.common import (
    add_collection_arguments,
    add_store_arguments,
    collection_settings,
    open_store_from_args,
)
from indexer.pipeline import index_records, write_rejects
from indexer.ray_index import index_records_ray, worker_target
from indexer.store import default_store_path
from multimodal.commands.common import (
    add_data_arguments,
    add_engine_arguments,
    add_model_arguments,
    add_tta_argument,
    command,
    image_batch_size,
    load_data,
    ray_options,
)
from multimodal.encoder import load_encoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal index",
        description="Index a data set into a Qdrant collection (image and text vectors plus "
        "metadata); reruns are incremental.",
    )
    add_model_arguments(parser)
    add_tta_argument(parser)
    add_data_arguments(parser)
    add_store_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete the points under the data set's folder whose image file is gone",
    )
    parser.add_argument(
        "--rejects",
        default=None,
        help="where to write the JSONL of skipped files and why (default: "
        "COLLECTION.rejects.jsonl in the store folder, or here with --qdrant-url)",
    )
    add_collection_arguments(parser)
    return parser


@command("index")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = collection_settings(args)  # refused before the data and model load
    options = ray_options(args)  # None: the local engine
    records = load_data(args)  # every split unless --split
    if not records:
        raise ValueError(f"no items found in {args.data}")
    device = "cpu" if options else args.device  # with Ray, the driver's model only plans
    precision = "fp32" if options else args.precision
    encoder = load_encoder(args.model, device, precision, tta=args.tta)
    common = {"max_pixels": args.max_pixels, "prune": args.prune,
              "settings": settings, "progress": not args.no_progress}  # fmt: skip
    with open_store_from_args(args) as store:
        if options:
            target = worker_target(store, args.api_key_env, args.grpc)
            report = index_records_ray(
                encoder, store, args.collection, records, options, target, **common
            )
        else:
            batch_size = image_batch_size(args.batch_size, encoder.device)
            report = index_records(
                encoder, store, args.collection, records, batch_size, args.workers, **common
            )
    print(report.summary())
    if report.rejects:
        default = Path(args.store) if args.store else default_store_path()
        if args.qdrant_url:
            default = Path.cwd()
        path = write_rejects(
            args.rejects or default / f"{args.collection}.rejects.jsonl", report.rejects
        )
        print(f"{report.rejected} files skipped; reasons in {path}")
    return 0
