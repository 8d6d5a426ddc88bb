"""Labels from words, measured: Recipes5k val tagged with its own dish types as the labels.

    python benchmarks/tags_zero_shot.py --data ../shared/datasets/recipes5k

Indexes Recipes5k val (634 photos) with the model, tags every photo with the 101 dish types
as labels (``multimodal tag``'s own code: the dish type's name is the label's text), and
prints the zero-shot top-1: the share of photos whose best label is their dish type. The
baseline in the same run is the model's photo -> recipe dish accuracy on the same photos:
the share whose nearest recipe text (of the 634) is of their dish type, what ``multimodal
eval`` reports as the top result's dish type. Also tags with the shipped example label files
and prints how the photos spread over their labels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

LABEL_FILES = Path(__file__).resolve().parents[1] / "assets" / "labels"


def main(argv=None) -> int:
    from indexer.edge import EdgeStore
    from indexer.pipeline import index_records
    from indexer.tags import Label, read_labels, tag_points
    from multimodal.data.readers import read_records
    from multimodal.encoder import load_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--model", default="recipe")
    args = parser.parse_args(argv)
    val = read_records(args.data, "val")
    encoder = load_encoder(args.model)
    with tempfile.TemporaryDirectory() as scratch, EdgeStore(Path(scratch)) as store:
        index_records(encoder, store, "val", val, progress=False)
        truth = {p.id: p.payload["label"] for p in store.scroll("val", fields=["label"])}
        dishes = sorted({label for label in truth.values()})
        labels = [Label(dish, dish.replace("_", " ")) for dish in dishes]
        tagged = tag_points(encoder, store, "val", "dish", labels, margin=0.0, dry_run=True)
        zero_shot = np.mean([chosen[0] == truth[point_id] for point_id, chosen, _ in tagged])
        points = list(store.scroll("val", fields=["label"], with_vectors=True))
        images = np.array([p.vectors["image"] for p in points], np.float32)
        texts = np.array([p.vectors["text"] for p in points], np.float32)
        nearest = (images @ texts.T).argmax(axis=1)
        recipe = np.mean(
            [
                points[j].payload["label"] == p.payload["label"]
                for p, j in zip(points, nearest, strict=True)
            ]
        )
        print(f"{len(tagged)} val photos, {len(dishes)} dish types, model {args.model}")
        print(f"zero-shot top-1 (dish types as labels):        {zero_shot:.3f}")
        print(f"photo -> nearest recipe's dish type (baseline): {recipe:.3f}")
        print(f"ratio: {zero_shot / recipe:.2f}x")
        for path in sorted(LABEL_FILES.glob("*.txt")):
            spread = Counter(
                chosen[0]
                for _, chosen, _ in tag_points(
                    encoder, store, "val", "x", read_labels(path), margin=0.0, dry_run=True
                )
            )
            print(f"{path.stem}: " + ", ".join(f"{name} {n}" for name, n in spread.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
