"""Bounded bursts of concurrent searches through the JSON API and through the page, on loopback,
beside direct calls to the search service in the same run.

    python benchmarks/api_load.py --collection recipes5k --store /tmp/readme-store \\
        --requests 64 --clients 16

Serves page and API for the collection in this process (the embedded store allows one
process, so stop a running demo first), then runs the same searches (text -> images and photo
-> recipes, alternating) these ways:

* direct, one at a time: the search service called in this process, no HTTP;
* direct, ``--clients`` threads, the eager image tower: the baseline, as the service ran
  before the tower was compiled for query photos;
* on a GPU only, direct, ``--clients`` threads, one photo per pass: the baseline for photos
  sharing the image tower's passes (on a CPU every photo has its own pass:
  :data:`multimodal.tower_locks.MAX_SHARED_CPU`);
* then, once the image tower is compiled as ``multimodal serve`` compiles it (``--no-compile``:
  not), direct, ``--clients`` threads: the same calls;
* JSON API: ``--clients`` concurrent httpx clients, ``POST /api/search`` (a photo as a
  multipart upload to ``/api/search/photo``);
* page: ``--clients`` concurrent clients of the page's named endpoints through Gradio's
  queue (its HTTP protocol: upload, call, event stream).

The clients run in a separate process, as real ones would: in the server's own process they
would compete with it for the interpreter's lock.

Prints p50/p95 latency (all searches, text searches alone, photo searches alone), throughput
and errors of each, the photos' p95 on the eager tower as a ratio of the compiled one's (and
on a GPU, one pass each as a ratio of shared passes'), and the API's throughput as a ratio of
the concurrent direct calls'. Targets on a 2-core machine with 16 clients: API text p95 <=
400 ms, photo p95 >= 1.5x better than the eager baseline, page p50 <= 800 ms, API throughput
>= 0.9x direct, no errors.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

Job = tuple[str, object]  # ("text", words) or ("photo", path)


@dataclass
class Burst:
    """What one way of searching measured."""

    name: str
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"text": [], "photo": []})
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float | None = None  # CPU seconds the clients' own process spent

    @property
    def done(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.done / self.wall if self.wall else 0.0

    def p95(self, kind: str) -> float:
        """The 95th percentile of ``kind``'s latencies, in ms (0 if none finished)."""
        return float(np.percentile(np.array(self.latencies[kind] or [0]) * 1000, 95))

    def line(self) -> str:
        everything = self.latencies["text"] + self.latencies["photo"]
        if not everything:
            return f"{self.name:<46} no search finished; errors: {len(self.errors)}"
        p50, p95 = np.percentile(np.array(everything) * 1000, [50, 95])
        line = (
            f"{self.name:<46} p50 {p50:6.0f} ms  p95 {p95:6.0f} ms  | text p95 "
            f"{self.p95('text'):6.0f} ms  | photo p95 {self.p95('photo'):6.0f} ms  | "
            f"{self.throughput:5.1f} searches/s  errors {len(self.errors)}"
        )
        if self.client_cpu is not None:  # on the same cores as the server
            line += f"  | clients' CPU {self.client_cpu:.1f} s of {self.wall:.1f} s"
        return line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--store", default=None, help="embedded store folder (default: the usual)")
    parser.add_argument("--requests", type=int, default=64, help="searches per burst")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--concurrency", type=int, default=None, help="the page's queue limit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-page", action="store_true", help="skip the page's burst")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the image tower for query photos after the baseline, as multimodal "
        "serve does (default: on)",
    )
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="embed query photos as 4 views, as the page does by default (default: on)",
    )
    return parser.parse_args(argv)


def workload(store, collection: str, count: int, seed: int) -> list[Job]:
    """``count`` searches, text and photo alternating: titles from the collection (with a
    word added, so no query is a stored text) and photos of the collection."""
    from ui.app import example_photos

    rng = random.Random(seed)
    titles = []
    for point in store.scroll(collection, fields=["title"], page=512):
        if point.payload.get("title"):
            titles.append(point.payload["title"])
        if len(titles) >= 500:
            break
    photos = example_photos(store, collection, count=12)
    jobs: list[Job] = []
    for i in range(count):
        if i % 2 == 0 or not photos:
            jobs.append(("text", rng.choice(titles) + " recipe"))
        else:
            jobs.append(("photo", rng.choice(photos)))
    return jobs


def burst(name: str, jobs: list[Job], call: Callable[[Job], None], clients: int) -> Burst:
    """Run ``call`` on every job from ``clients`` threads at once; time each and the whole."""
    result = Burst(name)

    def timed(job: Job) -> None:
        started = time.perf_counter()
        call(job)
        result.latencies[job[0]].append(time.perf_counter() - started)

    call(jobs[0])  # warm-up: first requests pay for connections and lazy imports
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(timed, job) for job in jobs]:
            try:
                future.result()
            except Exception as err:  # every failure counts, whatever its kind
                result.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
    result.wall = time.perf_counter() - started
    return result


def remote_burst(way: str, name: str, url: str, jobs: list[Job], clients: int) -> Burst:
    """:func:`burst` of ``way`` ("api" or "page") run from a child process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as child:
        return Burst(**child.submit(_client_burst, way, name, url, jobs, clients).result())


def _client_burst(way: str, name: str, url: str, jobs: list[Job], clients: int) -> dict:
    import resource

    call = through_api(url) if way == "api" else through_page(url)
    before = resource.getrusage(resource.RUSAGE_SELF)
    measured = burst(name, jobs, call, clients)
    after = resource.getrusage(resource.RUSAGE_SELF)
    measured.client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return asdict(measured)


def through_page(url: str) -> Callable[[Job], None]:
    """One search through the page's named endpoints, by Gradio's own HTTP protocol (what
    gradio_client and the page's script do, without their client-side work: gradio_client
    alone burns most of a core under this burst): a photo uploaded to Gradio's cache, the
    call queued, its result read from the event stream. One connection pool per thread."""
    import threading

    import httpx

    local = threading.local()

    def call(job: Job) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=120)
        client, (kind, value) = local.client, job
        if kind == "text":
            endpoint, data = "text_to_image", [value, None, 1, [], "", "", None, 0.0]
        else:
            with open(value, "rb") as photo:
                uploaded = client.post("gradio_api/upload", files={"files": photo})
            uploaded.raise_for_status()
            file = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
            endpoint, data = "image_to_text", [file, [], "", ""]
        queued = client.post(f"gradio_api/call/{endpoint}", json={"data": data})
        queued.raise_for_status()
        with client.stream(
            "GET", f"gradio_api/call/{endpoint}/{queued.json()['event_id']}"
        ) as events:
            for line in events.iter_lines():
                if line.startswith("event: error"):
                    raise RuntimeError(f"{endpoint}: the page answered with an error")
                if line.startswith("event: complete"):
                    return
        raise RuntimeError(f"{endpoint}: the event stream ended without a result")

    return call


def report(bursts: list[Burst], jobs: list[Job], url: str) -> int:
    print(f"{len(jobs)} searches (text -> images and photo -> recipes, alternating), {url}")
    for measured in bursts:
        print(measured.line())
    api = next((b for b in bursts if b.name.startswith("JSON API")), None)
    direct = next((b for b in bursts if b.name.endswith("threads")), None)
    ratios = [(ONE_PASS_EACH, "one pass each / sharing passes"), (EAGER, f"{EAGER} / compiled")]
    for baseline, what in ratios:
        before = next((b for b in bursts if b.name.endswith(baseline)), None)
        if before and direct and direct.p95("photo"):
            print(
                f"photo p95, {what} (direct, same clients): "
                f"{before.p95('photo') / direct.p95('photo'):.2f}x"
            )
    if api and direct and direct.throughput:
        print(
            f"JSON API throughput / direct calls with the same clients: "
            f"{api.throughput / direct.throughput:.2f}x"
        )
    errors = sum(len(b.errors) for b in bursts)
    for measured in bursts:
        if measured.errors:
            print(f"{measured.name}: first error: {measured.errors[0]}")
    return 1 if errors else 0


def directly(service) -> Callable[[Job], None]:
    """One search called on the search service in this process: what the API's handler
    calls, a photo decoded from its bytes as an upload is."""
    from indexer.service import SearchQuery
    from ui.uploads import read_upload

    def call(job: Job) -> None:
        kind, value = job
        if kind == "text":
            service.search(SearchQuery(text=value, target="image", k=RESULTS))
        else:
            photo = read_upload(Path(value).read_bytes(), service.searcher.max_pixels)
            service.search(SearchQuery(photos=[photo], target="text", k=RESULTS))

    return call


def one_pass_each(service, jobs: list[Job], clients: int) -> Burst:
    """The concurrent direct burst with the image tower's queue taking one photo per pass:
    the baseline the shared passes are measured against."""
    from multimodal.tower_locks import photo_queue

    queue = photo_queue(service.searcher.encoder)
    shared, queue.max_shared = queue.max_shared, 1
    try:
        return burst(
            f"direct, {clients} threads, {ONE_PASS_EACH}", jobs, directly(service), clients
        )
    finally:
        queue.max_shared = shared


def through_api(url: str) -> Callable[[Job], None]:
    """One search through the JSON API: ``POST /api/search``, or a photo as a multipart
    upload to ``POST /api/search/photo``; one connection pool per client thread."""
    import json
    import threading

    import httpx

    local = threading.local()

    def call(job: Job) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        kind, value = job
        if kind == "text":
            body = {"text": value, "target": "image", "k": RESULTS}
            response = local.client.post("api/search", json=body)
        else:
            query = json.dumps({"target": "text", "k": RESULTS})
            with open(value, "rb") as photo:
                files = {"photo": (Path(value).name, photo, "image/jpeg")}
                response = local.client.post("api/search/photo", files=files, data={"query": query})
        response.raise_for_status()
        if len(response.json()["hits"]) != RESULTS:
            raise RuntimeError(f"{len(response.json()['hits'])} hits, not {RESULTS}")

    return call


RESULTS = 12  # hits per search, as the page shows
ONE_PASS_EACH = "one photo per pass"
EAGER = "eager image tower"


def main(argv: list[str] | None = None) -> int:
    from indexer.factory import open_store
    from indexer.search import Searcher
    from multimodal.compiled import compile_image_tower
    from multimodal.encoder import load_encoder
    from multimodal.tower_locks import photo_queue
    from ui.app import RecipeApp
    from ui.server import start

    args = parse_args(argv)
    store = open_store(args.store)
    model = store.metadata(args.collection)["model"]["name"]
    searcher = Searcher(load_encoder(model, tta=args.tta), store, args.collection)
    jobs = workload(store, args.collection, args.requests, args.seed)
    page = RecipeApp(searcher)
    if page.map is not None:  # steady state: the map's t-SNE (background, once) is done
        page.map.tsne_done.wait()
    concurrency = {} if args.concurrency is None else {"concurrency": args.concurrency}
    server = start(page, **concurrency)
    service = server.app.state.search_service
    bursts = [
        burst("direct, one at a time", jobs, directly(service), 1),
        burst(f"direct, {args.clients} threads, {EAGER}", jobs, directly(service), args.clients),
    ]
    if photo_queue(searcher.encoder).max_shared > 1:
        bursts.append(one_pass_each(service, jobs, args.clients))
    if args.compile:
        compile_image_tower(searcher.encoder).join()
    bursts += [
        burst(f"direct, {args.clients} threads", jobs, directly(service), args.clients),
        remote_burst(
            "api", f"JSON API, {args.clients} clients", server.local_url, jobs, args.clients
        ),
    ]
    if not args.no_page:
        bursts.append(
            remote_burst(
                "page", f"page, {args.clients} clients", server.local_url, jobs, args.clients
            )
        )
    server.close()
    store.close()
    return report(bursts, jobs, server.local_url)


if __name__ == "__main__":
    sys.exit(main())
