"""``multimodal calibrate``: fit the match probabilities of a collection's model.

    multimodal calibrate --collection recipes5k --field label --split val

The split's points are searched as queries (their titles, ingredient lists and photos); a hit
is relevant when it shares the query's ``--field`` value. The curves and query domains
(:mod:`multimodal.calibration`) are written where searches find them: beside a checkpoint's
weights, else under ``$MULTIMODAL_HOME/calibration`` (``--out`` chooses).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer.calibrate import (
    DEFAULT_K,
    DEFAULT_QUERIES,
    calibration_queries,
    collect,
    encode_queries,
    fit,
)
from indexer.commands.collections import require
from indexer.commands.common import add_store_arguments, open_store_from_args
from multimodal.calibration import FILE, home_path, model_folder
from multimodal.commands.common import command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal calibrate",
        description="Fit match probabilities and the query domain of a collection's model on "
        "its labelled points: searches then show each hit's probability and answer "
        "'no good match' when nothing fits.",
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--field", default="label", help="payload field a relevant hit shares (default: label)"
    )
    parser.add_argument(
        "--split", default="val", help="split whose points are the queries (default: val)"
    )
    parser.add_argument(
        "--k", type=int, default=DEFAULT_K, help=f"hits per search (default: {DEFAULT_K})"
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=DEFAULT_QUERIES,
        help=f"points of the split used at most (default: {DEFAULT_QUERIES})",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="file to write (default: beside a checkpoint's weights, else "
        "$MULTIMODAL_HOME/calibration/KEY.npz)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@command("calibrate")
def main(argv: list[str] | None = None) -> int:
    from indexer.search import Searcher
    from multimodal.encoder import load_encoder, model_stamp

    args = build_parser().parse_args(argv)
    if not 1 <= args.k <= 1000 or args.queries < 1:
        raise ValueError("--k must be from 1 to 1000 and --queries at least 1")
    with open_store_from_args(args) as store:
        require(store, args.collection)
        encoder = load_encoder(store.metadata(args.collection)["model"]["name"], args.device)
        searcher = Searcher(encoder, store, args.collection)
        queries, gallery = calibration_queries(
            store, args.collection, args.field, args.split, args.queries
        )
        if not gallery:
            raise ValueError(f"{args.collection} has no point outside split {args.split!r}")

        def progress(what, unit):
            return lambda items: tqdm(items, desc=what, unit=unit, disable=args.no_progress)

        raw = encode_queries(encoder, queries, progress("encoding photos", "batch"))
        samples = collect(
            searcher, queries, raw, args.field, args.k, progress("searching", "query")
        )
    stamp = model_stamp(encoder)
    fitted_on = {
        "collection": args.collection,
        "field": args.field,
        "split": args.split,
        "queries": len(queries),
        "k": args.k,
    }
    calibration = fit(samples, gallery, stamp, fitted_on)
    path = Path(args.out) if args.out else _default_path(encoder.info, stamp)
    calibration.save(path)
    summary = {
        "written": str(path),
        "curves": {
            key: {"hits": len(v), "relevant": round(float(np.mean(samples.relevant[key])), 3)}
            for key, v in samples.cosines.items()
        },
        "domains": sorted(calibration.domain),
        **fitted_on,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, curve in summary["curves"].items():
            print(f"{key:<24} {curve['hits']:>7} hits, {curve['relevant']:.1%} relevant")
        print(f"calibration of {stamp['name']} written to {path}")
    return 0


def _default_path(info, stamp) -> Path:
    folder = model_folder(info)
    if folder is not None and info.kind == "checkpoint":
        return folder / FILE
    return home_path(stamp)
