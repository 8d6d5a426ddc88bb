"""Parse the model specs a user can give on the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import open_clip

from multimodal.builtin import BUILTIN_MODELS, register_builtin_configs

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")

SPEC_HELP = (
    "a model spec is one of: a built-in name ({builtins}); an open_clip architecture with a "
    "pretrained tag, e.g. ViT-B-32:laion2b_s34b_b79k (downloads from the model hub); an "
    "architecture with a local weights file, e.g. ViT-B-32:/path/weights.pt; a checkpoint "
    "folder made by `multimodal train`; or hf-hub:ORG/REPO"
)


@dataclass(frozen=True)
class ModelSpec:
    text: str  # the spec as the user wrote it
    kind: str  # "builtin", "pretrained", "weights", "checkpoint" or "hf-hub"
    arch: str | None = None  # open_clip architecture (config name)
    source: str | None = None  # pretrained tag, weights file, checkpoint folder or hub repo


def spec_help() -> str:
    return SPEC_HELP.format(builtins=", ".join(BUILTIN_MODELS))


def parse_model_spec(text: str) -> ModelSpec:
    """Turn ``text`` into a :class:`ModelSpec`; raise ValueError naming the accepted forms.

    >>> parse_model_spec("ViT-B-32:laion2b_s34b_b79k").kind
    'pretrained'
    """
    register_builtin_configs()  # built-in names are open_clip architectures too
    text = text.strip()
    if not text:
        raise ValueError(f"empty model spec: {spec_help()}")
    if text.startswith(HF_HUB_PREFIX):
        return ModelSpec(text, "hf-hub", source=text[len(HF_HUB_PREFIX) :])
    if text.startswith(LOCAL_DIR_PREFIX):
        return _checkpoint_spec(text, Path(text[len(LOCAL_DIR_PREFIX) :]).expanduser())
    if text in BUILTIN_MODELS:
        return ModelSpec(text, "builtin", arch=text)
    if Path(text).expanduser().is_dir():  # "~/models/recipe" from Python, unexpanded by a shell
        return _checkpoint_spec(text, Path(text).expanduser())
    arch, sep, source = text.partition(":")
    if sep:
        return _arch_spec(text, arch, source)
    if _looks_like_path(text):
        raise ValueError(f"no checkpoint folder at {text}: {spec_help()}")
    if arch in open_clip.list_models():
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ValueError(
            f"{arch} needs weights: add a pretrained tag ({arch}:TAG, tags: {tags}) "
            f"or a weights file ({arch}:/path/weights.pt)"
        )
    raise ValueError(f"unknown model {text!r}: {spec_help()}")


def _checkpoint_spec(text: str, folder: Path) -> ModelSpec:
    if not (folder / "open_clip_config.json").is_file():
        raise ValueError(
            f"{folder} is not a model checkpoint folder (no open_clip_config.json): {spec_help()}"
        )
    return ModelSpec(text, "checkpoint", source=str(folder.resolve()))


def _arch_spec(text: str, arch: str, source: str) -> ModelSpec:
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown open_clip architecture {arch!r} in {text!r}: {spec_help()}")
    if _looks_like_path(source):
        if not Path(source).is_file():
            raise ValueError(f"weights file not found: {source}")
        return ModelSpec(text, "weights", arch=arch, source=str(Path(source).resolve()))
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if source not in tags:
        raise ValueError(
            f"{arch} has no pretrained tag {source!r}; known tags: {', '.join(tags) or 'none'}"
        )
    return ModelSpec(text, "pretrained", arch=arch, source=source)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(WEIGHT_SUFFIXES) or text.startswith(".")
