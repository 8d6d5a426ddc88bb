"""Qdrant Edge (the embedded default) against qdrant-client's local mode, through the project's
own store interface: upsert points/s, query p50/p95, and HNSW recall@10 against exact search.

    python benchmarks/store_bench.py --sizes 10000,100000,200000

Synthetic 512-d unit vectors drawn around 1,000 cluster centres (real embeddings cluster; a
uniform sphere would be an unrealistically hard case for HNSW). Queries are fresh draws from
the same mixture. Edge's upsert time includes building its HNSW index (``optimize``); local
mode has no index and searches by brute force. Both run in this one process, one after
the other, on the same vectors.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from indexer.edge import EdgeStore
from indexer.server import ServerStore
from indexer.store import CollectionSpec, Point

DIM = 512
MODEL = {"name": "synthetic", "arch": "none", "weights_sha256": None}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,200000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000, help="points per upsert call")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def mixture(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picks = centres[rng.integers(0, len(centres), n)]
    vectors = picks + rng.normal(0, 0.6 / np.sqrt(DIM), (n, DIM)).astype(np.float32) * 1.0
    vectors += rng.normal(0, 1.0, (n, DIM)).astype(np.float32) * 0.02
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def load(store, vectors: np.ndarray, batch: int) -> float:
    store.create_or_open("bench", CollectionSpec(DIM, MODEL))
    started = time.perf_counter()
    for start in range(0, len(vectors), batch):
        chunk = vectors[start : start + batch]
        store.upsert(
            "bench",
            [
                Point(str(uuid.UUID(int=start + i + 1)), {"image": row}, {"n": start + i})
                for i, row in enumerate(chunk)
            ],
        )
    store.optimize("bench")
    return time.perf_counter() - started


def query_times(store, queries: np.ndarray, exact: bool = False):
    latencies, results = [], []
    for query in queries:
        started = time.perf_counter()
        hits = store.query("bench", query, "image", limit=10, exact=exact)
        latencies.append(time.perf_counter() - started)
        results.append([h.id for h in hits])
    return np.array(latencies) * 1000, results


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in pairs]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(0, 1, (1000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = mixture(args.queries, centres, rng)
    header = (
        f"{'points':>7}  {'store':<18} {'upsert pts/s':>12} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'recall@10':>9}"
    )
    print(header)
    for size in [int(s) for s in args.sizes.split(",")]:
        vectors = mixture(size, centres, rng)
        rows = {}
        with tempfile.TemporaryDirectory() as scratch, EdgeStore(Path(scratch)) as edge:
            seconds = load(edge, vectors, args.batch)
            latency, found = query_times(edge, queries)
            _, exact = query_times(edge, queries, exact=True)
            rows["qdrant-edge (HNSW)"] = (size / seconds, latency, recall(found, exact))
        local = ServerStore(":memory:")
        seconds = load(local, vectors, args.batch)
        latency, found = query_times(local, queries)
        rows["client local mode"] = (size / seconds, latency, recall(found, exact))
        local.close()
        for name, (rate, latency, rec) in rows.items():
            p50, p95 = np.percentile(latency, [50, 95])
            print(f"{size:>7}  {name:<18} {rate:>12.0f} {p50:>8.2f} {p95:>8.2f} {rec:>9.3f}")
        edge_rate, edge_lat, _ = rows["qdrant-edge (HNSW)"]
        local_rate, local_lat, _ = rows["client local mode"]
        print(
            f"{size:>7}  edge / local: upsert {edge_rate / local_rate:.2f}x, query p50 "
            f"{np.median(local_lat) / np.median(edge_lat):.1f}x faster, p95 "
            f"{np.percentile(local_lat, 95) / np.percentile(edge_lat, 95):.1f}x faster",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
