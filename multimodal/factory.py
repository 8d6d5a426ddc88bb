"""One factory for every model spec: returns the model, its image transform and tokenizer."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import open_clip
import torch
from open_clip.tokenizer import HFTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2

from multimodal import checkpoint, shipped, towers
from multimodal.builtin import BUILTIN_MODELS, register_builtin_configs
from multimodal.spec import ModelSpec, parse_model_spec

OFFLINE_CHOICES = (
    "offline choices: recipe-starter (packaged pretrained towers), a checkpoint folder made by "
    "`multimodal train`, or ARCH:/path/to/weights.pt"
)
# What open_clip raises when weights do not fit a model: load_state_dict's RuntimeError, and
# bare asserts or KeyErrors from its position-embedding resizing and key conversion.
MISMATCH_ERRORS = (RuntimeError, AssertionError, KeyError)


@dataclass
class ModelInfo:
    spec: str  # the spec as given
    kind: str  # builtin, pretrained, weights, checkpoint or hf-hub
    arch: str  # open_clip config name
    model_cfg: dict[str, Any]  # the open_clip model config the model was built from
    preprocess_cfg: dict[str, Any]  # open_clip PreprocessCfg fields (size, mean, std, ...)
    provenance: dict[str, Any] = field(default_factory=dict)  # checkpoint.json, if any


@dataclass
class LoadedModel:
    model: torch.nn.Module  # an open_clip CLIP / CustomTextCLIP, on the CPU, in eval mode
    preprocess: Callable  # PIL image -> normalised tensor, for inference
    tokenizer: Callable  # list[str] -> LongTensor (N, context_length)
    info: ModelInfo


def create_model_and_transforms(spec: str | ModelSpec) -> LoadedModel:
    """Build the model a spec names, on the CPU.

    >>> loaded = create_model_and_transforms("tiny-random")
    >>> loaded.tokenizer(["a red square"]).shape
    torch.Size([1, 32])
    """
    spec = parse_model_spec(spec) if isinstance(spec, str) else spec
    register_builtin_configs()
    _quiet_transformers()
    builders = {
        "builtin": _create_builtin,
        "pretrained": _create_pretrained,
        "weights": _create_from_weights_file,
        "checkpoint": _create_from_checkpoint,
        "hf-hub": _create_from_hub,
    }
    model, tokenizer, info = builders[spec.kind](spec)
    model.eval()
    info.preprocess_cfg = dict(model.visual.preprocess_cfg)
    preprocess = image_transform_v2(PreprocessCfg(**info.preprocess_cfg), is_train=False)
    return LoadedModel(model, preprocess, tokenizer, info)


def _create_builtin(spec: ModelSpec):
    builtin = BUILTIN_MODELS[spec.arch]
    model_cfg = copy.deepcopy(open_clip.get_model_config(builtin.config_name))
    kwargs: dict[str, Any] = {}
    if builtin.minilm_text:
        text_path = str(towers.minilm_path())
        model_cfg["text_cfg"].update(
            hf_model_name=text_path, hf_tokenizer_name=text_path, hf_model_pretrained=True
        )
        kwargs["text_cfg"] = model_cfg["text_cfg"]
    # Seed the new parts (projection heads, tiny towers) so a built-in model is reproducible.
    with torch.random.fork_rng(devices=[]), _root_log_level(logging.ERROR):
        # open_clip warns that no CLIP weights were loaded: expected, the towers load below.
        torch.manual_seed(builtin.seed)
        model = open_clip.create_model(
            builtin.config_name, force_preprocess_cfg=builtin.preprocess, **kwargs
        )
    if builtin.efficientnet_lite is not None:
        towers.load_efficientnet_lite(
            model.visual.trunk, builtin.efficientnet_lite, with_classifier=False
        )
    provenance = {}
    if builtin.shipped is not None:
        provenance = shipped.load_shipped_weights(model, builtin.shipped)
    tokenizer = _tokenizer_for(model_cfg, fallback=builtin.config_name)
    info = ModelInfo(spec.text, spec.kind, builtin.config_name, model_cfg, {}, provenance)
    return model, tokenizer, info


def _create_pretrained(spec: ModelSpec):
    try:
        with _hub_access():
            model = open_clip.create_model(spec.arch, pretrained=spec.source)
            tokenizer = open_clip.get_tokenizer(spec.arch)
    except Exception as err:  # open_clip and huggingface_hub raise many kinds here
        if _is_fetch_error(err):
            raise RuntimeError(
                f"could not fetch the pretrained weights {spec.arch}:{spec.source} from the "
                f"model hub (no network?); {OFFLINE_CHOICES}"
            ) from err
        raise
    model_cfg = copy.deepcopy(open_clip.get_model_config(spec.arch))
    info = ModelInfo(spec.text, spec.kind, spec.arch, model_cfg, {})
    return model, tokenizer, info


def _create_from_weights_file(spec: ModelSpec):
    try:
        model = open_clip.create_model(spec.arch, pretrained=spec.source)
    except MISMATCH_ERRORS as err:
        raise ValueError(
            f"weights file {spec.source} does not match architecture {spec.arch}: "
            f"{_first_line(err)}"
        ) from err
    model_cfg = copy.deepcopy(open_clip.get_model_config(spec.arch))
    tokenizer = _tokenizer_for(model_cfg, fallback=spec.arch)
    info = ModelInfo(spec.text, spec.kind, spec.arch, model_cfg, {})
    return model, tokenizer, info


def _create_from_checkpoint(spec: ModelSpec):
    model_cfg, _, provenance = checkpoint.read_checkpoint(spec.source)
    try:
        model = open_clip.create_model(
            f"local-dir:{spec.source}",
            text_cfg=model_cfg["text_cfg"],
            vision_cfg=model_cfg["vision_cfg"],
        )
    except MISMATCH_ERRORS as err:
        raise ValueError(
            f"checkpoint {spec.source} does not match its own config "
            f"(corrupt or edited?): {_first_line(err)}"
        ) from err
    arch = provenance.get("arch", os.path.basename(spec.source))
    tokenizer = _tokenizer_for(model_cfg, fallback=arch)
    info = ModelInfo(spec.text, spec.kind, arch, model_cfg, {}, provenance)
    return model, tokenizer, info


def _create_from_hub(spec: ModelSpec):
    name = f"hf-hub:{spec.source}"
    try:
        with _hub_access():
            model = open_clip.create_model(name)
            tokenizer = open_clip.get_tokenizer(name)
            model_cfg = copy.deepcopy(open_clip.get_model_config(name))
    except Exception as err:
        if _is_fetch_error(err):
            raise RuntimeError(
                f"could not fetch {name} from the model hub (no network?); {OFFLINE_CHOICES}"
            ) from err
        raise
    info = ModelInfo(spec.text, spec.kind, spec.source.replace("/", "-"), model_cfg, {})
    return model, tokenizer, info


def _tokenizer_for(model_cfg: dict, fallback: str):
    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=text_cfg["context_length"])
    return open_clip.get_tokenizer(fallback, context_length=text_cfg.get("context_length"))


def _is_fetch_error(err: BaseException) -> bool:
    """True when ``err`` (or what caused it) says the hub could not be reached."""
    markers = ("download", "connect", "offline", "resolve", "network", "hub", "timed out")
    while err is not None:
        text = f"{type(err).__name__} {err}".lower()
        if any(marker in text for marker in markers):
            return True
        err = err.__cause__ or err.__context__
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else f"{type(err).__name__} while loading the weights"


@contextlib.contextmanager
def _hub_access(timeout: float = 3.0):
    """Model-hub downloads that fail fast: when the hub cannot be reached, huggingface_hub
    works from its local cache only (cached weights still load) instead of retrying for a
    minute, and its retry warnings and open_clip's error log stay quiet (we raise one line)."""
    from huggingface_hub import constants as hub

    previous = hub.HF_HUB_OFFLINE
    if not previous and not _reachable(hub.ENDPOINT, timeout):
        hub.HF_HUB_OFFLINE = True
    try:
        with _log_level("huggingface_hub", logging.ERROR), _root_log_level(logging.CRITICAL):
            yield
    finally:
        hub.HF_HUB_OFFLINE = previous


def _reachable(url: str, timeout: float) -> bool:
    parsed = urllib.parse.urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _log_level(name: str, level: int):
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _root_log_level(level: int):
    return _log_level("", level)


def _quiet_transformers() -> None:
    # Loading MiniLM without its pooler logs a long "unused weights" report; it is expected.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
