"""``multimodal search-eval``: how search is asked, measured on queries never indexed.

    multimodal search-eval --model recipe --data ../shared/datasets/recipes5k \\
        --store /tmp/search-eval-store --json search-eval.json

Indexes the ``--index-split`` (train) into a collection of its own (a rerun finds it done),
then asks it with every item of the ``--query-split`` (val): text -> photos in each mode,
photo -> recipes with the "looks like" vote, the ingredients suggested by each ranking, and
each MMR diversity (:mod:`indexer.search_eval`).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from pathlib import Path

from indexer.commands.common import add_store_arguments, open_store_from_args
from indexer.pipeline import index_records
from indexer.search import Searcher
from indexer.search_eval import (
    DIVERSITIES,
    PAGE,
    TEXT_KINDS,
    TOP,
    check_unseen,
    measure_search,
    prepare_queries,
)
from indexer.store import MODES
from multimodal.commands.common import (
    add_model_arguments,
    add_tta_argument,
    command,
    image_batch_size,
    positive_int,
)
from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.readers import read_records
from multimodal.encoder import load_encoder, model_stamp
from multimodal.files import write_json
from multimodal.suggestions import RANKINGS, VOTERS
from multimodal.user_metrics import PRECISION_AT, RECALL_AT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal search-eval",
        description="Index one split, search it with another's items (never indexed) in every "
        "mode, and print what each way of asking gets right: dish types of text -> photo "
        "results, 'looks like' votes, suggested ingredients, MMR diversity.",
    )
    add_model_arguments(parser)
    add_tta_argument(parser, "each query photo (the collection's photos never)")
    parser.add_argument("--data", required=True, help="a data set with dish types (Recipes5k)")
    parser.add_argument("--index-split", default="train", help="the split that is indexed")
    parser.add_argument("--query-split", default="val", help="the split whose items are queries")
    parser.add_argument(
        "--limit", type=positive_int, default=None, help="only the first N query items"
    )
    parser.add_argument(
        "--diversity",
        type=diversities,
        default=",".join(f"{d:g}" for d in DIVERSITIES),
        help="the MMR diversities measured, comma-separated, each from 0 to 1",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="skip images with more pixels than this (decompression-bomb guard)",
    )
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_store_arguments(parser)
    collection = next(a for a in parser._actions if a.dest == "collection")
    collection.required = False  # made from the model and data set when not given
    collection.help = "collection to index into (default: eval-DATA-SPLIT-MODELHASH)"
    return parser


def diversities(text: str) -> tuple[float, ...]:
    """``--diversity``: comma-separated numbers from 0 to 1."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or not all(0.0 <= value <= 1.0 for value in values):
        raise argparse.ArgumentTypeError("give numbers from 0 to 1 separated by commas: 0,0.3")
    return values


def default_collection(data: str, split: str, stamp: dict) -> str:
    """One collection per data set, split and model, so no run mixes another's vectors."""
    identity = stamp.get("weights_sha256") or hashlib.sha256(stamp["name"].encode()).hexdigest()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data.rstrip("/")).name).strip("-") or "data"
    return f"eval-{name}-{split}-{identity[:10]}"


@command("search-eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.index_split == args.query_split:
        raise ValueError("--index-split and --query-split must differ: queries are never indexed")
    indexed = read_records(args.data, args.index_split)
    queries = read_records(args.data, args.query_split)[: args.limit]
    if not indexed or not queries:
        raise ValueError(f"no items in the {args.index_split} or {args.query_split} split")
    encoder = load_encoder(args.model, args.device, args.precision)  # the index: no TTA
    batch_size = image_batch_size(args.batch_size, encoder.device)
    collection = args.collection or default_collection(
        args.data, args.index_split, model_stamp(encoder)
    )
    progress = not args.no_progress
    with open_store_from_args(args) as store:
        report = index_records(
            encoder,
            store,
            collection,
            indexed,
            batch_size,
            args.workers,
            args.max_pixels,
            progress=progress,
        )
        print(report.summary())
        check_unseen(store, collection, args.query_split)
        searcher = Searcher(encoder, store, collection)
        started = time.perf_counter()
        prepared = prepare_queries(
            encoder.with_tta(args.tta), queries, batch_size, args.workers, args.max_pixels, progress
        )
        embedding = time.perf_counter() - started
        result = measure_search(searcher, prepared, args.diversity, progress)
    result["seconds"]["embedding_queries"] = round(embedding, 2)
    run = {
        "model": args.model,
        "tta": args.tta,
        "data": str(args.data),
        "index_split": args.index_split,
        "query_split": args.query_split,
        "collection": collection,
        "indexed": report.total,
        "device": encoder.device.type,
    }
    print(format_report({**run, **result}))
    if args.json:
        print(f"wrote {write_json(args.json, {**run, **result})}")
    return 0


def format_report(result: dict) -> str:
    """The figures as the tables of docs/indexing-and-search.md."""
    searches, seconds = result["searches"], result["seconds"]
    asking = sum(value for key, value in seconds.items() if key != "embedding_queries")
    lines = [
        f"model {result['model']} | {result['data']}: {result['indexed']} {result['index_split']} "
        f"items indexed in {result['collection']}; {result['query_split']} queries: "
        f"{result['text_queries']} texts, {result['photo_queries']} photos "
        f"(TTA {'on' if result['tta'] else 'off'}) | {searches} searches in {asking:.1f} s",
        "",
        f"text -> photos: dish type of the results (percent){'':>3}"
        f"{'top-1':>8}{f'R@{TOP}':>8}{f'P@{TOP}':>8}",
    ]
    for kind in TEXT_KINDS:
        for mode in MODES:
            row = result["text_to_image"][kind][mode]
            name = f"{kind if mode == MODES[0] else '':<14}{mode:<39}"
            figures = f"{row['top1']:>8.1f}{row[f'R@{TOP}']:>8.1f}{row[f'P@{TOP}']:>8.1f}"
            lines.append(f"  {name}{figures}")
    looks = result["photo_to_recipe"]
    lines += [
        "",
        f"photo -> recipes ({VOTERS} nearest, dense): dish type right (percent)",
        f"  {'the best recipe':<53}{looks['top1_recipe']:>8.1f}",
        f"  {'the top looks-like vote':<53}{looks['looks_like']:>8.1f}",
    ]
    lines += _ingredient_lines(result["ingredients"])
    lines += _diversity_lines(result["diversity"])
    return "\n".join(lines)


def _ingredient_lines(ingredients: dict) -> list[str]:
    precision, recall = f"P@{PRECISION_AT}", f"R@{RECALL_AT}"
    prevalence = f"prevalence@{PRECISION_AT}"
    above = f"above chance@{PRECISION_AT}"
    lines = [
        "",
        f"ingredients suggested from {ingredients['photos']} photos ({ingredients['voters']} "
        f"nearest recipes vote; percent)",
        f"  {'ranking':<37}{precision:>8}{above:>16}{recall:>8}  share of the collection "
        "with the first 5",
    ]
    for ranking in RANKINGS:
        row = ingredients[ranking]
        if precision in row:
            lines.append(
                f"  {ranking:<37}{row[precision]:>8.1f}{row[above]:>16.1f}"
                f"{row[recall]:>8.1f}{row[prevalence]:>8.1f}"
            )
    return lines


def _diversity_lines(diversity: dict) -> list[str]:
    lines = [
        "",
        f"diversity (MMR) over the {PAGE} results of a page: distinct recipes, titles and dish "
        f"types; top-1 and P@{PAGE} of the dish type (percent)",
        f"  {'direction':<18}{'diversity':>10}{'recipes':>9}{'titles':>8}{'dishes':>8}"
        f"{'top-1':>8}{f'P@{PAGE}':>8}",
    ]
    names = {"text_to_image": "text -> photos", "image_to_image": "photo -> photos"}
    for direction, rows in diversity.items():
        for setting, row in rows.items():
            lines.append(
                f"  {names[direction]:<18}{setting:>10}{row['recipes']:>9.2f}{row['titles']:>8.2f}"
                f"{row['dish_types']:>8.2f}{row['top1']:>8.1f}{row[f'P@{PAGE}']:>8.1f}"
            )
    return lines
