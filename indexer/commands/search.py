"""``multimodal search``: query a collection from the command line.

    multimodal search "beef tacos with salsa" --collection recipes5k --target image -k 5
    multimodal search --image dish.jpg --collection recipes5k --target text -k 5 --suggest
    multimodal search '"2:strawberry tart" + photo.jpg - chocolate' --collection recipes5k
    multimodal search "apple pie" --collection recipes5k --mode hybrid --like ID --unlike ID

The model defaults to the one the collection was indexed with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indexer.collection_settings import DEFAULT_OVERSAMPLING
from indexer.commands.common import add_store_arguments, open_store_from_args
from indexer.commands.search_output import (
    dish_name,
    format_answer,
    format_suggestions,
    print_json,
)
from indexer.query import MAX_RESULTS
from indexer.search import Searcher
from indexer.service import (
    DEFAULT_DIVERSITY,
    DEFAULT_MODE,
    DEFAULT_RANKING,
    EmptyQuery,
    SearchQuery,
    SearchService,
)
from indexer.store import MODES, SearchFilter
from indexer.trust import DEFAULT_MIN_SCORE
from multimodal.commands.common import add_tta_argument, command
from multimodal.encoder import load_encoder
from multimodal.suggestions import RANKINGS, VOTERS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal search",
        description="Search a collection with text, an image, a stored point or a weighted mix "
        "('\"2:strawberry tart\" + photo.jpg - chocolate').",
    )
    _add_query_arguments(parser)
    _add_filter_arguments(parser)
    _add_quantization_arguments(parser)
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
        "--box",
        default=None,
        metavar="X0,Y0,X1,Y1",
        help="search by this region of the --image photo: pixels, or fractions of its width "
        "and height when every value is from 0 to 1 (e.g. 0.5,0,1,0.5: the top-right quarter)",
    )
    parser.add_argument(
        "--like",
        action="append",
        default=[],
        help="id of a stored point: more like this (repeatable; left out of the results); "
        "with a query, the query stays a positive example",
    )
    parser.add_argument(
        "--unlike",
        action="append",
        default=[],
        help="id of a stored point: less like this (repeatable; left out of the results)",
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
        "--where",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="only items whose payload FIELD is (or lists) VALUE, e.g. a tag field that "
        "multimodal tag wrote: course=dessert (repeatable: values of one field, any of them; "
        "of different fields, all)",
    )
    parser.add_argument(
        "--group-by",
        default=None,
        help="a payload field, e.g. label or recipe_id: at most one result per value",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="how text is matched: dense (the model), sparse (BM25 over titles and "
        "ingredients) or hybrid (both, fused by rank); a photo is always dense (default: "
        f"{DEFAULT_MODE}; dense in a collection indexed before hybrid search)",
    )
    parser.add_argument(
        "--diversity",
        type=diversity,
        default=DEFAULT_DIVERSITY,
        help="0 to 1: re-rank for variety (maximal marginal relevance), so near-duplicates do "
        f"not fill the list (default: {DEFAULT_DIVERSITY:g}, plain relevance)",
    )


def diversity(text: str) -> float:
    """``--diversity``: a number from 0 to 1, refused when the line is parsed."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a number from 0 to 1")
    return value


def min_score(text: str) -> float:
    """``--min-score``: a probability from 0 to 1."""
    return diversity(text)


def _add_quantization_arguments(parser: argparse.ArgumentParser) -> None:
    """How a quantized collection is searched (a collection without quantization ignores
    them): docs/scaling-out.md#qdrant-cluster-collections."""
    defaults = ", ".join(f"{value:g} for {kind}" for kind, value in DEFAULT_OVERSAMPLING.items())
    parser.add_argument(
        "--oversampling",
        type=oversampling,
        default=None,
        help="in a quantized collection: candidates the compressed vectors preselect per "
        f"result, rescored with the originals; at least 1 (default: {defaults})",
    )
    parser.add_argument(
        "--no-rescore",
        dest="rescore",
        action="store_false",
        help="in a quantized collection: rank by the compressed vectors alone (faster, "
        "rougher scores)",
    )


def oversampling(text: str) -> float:
    """``--oversampling``: a number of at least 1, refused when the line is parsed."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value >= 1.0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of at least 1, e.g. 2")
    return value


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What is printed, and the model that encodes the query."""
    parser.add_argument(
        "--collapse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="photos that are one picture (resized, recompressed, cropped, mirrored): the best "
        "listed, '+N similar' beside it (default: on; --no-collapse lists every photo)",
    )
    parser.add_argument(
        "--min-score",
        type=min_score,
        default=None,
        metavar="P",
        help=f"show only hits whose match probability reaches P, else 'no good match' and the "
        f"nearest miss (default: {DEFAULT_MIN_SCORE} where the model is calibrated, see "
        "multimodal calibrate; 0: every hit)",
    )
    parser.add_argument(
        "--suggest",
        action="store_true",
        help=f"also show what the query looks like (dish types) and suggest ingredients, "
        f"from the votes of the {VOTERS} nearest recipes",
    )
    parser.add_argument(
        "--ranking",
        choices=RANKINGS,
        default=DEFAULT_RANKING,
        help="order of suggested ingredients: share (of the votes) or specific (how much more "
        f"often near the query than in the collection) (default: {DEFAULT_RANKING})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines for scripts: one object per result (rank, score, id, path and "
        "the stored payload), then the dish types and suggested ingredients if --suggest",
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


def query_from(args) -> SearchQuery:
    """The command line as a :class:`SearchQuery` (checked as it is built). The person at
    this command line may read this disk, so a term may name a photo."""
    photos = []
    for image in args.image:
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no image file {image}")
        photos.append(path)
    try:
        return _query(args, photos)
    except EmptyQuery:
        what = "--unlike needs something to steer: " if args.unlike else ""
        raise ValueError(f"empty query: {what}give text, --image PATH or --like ID") from None


# the flags spelled as the SearchQuery fields they set
SAME_NAMES = (
    "target",
    "mode",
    "diversity",
    "like",
    "unlike",
    "group_by",
    "rescore",
    "oversampling",
    "suggest",
    "ranking",
    "collapse",
    "min_score",
    "box",
)


def where_fields(conditions: list[str]) -> dict[str, list[str]]:
    """``FIELD=VALUE`` conditions as {field: [values]}; one without ``=`` is a ValueError."""
    fields: dict[str, list[str]] = {}
    for condition in conditions:
        key, equals, value = condition.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise ValueError(f"--where takes FIELD=VALUE, e.g. course=dessert, not {condition!r}")
        fields.setdefault(key.strip(), []).append(value.strip())
    return fields


def _query(args, photos: list[Path]) -> SearchQuery:
    search_filter = SearchFilter(
        labels=args.dish,
        with_ingredients=args.with_ingredients,
        without_ingredients=args.without_ingredients,
        splits=args.split,
        fields=where_fields(args.where),
    )
    options = {name: getattr(args, name) for name in SAME_NAMES}
    return SearchQuery(
        text=args.query or "",
        photos=photos,
        k=args.limit,
        filter=search_filter,
        allow_paths=True,
        **options,
    )


@command("search")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    query = query_from(args)
    with open_store_from_args(args) as store:
        model = args.model or store.metadata(args.collection)["model"]["name"]
        encoder = load_encoder(model, args.device, tta=args.tta)
        service = SearchService(Searcher(encoder, store, args.collection))
        if query.mode is None:
            note_default_mode(service)
        answer = service.search(query)
    if args.json:
        print_json(answer)
        return 0
    if args.mode and answer.mode != args.mode:  # only when asked for: a photo is always dense
        print(f"(a query without words is matched as {answer.mode}, not {args.mode})")
    if answer.looks_like:
        looks = answer.looks_like
        print(
            "looks like: " + ", ".join(f"{dish_name(label)} {share:.0%}" for label, share in looks)
        )
        print()
    print(format_answer(answer))
    if args.suggest:
        print(format_suggestions(answer.ingredients, args.ranking))
    return 0


def note_default_mode(service: SearchService) -> None:
    """A note on stderr when the default mode cannot be used: a collection without BM25
    words is matched dense, and how to add them."""
    if service.default_mode != DEFAULT_MODE:
        print(
            f"note: collection {service.searcher.collection!r} has no BM25 words, so text is "
            f"matched dense, not {DEFAULT_MODE}; run multimodal index on it again to add them",
            file=sys.stderr,
        )
