"""Built-in models: open_clip JSON configs in model_configs/ plus how to initialise them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).parent / "model_configs"
SHIPPED_DIR = Path(__file__).parent / "pretrained"  # models that ship with the package

# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128, i.e. on [0, 1] pixels:
EFFICIENTNET_LITE_MEAN = (127 / 255,) * 3
EFFICIENTNET_LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class BuiltinModel:
    name: str  # the open_clip config name, a JSON file in model_configs/
    description: str  # one line for listings and error messages
    efficientnet_lite: int | None = None  # load packaged EfficientNet-Lite N into the image trunk
    minilm_text: bool = False  # use the packaged all-MiniLM-L6-v2 as the text transformer
    preprocess: dict = field(default_factory=dict)  # overrides of open_clip's PreprocessCfg
    seed: int = 0  # seeds the randomly initialised parts (projection heads, tiny towers)
    base: str | None = None  # the open_clip config to build, when not ``name``
    shipped: Path | None = None  # a folder of trained weights (see multimodal.shipped)

    @property
    def config_name(self) -> str:
        return self.base or self.name


def _starter(variant: int) -> BuiltinModel:
    return BuiltinModel(
        name="recipe-starter" if variant == 0 else f"recipe-starter-lite{variant}",
        description=(
            f"offline starting model: EfficientNet-Lite{variant} (ImageNet) + all-MiniLM-L6-v2, "
            "new projection heads"
        ),
        efficientnet_lite=variant,
        minilm_text=True,
        preprocess={"mean": EFFICIENTNET_LITE_MEAN, "std": EFFICIENTNET_LITE_STD},
    )


def _shipped(name: str) -> BuiltinModel | None:
    """A model trained by the project that ships in ``pretrained/NAME`` (None if absent): its
    base starter's towers with the trained weights over them."""
    folder = SHIPPED_DIR / name
    try:
        provenance = json.loads((folder / "checkpoint.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    base = _starter(int(provenance["efficientnet_lite"]))
    return BuiltinModel(
        name=name,
        description=provenance["description"],
        efficientnet_lite=None,  # the trained image tower is in the shipped weights
        minilm_text=True,
        preprocess=base.preprocess,
        base=base.name,
        shipped=folder,
    )


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        _shipped("recipe"),
        _starter(0),
        _starter(1),
        _starter(2),
        BuiltinModel("tiny-random", "1-layer 32-pixel ViT and text transformer, random weights"),
    )
    if model is not None
}

_registered = False


def register_builtin_configs() -> None:
    """Make the built-in configs known to open_clip (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
