"""Embedding throughput: the batched pipeline against a naive one-item-at-a-time loop.

    python benchmarks/embed_throughput.py --model recipe-starter --data ../shared/datasets/recipes5k

Both sides do the same work on the same items in one run: decode the JPEG, preprocess, run the
tower, normalise. The batched side decodes in DataLoader workers and runs batches of
``--batch-size``; the naive side loads and embeds one image (or text) per forward pass.
Prints items/s for both and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from multimodal.data import RecipeTextBuilder, load_image, read_records
from multimodal.embedding import embed_images, embed_texts
from multimodal.encoder import load_encoder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="recipe-starter")
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=256, help="images and texts to embed")
    parser.add_argument("--naive-items", type=int, default=64, help="items for the naive loop")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32")
    return parser.parse_args(argv)


def load_items(args: argparse.Namespace, scratch: Path):
    if Path(args.data).exists():
        records = read_records(args.data, args.split)[: args.items]
    else:  # no data set here: draw photos-sized images so the benchmark still runs
        from PIL import Image

        records = []
        for i in range(args.items):
            path = scratch / f"{i}.jpg"
            Image.effect_mandelbrot((360, 240), (-2, -1, 1, 1), 50 + i).convert("RGB").save(path)
            from multimodal.data import Record

            records.append(Record(image=path, title=f"dish {i}", ingredients=["salt", "flour"]))
    return records


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    encoder = load_encoder(args.model, device=args.device, precision=args.precision)
    with tempfile.TemporaryDirectory() as scratch:
        records = load_items(args, Path(scratch))
        paths = [r.image for r in records]
        build = RecipeTextBuilder.for_tokenizer(encoder.tokenizer)
        texts = [build(r) for r in records]
        naive_paths, naive_texts = paths[: args.naive_items], texts[: args.naive_items]

        # Warm-up: first calls pay for lazy initialisation on both sides alike.
        encoder.encode_images([load_image(paths[0])])
        encoder.encode_texts(texts[:2])

        def batched_images():
            embed_images(encoder, paths, args.batch_size, args.workers, progress=False)

        def naive_images():
            for path in naive_paths:
                encoder.encode_images([load_image(path)], batch_size=1)

        def batched_texts():
            embed_texts(encoder, texts, progress=False)

        def naive_texts_loop():
            for text in naive_texts:
                encoder.encode_texts([text], batch_size=1)

        rows = [
            ("images", len(paths) / timed(batched_images), len(naive_paths) / timed(naive_images)),
            (
                "texts",
                len(texts) / timed(batched_texts),
                len(naive_texts) / timed(naive_texts_loop),
            ),
        ]
    device = encoder.device.type
    threads = torch.get_num_threads()
    print(
        f"model {args.model} | {device} ({threads} threads) | batch {args.batch_size} | "
        f"workers {args.workers} | {len(paths)} items (naive: {len(naive_paths)})"
    )
    print(f"{'':<8}{'batched/s':>12}{'naive/s':>12}{'ratio':>8}")
    for name, batched, naive in rows:
        print(f"{name:<8}{batched:>12.1f}{naive:>12.1f}{batched / naive:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
