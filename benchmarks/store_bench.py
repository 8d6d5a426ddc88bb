"""Qdrant Edge (float32 and int8) against qdrant-client's local mode, up to a million points,
through the product's own store interface.

    python benchmarks/store_bench.py --sizes 100000,1000000 --local-max 1000000

Synthetic 512-d unit vectors drawn around 1,000 cluster centres (real embeddings cluster; a
uniform sphere would be an unrealistically hard case for HNSW), made batch by batch from a
seed, so no store is measured holding the whole array. Queries are fresh draws from the same
mixture; their true top 10 is computed here by exact numpy dot products, streamed.

Each store runs in a process of its own (its memory is its own) and reports:

* load: points/s of the upserts alone, in the indexer's bulk-load mode (``--bulk-load``:
  ``begin_bulk``, no index built while points arrive); local mode never builds one.
* index: seconds of ``end_bulk`` after the load (Edge builds its HNSW graph, quantized codes
  and payload indexes then), and the load rate including it.
* search p50/p95 (ms, top 10, one query at a time), recall@10 against the exact top 10,
  memory (resident set growth over the load) and disk (the folder; local mode has none).

Prints the ratios of Edge's load rate to local mode's, measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from indexer.collection_settings import CollectionSettings
from indexer.edge import EdgeStore
from indexer.server import ServerStore
from indexer.store import CollectionSpec, Point

DIM = 512
MODEL = {"name": "synthetic", "arch": "none", "weights_sha256": None}
CENTRES = 1000
BLOCK = 1000  # rows drawn by one generator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1000, help="points per upsert call")
    parser.add_argument(
        "--local-max",
        type=int,
        default=1_000_000,
        help="largest size local mode is run at (it holds everything in Python objects)",
    )
    parser.add_argument(
        "--stores", default="edge,edge-int8,local", help="edge, edge-int8, edge-binary, local"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@functools.cache
def centres(seed: int) -> np.ndarray:
    drawn = np.random.default_rng(seed).normal(0, 1, (CENTRES, DIM)).astype(np.float32)
    return drawn / np.linalg.norm(drawn, axis=1, keepdims=True)


def draw(seed: int, start: int, count: int) -> np.ndarray:
    """Rows ``start`` .. ``start + count`` of the data set of ``seed``: the same rows however
    they are asked for (each block of :data:`BLOCK` rows has its own generator)."""
    first, last = start // BLOCK, (start + count - 1) // BLOCK
    rows = np.vstack([_block(seed, block) for block in range(first, last + 1)])
    return rows[start - first * BLOCK : start - first * BLOCK + count]


def _block(seed: int, block: int) -> np.ndarray:
    rng = np.random.default_rng([seed, block])
    picks = centres(seed)[rng.integers(0, CENTRES, BLOCK)]
    vectors = picks + rng.normal(0, 0.6 / np.sqrt(DIM), (BLOCK, DIM)).astype(np.float32)
    vectors += rng.normal(0, 0.02, (BLOCK, DIM)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def batches(seed: int, size: int, batch: int):
    for start in range(0, size, batch):
        yield start, draw(seed, start, min(batch, size - start))


def exact_top10(seed: int, size: int, queries: np.ndarray, batch: int) -> list[list[str]]:
    """The true 10 nearest points of each query, by streamed exact dot products."""
    best_scores = np.full((len(queries), 10), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 10), np.int64)
    for start, rows in batches(seed, size, max(batch, 10_000)):
        scores = queries @ rows.T
        ids = np.broadcast_to(np.arange(start, start + len(rows)), scores.shape)
        scores, ids = np.hstack([best_scores, scores]), np.hstack([best_ids, ids])
        top = np.argsort(-scores, axis=1)[:, :10]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    return [[str(uuid.UUID(int=int(i) + 1)) for i in row] for row in best_ids]


def open_bench_store(kind: str, folder: Path):
    store = ServerStore(":memory:") if kind == "local" else EdgeStore(folder)
    quantization = kind.partition("-")[2] or None  # edge-int8, edge-binary
    store.create_or_open(
        "bench", CollectionSpec(DIM, MODEL, CollectionSettings(quantization=quantization))
    )
    return store


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_store(kind: str, size: int, args: argparse.Namespace, queries: np.ndarray, out) -> None:
    """In its own process: load, index, search; send the row back on ``out``."""
    with tempfile.TemporaryDirectory() as scratch:
        store = open_bench_store(kind, Path(scratch))
        before = rss_mib()
        store.begin_bulk("bench")  # the index's bulk-load mode: no index built during it
        load_seconds = 0.0
        for start, rows in batches(args.seed, size, args.batch):
            points = [
                Point(str(uuid.UUID(int=start + i + 1)), {"image": row}, {"n": start + i})
                for i, row in enumerate(rows)
            ]
            tick = time.perf_counter()
            store.upsert("bench", points)
            load_seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        store.end_bulk("bench")  # index building on: Edge builds it now
        index_seconds = time.perf_counter() - tick
        memory = rss_mib() - before
        latencies, found = [], []
        for query in queries:
            tick = time.perf_counter()
            hits = store.query("bench", query, "image", limit=10)
            latencies.append(time.perf_counter() - tick)
            found.append([hit.id for hit in hits])
        disk = 0.0
        if kind != "local":
            du = subprocess.run(["du", "-sm", scratch], capture_output=True, text=True).stdout
            disk = float(du.split()[0])
        store.close()
    out.send(
        dict(
            load=load_seconds,
            index=index_seconds,
            memory=memory,
            disk=disk,
            latencies=np.array(latencies) * 1000,
            found=found,
        )
    )


def measure(kind: str, size: int, args: argparse.Namespace, queries: np.ndarray) -> dict:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=run_store, args=(kind, size, args, queries, send))
    process.start()
    row = receive.recv()
    process.join()
    return row


def _p50(row: dict) -> float:
    return float(np.median(row["latencies"]))


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in pairs]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    queries = draw(args.seed, 10**9, args.queries)  # fresh draws of the same centres
    columns = {
        "load pts/s": 10,
        "index s": 8,
        "total pts/s": 11,
        "p50 ms": 7,
        "p95 ms": 7,
        "recall@10": 9,
        "memory MiB": 10,
        "disk MiB": 8,
    }
    print(f"{'points':>9}  {'store':<10} " + " ".join(f"{c:>{w}}" for c, w in columns.items()))
    for size in [int(s) for s in args.sizes.split(",")]:
        truth = exact_top10(args.seed, size, queries, args.batch)
        rows = {}
        for kind in args.stores.split(","):
            if kind == "local" and size > args.local_max:
                continue
            row = rows[kind] = measure(kind, size, args, queries)
            p50, p95 = np.percentile(row["latencies"], [50, 95])
            total = size / (row["load"] + row["index"])
            print(
                f"{size:>9,}  {kind:<10} {size / row['load']:>10.0f} {row['index']:>8.1f} "
                f"{total:>11.0f} {p50:>7.2f} {p95:>7.2f} {recall(row['found'], truth):>9.3f} "
                f"{row['memory']:>10.0f} {row['disk']:>8.0f}",
                flush=True,
            )
        if "local" in rows:
            local = size / rows["local"]["load"]
            for kind in (k for k in rows if k != "local"):
                row = rows[kind]
                print(
                    f"{size:>9,}  {kind} / local: load {size / row['load'] / local:.2f}x, "
                    f"with its index {size / (row['load'] + row['index']) / local:.2f}x, "
                    f"search p50 {_p50(rows['local']) / _p50(row):.0f}x faster",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
