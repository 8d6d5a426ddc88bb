"""How well ``multimodal duplicates`` finds planted near-duplicates, and what it wrongly groups.

    python benchmarks/duplicates.py --data ../shared/datasets/recipes5k --copies 100

Indexes Recipes5k val (634 photos) plus altered copies of ``--copies`` of its photos, made
here: downscaled to 50%, JPEG quality 30, a 90% centre crop, a mirror image, a 10-degree
rotation (each a planted pair with its original). Then, at each threshold of a sweep, finds
the groups as the command does and prints, for each alteration, the share of planted pairs
found (recall); the precision of all grouped pairs (a pair is right when both photos are one
original or its copies); and how many pairs of *distinct* val photos were grouped, of which
how many show the same dish type and how many are one picture in the data set itself (picture
similarity 0.99 or more: Recipes5k has the same photo under several recipes). The baseline
in the same run is the exact-copy pass alone (same bytes, no model): it finds none of the
altered copies.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageOps

ALTERATIONS = {
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.LANCZOS),
    "jpeg q30": None,  # saved at quality 30
    "crop 90%": lambda im: im.crop(
        (im.width // 20, im.height // 20, im.width - im.width // 20, im.height - im.height // 20)
    ),
    "mirror": ImageOps.mirror,
    "rotate 10": lambda im: im.rotate(10, resample=Image.BICUBIC, expand=False),
}
IDENTICAL = 0.99  # picture similarity of two val photos that are one picture in the data set
THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--model", default="recipe")
    parser.add_argument("--copies", type=int, default=100, help="val photos given altered copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--workers", type=int, default=2, help="decoding workers")
    return parser.parse_args(argv)


def altered_copies(records, folder: Path, count: int, seed: int):
    """``count`` records' photos altered each way into ``folder``: (copy records, {copy
    path: (original path, alteration)})."""
    chosen = random.Random(seed).sample(records, min(count, len(records)))
    copies, planted = [], {}
    for n, record in enumerate(chosen):
        with Image.open(record.image) as opened:
            photo = opened.convert("RGB")
        for name, alter in ALTERATIONS.items():
            path = folder / f"{n:03d}-{name.replace(' ', '-').replace('%', '')}.jpg"
            (alter(photo) if alter else photo).save(path, quality=30 if alter is None else 90)
            copies.append(replace(record, image=path, root=folder, split="copies"))
            planted[str(path)] = (str(record.image), name)
    return copies, planted


def score(groups, planted, labels) -> dict:
    """Recall per alteration, precision of grouped pairs, distinct pairs grouped."""
    origin = {path: original for path, (original, _) in planted.items()}
    grouped = {}
    for group in groups:
        for a, b, similarity in group.pairs:
            grouped[tuple(sorted((group.paths[a], group.paths[b])))] = similarity
    right = sum(origin.get(a, a) == origin.get(b, b) for a, b in grouped)
    distinct = [(a, b) for a, b in grouped if a not in origin and b not in origin]
    identical = [pair for pair in distinct if grouped[pair] >= IDENTICAL]
    found = {name: [0, 0] for name in ALTERATIONS}
    for copy, (original, name) in planted.items():
        found[name][1] += 1
        found[name][0] += tuple(sorted((copy, original))) in grouped
    return {
        "recall": {name: hit / total for name, (hit, total) in found.items()},
        "precision": right / len(grouped) if grouped else 1.0,
        "pairs": len(grouped),
        "distinct": len(distinct),
        "same dish": sum(labels.get(a) == labels.get(b) for a, b in distinct),
        "identical": len(identical),
    }


def main(argv=None) -> int:
    from indexer.duplicates import exact_copies, find_duplicates
    from indexer.edge import EdgeStore
    from indexer.pipeline import index_records
    from multimodal.data.readers import read_records
    from multimodal.encoder import load_encoder

    args = parse_args(argv)
    val = read_records(args.data, "val")
    with tempfile.TemporaryDirectory() as scratch, EdgeStore(Path(scratch, "store")) as store:
        folder = Path(scratch, "copies")
        folder.mkdir()
        copies, planted = altered_copies(val, folder, args.copies, args.seed)
        labels = {str(r.image): r.label for r in [*val, *copies]}
        encoder = load_encoder(args.model)
        index_records(encoder, store, "dups", [*val, *copies], workers=args.workers)
        points = list(store.scroll("dups", fields=["image", "root"]))
        baseline = score(exact_copies(points), planted, labels)
        print(f"{len(val)} val photos + {len(copies)} altered copies of {args.copies}")
        header = "".join(f"{name:>11}" for name in ALTERATIONS)
        print(f"{'threshold':>12}{header}  precision  pairs  distinct (same dish, one picture)")
        rows = [("exact bytes", baseline)]
        for threshold in args.thresholds:
            rows.append(
                (
                    f"{threshold:.2f}",
                    score(find_duplicates(store, "dups", threshold), planted, labels),
                )
            )
        for name, result in rows:
            recalls = "".join(f"{result['recall'][n]:>11.2f}" for n in ALTERATIONS)
            print(
                f"{name:>12}{recalls}  {result['precision']:9.3f}  {result['pairs']:5d}  "
                f"{result['distinct']:8d} ({result['same dish']}, {result['identical']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
