"""Which parameters train, at which learning rate, with which decay and schedule."""

from __future__ import annotations

import math
import warnings

import torch
from open_clip.hf_model import HFTextEncoder
from timm.models._manipulate import group_parameters
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


def image_group_depths(model: nn.Module) -> dict[str, int]:
    """Each image-trunk parameter's lock group counted from the top (0: the last group, the
    conv head of an EfficientNet), as timm's group matcher numbers them; {} for a tower
    without one."""
    trunk = getattr(getattr(model, "visual", None), "trunk", None)
    if trunk is None or not hasattr(trunk, "group_matcher"):
        return {}
    groups = group_parameters(trunk, trunk.group_matcher())
    top = max(groups)
    return {f"visual.trunk.{name}": top - i for i, names in groups.items() for name in names}


def parameter_groups(
    model: nn.Module, config: TrainConfig, extra: nn.Module | None = None
) -> list[dict]:
    """Heads (with ``extra``, the training-only classifiers) at ``lr``; backbone layers at
    ``backbone_lr``, image groups below the top at ``backbone_lr * layer_lr_decay ** depth``;
    each with and without decay. No weight decay on biases, norms, embeddings of size 1 and
    the temperature."""
    depths = image_group_depths(model) if config.layer_lr_decay != 1.0 else {}
    named = list(model.named_parameters())
    if extra is not None:
        named += [(f"visual.head.extra.{n}", p) for n, p in extra.named_parameters()]
    groups: dict[tuple[str, bool], list] = {}
    rates: dict[str, float] = {}
    for name, parameter in named:
        if not parameter.requires_grad:
            continue
        no_decay = parameter.ndim < 2 or "logit_scale" in name or "logit_bias" in name
        if is_head(name):
            kind, rates["heads"] = "heads", config.lr
        elif name in depths:
            kind = f"backbone-{depths[name]}"
            rates[kind] = config.backbone_lr * config.layer_lr_decay ** depths[name]
        else:
            kind, rates["backbone"] = "backbone", config.backbone_lr
        groups.setdefault((kind, not no_decay), []).append(parameter)
    return [
        {
            "params": params,
            "lr": rates[kind],
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{kind}{'' if decay else '-no-decay'}",
        }
        for (kind, decay), params in groups.items()
    ]


def build_optimizer(
    model: nn.Module, config: TrainConfig, extra: nn.Module | None = None
) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config, extra)
    if not groups:
        raise ValueError("nothing to train: every parameter is locked")
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6)


def unlocked_image_groups(config: TrainConfig, epoch: int) -> int:
    """How many of the image trunk's last groups train in ``epoch`` (0-based): all of
    ``unlock_image_groups`` at once, or (gradual unfreezing) none in the first
    ``unfreeze_every`` epochs, then one more every ``unfreeze_every`` epochs."""
    if not config.unfreeze_every:
        return config.unlock_image_groups
    return min(config.unlock_image_groups, epoch // config.unfreeze_every)


def apply_unfreezing(model: nn.Module, config: TrainConfig, epoch: int) -> None:
    """Freeze the image groups that do not train yet in ``epoch`` (gradual unfreezing); the
    optimiser holds them all from the start and skips those without gradients."""
    if not (config.unfreeze_every and config.lock_image):
        return
    unlocked = unlocked_image_groups(config, epoch)
    for name, depth in image_group_depths(model).items():
        model.get_parameter(name).requires_grad = depth < unlocked


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
