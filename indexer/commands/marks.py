"""``multimodal marks``: the Good / Not this marks kept for a collection.

    multimodal marks show --collection recipes5k
    multimodal marks export --collection recipes5k --out marks-pairs.jsonl
    multimodal train --model recipe --data DATA --out runs/mine --marks recipes5k

The marks are a file beside the store (``.marks/COLLECTION.jsonl`` in an embedded store's
folder; under ``$MULTIMODAL_HOME/marks`` for a server), so neither command opens the store: it
may be serving the page meanwhile.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from indexer.commands.common import add_store_arguments
from multimodal.commands.common import command
from multimodal.data.marks import latest, read_lines, training_pairs, write_pairs
from multimodal.paths import marks_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal marks",
        description="The Good / Not this marks made on a collection's results (the page, "
        "POST /api/marks), as training pairs for multimodal train --marks.",
    )
    parser.add_argument(
        "action",
        choices=("show", "export"),
        help="show: count the marks and the pairs they make; export: write the pairs",
    )
    parser.add_argument("--out", help="export: the file to write, e.g. marks-pairs.jsonl")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_store_arguments(parser)
    return parser


def summary(marks: list[dict], pairs: list[dict], path: Path) -> dict:
    """What the marks hold: every mark made, each (query, hit) as last marked, the pairs."""
    current = latest(marks)
    queries = Counter(json.dumps(m["query"], sort_keys=True) for m in current)
    return {
        "file": str(path),
        "marks": len(marks),
        "current": len(current),
        "good": sum(m["good"] for m in current),
        "not_this": sum(not m["good"] for m in current),
        "queries": len(queries),
        "pairs": len(pairs),
        "positive_pairs": sum(p["good"] for p in pairs),
    }


@command("marks")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "export" and not args.out:
        raise ValueError("export needs --out FILE")
    path = marks_path(args.collection, args.qdrant_url or args.store)
    marks = read_lines(path)
    if not marks:
        raise ValueError(
            f"collection {args.collection!r} has no marks yet ({path}): mark results Good / "
            "Not this on the page or with POST /api/marks"
        )
    pairs = training_pairs(marks)
    found = summary(marks, pairs, path)
    if args.action == "export":
        write_pairs(Path(args.out), pairs)
        found["out"] = args.out
    if args.json:
        print(json.dumps(found))
        return 0
    print(
        f"{found['marks']} marks in {path}: {found['good']} Good and {found['not_this']} "
        f"Not this on {found['queries']} queries, as last marked"
    )
    print(f"{found['pairs']} training pairs ({found['positive_pairs']} positive)")
    if args.action == "export":
        print(f"written to {args.out}: multimodal train --marks {args.out} ...")
    return 0
