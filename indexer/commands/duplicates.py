"""``multimodal duplicates``: groups of photos in a collection that are one picture.

    multimodal duplicates --collection recipes5k [--threshold 0.95] [--json]

Exact copies (the same bytes) first, found without the model; then near-duplicates (resized,
recompressed, lightly cropped, re-exported, mirrored) from the collection's image vectors,
the most alike group first (:mod:`indexer.duplicates`). Each group: its lowest pairwise
similarity and its photos' paths; with ``--json``, one JSON object a line per group.
"""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from indexer.commands.collections import require
from indexer.commands.common import add_store_arguments, open_store_from_args
from indexer.duplicates import DEFAULT_THRESHOLD, NEIGHBOURS, find_duplicates
from multimodal.commands.common import command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal duplicates",
        description="Find the groups of photos in a collection that are one picture: exact "
        "copies (same bytes) and near-duplicates (resized, recompressed, lightly cropped, "
        "re-exported, mirrored), the most alike first.",
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="cosine similarity of the image vectors at which two photos are one picture "
        f"(default: {DEFAULT_THRESHOLD}; lower finds more and groups more distinct shots)",
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=NEIGHBOURS,
        help=f"nearest photos each photo is compared with (default: {NEIGHBOURS})",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object a line per group, for scripts"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@command("duplicates")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold must be above 0 and at most 1, not {args.threshold}")
    if args.neighbours < 1:
        raise ValueError(f"--neighbours must be at least 1, not {args.neighbours}")
    with open_store_from_args(args) as store:
        require(store, args.collection)

        def progress(items):
            return tqdm(items, desc="comparing photos", unit="photo", disable=args.no_progress)

        groups = find_duplicates(
            store, args.collection, args.threshold, args.neighbours, progress=progress
        )
    for group in groups:
        if args.json:
            print(json.dumps(group.to_json()))
            continue
        kind = "same bytes" if group.exact else f"similarity {group.similarity:.3f}"
        print(f"{len(group.paths)} photos, {kind}:")
        for path in group.paths:
            print(f"  {path}")
    if not args.json:
        photos = sum(len(g.paths) for g in groups)
        print(f"{len(groups)} groups, {photos} photos, at threshold {args.threshold}")
    return 0
