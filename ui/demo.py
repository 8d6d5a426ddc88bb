"""The recipe demo's preparation: the recipe model (the one that ships with the package, or
trained again with ``--retrain``) and the collection of every Recipes5k split in the embedded
store; ``multimodal demo`` then serves the page.

Every step is skipped when its result is already there, so a second run goes straight to
the page: the indexer skips unchanged items.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from indexer.pipeline import index_records
from indexer.store import Store
from multimodal.builtin import BUILTIN_MODELS
from multimodal.data.readers import read_records
from multimodal.paths import data_home

# How the demo's recipe model trains when no shipped model is installed (``--retrain`` takes
# the shipped model's own configuration instead, recorded in its checkpoint.json).
DEMO_TRAINING = dict(
    model="recipe-starter",
    epochs=20,
    patience=5,
    lr=1e-3,
    batch_size=64,
    cache_views=2,
)
SHIPPED = "recipe"  # the model that ships with the package (multimodal/pretrained/recipe)
RETRAINED = "retrained"  # marks a run folder made by --retrain (an older release's is not)


def ensure_model(
    model: str | None, data: Path, progress: bool = True, retrain: bool = False
) -> str:
    """The model spec to use: the user's; else the recipe model trained again by an earlier
    ``--retrain``; else the shipped recipe model. ``retrain`` trains it again (resuming an
    interrupted retraining) with the shipped model's own configuration."""
    if model and retrain:
        raise ValueError("--retrain trains the demo's recipe model: leave out --model")
    if model:
        return model
    run = data_home() / "models" / "recipe"
    finished = (run / "done").is_file() and (run / "best" / "checkpoint.json").is_file()
    if retrain and (run / "done").is_file():
        shutil.rmtree(run)  # a finished training: train again from the start
    elif finished and (run / RETRAINED).is_file():
        print(f"model: the recipe model you trained again, {run / 'best'}")
        return str(run / "best")
    elif not retrain and SHIPPED in BUILTIN_MODELS:
        print(f"model: {SHIPPED} ({BUILTIN_MODELS[SHIPPED].description})")
        if finished:  # trained on first use by an earlier release
            print(f"  (the older recipe model in {run / 'best'} is no longer the default)")
        return SHIPPED
    return train_recipe_model(run, data, progress)


def train_recipe_model(run: Path, data: Path, progress: bool = True) -> str:
    """Train the recipe model into ``run`` (resuming an interrupted run); its best folder."""
    from multimodal.training.config import TrainConfig
    from multimodal.training.trainer import build_trainer

    resume = (run / "state.pt").is_file()
    settings = recipe_training()
    pairs = len(read_records(data, "train"))  # a small data set of your own: smaller batches
    settings["batch_size"] = max(2, min(settings["batch_size"], pairs))
    config = TrainConfig(
        **{
            **settings,
            "data": str(data),
            "out": str(run),
            "feature_cache": str(data_home() / "feature-cache"),
        }
    )
    print(
        ("Resuming" if resume else "Training")
        + f" the recipe model in {run} (Ctrl-C stops and keeps the progress)"
    )
    started = time.perf_counter()
    trainer = build_trainer(config, progress=progress)
    if resume:
        trainer.load_state()
    state = trainer.run()
    (run / "done").write_text(f"best epoch {state.best_epoch}, score {state.best_score:.2f}\n")
    (run / RETRAINED).write_text(f"{config.model} with the recipe of {SHIPPED}\n")
    print(f"recipe model trained in {time.perf_counter() - started:.0f}s: {run / 'best'}")
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), None)
    if best and best.get("metrics"):
        m = best["metrics"]
        print(
            f"val R@1 image->text {m['image_to_text']['R@1']:.1f}, text->image "
            f"{m['text_to_image']['R@1']:.1f} (best epoch {state.best_epoch})"
        )
    return str(run / "best")


def recipe_training() -> dict:
    """The shipped model's training configuration (without its paths), or DEMO_TRAINING."""
    shipped = BUILTIN_MODELS.get(SHIPPED)
    if shipped is None or shipped.shipped is None:
        return dict(DEMO_TRAINING)
    config = json.loads((shipped.shipped / "checkpoint.json").read_text())["train_config"]
    machine = ("data", "out", "feature_cache", "workers", "device")
    return {k: v for k, v in config.items() if k not in machine}


def collection_name(model_spec: str, stamp: dict) -> str:
    """One collection per model, so switching models never mixes vectors."""
    identity = stamp.get("weights_sha256") or hashlib.sha256(model_spec.encode()).hexdigest()
    return f"recipes5k-{identity[:10]}"


def ensure_index(encoder, store: Store, collection: str, data: Path, progress: bool = True):
    records = read_records(data)  # every split present
    return index_records(
        encoder,
        store,
        collection,
        records,
        progress=progress,
        batch_size=128 if encoder.device.type == "cuda" else 16,
    )
