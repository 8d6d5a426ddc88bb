"""``multimodal tag``: label a collection's photos with the user's own words.

    multimodal tag --collection recipes5k --field course --labels assets/labels/course.txt
    multimodal search "cake" --where course=dessert

Each photo gets the labels (one a line in ``--labels``, optionally ``label: description``)
whose text the collection's model finds nearest its photo: the best, and any other within
``--margin`` of it, in the payload field ``--field`` with their scores in
``FIELD_scores`` (:mod:`indexer.tags`). A rerun replaces both; ``--dry-run`` prints a sample
and writes nothing.
"""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from indexer.commands.collections import require
from indexer.commands.common import add_store_arguments, open_store_from_args
from indexer.tags import DEFAULT_MARGIN, check_field, read_labels, tag_points
from multimodal.commands.common import command

SAMPLE = 10  # photos a dry run prints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal tag",
        description="Label every photo of a collection with the labels of a file whose text "
        "matches it, in a payload field you can filter on (--where FIELD=VALUE).",
    )
    add_store_arguments(parser)
    parser.add_argument("--field", required=True, help="payload field to write, e.g. course")
    parser.add_argument(
        "--labels",
        required=True,
        help="file of labels, one a line: 'label' or 'label: a longer description'",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="labels within this cosine of the best are given too "
        f"(default: {DEFAULT_MARGIN}; 0: the best alone)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help=f"print {SAMPLE} photos' labels; write nothing"
    )
    parser.add_argument("--json", action="store_true", help="the sample or summary as JSON")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@command("tag")
def main(argv: list[str] | None = None) -> int:
    from multimodal.encoder import load_encoder

    args = build_parser().parse_args(argv)
    check_field(args.field)
    if not 0.0 <= args.margin <= 2.0:
        raise ValueError(f"--margin must be from 0 to 2, not {args.margin}")
    labels = read_labels(args.labels)
    with open_store_from_args(args) as store:
        require(store, args.collection)
        encoder = load_encoder(store.metadata(args.collection)["model"]["name"], args.device)

        def progress(points):
            return tqdm(points, desc="tagging", unit="photo", disable=args.no_progress)

        tagged = tag_points(
            encoder,
            store,
            args.collection,
            args.field,
            labels,
            args.margin,
            dry_run=args.dry_run,
            progress=progress,
        )
        paths = {}
        if args.dry_run:
            sample = [point_id for point_id, *_ in tagged[:SAMPLE]]
            found = store.retrieve(args.collection, sample, fields=["image", "root"])
            paths = {p.id: str(p.image_path) for p in found}
    counts: dict[str, int] = {}
    for _, chosen, _ in tagged:
        counts[chosen[0]] = counts.get(chosen[0], 0) + 1
    if args.dry_run:
        for point_id, chosen, scores in tagged[:SAMPLE]:
            row = {"id": point_id, "path": paths.get(point_id), args.field: chosen}
            best = {name: scores[name] for name in chosen}
            print(json.dumps(row) if args.json else f"{', '.join(chosen)}  {best}  {row['path']}")
    summary = {
        "tagged": len(tagged),
        "field": args.field,
        "best": counts,
        "written": not args.dry_run,
    }
    if args.json and not args.dry_run:
        print(json.dumps(summary))
    elif not args.json:
        verb = "would tag" if args.dry_run else "tagged"
        top = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"{verb} {len(tagged)} photos in {args.field!r}: {top}")
    return 0
