"""``multimodal train``: fine-tune a dual encoder with a contrastive loss and hard negatives.

multimodal train --model recipe-starter --data ../shared/datasets/recipes5k --out runs/recipe
multimodal train --resume runs/recipe          # continues exactly where it stopped
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from multimodal.commands.common import command
from multimodal.paths import marks_path
from multimodal.spec import parse_model_spec
from multimodal.training.config import TrainConfig
from multimodal.training.persistence import CONFIG_FILE, STATE_FILE, TrainState
from multimodal.training.trainer import build_trainer

# TrainConfig fields with a flag of their own, in --help order; --unlock-image, --unlock-text
# and --no-augment set lock_image, lock_text and augment.
TUNABLE = (
    "train_split",
    "val_split",
    "epochs",
    "batch_size",
    "accumulate",
    "lr",
    "backbone_lr",
    "weight_decay",
    "warmup_steps",
    "grad_clip",
    "unlock_image_groups",
    "unlock_text_layers",
    "unfreeze_every",
    "layer_lr_decay",
    "class_loss",
    "ingredient_loss",
    "same_dish",
    "soft_weight",
    "hard_negatives",
    "mining_strategy",
    "mining_window",
    "mining_margin",
    "mining_dish",
    "mine_every",
    "warmup_epochs",
    "max_logit_scale",
    "patience",
    "seed",
    "workers",
    "device",
    "max_steps",
    "cache_views",
    "augment_policy",
    "feature_cache",
)
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal train",
        description="Contrastive fine-tuning (symmetric InfoNCE, learnable temperature, mined "
        "hard negatives); selects on the val split; keeps last/ and best/ checkpoints.",
    )
    parser.add_argument("--resume", default=None, help="continue the run in this folder exactly")
    for name in ("model", "data", "out"):
        parser.add_argument(f"--{name}", help=CONFIG_FIELDS[name].metadata["help"])
    defaults = TrainConfig(model="", data="", out="")
    for name in TUNABLE:
        _add_config_flag(parser, CONFIG_FIELDS[name], getattr(defaults, name))
    parser.add_argument("--unlock-image", action="store_true", help="train the whole image tower")
    parser.add_argument("--unlock-text", action="store_true", help="train the whole text tower")
    parser.add_argument("--no-augment", action="store_true", help="no image augmentation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--marks",
        metavar="COLLECTION",
        help="learn from a collection's Good / Not this marks (or a file of them, or of "
        "multimodal marks export's pairs): Good as pairs, Not this as hard negatives",
    )
    parser.add_argument(
        "--marks-store",
        metavar="PATH_OR_URL",
        help="the store of the --marks collection: a folder or a Qdrant URL (default: the "
        "embedded store in $MULTIMODAL_HOME)",
    )
    return parser


def marks_file(collection: str | None, store: str | None) -> str | None:
    """The file ``--marks`` names: a file as given, else the collection's marks file."""
    if not collection:
        return None
    if Path(collection).is_file():
        return collection
    path = marks_path(collection, store)
    if not path.is_file():
        raise ValueError(
            f"--marks: collection {collection!r} has no marks ({path}): mark results Good / "
            "Not this on the page or with POST /api/marks first, or check --marks-store"
        )
    return str(path)


def _add_config_flag(parser: argparse.ArgumentParser, field: dataclasses.Field, default) -> None:
    """``--field-name``, typed by its default (a float for mining_margin, which may be None)."""
    kind = type(default) if default is not None else str
    kind = float if field.name == "mining_margin" else kind
    help_text = field.metadata["help"]
    if default is not None:
        help_text += " (default: %(default)s)"
    parser.add_argument(
        f"--{field.name.replace('_', '-')}",
        type=kind,
        default=default,
        choices=field.metadata.get("choices"),
        help=help_text,
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if not (args.model and args.data and args.out):
        raise ValueError("give --model, --data and --out (or --resume RUN_FOLDER)")
    values = {f: getattr(args, f) for f in CONFIG_FIELDS if hasattr(args, f)}
    values.update(
        lock_image=not args.unlock_image,
        lock_text=not args.unlock_text,
        augment=not args.no_augment,
        marks=marks_file(args.marks, args.marks_store),
    )
    return TrainConfig(**values)


@command("train")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume:
        config = TrainConfig.load(_run_config(Path(args.resume)))
    else:
        config = config_from_args(args)
        parse_model_spec(config.model)
        if (Path(config.out) / STATE_FILE).exists():
            raise ValueError(
                f"{config.out} already holds a run: --resume {config.out}, or another --out"
            )
    started = time.perf_counter()
    trainer = build_trainer(config, progress=not args.no_progress)
    if args.resume:
        trainer.load_state()
        print(
            f"resuming {config.out} at epoch {trainer.state.epoch + 1}, step {trainer.state.step}"
        )
    try:
        state = trainer.run()
    except KeyboardInterrupt:
        print(
            f"\nstopped; state saved. Continue with: multimodal train --resume {config.out}",
            file=sys.stderr,
        )
        return 130
    print(summary_table(state, time.perf_counter() - started, trainer.device.type))
    print(f"best checkpoint: {Path(config.out) / 'best'} (epoch {state.best_epoch})")
    return 0


def summary_table(state: TrainState, seconds: float, device: str) -> str:
    lines = [
        f"{'epoch':>5} {'step':>6} {'i2t R@1':>8} {'t2i R@1':>8} {'i2t MedR':>9} "
        f"{'t2i MedR':>9} {'class@1':>8}"
    ]
    for row in state.history:
        metrics = row["metrics"]
        if metrics is None:
            lines.append(f"{row['epoch']:>5} {row['step']:>6}   (no val split)")
            continue
        i2t, t2i = metrics["image_to_text"], metrics["text_to_image"]
        best = "  *best" if row["epoch"] == state.best_epoch else ""
        lines.append(
            f"{row['epoch']:>5} {row['step']:>6} {i2t['R@1']:>8.2f} {t2i['R@1']:>8.2f} "
            f"{i2t['MedR']:>9.1f} {t2i['MedR']:>9.1f} {i2t.get('class@1', 0):>8.2f}{best}"
        )
    lines.append(f"{state.step} steps in {seconds / 60:.1f} min on {device}")
    return "\n".join(lines)


def _run_config(folder: Path) -> Path:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{folder} is not a training run folder (no {CONFIG_FILE})")
    return path
