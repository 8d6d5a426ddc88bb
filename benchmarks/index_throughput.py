"""Indexer throughput against the model's pure forward throughput on preloaded tensors.

    python benchmarks/index_throughput.py --model runs/recipe/best \
        --data ../shared/datasets/recipes5k

Baseline (same run, same items): every image already decoded and preprocessed into one tensor,
every text already built; time only the two towers (images in batches of ``--batch-size``,
texts in the encoder's batches). Measured: ``index_records`` into a fresh embedded store, which
also reads and hashes files, decodes in worker processes, and upserts. Prints both items/s, the
ratio (goal >= 0.9) and the indexer's per-stage seconds.

On a GPU machine (``--device cuda``; ``--random-weights ViT-B-32`` for an architecture with
no weights here):

    python benchmarks/index_throughput.py --device cuda --precision fp16 --split train \
        --items 3409 --batch-size 256 --workers 12 --random-weights ViT-B-32

Then the Ray engine (``--engine ray``, with Ray installed) on the same items into another fresh
store: a local Ray cluster started first (not timed), ``--ray-actors`` CPU actors (default 2),
or one GPU actor with ``--device cuda``; its items/s end to end (the actors starting and
loading the model included, and shown apart) and its ratio to the local engine. ``--no-ray``
skips it.
"""

from __future__ import annotations

import argparse
import statistics
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
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each side")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default=None, help="e.g. cuda (default: the best there is)")
    parser.add_argument("--precision", default="fp32", help="fp16 or bf16 on a GPU")
    parser.add_argument(
        "--random-weights",
        metavar="ARCH",
        default=None,
        help="an open_clip architecture with random weights instead of --model, "
        "e.g. ViT-B-32 (speed does not depend on the weights)",
    )
    parser.add_argument("--ray-actors", type=int, default=2, help="CPU actors of the Ray line")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray engine's line")
    return parser.parse_args(argv)


def random_weights(arch: str, folder: Path) -> str:
    """The spec of ``arch`` with freshly initialised weights, saved in ``folder``."""
    import open_clip

    path = folder / f"{arch}-random.pt"
    torch.save(open_clip.create_model(arch).state_dict(), path)
    return f"{arch}:{path}"


def pure_forward(encoder, pixels: torch.Tensor, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(pixels), batch_size):
        encoder.encode_pixels(pixels[start : start + batch_size])
    encoder.encode_texts(texts)
    return time.perf_counter() - started


def ray_engine_line(args: argparse.Namespace, encoder, records, local_rate: float) -> None:
    """The Ray engine on the same items, into a fresh embedded store; prints its line."""
    from indexer.ray_index import index_records_ray
    from multimodal.ray_embed import RayOptions, import_ray, ray_session

    try:
        import_ray()
    except ValueError as err:
        print(f"ray engine: skipped ({err})")
        return
    gpu = str(encoder.device).startswith("cuda")
    options = RayOptions(
        actors=1 if gpu else args.ray_actors,
        device="cuda" if gpu else "cpu",
        precision=args.precision,
        batch_size=args.batch_size,
    )
    driver = load_encoder(args.model, "cpu") if gpu else encoder  # it only plans; actors embed
    with ray_session() as ray, tempfile.TemporaryDirectory() as scratch:
        with EdgeStore(Path(scratch)) as store:
            report = index_records_ray(driver, store, "bench", records, options, progress=False)
        cluster = ray.cluster_resources()
    rate = report.indexed / report.seconds
    what = "1 GPU actor" if gpu else f"{options.actors} CPU actors"
    gpus = f", {cluster['GPU']:.0f} GPU" if cluster.get("GPU") else ""
    print(
        f"ray engine ({what}; local cluster of {cluster['CPU']:.0f} CPUs{gpus}), end to end: "
        f"{rate:.1f} items/s, {report.stages['ray first batch']:.1f}s of it to the first batch "
        "(actors starting, loading the model)"
    )
    print(f"ratio ray engine / local engine:   {rate / local_rate:7.2f}x")
    print("ray engine stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.stages.items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    records = read_records(args.data, args.split)[: args.items]
    scratch_weights = tempfile.TemporaryDirectory()
    if args.random_weights:
        args.model = random_weights(args.random_weights, Path(scratch_weights.name))
    encoder = load_encoder(args.model, args.device, args.precision)
    build = RecipeTextBuilder.for_tokenizer(encoder.tokenizer)
    pixels = torch.stack([encoder.preprocess(load_image(r.image)) for r in records])
    texts = [build(r) for r in records]
    pure_forward(encoder, pixels[: args.batch_size], texts[:32], args.batch_size)  # warm-up
    forward_rates, index_rates = [], []
    for _ in range(args.repeats):  # alternated, so a slow spell of the machine hits both
        forward_rates.append(len(records) / pure_forward(encoder, pixels, texts, args.batch_size))
        with tempfile.TemporaryDirectory() as scratch, EdgeStore(Path(scratch)) as store:
            report = index_records(
                encoder, store, "bench", records, args.batch_size, args.workers, progress=False
            )
        index_rates.append(report.indexed / report.seconds)
    forward_rate, index_rate = statistics.median(forward_rates), statistics.median(index_rates)
    ratios = ", ".join(f"{i / f:.2f}" for f, i in zip(forward_rates, index_rates, strict=True))
    print(
        f"device {encoder.device}, {torch.get_num_threads()} threads, {len(records)} items, "
        f"median of {args.repeats} alternated runs"
    )
    print(f"pure forward on preloaded tensors: {forward_rate:7.1f} items/s (images + texts)")
    print(f"multimodal indexer, end to end:    {index_rate:7.1f} items/s")
    print(
        f"ratio indexer / pure forward:      {index_rate / forward_rate:7.2f}x  (goal >= 0.9; "
        f"each run: {ratios})"
    )
    print("indexer stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.stages.items()))
    if not args.no_ray:
        ray_engine_line(args, encoder, records, index_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
