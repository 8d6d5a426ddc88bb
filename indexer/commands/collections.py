"""``multimodal collections``: list a store's collections, describe one, or drop one.

    multimodal collections                                  # the embedded store's
    multimodal collections list --qdrant-url http://host:6333
    multimodal collections describe recipes5k --json
    multimodal collections drop old-photos --yes

A missing collection is one line and exit status 2; ``drop`` asks first (``--yes`` skips the
question; without a terminal to ask on it refuses).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from indexer.collection_settings import BULK_LOAD, CollectionSettings
from indexer.commands.common import add_where_arguments, open_store_from_args
from indexer.store import Store, StoreError
from multimodal.commands.common import command

ACTIONS = ("list", "describe", "drop")
TTA = {True: "on", False: "off"}  # how the photo vectors were made; "mixed" as it is
COLUMNS = ("name", "points", "model", "dim", "quantization", "on disk", "shards", "words")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal collections",
        description="List a store's collections (points, model, settings), describe one, or "
        "drop one.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=ACTIONS,
        default="list",
        help="list (default), describe NAME or drop NAME",
    )
    parser.add_argument("name", nargs="?", default=None, help="the collection to describe or drop")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--yes", action="store_true", help="drop without asking first")
    add_where_arguments(parser)
    return parser


@command("collections")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.action == "list" and args.name:
        raise ValueError(f"list takes no name: multimodal collections describe {args.name}")
    if args.action != "list" and not args.name:
        raise ValueError(f"name the collection: multimodal collections {args.action} NAME")
    with open_store_from_args(args) as store:
        if args.action == "list":
            return print_list(store, args.json)
        require(store, args.name)
        if args.action == "describe":
            return print_description(store, args.name, args.json)
        return drop(store, args.name, args.yes)


def require(store: Store, name: str) -> None:
    """Refuse a collection the store does not have, naming those it has (exit status 2)."""
    known = store.collections()
    if name not in known:
        where = getattr(store, "label", "the store")
        raise ValueError(
            f"no collection {name!r} in {where} (collections: {', '.join(known) or 'none'})"
        )


def summary(store: Store, name: str) -> dict[str, Any]:
    """One collection's row: points, model, size, settings, words, bulk load; ``problem``
    instead of what could not be read (not made by multimodal index, open elsewhere)."""
    row: dict[str, Any] = {"name": name}
    try:
        metadata = store.metadata(name)
        row.update(model=metadata["model"].get("name"), dim=metadata["dim"])
        row["settings"] = CollectionSettings.from_metadata(metadata).record()
        row["bulk_load"] = metadata.get(BULK_LOAD) is not None
        row["words"] = store.has_words(name)
        row["points"] = store.count(name)
    except StoreError as err:
        row["problem"] = str(err)
    return row


def print_list(store: Store, as_json: bool) -> int:
    """The table of :func:`summary` rows (or their JSON), then a line per problem."""
    rows = [summary(store, name) for name in store.collections()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no collections in {getattr(store, 'label', 'the store')}")
        return 0
    cells = [COLUMNS] + [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    for line in cells:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    for row in rows:
        if row.get("bulk_load"):
            print(f"{row['name']}: bulk load in progress; run multimodal index on it to finish")
        if "problem" in row:
            print(f"{row['name']}: {row['problem']}")
    return 0


def _cells(row: dict[str, Any]) -> tuple[str, ...]:
    settings = row.get("settings")
    if settings is None:
        return (row["name"], *("?" * (len(COLUMNS) - 1)))
    placed = [
        what for what, key in (("vectors", "on_disk"), ("hnsw", "hnsw_on_disk")) if settings[key]
    ]
    shards = settings["shards"] or ("-" if not settings["replicas"] else "auto")
    if settings["replicas"]:
        shards = f"{shards} x {settings['replicas']}"
    points = row.get("points")
    return (
        row["name"],
        f"{points:,}" if points is not None else "?",
        str(row["model"]),
        str(row["dim"]),
        settings["quantization"] or "none",
        "+".join(placed) or "no",
        str(shards),
        "yes" if row.get("words") else "no",
    )


def print_description(store: Store, name: str, as_json: bool) -> int:
    """Everything :meth:`Store.describe` gives, with the settings and the bulk load, as
    readable lines (or JSON)."""
    described = store.describe(name)
    described["words"] = store.has_words(name)
    if as_json:
        print(json.dumps(described, indent=2, default=str))
        return 0
    for label, value in description_lines(described):
        print(f"{label:<16}{value}")
    return 0


def description_lines(described: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of a :meth:`Store.describe` answer."""
    metadata, model = described["metadata"], described["metadata"]["model"]
    settings = CollectionSettings(**described["settings"])
    weights = model.get("weights_sha256")
    bulk = described["bulk_load"]
    lines = [
        ("collection", described["collection"]),
        ("store", described["store"]),
        (
            "points",
            f"{described['points']:,} (indexed vectors {described['indexed_vectors']:,}, "
            f"segments {described['segments']})",
        ),
        (
            "model",
            f"{model.get('name')} ({metadata['dim']}-d; "
            f"{'weights sha256 ' + weights[:12] if weights else 'no checkpoint hash'}; "
            f"TTA {TTA.get(model.get('tta', False), model.get('tta'))})",
        ),
        (
            "words",
            "BM25, for hybrid and keyword search"
            if described["words"]
            else "none (run multimodal index on it again to add them)",
        ),
        ("settings", settings.summary()),
        (
            "bulk load",
            f"in progress since {bulk.get('since')}: index building is off; run "
            "multimodal index on it again to finish"
            if bulk
            else "none",
        ),
        ("payload indexes", ", ".join(described["payload_indexes"]) or "none"),
    ]
    if described.get("status") is not None:
        lines.insert(3, ("status", f"{described['status']} (green: indexed; yellow: indexing)"))
    if metadata.get("roots"):
        lines.append(("data roots", ", ".join(metadata["roots"])))
    return lines


def drop(store: Store, name: str, yes: bool) -> int:
    """Delete the collection after a yes at the terminal (or ``yes``). Counting its points
    first also opens it, so an embedded collection open in another process is refused before
    anything is deleted."""
    points = store.count(name)
    if not yes:
        if not sys.stdin.isatty():
            raise ValueError(
                f"dropping {name!r} deletes its {points:,} points for good: pass --yes to "
                "confirm (there is no terminal to ask on)"
            )
        answer = input(f"drop collection {name!r} and its {points:,} points? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print(f"kept {name!r}")
            return 1
    store.drop(name)
    print(f"dropped {name!r} ({points:,} points)")
    return 0
