"""A bounded burst of concurrent searches through the page's API, on loopback.

    python benchmarks/page_load.py --collection recipes5k-1a2b3c4d5e --requests 64 --clients 16

Serves the page for the collection in this process (the embedded store allows one process,
so stop a running demo first), then:

* baseline: the same searches called directly on the page's handlers, one at a time;
* burst: ``--requests`` searches (text -> images and photo -> recipes, alternating) sent by
  ``--clients`` concurrent gradio_client clients through the queue.

Prints p50/p95 latency of both, the burst's errors (target: none) and throughput, and the
ratio of burst to direct latency.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from indexer.factory import open_store
from indexer.search import Searcher
from multimodal.encoder import load_encoder
from ui.app import RecipeApp, example_photos, launch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--store", default=None)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2, help="the page's queue limit")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def workload(app: RecipeApp, count: int, seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    titles = []
    for point in app.searcher.store.scroll(app.searcher.collection, fields=["title"], page=512):
        titles.append(point.payload.get("title") or "")
        if len(titles) >= 500:
            break
    photos = example_photos(app.searcher.store, app.searcher.collection, count=12)
    jobs = []
    for i in range(count):
        if i % 2 == 0 or not photos:
            jobs.append(("text", rng.choice([t for t in titles if t]) + " recipe"))
        else:
            jobs.append(("photo", rng.choice(photos)))
    return jobs


def direct(app: RecipeApp, job) -> None:
    from PIL import Image

    kind, value = job
    if kind == "text":
        app.text_to_image(value, None, 1.0, [], "", "")
    else:
        app.image_to_text(Image.open(value).convert("RGB"), [], "", "")


def through_page(url: str, job) -> float:
    from gradio_client import Client, handle_file

    # Results carry file URLs; a script that wants the photos fetches them itself, so the
    # client is not made to download twelve images per search here.
    client = Client(url, verbose=False, download_files=False)
    kind, value = job
    started = time.perf_counter()
    if kind == "text":
        client.predict(value, None, 1, [], "", "", api_name="/text_to_image")
    else:
        client.predict(handle_file(str(value)), [], "", "", api_name="/image_to_text")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = open_store(args.store)
    model = store.metadata(args.collection)["model"]["name"]
    app = RecipeApp(Searcher(load_encoder(model), store, args.collection))
    jobs = workload(app, args.requests, args.seed)

    direct(app, jobs[0])  # warm-up
    baseline = []
    for job in jobs:
        started = time.perf_counter()
        direct(app, job)
        baseline.append(time.perf_counter() - started)

    blocks = launch(app, concurrency=args.concurrency, block=False)
    url = blocks.local_url
    through_page(url, jobs[0])  # warm-up
    errors, latencies = [], []
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        futures = [pool.submit(through_page, url, job) for job in jobs]
        for future in futures:
            try:
                latencies.append(future.result())
            except Exception as err:  # every failure counts, whatever its kind
                errors.append(f"{type(err).__name__}: {err}")
    wall = time.perf_counter() - started
    blocks.close()
    store.close()

    base50, base95 = np.percentile(np.array(baseline) * 1000, [50, 95])
    print(f"{len(jobs)} searches (text -> images and photo -> recipes, alternating), {url}")
    print(f"direct handler calls, one at a time: p50 {base50:7.0f} ms  p95 {base95:7.0f} ms")
    if latencies:
        p50, p95 = np.percentile(np.array(latencies) * 1000, [50, 95])
        print(
            f"page API, {args.clients} concurrent clients: p50 {p50:7.0f} ms  p95 {p95:7.0f} ms"
            f"  ({len(latencies) / wall:.1f} searches/s, queue concurrency {args.concurrency})"
        )
        print(f"ratio page burst / direct: p50 {p50 / base50:.1f}x, p95 {p95 / base95:.1f}x")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
