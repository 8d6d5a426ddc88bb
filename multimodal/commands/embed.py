"""``multimodal embed``: embeddings of a data set in clip-retrieval's layout, resumable.

    multimodal embed --model recipe-starter --data ../shared/datasets/recipes5k --out runs/emb

writes, per shard of ``--shard-size`` records (rows aligned across the three files):

    OUT/img_emb/img_emb_0000.npy     float32 (n, D); a zero row where the item has no image
    OUT/text_emb/text_emb_0000.npy   float32 (n, D); a zero row where the item has no text
    OUT/metadata/metadata_0000.jsonl (or .parquet) one row per item: path, title, ...
    OUT/rejects/rejects_0000.jsonl   images that could not be used, with the reason
    OUT/rejects/unusable.jsonl       items that cannot be written out (e.g. a file name that
                                     is not UTF-8), with the reason
    OUT/embed.json                   model, data and counts

A shard is written to temporary files and renamed, metadata last, so an interrupted run leaves
only whole shards; running the same command again embeds only the shards that are missing.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from multimodal.commands.common import (
    add_data_arguments,
    add_engine_arguments,
    add_model_arguments,
    add_tta_argument,
    command,
    image_batch_size,
    load_data,
    ray_options,
)
from multimodal.data.loading import Reject, check_records
from multimodal.data.records import Record
from multimodal.data.text import RecipeTextBuilder
from multimodal.embedding import embed_images, embed_texts
from multimodal.encoder import DualEncoder, load_encoder
from multimodal.files import atomic_path, write_json, write_jsonl
from multimodal.ray_embed import RayOptions, embed_dataset, plan_actors, ray_session, run_batches
from multimodal.spec import parse_model_spec

PLAN_KEYS = ("model", "model_sha256", "tta", "data", "split", "shard_size", "items")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal embed",
        description="Embed every image and text of a data set to .npy shards plus metadata.",
    )
    add_model_arguments(parser)
    add_tta_argument(parser)
    add_data_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--shard-size", type=int, default=10_000, help="items per output shard")
    parser.add_argument(
        "--metadata-format", choices=("jsonl", "parquet"), default="jsonl", help="parquet: pyarrow"
    )
    parser.add_argument(
        "--follow-links",
        action="store_true",
        help="read photos and captions that links take outside the data folder (by default "
        "each is skipped with its reason)",
    )
    return parser


@command("embed")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = ray_options(args)  # None: the local engine
    if args.shard_size < 1:
        raise ValueError("--shard-size must be at least 1")
    parse_model_spec(args.model)  # a bad spec fails before any data is read
    started = time.perf_counter()
    records, unusable = check_records(
        load_data(args, follow_links=args.follow_links)
    )  # e.g. a file name that is not UTF-8
    out = Path(args.out)
    device, precision = ("cpu", "fp32") if options else (args.device, args.precision)
    encoder = load_encoder(args.model, device, precision, tta=args.tta)  # with Ray: the plan's
    plan = {
        "model": args.model,
        "model_sha256": encoder.info.provenance.get("weights_sha256"),
        "tta": args.tta,
        "data": str(Path(args.data).resolve()),
        "split": args.split,
        "shard_size": args.shard_size,
        "items": len(records),
    }
    _check_or_write_plan(out, plan)
    shards = [records[i : i + args.shard_size] for i in range(0, len(records), args.shard_size)]
    done = [i for i in range(len(shards)) if _metadata_path(out, i, args.metadata_format).exists()]
    build_text = RecipeTextBuilder.for_tokenizer(encoder.tokenizer)
    bar = tqdm(total=len(records), unit="item", desc="embed", disable=args.no_progress)
    bar.update(sum(len(shards[i]) for i in done))
    todo = [index for index in range(len(shards)) if index not in done]
    if options:
        rejected = _embed_shards_ray(encoder, shards, todo, build_text, args, options, bar)
    else:
        rejected = 0
        for index in todo:
            vectors = _embed_shard(encoder, shards[index], build_text, args)
            rejected += _write_shard(out, index, shards[index], vectors, args.metadata_format)
            bar.update(len(shards[index]))
    bar.close()
    if unusable:
        write_jsonl(out / "rejects" / "unusable.jsonl", [r.as_dict() for r in unusable])
        rejected += len(unusable)

    seconds = time.perf_counter() - started
    embedded = len(records) - sum(len(shards[i]) for i in done)
    summary = {**plan, "embed_dim": encoder.embed_dim, "shards": len(shards), "complete": True}
    write_json(out / "embed.json", summary)
    print(
        f"{len(records)} items in {len(shards)} shards -> {out} | embedded now {embedded}, "
        f"already there {len(records) - embedded}, rejected images {rejected} | {seconds:.1f} s"
    )
    return 0


@dataclass
class ShardVectors:
    """One shard's vectors, row i for the shard's record i (zeros where there is none)."""

    image: np.ndarray  # (n, D) float32
    has_image: np.ndarray  # (n,) bool: the image was embedded
    text: np.ndarray  # (n, D) float32
    texts: dict[int, str]  # row -> the text its vector embeds
    rejects: list[Reject] = field(default_factory=list)

    @classmethod
    def empty(cls, rows: int, dim: int) -> ShardVectors:
        zeros = np.zeros((rows, dim), np.float32)
        return cls(zeros, np.zeros(rows, bool), zeros.copy(), {})


def _embed_shard(
    encoder: DualEncoder, shard: list[Record], build_text: RecipeTextBuilder, args
) -> ShardVectors:
    vectors = ShardVectors.empty(len(shard), encoder.embed_dim)
    with_image = [i for i, r in enumerate(shard) if r.image is not None]
    kept, embeddings, vectors.rejects = embed_images(
        encoder,
        [shard[i].image for i in with_image],
        image_batch_size(args.batch_size, encoder.device),
        args.workers,
        args.max_pixels,
        progress=False,
    )
    vectors.image[[with_image[k] for k in kept]] = embeddings
    vectors.has_image[[with_image[k] for k in kept]] = True
    with_text = [i for i, r in enumerate(shard) if r.has_text]
    texts = [build_text(shard[i]) for i in with_text]
    if texts:
        vectors.text[with_text] = embed_texts(encoder, texts, progress=False)
    vectors.texts = dict(zip(with_text, texts, strict=True))
    return vectors


def _embed_shards_ray(
    encoder: DualEncoder,
    shards: list[list[Record]],
    todo: list[int],
    build_text: RecipeTextBuilder,
    args: argparse.Namespace,
    options: RayOptions,
    bar: tqdm,
) -> int:
    """The ``todo`` shards embedded on a Ray cluster (:mod:`multimodal.ray_embed`), each
    written as soon as all its rows are back; returns how many images were rejected."""
    if not todo:
        return 0
    rows = [
        {
            "shard": index,
            "row": row,
            "image": str(r.image) if r.image is not None else "",
            "text": build_text(r) if r.has_text else "",
        }
        for index in todo
        for row, r in enumerate(shards[index])
    ]
    pending = {index: ShardVectors.empty(len(shards[index]), encoder.embed_dim) for index in todo}
    left = {index: len(shards[index]) for index in todo}
    rejected, out, fmt = 0, Path(args.out), args.metadata_format
    with ray_session(options.address) as ray:
        plan = plan_actors(options, ray.cluster_resources())
        dataset = embed_dataset(ray, rows, encoder, plan, args.max_pixels)
        for batch in run_batches(dataset):
            for i, (index, row) in enumerate(zip(batch["shard"], batch["row"], strict=True)):
                _fill(pending[index], shards[index][row], int(row), batch, i)
                left[index] -= 1
                if not left[index]:
                    vectors = pending.pop(index)
                    rejected += _write_shard(out, index, shards[index], vectors, fmt)
                    bar.update(len(shards[index]))
    return rejected


def _fill(vectors: ShardVectors, record: Record, row: int, batch: dict, i: int) -> None:
    """Row ``i`` of an embedded Ray batch into its shard's ``row``."""
    if batch["reject"][i]:
        vectors.rejects.append(Reject(row, str(record.image), str(batch["reject"][i])))
    elif record.image is not None:
        vectors.image[row], vectors.has_image[row] = batch["image_vector"][i], True
    if batch["text"][i]:
        vectors.text[row], vectors.texts[row] = batch["text_vector"][i], str(batch["text"][i])


def _write_shard(
    out: Path, index: int, shard: list[Record], vectors: ShardVectors, fmt: str
) -> int:
    """Write one shard's files, metadata last (its presence marks the shard done); returns
    how many of its images were rejected."""
    metadata = [
        {
            **r.metadata(),
            "text": vectors.texts.get(i),
            "has_image": bool(vectors.has_image[i]),
            "has_text": i in vectors.texts,
        }
        for i, r in enumerate(shard)
    ]
    _save_atomic(out / "img_emb" / f"img_emb_{index:04d}.npy", vectors.image)
    _save_atomic(out / "text_emb" / f"text_emb_{index:04d}.npy", vectors.text)
    rejects = [r.as_dict() for r in vectors.rejects]
    write_jsonl(out / "rejects" / f"rejects_{index:04d}.jsonl", rejects)
    _write_metadata(_metadata_path(out, index, fmt), metadata)
    return len(vectors.rejects)


def _check_or_write_plan(out: Path, plan: dict) -> None:
    existing = out / "embed.json"
    if existing.exists():
        previous = {"tta": False, **json.loads(existing.read_text())}  # older runs: no TTA
        differ = [k for k in PLAN_KEYS if previous.get(k) != plan[k]]
        if differ:
            raise ValueError(
                f"{out} holds embeddings of another run (different {', '.join(differ)}); "
                "choose another --out or delete that folder"
            )
    write_json(existing, {**plan, "complete": False})


def _metadata_path(out: Path, index: int, fmt: str) -> Path:
    return out / "metadata" / f"metadata_{index:04d}.{fmt}"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as staging, open(staging, "wb") as handle:
        np.save(handle, array)  # to a handle: np.save would add .npy to a staging name


def _write_metadata(path: Path, rows: list[dict]) -> None:
    if path.suffix != ".parquet":
        write_jsonl(path, rows)
        return
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("parquet metadata needs pyarrow: pip install pyarrow") from None
    with atomic_path(path) as staging:
        pq.write_table(pa.Table.from_pylist(rows), staging)
