"""``multimodal search``: query a collection from the command line.

    multimodal search "beef tacos with salsa" --collection recipes5k --target image -k 5
    multimodal search --image dish.jpg --collection recipes5k --target text -k 5 --suggest
    multimodal search '"2:strawberry tart" + photo.jpg - chocolate' --collection recipes5k

The model defaults to the one the collection was indexed with.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from indexer.commands.common import add_store_arguments, open_store_from_args
from indexer.search import MAX_RESULTS, Searcher, Term, parse_query, vote_ingredients
from indexer.store import SearchFilter
from multimodal.commands.common import add_tta_argument, command
from multimodal.encoder import load_encoder
from multimodal.suggestions import VOTERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal search",
        description="Search a collection with text, an image, a stored point or a weighted mix "
        "('\"2:strawberry tart\" + photo.jpg - chocolate').",
    )
    _add_query_arguments(parser)
    _add_filter_arguments(parser)
    _add_output_arguments(parser)
    add_store_arguments(parser)
    return parser


def _add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """What to search with, and in which space."""
    parser.add_argument(
        "query",
        nargs="?",
        default=None,
        help="text or a mixed expression of weighted terms joined by ' + ' and ' - ' "
        "(a term is text, an image file, or id:UUID of a stored point)",
    )
    parser.add_argument("--image", action="append", default=[], help="a query photo (repeatable)")
    parser.add_argument(
        "--like", default=None, help="id of a stored point: more like this (it is left out)"
    )
    parser.add_argument(
        "--target",
        choices=("image", "text"),
        default="image",
        help="image: find photos; text: find recipe texts",
    )
    parser.add_argument(
        "-k",
        "--limit",
        type=result_count,
        default=10,
        help=f"how many results to show, 1 to {MAX_RESULTS} (default: 10)",
    )


def result_count(text: str) -> int:
    """``-k``: a whole number from 1 to ``MAX_RESULTS``, refused when the line is parsed."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_RESULTS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_RESULTS}")
    return count


def _add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    """Which stored items may be results."""
    parser.add_argument(
        "--dish", action="append", default=[], help="only this dish type, e.g. tacos (repeatable)"
    )
    parser.add_argument(
        "--with",
        dest="with_ingredients",
        action="append",
        default=[],
        help="an ingredient that must appear (repeatable)",
    )
    parser.add_argument(
        "--without",
        dest="without_ingredients",
        action="append",
        default=[],
        help="an ingredient that must not appear (repeatable)",
    )
    parser.add_argument(
        "--split", action="append", default=[], help="only items of this split (repeatable)"
    )
    parser.add_argument(
        "--group-by",
        default=None,
        help="a payload field, e.g. label or recipe_id: at most one result per value",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What is printed, and the model that encodes the query."""
    parser.add_argument(
        "--suggest",
        action="store_true",
        help=f"also rank ingredients by votes of the {VOTERS} nearest recipes",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines for scripts: one object per result (rank, score, id, path and "
        "the stored payload), then the suggested ingredients if --suggest",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="the model that encodes the query (default: the one the collection was indexed "
        "with; another one is refused)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="where the query is encoded: cuda or cpu (default: cuda if available)",
    )
    add_tta_argument(parser, "a query photo", default=True)


def query_terms(args) -> list[Term]:
    # The person at this command line may read this disk, so a term may name a photo.
    query = args.query
    terms = parse_query(query, allow_paths=True) if query and query.strip() else []
    for image in args.image:
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no image file {image}")
        terms.append(Term("image", path))
    if args.like:
        terms.append(Term("point", args.like))
    if not terms:
        raise ValueError("empty query: give text, --image PATH or --like ID")
    return terms


@command("search")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    terms = query_terms(args)
    search_filter = SearchFilter(
        labels=args.dish,
        with_ingredients=args.with_ingredients,
        without_ingredients=args.without_ingredients,
        splits=args.split,
    )
    with open_store_from_args(args) as store:
        model = args.model or store.metadata(args.collection)["model"]["name"]
        encoder = load_encoder(model, args.device, tta=args.tta)
        searcher = Searcher(encoder, store, args.collection)
        prepared = searcher.prepare(terms)  # once, for results and suggestions
        hits = searcher.nearest(prepared, args.target, args.limit, search_filter, args.group_by)
        suggested = []
        if args.suggest:
            neighbours = searcher.nearest(prepared, "text", VOTERS, search_filter)
            suggested = vote_ingredients(neighbours)
    if args.json:
        for rank, hit in enumerate(hits, 1):
            path = hit.image_path
            row = {"rank": rank, "score": hit.score, "id": hit.id, **hit.payload}
            row["path"] = str(path) if path else None
            print(json.dumps(row))
        if suggested:
            print(json.dumps({"suggested_ingredients": suggested}))
        return 0
    print(format_hits(hits))
    if args.suggest and not suggested:
        print("\nno ingredients to suggest: the nearest items list none")
    if suggested:
        print("\nsuggested ingredients (share of neighbour votes):")
        for name, share in suggested:
            print(f"  {share:5.2f}  {'#' * round(share * 20):<20}  {name}")
    return 0


def format_hits(hits) -> str:
    if not hits:
        return "no results (check the filters)"
    width = shutil.get_terminal_size((120, 20)).columns
    lines = [f"{'rank':>4}  {'score':>6}  {'title':<32}  {'dish':<16}  ingredients | path"]
    for rank, hit in enumerate(hits, 1):
        p = hit.payload
        ingredients = ", ".join(p.get("base_ingredients") or p.get("ingredients") or [])
        title = _clip(p.get("title") or "-", 32)
        label = _clip(p.get("label") or "-", 16)
        head = f"{rank:>4}  {hit.score:6.3f}  {title:<32}  {label:<16}  "
        rest = _clip(ingredients or "-", max(20, width - len(head) - 2))
        lines.append(head + rest)
        lines.append(" " * len(head) + (p.get("image") or "(text only)"))
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
