"""How long ``multimodal serve`` takes to answer on a large collection, against a small one.

    python benchmarks/serve_start.py --points 1000000 --baseline 10000 --store /tmp/serve-bench

Builds (once; kept in ``--store`` and reused, resumed if interrupted) two synthetic
collections in the recipe model's format: both vectors per point (512-d, drawn around 1,000
cluster centres), a dish type from 101, a title, 4-12 ingredients from 500, the BM25 words,
and a photo path that does not exist (the page must not need the files to start). Then, in
the same run, starts ``multimodal serve`` on each and times the start (process launch to the
first answer of ``/api/health``), the first page (``/`` and Gradio's ``/config``, which holds
the map and the dish-type list) and the first search through the JSON API. Prints the seconds
and the ratio large / small (a start that scrolls the whole collection grows with it; the
goal is under 10 s at a million points).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from tqdm.auto import tqdm

from indexer.bm25 import Bm25Settings, Bm25Words
from indexer.edge import EdgeStore
from indexer.store import CollectionSpec, Point
from multimodal.encoder import load_encoder, model_stamp

LABELS = [f"dish {i:03d}" for i in range(101)]
VOCABULARY = [f"ingredient{i}" for i in range(500)]
BATCH = 2000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--store", default="/tmp/serve-bench", help="kept between runs")
    parser.add_argument("--model", default="recipe")
    parser.add_argument("--searches", type=int, default=5, help="timed searches after the start")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument(
        "--no-index",
        action="store_true",
        help="leave the large collection unbuilt (a bulk load not yet optimized: "
        "its shard opens slower, rebuilding indexes in RAM; built, a million "
        "points take well over an hour on 2 cores); a later run without it "
        "builds it",
    )
    return parser.parse_args(argv)


def synthetic_batch(start: int, count: int, centres: np.ndarray, words: Bm25Words) -> list[Point]:
    """Points ``start`` .. ``start + count``: the same ones on every run (seeded by start)."""
    rng = np.random.default_rng(start)
    dim = centres.shape[1]
    picks = rng.integers(0, len(centres), count)
    image = centres[picks] + rng.normal(0, 0.6 / np.sqrt(dim), (count, dim)).astype(np.float32)
    text = image + rng.normal(0, 0.8 / np.sqrt(dim), (count, dim)).astype(np.float32)
    points = []
    for i in range(count):
        n = start + i
        chosen = rng.choice(len(VOCABULARY), rng.integers(4, 13), replace=False)
        ingredients = [VOCABULARY[c] for c in chosen]
        label = LABELS[picks[i] % len(LABELS)]
        payload = {
            "title": f"{label} number {n}",
            "label": label,
            "ingredients": ingredients,
            "base_ingredients": sorted(ingredients),
            "image": f"photos/{n}.jpg",
            "root": "/nonexistent/synthetic",
            "split": "train",
            "source": "synthetic",
        }
        vectors = {"image": _unit(image[i]), "text": _unit(text[i])}
        vectors["bm25"] = words.document(payload)
        points.append(Point(str(uuid.UUID(int=n + 1)), vectors, payload))
    return points


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def build(
    store: EdgeStore, name: str, points: int, stamp: dict, dim: int, index: bool = True
) -> None:
    """Make collection ``name`` with ``points`` synthetic points, resuming a partial build
    (ids are deterministic, so a batch written twice is the same points)."""
    words = Bm25Words()
    spec = CollectionSpec(dim, stamp, bm25=Bm25Settings().record())
    store.create_or_open(name, spec)
    recorded = store.metadata(name)
    if recorded.get("synthetic_complete") == points and (recorded.get("indexed") or not index):
        return
    centres = np.random.default_rng(0).normal(0, 1, (1000, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    done = store.count(name) // BATCH * BATCH
    with tqdm(total=points, initial=done, unit="point", desc=f"building {name}") as bar:
        for start in range(done, points, BATCH):
            count = min(BATCH, points - start)
            store.upsert(name, synthetic_batch(start, count, centres, words))
            bar.update(count)
    if index:
        started = time.perf_counter()
        print(f"{name}: building the HNSW and payload indexes ...", flush=True)
        store.optimize(name)
        print(f"{name}: indexes built in {time.perf_counter() - started:.0f}s", flush=True)
    store.update_metadata(name, {"synthetic_complete": points, "indexed": index})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_start(store_path: str, name: str, searches: int) -> dict[str, float]:
    """Start ``multimodal serve`` on ``name``; seconds to health, to the page, per search."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "multimodal",
        "serve",
        "--collection",
        name,
        "--store",
        store_path,
        "--port",
        str(port),
    ]
    env = {**os.environ, "MULTIMODAL_HOME": str(Path(store_path) / "home")}
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base, times = f"http://127.0.0.1:{port}", {}
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"serve exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if client.get("/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            times["health"] = time.perf_counter() - started
            for path in ("/", "/config"):
                client.get(path).raise_for_status()
            times["page"] = time.perf_counter() - started
            latencies = []
            for i in range(searches):
                query = {"text": f"ingredient{i * 7}, ingredient{i * 7 + 1}", "k": 12}
                tick = time.perf_counter()
                client.post("/api/search", json=query).raise_for_status()
                latencies.append(time.perf_counter() - tick)
            times["first search"], times["search p50"] = (
                latencies[0],
                float(np.median(latencies[1:] or latencies)),
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    return times


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    encoder = load_encoder(args.model)
    stamp, dim = model_stamp(encoder), encoder.embed_dim
    names = {size: f"synthetic-{size}" for size in (args.baseline, args.points)}
    with EdgeStore(Path(args.store)) as store:
        for size, name in names.items():
            build(store, name, size, stamp, dim, index=not (args.no_index and size == args.points))
    if args.build_only:
        return 0
    rows = {size: time_start(args.store, name, args.searches) for size, name in names.items()}
    print(f"{'points':>9}  {'health s':>8} {'page s':>7} {'1st search s':>12} {'search p50 s':>12}")
    for size, t in rows.items():
        print(
            f"{size:>9,}  {t['health']:>8.2f} {t['page']:>7.2f} {t['first search']:>12.3f} "
            f"{t['search p50']:>12.3f}"
        )
    small, large = rows[args.baseline], rows[args.points]
    ratio = large["page"] / small["page"]
    print(
        f"ratio {args.points:,} / {args.baseline:,}: page ready {ratio:.2f}x "
        f"(goal: under 10 s at a million: {large['page']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
