"""Which parameters train, at which learning rate, with which decay and schedule."""

from __future__ import annotations

import math
import warnings

import torch
from open_clip.hf_model import HFTextEncoder
from torch import nn

from multimodal.training.config import TrainConfig

# Parameter-name fragments of the parts that are new in a dual encoder: projections and the
# temperature. Everything else that trains is a backbone layer.
HEAD_MARKERS = (
    "visual.head.",
    "visual.proj",
    "text.proj",
    "text_projection",
    "logit_scale",
    "logit_bias",
)


def configure_towers(model: nn.Module, config: TrainConfig) -> None:
    """Lock the backbones as configured (LiT: locked towers, trainable projections)."""
    for parameter in model.parameters():
        parameter.requires_grad = True
    if config.lock_image:
        # Not freeze_bn_stats: open_clip swaps timm's BatchNormAct2d for a plain frozen batch
        # norm and so drops its activation (ReLU6 in EfficientNet), which makes the locked
        # trunk linear. set_train_mode keeps frozen norms in eval mode instead.
        with warnings.catch_warnings():  # open_clip imports timm's grouping helpers by an old path
            warnings.simplefilter("ignore", FutureWarning)
            model.lock_image_tower(unlocked_groups=config.unlock_image_groups)
    if config.lock_text:
        text = getattr(model, "text", None)
        if isinstance(text, HFTextEncoder):
            lock_hf_text_tower(text, config.unlock_text_layers)
        else:
            model.lock_text_tower(unlocked_layers=config.unlock_text_layers)
    # open_clip's locks also freeze some projections (a native ViT's, the text projection);
    # the projection heads and the temperature always train.
    for name, parameter in model.named_parameters():
        if is_head(name):
            parameter.requires_grad = True


def lock_hf_text_tower(text: HFTextEncoder, unlocked_layers: int) -> None:
    """Freeze a Hugging Face text transformer but its last ``unlocked_layers`` encoder layers.

    open_clip's own partial unlock does not know BERT-family models (MiniLM among them)."""
    for parameter in text.transformer.parameters():
        parameter.requires_grad = False
    if unlocked_layers <= 0:
        return
    encoder = getattr(text.transformer, "encoder", None)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    if layers is None:
        raise ValueError(
            f"cannot unlock layers of a {type(text.transformer).__name__} text tower: "
            "use --unlock-text for all of it, or --unlock-text-layers 0"
        )
    for layer in list(layers)[-unlocked_layers:]:
        for parameter in layer.parameters():
            parameter.requires_grad = True


def set_train_mode(model: nn.Module) -> None:
    """Train mode, except modules whose parameters are all frozen: no dropout noise and no
    batch-norm statistics updates in the locked parts."""
    model.train()
    for module in model.modules():
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()


def is_head(name: str) -> bool:
    return any(marker in name for marker in HEAD_MARKERS)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Four groups: heads / backbone x decay / no decay. No weight decay on biases, norms,
    embeddings of size 1 and the temperature."""
    groups = {(head, decay): [] for head in (True, False) for decay in (True, False)}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        no_decay = parameter.ndim < 2 or "logit_scale" in name or "logit_bias" in name
        groups[(is_head(name), not no_decay)].append(parameter)
    return [
        {
            "params": params,
            "lr": config.lr if head else config.backbone_lr,
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{'heads' if head else 'backbone'}{'' if decay else '-no-decay'}",
        }
        for (head, decay), params in groups.items()
        if params
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config)
    if not groups:
        raise ValueError("nothing to train: every parameter is locked")
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to each group's learning rate, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clamp_temperature(model: nn.Module, max_logit_scale: float) -> None:
    """open_clip keeps log(1/temperature); clamp it so the scale stays within [1, max]."""
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(max_logit_scale))
