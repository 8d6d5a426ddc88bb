"""What one search costs the page itself: the handler, and the handler with Gradio's pre- and
postprocessing (what the page's queue runs per search), and the bytes of its response.

    python benchmarks/page_search.py --collection recipes5k-1a2b3c4d5e --calls 50

Text searches (``/text_to_image``) and photo searches (``/image_to_text``), ``--calls`` each,
one at a time, after one warm-up; prints p50/p95 in ms and the size of the JSON the page
sends back (the gallery, the hits, the map's part, ...). ``--profile`` prints cProfile's top
functions of the text searches through the page's processing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import time

import numpy as np

from indexer.factory import open_store
from indexer.search import Searcher
from multimodal.encoder import load_encoder
from ui.app import RecipeApp, example_photos
from ui.page import build_blocks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", required=True)
    parser.add_argument("--store", default=None)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--map-cold", action="store_true", help="also fit the map from scratch, then read it back"
    )
    return parser.parse_args(argv)


def queries(app: RecipeApp, count: int) -> list[str]:
    titles = []
    for point in app.searcher.store.scroll(app.searcher.collection, fields=["title"], page=256):
        if point.payload.get("title"):
            titles.append(point.payload["title"] + " recipe")
        if len(titles) >= count:
            break
    return titles


def through_page(blocks, api_name: str, inputs: list) -> tuple[float, int]:
    """One call through Gradio's processing (preprocess, handler, postprocess) in one
    browser session: seconds and the bytes of its JSON."""
    from gradio.state_holder import SessionState

    if not hasattr(blocks, "_session"):  # one page in a browser (a new one costs ~30 ms)
        blocks._session = SessionState(blocks)
    block_fn = next(fn for fn in blocks.fns.values() if fn.api_name == api_name)
    started = time.perf_counter()
    answer = asyncio.run(blocks.process_api(block_fn, inputs, state=blocks._session))
    took = time.perf_counter() - started
    return took, len(json.dumps(answer["data"], default=_plain).encode())


def _plain(value):
    """Gradio's data models as the JSON they are sent as."""
    return value.model_dump() if hasattr(value, "model_dump") else str(value)


def timed(calls) -> tuple[list[float], list[int]]:
    seconds, sizes = [], []
    for call in calls:
        started = time.perf_counter()
        result = call()
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], int):
            seconds.append(result[0])
            sizes.append(result[1])
        else:
            seconds.append(time.perf_counter() - started)
    return seconds, sizes


def report(name: str, seconds: list[float], sizes: list[int]) -> None:
    p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
    size = f"  response {np.median(sizes) / 1000:8.1f} kB" if sizes else ""
    print(f"{name:<44} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms{size}")


def report_map(app: RecipeApp, texts: list[str]) -> None:
    """What the map costs: placing a query, the figure a page load gets, a search's marks."""
    view = getattr(app, "map_view", None)
    if view is None or view.map is None:
        return
    vectors = [app.searcher.prepare(text).vector for text in texts]
    placing = timed(lambda v=v: view.map.place(v) for v in vectors)[0]
    print(f"{'map: placing a query (every layout)':<44} p50 {np.median(placing) * 1000:7.2f} ms")
    for layout in view.map.layouts:
        view._figures.clear()
        started = time.perf_counter()
        plot = view.show(layout)[0].plot
        took = (time.perf_counter() - started) * 1000
        print(f"map: {layout} figure, once per page load: {len(plot) / 1000:.0f} kB, {took:.0f} ms")
    marks = view.marks(vectors[0], [{"id": i} for i in view.map.sample.ids[:12]], "text query")
    print(f"map: a search's marks (12 results): {len(json.dumps(marks))} bytes")


def report_cold_map(app: RecipeApp) -> None:
    """The map fitted from scratch into a new folder, then read back as a restart would."""
    import tempfile

    from ui.map import MapCache

    searcher = app.searcher
    with tempfile.TemporaryDirectory() as folder:
        MapCache._loaded.clear()
        started = time.perf_counter()
        fitted = MapCache(folder).get(
            searcher.store, searcher.collection, searcher.metadata["model"]
        )
        print(f"map from scratch: PCA in {time.perf_counter() - started:.2f}s (sample read)")
        fitted.tsne_done.wait()
        print(f"map from scratch: t-SNE of {len(fitted)} photos in {fitted.tsne_seconds:.1f}s")
        MapCache._loaded.clear()
        started = time.perf_counter()
        MapCache(folder).get(searcher.store, searcher.collection, searcher.metadata["model"])
        print(f"map read back from disk (a restart) in {time.perf_counter() - started:.2f}s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = open_store(args.store)
    model = store.metadata(args.collection)["model"]["name"]
    started = time.perf_counter()
    app = RecipeApp(Searcher(load_encoder(model, "cpu"), store, args.collection))
    print(f"page app ready in {time.perf_counter() - started:.1f}s (model load included)")
    if getattr(app, "map", None) is not None and hasattr(app.map, "tsne_done"):
        app.map.tsne_done.wait()  # a layout computed in the background would share the CPU
        print(f"map ready in {time.perf_counter() - started:.1f}s")
    blocks = build_blocks(app)
    texts = queries(app, args.calls)
    photos = [str(p) for p in example_photos(store, args.collection, count=6)]
    text_in = [[q, None, 1, [], "", "", app.mode, 0.0] for q in texts]
    uploads = [{"path": photo, "meta": {"_type": "gradio.FileData"}} for photo in photos]
    photo_in = [[uploads[i % len(uploads)], [], "", ""] for i in range(args.calls)]
    app.text_to_image(*text_in[0])  # warm-up
    through_page(blocks, "image_to_text", photo_in[0])
    report("text search, handler", *timed(lambda q=q: app.text_to_image(*q) for q in text_in))
    page = [lambda q=q: through_page(blocks, "text_to_image", q) for q in text_in]
    report("text search, through the page's processing", *timed(page))
    report(
        "photo search, handler",
        *timed(lambda q=q: app.image_to_text(q[0]["path"], *q[1:]) for q in photo_in),
    )
    page = [lambda q=q: through_page(blocks, "image_to_text", q) for q in photo_in]
    report("photo search, through the page's processing", *timed(page))
    report_map(app, texts)
    if args.map_cold:
        report_cold_map(app)
    if args.profile:
        profiler = cProfile.Profile()  # the handler in this thread (the page runs it in another)
        profiler.runcall(lambda: [app.text_to_image(*q) for q in text_in])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
