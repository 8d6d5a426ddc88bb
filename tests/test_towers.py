"""The packaged pretrained towers really are loaded, and the key mapping is exact."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw

from multimodal import towers

SIZES = {0: 224, 1: 240, 2: 260}


def _drawn_batch(size: int) -> torch.Tensor:
    """A drawn scene scaled as EfficientNet-Lite expects: (x - 127) / 128."""
    image = Image.new("RGB", (size, size), (250, 240, 220))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 30, size - 30, size - 20), fill=(200, 120, 30), outline=(90, 40, 10), width=6)
    draw.rectangle((size // 3, size // 3, size // 2, size // 2), fill=(40, 160, 60))
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)
    return ((pixels - 127.0) / 128.0).unsqueeze(0)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_mapped_timm_trunk_reproduces_original_imagenet_logits(variant):
    efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")
    path = str(towers.efficientnet_lite_weights(variant))
    original = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        f"efficientnet-lite{variant}", weights_path=path
    ).eval()
    trunk = timm.create_model(f"tf_efficientnet_lite{variant}").eval()
    towers.load_efficientnet_lite(trunk, variant, with_classifier=True)

    batch = _drawn_batch(SIZES[variant])
    with torch.no_grad():
        expected, got = original(batch), trunk(batch)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Real ImageNet weights are confident about something; random ones are not.
    assert torch.softmax(got, dim=1).max() > 0.05


@pytest.mark.slow
def test_every_source_key_maps_to_a_distinct_timm_key():
    trunk = timm.create_model("tf_efficientnet_lite0")
    source = torch.load(towers.efficientnet_lite_weights(0), map_location="cpu", weights_only=True)
    mapped = towers.map_efficientnet_lite_state_dict(source, trunk)
    assert set(mapped) == set(trunk.state_dict())
    for key, value in mapped.items():
        assert value.shape == trunk.state_dict()[key].shape, key


def test_unpackaged_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="choose 0, 1 or 2"):
        towers.efficientnet_lite_weights(4)


@pytest.mark.slow
def test_starter_image_trunk_holds_the_imagenet_weights(starter_encoder):
    trunk = starter_encoder.model.visual.trunk
    source = torch.load(towers.efficientnet_lite_weights(0), map_location="cpu", weights_only=True)
    torch.testing.assert_close(trunk.conv_stem.weight.cpu(), source["_conv_stem.weight"])
    torch.testing.assert_close(trunk.conv_head.weight.cpu(), source["_conv_head.weight"])


@pytest.mark.slow
def test_starter_text_tower_is_the_pretrained_minilm(starter_encoder):
    """Mean-pooled tower output equals sentence-transformers' own all-MiniLM-L6-v2 embedding
    (whose pipeline ends in a Normalize module, so both sides are compared normalised)."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(towers.minilm_path()), device="cpu")
    texts = ["Apple pie with cinnamon and butter", "beef tacos with salsa"]
    expected = reference.encode(texts, convert_to_tensor=True)

    text_tower = starter_encoder.model.text
    tokens = starter_encoder.tokenizer(texts)
    with torch.no_grad():
        mask = (tokens != text_tower.config.pad_token_id).long()
        hidden = text_tower.transformer(input_ids=tokens, attention_mask=mask)
        pooled = text_tower.pooler(hidden, mask)
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
    torch.testing.assert_close(pooled, expected.cpu(), rtol=1e-4, atol=1e-4)
