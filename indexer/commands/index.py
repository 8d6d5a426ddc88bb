"""``multimodal index``: load a data set's vectors and metadata into Qdrant, incrementally.

    multimodal index --model runs/recipe/best --data ../shared/datasets/recipes5k \\
        --collection recipes5k

Embedded Qdrant Edge in the user's data folder by default (``--store PATH`` to choose it), or
a Qdrant server with ``--qdrant-url URL``. A rerun skips what is unchanged, re-embeds what
changed, and (``--prune``) removes points whose files are gone; killed at any moment, a
rerun finishes the job. The collection is opened before the model loads, so a store another
process holds is said at once. Every file of the data set that is not indexed is in the
rejects file with its reason; links that leave the data folder are read only with
``--follow-links``. ``--watch`` keeps it running after that pass: each change in the data
folder is in the collection within seconds (:mod:`indexer.watch`), until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from pathlib import Path

from indexer.commands.common import (
    add_collection_arguments,
    add_store_arguments,
    claim_collection,
    collection_settings,
    open_store_from_args,
)
from indexer.pipeline import IndexReport, index_records, write_rejects
from indexer.ray_index import index_records_ray, worker_target
from indexer.watch import RESCAN_SECONDS, WatchedData
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
from multimodal.paths import default_store_path
from multimodal.spec import parse_model_spec


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
        "--follow-links",
        action="store_true",
        help="read photos and captions that links take outside the data folder (by default "
        "each is skipped, with its reason in the rejects file)",
    )
    parser.add_argument(
        "--rejects",
        default=None,
        help="where to write the JSONL of skipped files and why (default: "
        "COLLECTION.rejects.jsonl in the store folder, or here with --qdrant-url)",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="keep running: a photo or caption added, changed, moved or deleted in the data "
        "folder is in the collection within seconds (moved files keep their point, deleted "
        "ones are removed, half-copied ones retried); Ctrl-C stops (local engine only)",
    )
    parser.add_argument(
        "--rescan",
        type=float,
        default=RESCAN_SECONDS,
        metavar="SECONDS",
        help="with --watch: a full pass this often, for changes the system did not report "
        f"(default: {RESCAN_SECONDS:.0f})",
    )
    add_collection_arguments(parser)
    return parser


@command("index")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = collection_settings(args)  # refused before the store, the data and the model
    options = ray_options(args)  # None: the local engine
    if args.watch and options:
        raise ValueError("--watch runs the local engine: leave out --engine ray")
    if args.rescan <= 0:
        raise ValueError(f"--rescan must be a positive number of seconds, not {args.rescan}")
    parse_model_spec(args.model)  # a bad spec: one line before anything is opened
    with open_store_from_args(args) as store:
        claim_collection(store, args.collection, settings)  # a busy store: said at once
        records = load_data(args, follow_links=args.follow_links)  # every split unless --split
        if not records:
            raise ValueError(f"no items found in {args.data}")
        device = "cpu" if options else args.device  # with Ray, the driver's model only plans
        precision = "fp32" if options else args.precision
        encoder = load_encoder(args.model, device, precision, tta=args.tta)
        if args.watch:
            return _watch(args, encoder, store, settings)
        report = _index(args, encoder, store, records, settings, options)
    print(report.summary())
    if report.rejects:
        path = write_rejects(_rejects_path(args), report.rejects)
        print(f"{report.rejected} files skipped; reasons in {path}")
    return 0


def _index(args, encoder, store, records, settings, options) -> IndexReport:
    """Run the chosen engine over ``records``."""
    common = {
        "max_pixels": args.max_pixels,
        "prune": args.prune,
        "settings": settings,
        "progress": not args.no_progress,
    }
    if options:
        target = worker_target(store, args.api_key_env, args.grpc)
        return index_records_ray(
            encoder, store, args.collection, records, options, target, **common
        )
    batch_size = image_batch_size(args.batch_size, encoder.device)
    return index_records(
        encoder, store, args.collection, records, batch_size, args.workers, **common
    )


def _watch(args, encoder, store, settings) -> int:
    """A full pass, then each change, until Ctrl-C or SIGTERM (a service manager's stop):
    one line per pass that changed something, the rejects file after each full pass."""
    rejects = _rejects_path(args)
    store_folder = None if args.qdrant_url else (args.store or default_store_path())
    watched = WatchedData(
        encoder,
        store,
        args.collection,
        args.data,
        read=lambda: load_data(args, follow_links=args.follow_links),
        settings=settings,
        batch_size=image_batch_size(args.batch_size, encoder.device),
        workers=args.workers,
        max_pixels=args.max_pixels,
        ignore=[path for path in (store_folder, rejects) if path],
    )

    def said(report) -> None:
        print(report.summary(), flush=True)
        if report.full:
            if report.rejects:
                print(f"{len(report.rejects)} files skipped; reasons in {rejects}", flush=True)
            write_rejects(rejects, report.rejects)
        for reject in () if report.full else report.rejects:
            print(f"skipped {reject.path}: {reject.reason}", flush=True)

    print(f"watching {watched.folder} for {args.collection} (Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        watched.watch(threading.Event(), args.rescan, said, progress=not args.no_progress)
    print(f"stopped; {args.collection} holds {store.count(args.collection)} points", flush=True)
    return 0


def _stop(signum, frame):
    raise KeyboardInterrupt


def _rejects_path(args) -> Path:
    """``--rejects``, else COLLECTION.rejects.jsonl in the store folder (here with a server)."""
    if args.rejects:
        return Path(args.rejects)
    folder = Path(args.store) if args.store else default_store_path()
    if args.qdrant_url:
        folder = Path.cwd()
    return folder / f"{args.collection}.rejects.jsonl"
