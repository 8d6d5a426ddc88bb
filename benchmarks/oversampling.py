"""Quantized search against exact search on a real collection's vectors: recall@10 and query
time for each quantization and oversampling, with and without rescoring.

    python benchmarks/oversampling.py --store ~/.local/share/multimodal/qdrant \\
        --collection recipes5k-7607bde38b

The collection's photo vectors are copied into temporary Qdrant Edge collections, one per
quantization (``multimodal index --quantization``); the queries are the collection's recipe
texts (text -> photo, as the page asks) and photos (photo -> photo), a random sample of each.
The truth is numpy's exact top 10. What it measured set the default oversampling
(:data:`indexer.collection_settings.DEFAULT_OVERSAMPLING`; docs/scaling-out.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer.collection_settings import QUANTIZATIONS, CollectionSettings
from indexer.edge import EdgeStore
from indexer.store import CollectionSpec, Point, SearchRequest

TOP = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the embedded store holding it")
    parser.add_argument("--collection", required=True, help="an indexed collection")
    parser.add_argument("--queries", type=int, default=300, help="queries of each kind")
    parser.add_argument("--oversampling", default="1,1.5,2,3,4,6")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def read_vectors(store_path: str, collection: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The ids and photo vectors of the collection's points, and its text vectors."""
    with EdgeStore(Path(store_path).expanduser()) as store:
        points = list(store.scroll(collection, fields=["title"], with_vectors=True))
    photos = [(p.id, p.vectors["image"]) for p in points if "image" in p.vectors]
    texts = np.array([p.vectors["text"] for p in points if "text" in p.vectors], np.float32)
    return [i for i, _ in photos], np.array([v for _, v in photos], np.float32), texts


def measure(store, ids, queries, truth, oversampling, rescore=True) -> tuple[float, float]:
    """Mean recall@10 against ``truth`` and mean milliseconds per query."""
    found, started = [], time.perf_counter()
    for query in queries:
        request = SearchRequest("image", query, rescore=rescore, oversampling=oversampling)
        found.append({hit.id for hit in store.search("q", request, TOP)})
    seconds = time.perf_counter() - started
    recall = np.mean([len(f & t) / TOP for f, t in zip(found, truth, strict=True)])
    return float(recall), seconds / len(queries) * 1000


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ids, photos, texts = read_vectors(args.store, args.collection)
    rng = np.random.default_rng(args.seed)
    asks = {
        "text -> photo": texts[rng.choice(len(texts), min(args.queries, len(texts)), False)],
        "photo -> photo": photos[rng.choice(len(photos), min(args.queries, len(photos)), False)],
    }
    truths = {
        kind: [{ids[i] for i in np.argsort(-(photos @ q))[:TOP]} for q in queries]
        for kind, queries in asks.items()
    }
    print(f"{len(ids)} photo vectors of {args.collection}, {photos.shape[1]}-d")
    print(f"{'quantization':<13}{'queries':<16}{'oversampling':>13}{'recall@10':>11}{'ms':>7}")
    for quantization in QUANTIZATIONS:
        with tempfile.TemporaryDirectory() as scratch, EdgeStore(scratch) as store:
            settings = CollectionSettings(quantization=quantization)
            store.create_or_open("q", CollectionSpec(photos.shape[1], {"name": "copy"}, settings))
            points = [Point(i, {"image": v}) for i, v in zip(ids, photos, strict=True)]
            for start in range(0, len(points), 1000):
                store.upsert("q", points[start : start + 1000])
            store.optimize("q")
            for kind, queries in asks.items():
                for factor in [float(f) for f in args.oversampling.split(",")]:
                    recall, ms = measure(store, ids, queries, truths[kind], factor)
                    print(f"{quantization:<13}{kind:<16}{factor:>13g}{recall:>11.3f}{ms:>7.2f}")
                recall, ms = measure(store, ids, queries, truths[kind], None, rescore=False)
                print(f"{quantization:<13}{kind:<16}{'no rescore':>13}{recall:>11.3f}{ms:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
