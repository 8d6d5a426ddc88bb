"""Indexer throughput against the model's pure forward throughput on preloaded tensors.

    python benchmarks/index_throughput.py --model runs/recipe/best \
        --data ../shared/datasets/recipes5k

Baseline (same run, same items): every image already decoded and preprocessed into one tensor,
every text already built; time only the two towers (images in batches of ``--batch-size``,
texts in the encoder's batches). Measured: ``index_records`` into a fresh embedded store, which
also reads and hashes files, decodes in worker processes, and upserts. Prints both items/s, the
ratio (goal >= 0.9) and the indexer's per-stage seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from multimodal.data import RecipeTextBuilder, load_image, read_records
from multimodal.encoder import load_encoder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="recipe-starter")
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--split", default="val")
    parser.add_argument("--items", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default=None)
    return parser.parse_args(argv)


def pure_forward(encoder, pixels: torch.Tensor, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(pixels), batch_size):
        encoder.encode_pixels(pixels[start : start + batch_size])
    encoder.encode_texts(texts)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    records = read_records(args.data, args.split)[: args.items]
    encoder = load_encoder(args.model, args.device)
    build = RecipeTextBuilder.for_tokenizer(encoder.tokenizer)
    pixels = torch.stack([encoder.preprocess(load_image(r.image)) for r in records])
    texts = [build(r) for r in records]
    pure_forward(encoder, pixels[: args.batch_size], texts[:32], args.batch_size)  # warm-up
    forward_seconds = pure_forward(encoder, pixels, texts, args.batch_size)
    with tempfile.TemporaryDirectory() as scratch, EdgeStore(Path(scratch)) as store:
        report = index_records(
            encoder, store, "bench", records, args.batch_size, args.workers, progress=False
        )
    forward_rate = len(records) / forward_seconds
    index_rate = report.indexed / report.seconds
    print(f"device {encoder.device}, {torch.get_num_threads()} threads, {len(records)} items")
    print(f"pure forward on preloaded tensors: {forward_rate:7.1f} items/s (images + texts)")
    print(f"multimodal indexer, end to end:    {index_rate:7.1f} items/s")
    print(f"ratio indexer / pure forward:      {index_rate / forward_rate:7.2f}x  (goal >= 0.9)")
    print("indexer stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
