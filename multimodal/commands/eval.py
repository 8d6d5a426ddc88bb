"""``multimodal eval``: cross-modal recall of a model on a data set, in both directions, and
what a user of the demo sees (dish types of the results, ingredients suggested from photos).

multimodal eval --model recipe-starter --data ../shared/datasets/recipes5k --split val
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from multimodal.commands.common import (
    add_data_arguments,
    add_model_arguments,
    add_tta_argument,
    command,
    image_batch_size,
    load_data,
)
from multimodal.encoder import load_encoder
from multimodal.evaluation import evaluate
from multimodal.files import write_json
from multimodal.metrics import bag_metrics, format_table
from multimodal.spec import parse_model_spec
from multimodal.user_metrics import format_user_table, user_metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal eval",
        description="Recall@1/5/10, median and mean rank, image->text and text->image, on the "
        "paired items of a data set (default split: val when the data set has one); then what a "
        "user sees: the dish type of the results and the ingredients suggested from each photo, "
        "beside two baselines.",
    )
    add_model_arguments(parser)
    add_tta_argument(parser)
    add_data_arguments(parser)
    parser.add_argument(
        "--bags", type=int, default=0, help="also the Recipe1M protocol: mean over this many bags"
    )
    parser.add_argument("--bag-size", type=int, default=1000, help="pairs per bag (1k protocol)")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing the bags")
    parser.add_argument("--out", default=None, help="JSON results file (default: runs/eval/...)")
    return parser


@command("eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parse_model_spec(args.model)  # a bad spec fails before any data is read
    started = time.perf_counter()
    records = load_data(args, default_split="val")
    encoder = load_encoder(args.model, args.device, args.precision, tta=args.tta)
    result = evaluate(
        encoder,
        records,
        batch_size=image_batch_size(args.batch_size, encoder.device),
        workers=args.workers,
        max_pixels=args.max_pixels,
        progress=not args.no_progress,
    )
    pairs, metrics = result.pairs, result.metrics
    user = user_metrics(pairs.image, pairs.text, pairs.records)
    bags = None
    if args.bags:
        bags = bag_metrics(
            pairs.image, pairs.text, result.labels, args.bags, args.bag_size, args.seed
        )
    seconds = time.perf_counter() - started

    split = args.split or "all"
    print(
        f"model {args.model} | data {args.data} ({split}) | {len(pairs.records)} pairs | "
        f"{len(pairs.rejects)} rejected | {seconds:.1f} s on {encoder.device.type}"
    )
    for reject in pairs.rejects[:5]:
        print(f"  rejected {reject.path}: {reject.reason}")
    print(format_table(metrics, f"all {len(pairs.records)} pairs"))
    print(format_user_table(user))
    if bags:
        print(format_table(bags, f"Recipe1M protocol: mean of {args.bags} bags of {args.bag_size}"))

    out = Path(args.out) if args.out else default_output(args.model, args.data, split)
    write_json(
        out,
        {
            "model": args.model,
            "model_arch": encoder.info.arch,
            "tta": args.tta,
            "data": str(args.data),
            "split": split,
            "pairs": len(pairs.records),
            "metrics": metrics,
            "user": user,
            "bags": bags and {"count": args.bags, "size": args.bag_size, "seed": args.seed, **bags},
            "rejects": [r.as_dict() for r in pairs.rejects],
            "seconds": round(seconds, 2),
            "device": encoder.device.type,
        },
    )
    print(f"wrote {out}")
    return 0


def default_output(model: str, data: str, split: str) -> Path:
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name or text).strip("-")

    return Path("runs") / "eval" / f"{slug(model)}_{slug(data)}_{split}.json"
