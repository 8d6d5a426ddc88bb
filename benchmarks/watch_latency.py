"""The delay from a photo's arrival in a watched folder to its first search hit.

    python benchmarks/watch_latency.py --data ../shared/datasets/recipes5k --photos 300 --trials 5

A folder (in a temporary directory, never in the repository) holds ``--photos`` Recipes5k val
photos, indexed with ``--model``. Then, ``--trials`` times, one more val photo arrives (copied
in, as a camera upload or a sync client would) and the clock runs until a search with that
photo finds it (image -> image, its own point first):

* baseline: what a user does without ``--watch``: run ``multimodal index`` again (a new
  process: the model loaded, the folder planned, the photo embedded), then search;
* ``--watch``: a :class:`indexer.watch.WatchedData` already running in this process (as in
  ``multimodal serve --watch``) picks the file up from the system's events.

Prints each delay, the medians and the ratio baseline / watch. Both runs use the same folder,
store, model and photos; the machine's other load counts for both.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

POLL = 0.05  # seconds between searches while waiting for the photo


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--model", default="recipe")
    parser.add_argument("--photos", type=int, default=300, help="photos in the folder at first")
    parser.add_argument("--trials", type=int, default=5, help="arrivals timed in each mode")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def val_photos(data: Path, count: int, seed: int) -> list[Path]:
    from multimodal.data.readers import read_records

    records = [r for r in read_records(data, "val") if r.image is not None]
    random.Random(seed).shuffle(records)
    if len(records) < count:
        raise SystemExit(f"{data} has {len(records)} val photos; fewer than {count}")
    return [r.image for r in records[:count]]


def arrive(source: Path, folder: Path, name: str) -> Path:
    """The photo copied in under a temporary hidden name, then renamed: one whole file."""
    target = folder / name
    shutil.copyfile(source, folder / f".{name}.part")
    os.replace(folder / f".{name}.part", target)
    return target


def found_by_search(searcher, photo: Path, path_key: str) -> bool:
    with Image.open(photo) as image:
        hits = searcher.search(image.convert("RGB"), "image", 3)
    return any(hit.payload.get("image") == path_key for hit in hits)


def baseline(args, folder: Path, store: Path, arrivals: list[Path], env) -> list[float]:
    """Each arrival indexed by running ``multimodal index`` again, then searched for."""
    from indexer.edge import EdgeStore
    from indexer.search import Searcher
    from multimodal.encoder import load_encoder

    encoder = load_encoder(args.model, "cpu")
    command = [sys.executable, "-m", "multimodal.cli", "index", "--model", args.model]
    command += ["--data", str(folder), "--collection", "w", "--store", str(store)]
    command += ["--no-progress", "--workers", "0"]
    delays = []
    for n, source in enumerate(arrivals):
        name = f"rerun_{n}{source.suffix}"
        started = time.perf_counter()
        arrive(source, folder, name)
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        with EdgeStore(store) as opened:
            if not found_by_search(Searcher(encoder, opened, "w"), source, name):
                raise SystemExit(f"rerun: {name} not found by its own photo")
        delays.append(time.perf_counter() - started)
        print(f"rerun multimodal index: {delays[-1]:.2f}s", flush=True)
    return delays


def watched(args, folder: Path, store: Path, arrivals: list[Path]) -> list[float]:
    """Each arrival picked up by a watcher running in this process."""
    from indexer.edge import EdgeStore
    from indexer.search import Searcher
    from indexer.watch import WatchedData
    from multimodal.encoder import load_encoder

    encoder = load_encoder(args.model, "cpu")
    delays = []
    with EdgeStore(store) as opened:
        watcher = WatchedData(encoder, opened, "w", folder)
        searcher = Searcher(encoder, opened, "w")
        stop, first = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=watcher.watch, args=(stop,), kwargs={"said": lambda _: first.set()}
        )
        thread.start()
        first.wait()
        try:
            for n, source in enumerate(arrivals):
                name = f"watched_{n}{source.suffix}"
                started = time.perf_counter()
                arrive(source, folder, name)
                while not found_by_search(searcher, source, name):
                    time.sleep(POLL)
                delays.append(time.perf_counter() - started)
                print(f"--watch: {delays[-1]:.2f}s", flush=True)
        finally:
            stop.set()
            thread.join()
    return delays


def main(argv=None) -> int:
    args = parse_args(argv)
    photos = val_photos(Path(args.data), args.photos + 2 * args.trials, args.seed)
    first, arrivals = photos[: args.photos], photos[args.photos :]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        folder, store = Path(scratch) / "photos", Path(scratch) / "store"
        folder.mkdir()
        for n, source in enumerate(first):
            shutil.copyfile(source, folder / f"{n:05d}{source.suffix}")
        command = [sys.executable, "-m", "multimodal.cli", "index", "--model", args.model]
        command += ["--data", str(folder), "--collection", "w", "--store", str(store)]
        subprocess.run([*command, "--no-progress"], check=True, env=env, stdout=subprocess.DEVNULL)
        print(f"{args.photos} photos indexed with {args.model}; {args.trials} arrivals each")
        rerun = baseline(args, folder, store, arrivals[: args.trials], env)
        watch = watched(args, folder, store, arrivals[args.trials :])
    slow, fast = statistics.median(rerun), statistics.median(watch)
    print(f"arrival -> first search hit, median of {args.trials}:")
    print(f"  rerun multimodal index (baseline): {slow:.2f}s")
    print(f"  --watch:                           {fast:.2f}s")
    print(f"ratio: {slow / fast:.1f}x sooner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
