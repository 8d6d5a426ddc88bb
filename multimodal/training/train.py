"""One epoch of contrastive training, and the per-epoch evaluation (as open_clip_train's
``train_one_epoch`` and ``evaluate``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from multimodal import evaluation
from multimodal.data.records import Record
from multimodal.loss import ContrastiveLoss
from multimodal.training.config import TrainConfig
from multimodal.training.data import TrainData
from multimodal.training.features import TrainFeatures
from multimodal.training.optim import clamp_temperature, set_train_mode
from multimodal.training.persistence import TrainState
from multimodal.training.semantic import SemanticLosses


def train_one_epoch(
    features: TrainFeatures,
    data: TrainData,
    loss_fn: ContrastiveLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    config: TrainConfig,
    after_step: Callable[[dict], None],
    progress: bool = True,
    semantic: SemanticLosses | None = None,
) -> bool:
    """Train epoch ``state.epoch`` from batch ``state.batch`` on, one optimiser step every
    ``config.accumulate`` batches; ``after_step`` gets each step's log record. False when
    ``config.max_steps`` ended it midway.

    The caller sets the random state: it continues from the last optimiser step, so a resumed
    run draws the numbers an uninterrupted one would.
    """
    cached = features.cache is not None  # features are cached: no image is decoded
    loader = data.batches(state.epoch, state.batch, cached, config.workers, config.seed)
    set_train_mode(features.model)
    trained = [features.model] + ([semantic] if semantic is not None else [])
    bar = tqdm(
        total=len(data.sampler),
        initial=state.batch,
        desc=f"epoch {state.epoch + 1}/{config.epochs}",
        unit="batch",
        disable=not progress,
    )
    started, samples, micro = time.perf_counter(), 0, 0
    with bar:
        for batch in loader:
            if len(batch["anchors"]) < 2:
                continue
            loss, parts = batch_loss(batch, features, data, loss_fn, state.epoch, semantic)
            (loss / config.accumulate).backward()
            micro += 1
            samples += len(batch["anchors"])
            bar.update(1)
            if micro % config.accumulate:
                continue
            state.batch += config.accumulate  # before anything that can be interrupted
            value, samples_per_second = loss.item(), samples / (time.perf_counter() - started)
            optimizer_step(trained, optimizer, scheduler, config)
            state.step += 1
            record = step_record(state, value, optimizer, features.model, samples_per_second)
            record.update(parts)
            lr = optimizer.param_groups[0]["lr"]
            bar.set_postfix(
                loss=f"{value:.3f}", lr=f"{lr:.2e}", samples_s=f"{samples_per_second:.1f}"
            )
            after_step(record)
            if config.max_steps and state.step >= config.max_steps:
                return False
    optimizer.zero_grad(set_to_none=True)  # a trailing partial accumulation is dropped
    return True


def batch_loss(
    batch: dict,
    features: TrainFeatures,
    data: TrainData,
    loss_fn: ContrastiveLoss,
    epoch: int,
    semantic: SemanticLosses | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch: contrastive, its mined negatives among the candidates, plus the
    weighted semantic losses; and the parts by name, for the log."""
    anchors, extras = batch["anchors"], batch["extras"]
    groups = torch.as_tensor(data.train_set.groups)
    dishes = torch.as_tensor(data.train_set.dishes)
    hard_text_ids = data.hard_text_ids(anchors)
    with features.autocast():
        image_features = features.images(batch["pixels"], anchors + extras, epoch)
        text_features = features.texts(anchors + hard_text_ids)
    n = len(anchors)
    has_hard = data.has_negatives
    contrastive = loss_fn(
        image_features[:n],
        text_features[:n],
        features.model.logit_scale.exp(),
        hard_texts=text_features[n:] if has_hard else None,
        hard_images=image_features[n:] if has_hard else None,
        groups=groups[anchors],
        hard_text_groups=groups[hard_text_ids] if has_hard else None,
        hard_image_groups=groups[extras] if has_hard else None,
        dishes=dishes[anchors],
        hard_text_dishes=dishes[hard_text_ids] if has_hard else None,
        hard_image_dishes=dishes[extras] if has_hard else None,
    )
    if semantic is None:
        return contrastive, {}
    extra, parts = semantic(image_features[:n], text_features[:n], anchors)
    return contrastive + extra, {"contrastive_loss": contrastive.item(), **parts}


def optimizer_step(
    modules: list[nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
) -> None:
    """Clip, step, schedule, then clamp the temperature (open_clip's order); ``modules[0]``
    is the model, the others train beside it (the semantic classifiers)."""
    if config.grad_clip:
        trainable = [p for m in modules for p in m.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    clamp_temperature(modules[0], config.max_logit_scale)


def step_record(
    state: TrainState,
    loss: float,
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    samples_per_second: float,
) -> dict:
    """The log line of an optimiser step."""
    return {
        "type": "step",
        "step": state.step,
        "epoch": state.epoch,
        "loss": loss,
        "lr": {g["name"]: g["lr"] for g in optimizer.param_groups},
        "logit_scale": float(model.logit_scale.detach().exp()),
        "samples_per_s": samples_per_second,
    }


def evaluate(features: TrainFeatures, val_records: list[Record], workers: int) -> dict | None:
    """Val retrieval metrics of the model as it is now; None without val records.

    With a feature cache the embeddings come from the cached prefixes (a full pass of the
    image trunk per epoch would cost minutes on a CPU); either way they are scored by
    multimodal.evaluation, as ``multimodal eval`` scores them.
    """
    if not val_records:
        return None
    # Evaluation draws nothing from the training's random stream.
    with torch.random.fork_rng(devices=[]):
        if features.cache is not None:
            images, texts = features.val_embeddings()
            return evaluation.score_embeddings(images, texts, features.cache["val_labels"])
        result = evaluation.evaluate(features.encoder, val_records, workers=workers, progress=False)
    return result.metrics


def epoch_score(metrics: dict | None, epoch: int) -> float:
    """The selection score: mean R@1 of both directions; without val, the latest epoch wins."""
    if not metrics:
        return float(epoch)
    return (metrics["image_to_text"]["R@1"] + metrics["text_to_image"]["R@1"]) / 2
