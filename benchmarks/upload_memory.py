"""The server's memory under large photo uploads: three 64-megapixel PNGs (8000 x 8000 RGBA,
the pixel cap, about 300 KB each) sent at once to ``POST /api/search/photo``.

    python benchmarks/upload_memory.py [--model recipe] [--uploads 3] [--rounds 2]

Starts a real server (a child process: the page and the JSON API over a small collection of
drawn photos, indexed with ``--model``) twice in the same run:

* **bounded**: the product as it ships: uploads decoded in the process's pixel budget (one
  64-megapixel photo at a time), JPEGs at a reduced scale, anything else shrunk to 2,048
  pixels a side before any conversion, freed memory handed back after a burst;
* **unbounded** (the baseline): the same server with the budget and the shrinking switched
  off, every upload decoded and converted at full size at once.

Samples the server's resident memory every 10 ms and prints, for each, its size before the
burst, the peak growth during it, what it keeps afterwards, and the burst's wall time, then
the bounded peak growth as a ratio of the unbounded one. The target (issue 22): under about
1 GB of peak growth for three such uploads, and the memory given back afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
SETTLE = 3.0  # seconds after the burst before "kept" is read

SERVER = """
import json, sys, time
from pathlib import Path
from PIL import Image, ImageDraw
from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.data.decoding import PixelBudget
from multimodal.data.records import Record
from multimodal.encoder import load_encoder
from ui import uploads
from ui.app import RecipeApp, launch

folder, model, bounded = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "bounded"
if not bounded:  # the baseline: no budget, no shrinking
    uploads.UPLOAD_SIDE = None
    uploads.SHARED_BUDGET = PixelBudget(10**12)
records = []
for n, colour in enumerate(["red", "green", "blue", "orange", "purple", "grey"] * 2):
    path = folder / f"{n}.jpg"
    image = Image.new("RGB", (320, 240), colour)
    ImageDraw.Draw(image).ellipse((40 + n * 5, 40, 200, 200), fill="white")
    image.save(path)
    records.append(Record(image=path, title=f"{colour} dish {n}", label=colour))
encoder = load_encoder(model, device="cpu")
store = EdgeStore(folder / "store")
index_records(encoder, store, "dishes", records, workers=0, progress=False)
server = launch(RecipeApp(Searcher(encoder.with_tta(True), store, "dishes"),
                          map_folder=folder / "maps"), port=0, block=False)
print(json.dumps({"url": server.local_url}), flush=True)
sys.stdin.read()  # until the benchmark closes it
server.close()
store.close()
"""


def huge_png(side: int = 8000) -> bytes:
    image = Image.new("RGBA", (side, side), (200, 120, 40, 255))
    box = (side // 8, side // 8, side * 7 // 8, side * 7 // 8)
    ImageDraw.Draw(image).ellipse(box, fill=(250, 250, 250, 128))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


class Sampler(threading.Thread):
    """The peak resident memory of ``pid`` while it runs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, resident_mb(self.pid))
            time.sleep(0.01)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak


def measure(way: str, model: str, photo: bytes, uploads: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.Popen(
            [sys.executable, "-c", SERVER, folder, model, way],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            url = json.loads(child.stdout.readline())["url"]
            return _bursts(child.pid, url, photo, uploads, rounds)
        finally:
            child.stdin.close()
            child.wait(60)


def _bursts(pid: int, url: str, photo: bytes, uploads: int, rounds: int) -> dict:
    with httpx.Client(base_url=url, timeout=600) as client:

        def send(data: bytes) -> httpx.Response:
            return client.post("/api/search/photo", files={"photo": ("big.png", data)})

        client.post("/api/search", json={"text": "warm up", "k": 3}).raise_for_status()
        before = resident_mb(pid)
        peaks, walls, statuses = [], [], []
        for _ in range(rounds):
            sampler = Sampler(pid)
            sampler.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(uploads) as pool:
                answers = list(
                    pool.map(
                        lambda _: client.post(
                            "/api/search/photo", files={"photo": ("big.png", photo)}
                        ),
                        range(uploads),
                    )
                )  # noqa: E731
            walls.append(time.perf_counter() - started)
            peaks.append(sampler.stop())
            statuses += [a.status_code for a in answers]
            time.sleep(SETTLE)
        kept = resident_mb(pid)
    return {
        "before": before,
        "peak": max(peaks),
        "kept": kept,
        "wall": min(walls),
        "statuses": statuses,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="recipe", help="model spec (default: recipe)")
    parser.add_argument("--uploads", type=int, default=3, help="uploads at once (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per server (default 2)")
    parser.add_argument("--side", type=int, default=8000, help="the PNG's side (default 8000)")
    args = parser.parse_args(argv)
    photo = huge_png(args.side)
    print(
        f"{args.uploads} uploads at once of a {args.side}x{args.side} RGBA PNG "
        f"({len(photo) / 1024:.0f} KB), {args.rounds} bursts, model {args.model}"
    )
    results = {}
    for way in ("bounded", "unbounded"):
        found = results[way] = measure(way, args.model, photo, args.uploads, args.rounds)
        print(
            f"{way:<10} before {found['before']:6.0f} MB  peak growth "
            f"{found['peak'] - found['before']:6.0f} MB  kept after "
            f"{found['kept'] - found['before']:6.0f} MB  burst {found['wall']:5.1f} s  "
            f"answers {sorted(set(found['statuses']))}",
            flush=True,
        )
    bounded, unbounded = results["bounded"], results["unbounded"]
    ratio = (bounded["peak"] - bounded["before"]) / max(unbounded["peak"] - unbounded["before"], 1)
    print(f"bounded / unbounded peak growth: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
