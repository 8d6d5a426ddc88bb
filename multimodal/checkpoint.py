"""The project's checkpoint folder: open_clip's ``local-dir`` format plus provenance.

A folder holds
- ``open_clip_config.json``: ``{"model_cfg": ..., "preprocess_cfg": ...}`` as open_clip reads it,
- ``open_clip_model.safetensors``: the full model state dict,
- ``<arch>.json``: the bare model config, for ``open_clip.add_model_config(folder)``,
- for a Hugging Face text tower, its ``config.json`` and tokenizer files,
- ``checkpoint.json``: how it was made (base model, command, data, metrics, weights hash).

So plain open_clip loads it with ``create_model_and_transforms("local-dir:FOLDER")``, or with
``add_model_config(FOLDER)`` and ``create_model_and_transforms(arch, pretrained=WEIGHTS)``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

CHECKPOINT_FORMAT = "recipe-search-checkpoint/1"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
PROVENANCE_FILE = "checkpoint.json"


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    *,
    arch: str,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    tokenizer: Any,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically: a reader sees the old folder or the new one."""
    final = Path(folder).resolve()
    staging = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)

    model_cfg = _with_local_text_tower(model_cfg, final)
    if "hf_model_name" in model_cfg.get("text_cfg", {}):
        model.text.config.save_pretrained(staging)
        tokenizer.tokenizer.save_pretrained(staging)

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, staging / WEIGHTS_FILE)
    _write_json(staging / CONFIG_FILE, {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    _write_json(staging / f"{arch}.json", model_cfg)
    _write_json(
        staging / PROVENANCE_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "weights_sha256": file_sha256(staging / WEIGHTS_FILE),
            **(provenance or {}),
        },
    )
    _swap_into_place(staging, final)
    return final


def read_checkpoint(folder: str | Path) -> tuple[dict, dict, dict]:
    """``(model_cfg, preprocess_cfg, provenance)`` of a checkpoint folder, text-tower paths fixed
    to where the folder is now (it may have been moved since it was saved)."""
    folder = Path(folder).resolve()
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        model_cfg = config["model_cfg"]
    except (OSError, json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{folder / CONFIG_FILE} is not a valid open_clip config: {err}") from err
    if not (folder / WEIGHTS_FILE).is_file():
        raise ValueError(f"checkpoint folder {folder} has no {WEIGHTS_FILE}")
    provenance_path = folder / PROVENANCE_FILE
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    return _with_local_text_tower(model_cfg, folder), config.get("preprocess_cfg", {}), provenance


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _with_local_text_tower(model_cfg: dict, folder: Path) -> dict:
    """Point a Hugging Face text tower at the config and tokenizer saved inside ``folder``."""
    model_cfg = copy.deepcopy(model_cfg)
    text_cfg = model_cfg.get("text_cfg", {})
    if "hf_model_name" in text_cfg:
        text_cfg["hf_model_name"] = str(folder)
        text_cfg["hf_tokenizer_name"] = str(folder)
        text_cfg["hf_model_pretrained"] = False  # the weights are in the state dict
    return model_cfg


def _swap_into_place(staging: Path, final: Path) -> None:
    previous = final.with_name(f".{final.name}.previous-{os.getpid()}")
    if final.exists():
        final.rename(previous)
    staging.rename(final)
    shutil.rmtree(previous, ignore_errors=True)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
