"""Every model-spec form, the encoder contract, and checkpoints that plain open_clip loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import open_clip
import pytest
import torch
from conftest import draw_image
from PIL import Image

from multimodal.checkpoint import WEIGHTS_FILE, save_checkpoint
from multimodal.encoder import DualEncoder, load_encoder
from multimodal.factory import create_model_and_transforms
from multimodal.spec import parse_model_spec

TEXTS = ["a red square", "a blue circle", "green triangle cake with flour and sugar"]


def _images(tmp_path):
    return [
        Image.open(draw_image(tmp_path / f"{c}.png", c, s))
        for c, s in [("red", "square"), ("blue", "circle"), ("green", "triangle")]
    ]


def _save(loaded, folder):
    return save_checkpoint(
        folder,
        loaded.model,
        arch=loaded.info.arch,
        model_cfg=loaded.info.model_cfg,
        preprocess_cfg=loaded.info.preprocess_cfg,
        tokenizer=loaded.tokenizer,
        provenance={"base_model": loaded.info.spec},
    )


def _plain_open_clip_embeddings(model, preprocess, tokenizer, images, texts):
    with torch.no_grad():
        image = model.encode_image(torch.stack([preprocess(i) for i in images]), normalize=True)
        text = model.encode_text(tokenizer(texts), normalize=True)
    return image.numpy(), text.numpy()


def test_encoder_outputs_are_normalised_float32(tiny_encoder, tmp_path):
    images = _images(tmp_path)
    image_embeddings = tiny_encoder.encode_images(images)
    text_embeddings = tiny_encoder.encode_texts(TEXTS)
    for embeddings in (image_embeddings, text_embeddings):
        assert embeddings.dtype == np.float32 and embeddings.shape == (3, tiny_encoder.embed_dim)
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert tiny_encoder.context_length == 32
    assert tiny_encoder.encode_texts([]).shape == (0, 32)
    assert tiny_encoder.encode_images([]).shape == (0, 32)


def test_batching_does_not_change_embeddings(tiny_encoder, tmp_path):
    images = _images(tmp_path)
    np.testing.assert_allclose(
        tiny_encoder.encode_images(images, batch_size=1),
        tiny_encoder.encode_images(images, batch_size=64),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        tiny_encoder.encode_texts(TEXTS, batch_size=1),
        tiny_encoder.encode_texts(TEXTS, batch_size=64),
        atol=1e-5,
    )


def test_builtin_models_are_reproducible():
    first = load_encoder("tiny-random", device="cpu").encode_texts(TEXTS)
    second = load_encoder("tiny-random", device="cpu").encode_texts(TEXTS)
    np.testing.assert_array_equal(first, second)


@pytest.mark.slow
def test_starter_model_contract(starter_encoder, tmp_path):
    assert starter_encoder.context_length == 128
    assert starter_encoder.embed_dim == 512 and starter_encoder.image_size == 224
    embeddings = starter_encoder.encode_images(_images(tmp_path))
    assert embeddings.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_low_precision_on_cpu_is_refused():
    loaded = create_model_and_transforms("tiny-random")
    with pytest.raises(ValueError, match="needs a GPU"):
        DualEncoder(loaded, device="cpu", precision="bf16")


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("recipe-starter", "builtin"),
        ("ViT-B-32:laion2b_s34b_b79k", "pretrained"),
        ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "hf-hub"),
    ],
)
def test_spec_kinds(spec, kind):
    assert parse_model_spec(spec).kind == kind


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty model spec"),
        ("ViT-B-32", "needs weights: add a pretrained tag"),
        ("ViT-B-32:no-such-tag", "has no pretrained tag 'no-such-tag'"),
        ("No-Such-Arch:openai", "unknown open_clip architecture"),
        ("ViT-B-32:/nowhere/weights.pt", "weights file not found"),
        ("./no/such/folder", "no checkpoint folder"),
        ("nonsense", "unknown model"),
    ],
)
def test_bad_specs_name_the_fix(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_model_spec(spec)


def test_pretrained_tag_offline_is_one_clear_error():
    with pytest.raises(RuntimeError) as info:
        load_encoder("RN50:openai", device="cpu")
    message = str(info.value)
    assert "could not fetch the pretrained weights RN50:openai" in message
    assert "recipe-starter" in message and "checkpoint folder" in message


def test_local_weights_file(tmp_path, tiny_encoder):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_encoder.model.state_dict(), path)
    encoder = load_encoder(f"tiny-random:{path}", device="cpu")
    assert encoder.info.kind == "weights"
    np.testing.assert_allclose(
        encoder.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS), atol=1e-6
    )


def test_weights_file_of_another_architecture_is_refused(tmp_path, tiny_encoder):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_encoder.model.state_dict(), path)
    with pytest.raises(ValueError, match="does not match architecture RN50"):
        load_encoder(f"RN50:{path}", device="cpu")


@pytest.mark.parametrize(
    "spec", ["tiny-random", pytest.param("recipe-starter", marks=pytest.mark.slow)]
)
def test_checkpoint_round_trip_and_plain_open_clip(spec, tmp_path):
    loaded = create_model_and_transforms(spec)
    encoder = DualEncoder(loaded, device="cpu")
    images = _images(tmp_path)
    expected_images, expected_texts = encoder.encode_images(images), encoder.encode_texts(TEXTS)
    folder = _save(loaded, tmp_path / "ckpt")

    # 1. the project's loader, also after the folder moved
    moved = shutil.move(folder, tmp_path / "moved")
    again = load_encoder(str(moved), device="cpu")
    assert again.info.kind == "checkpoint" and again.info.arch == loaded.info.arch
    assert again.info.provenance["base_model"] == spec
    np.testing.assert_allclose(again.encode_images(images), expected_images, atol=1e-5)
    np.testing.assert_allclose(again.encode_texts(TEXTS), expected_texts, atol=1e-5)
    folder = shutil.move(moved, folder)

    # 2. plain open_clip: register the config, then pretrained=weights file. A bare model
    # config cannot carry the image normalisation, so it comes from open_clip_config.json.
    preprocess_cfg = json.loads((folder / "open_clip_config.json").read_text())["preprocess_cfg"]
    open_clip.add_model_config(folder)
    model, _, preprocess = open_clip.create_model_and_transforms(
        loaded.info.arch,
        pretrained=str(folder / WEIGHTS_FILE),
        image_mean=preprocess_cfg["mean"],
        image_std=preprocess_cfg["std"],
    )
    tokenizer = open_clip.get_tokenizer(loaded.info.arch)
    image, text = _plain_open_clip_embeddings(model.eval(), preprocess, tokenizer, images, TEXTS)
    np.testing.assert_allclose(image, expected_images, atol=1e-5)
    np.testing.assert_allclose(text, expected_texts, atol=1e-5)

    # 3. plain open_clip's local-dir schema
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    image, text = _plain_open_clip_embeddings(model.eval(), preprocess, tokenizer, images, TEXTS)
    np.testing.assert_allclose(image, expected_images, atol=1e-5)
    np.testing.assert_allclose(text, expected_texts, atol=1e-5)


def test_checkpoint_that_does_not_match_its_config_is_refused(tmp_path):
    folder = _save(create_model_and_transforms("tiny-random"), tmp_path / "ckpt")
    config_path = folder / "open_clip_config.json"
    config = json.loads(config_path.read_text())
    config["model_cfg"]["embed_dim"] = 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match its own config"):
        load_encoder(str(folder), device="cpu")


def test_folder_without_config_is_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a model checkpoint folder"):
        parse_model_spec(str(tmp_path / "empty"))


def test_saving_over_a_checkpoint_replaces_it_whole(tmp_path):
    loaded = create_model_and_transforms("tiny-random")
    folder = _save(loaded, tmp_path / "ckpt")
    with torch.no_grad():
        loaded.model.logit_scale.fill_(1.234)
    _save(loaded, folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no staging folders left
    reloaded = create_model_and_transforms(str(folder))
    assert reloaded.model.logit_scale.item() == pytest.approx(1.234)


@pytest.mark.slow
def test_length_sorted_text_batches_keep_input_order_and_values(starter_encoder):
    """The HF tower sorts texts by length and trims padding; results must not change."""
    assert starter_encoder.trim_padding and starter_encoder.channels_last
    texts = ["salt", "a very long recipe title " * 6, "apple pie", "", "beef tacos with salsa"]
    batched = starter_encoder.encode_texts(texts, batch_size=2)
    one_by_one = np.concatenate([starter_encoder.encode_texts([t], batch_size=1) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=2e-5)


def test_checkpoint_folder_under_home_is_found_from_python(tmp_path, monkeypatch, tiny_encoder):
    """A "~/..." spec from Python code, where no shell expanded the tilde."""
    monkeypatch.setenv("HOME", str(tmp_path))
    info = tiny_encoder.info
    save_checkpoint(
        tmp_path / "models" / "tiny",
        tiny_encoder.model,
        arch=info.arch,
        model_cfg=info.model_cfg,
        preprocess_cfg=info.preprocess_cfg,
        tokenizer=tiny_encoder.tokenizer,
        provenance={"made_by": "test"},
    )
    spec = parse_model_spec("~/models/tiny")
    assert spec.kind == "checkpoint" and spec.source == str(tmp_path / "models" / "tiny")
