"""The model that ships with the package (``--model recipe``) and ``multimodal export``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import RECIPES5K

from multimodal import shipped
from multimodal.builtin import BUILTIN_MODELS, SHIPPED_DIR
from multimodal.checkpoint import save_checkpoint
from multimodal.commands import eval as eval_command
from multimodal.commands import export as export_command
from multimodal.encoder import load_encoder
from multimodal.factory import create_model_and_transforms

RECIPE = SHIPPED_DIR / "recipe"
TOLERANCE = 0.5  # points a recorded figure may move on another machine


def test_the_recipe_model_ships_small_with_its_provenance():
    assert "recipe" in BUILTIN_MODELS
    weights = RECIPE / shipped.WEIGHTS_FILE
    assert weights.stat().st_size <= 30 * 2**20
    provenance = json.loads((RECIPE / shipped.PROVENANCE_FILE).read_text())
    assert provenance["weights_sha256"] == shipped.file_sha256(weights)
    assert provenance["train_command"].startswith("multimodal train --model recipe-starter")
    assert provenance["data"]["annotations_sha256"] and provenance["data"]["train_split"]
    assert provenance["metrics"]["split"] == "val"


@pytest.mark.slow
def test_the_shipped_model_gives_its_reference_embeddings():
    encoder = load_encoder("recipe", device="cpu")
    photos, texts, photo_embeddings, text_embeddings = shipped.read_reference(RECIPE)
    np.testing.assert_allclose(encoder.encode_images(photos), photo_embeddings, atol=2e-4)
    np.testing.assert_allclose(encoder.encode_texts(texts), text_embeddings, atol=2e-4)
    assert encoder.info.provenance["weights_sha256"]  # what an index stamps


@pytest.mark.slow
@pytest.mark.skipif(not RECIPES5K.is_dir(), reason="real Recipes5k not beside the repository")
def test_the_shipped_model_keeps_its_recorded_val_figures(tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["--model", "recipe", "--data", str(RECIPES5K), "--split", "val", "--no-progress"]
    assert eval_command.main([*argv, "--out", str(out)]) == 0
    print(capsys.readouterr().out)  # the table, in CI's log
    result = json.loads(out.read_text())
    measured = {**result["metrics"], "user": result["user"]}
    recorded = json.loads((RECIPE / shipped.PROVENANCE_FILE).read_text())["metrics"]
    assert _figures(measured) == pytest.approx(_figures(recorded), abs=TOLERANCE)


def _figures(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a metrics dict (nested), by its path; the split name left out."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_figures(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


@pytest.mark.slow
def test_export_halves_the_weights_and_references_the_unchanged_text_tower(tmp_path):
    loaded = create_model_and_transforms("recipe-starter")
    with torch.no_grad():  # a "trained" model: the heads moved, the text transformer did not
        loaded.model.visual.head.proj.weight.mul_(1.5)
    folder = save_checkpoint(
        tmp_path / "best",
        loaded.model,
        arch="recipe-starter",
        model_cfg=loaded.info.model_cfg,
        preprocess_cfg=loaded.info.preprocess_cfg,
        tokenizer=loaded.tokenizer,
        provenance={"base_model": "recipe-starter", "train_config": {"model": "recipe-starter"}},
    )
    out = tmp_path / "shipped"
    assert export_command.main(["--model", str(folder), "--out", str(out)]) == 0

    provenance = json.loads((out / shipped.PROVENANCE_FILE).read_text())
    assert "unchanged: referenced" in provenance["text_tower"]
    state = shipped.load_file(out / shipped.WEIGHTS_FILE)
    assert not any(k.startswith(shipped.TEXT_TOWER_PREFIX) for k in state)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    # Loaded over the base starter, it is the trained model up to half precision.
    model = create_model_and_transforms("recipe-starter").model
    shipped.load_shipped_weights(model, out)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval().encode_image(pixels, normalize=True),
            loaded.model.eval().encode_image(pixels, normalize=True),
            atol=5e-3,
            rtol=0,
        )


def test_export_refuses_what_it_cannot_ship(tmp_path, capsys):
    assert export_command.main(["--model", "tiny-random", "--out", str(tmp_path / "x")]) == 2
    assert "must be a checkpoint folder" in capsys.readouterr().err


@pytest.mark.slow
def test_export_never_replaces_a_folder_that_is_not_a_shipped_model(tmp_path, capsys):
    loaded = create_model_and_transforms("recipe-starter")
    folder = save_checkpoint(
        tmp_path / "best",
        loaded.model,
        arch="recipe-starter",
        model_cfg=loaded.info.model_cfg,
        preprocess_cfg=loaded.info.preprocess_cfg,
        tokenizer=loaded.tokenizer,
        provenance={"base_model": "recipe-starter", "train_config": {}},
    )
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "dinner.jpg").write_bytes(b"not really a photo")
    assert export_command.main(["--model", str(folder), "--out", str(precious)]) == 2
    assert "is not a shipped model folder" in capsys.readouterr().err
    assert (precious / "dinner.jpg").read_bytes() == b"not really a photo"
