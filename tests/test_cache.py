"""The cached-feature path: split towers equal the full towers; cached training resumes."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from conftest import draw_image

from multimodal.checkpoint import save_checkpoint
from multimodal.data.records import Record
from multimodal.factory import create_model_and_transforms
from multimodal.training.cache import ImageSplit, TextSplit
from multimodal.training.config import TrainConfig
from multimodal.training.data import build_train_set
from multimodal.training.trainer import Trainer

TINY_LITE = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 64,
        "timm_model_name": "tf_efficientnet_lite0",
        "timm_model_pretrained": False,
        "timm_pool": "avg",
        "timm_proj": "linear",
    },
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.mark.slow
@pytest.mark.parametrize("unlocked_groups", [0, 1, 3])
def test_image_split_equals_the_full_tower(starter_encoder, unlocked_groups):
    visual = starter_encoder.model.visual.eval()
    split = ImageSplit(visual, unlocked_groups)
    pixels = torch.randn(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = visual(pixels)
        got = split.suffix(split.prefix(pixels))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert len(split.trainable_blocks) == max(0, unlocked_groups - 1)


@pytest.mark.slow
def test_text_split_equals_the_full_tower(starter_encoder):
    text = starter_encoder.model.text.eval()
    tokens = starter_encoder.tokenizer(["apple pie", "beef tacos with salsa and lime"])
    split = TextSplit(text)
    with torch.no_grad():
        torch.testing.assert_close(
            split.suffix(split.prefix(tokens)), text(tokens), atol=1e-5, rtol=1e-5
        )


def _tiny_lite_checkpoint(folder):
    config_path = folder / "tiny-lite.json"
    config_path.write_text(json.dumps(TINY_LITE))
    open_clip.add_model_config(config_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model("tiny-lite")
    tokenizer = open_clip.get_tokenizer("tiny-lite")
    return save_checkpoint(
        folder / "tiny-lite-ckpt",
        model,
        arch="tiny-lite",
        model_cfg=TINY_LITE,
        preprocess_cfg=dict(model.visual.preprocess_cfg),
        tokenizer=tokenizer,
    )


def _records(folder, n):
    colours, shapes = ["red", "green", "blue"], ["square", "circle", "triangle"]
    return [
        Record(
            image=draw_image(folder / f"{i}.png", colours[i % 3], shapes[(i // 3) % 3]),
            title=f"a {colours[i % 3]} {shapes[(i // 3) % 3]}",
            recipe_id=str(i),
            label=shapes[(i // 3) % 3],
        )
        for i in range(n)
    ]


def _trainer(spec, out, train, val, on_step=None):
    config = TrainConfig(
        model=spec,
        data="",
        out=str(out),
        epochs=3,
        batch_size=6,
        workers=0,
        warmup_steps=2,
        unlock_image_groups=2,
        cache_views=2,
        hard_negatives=1,
        warmup_epochs=1,
        patience=0,
        lr=1e-2,
        backbone_lr=1e-3,
        feature_cache=str(out.parent / "features"),
    )
    loaded = create_model_and_transforms(spec)
    return Trainer(
        config,
        loaded,
        build_train_set(train, loaded.tokenizer),
        val,
        on_step=on_step,
        progress=False,
    )


def test_cached_training_uses_the_cache_and_resumes_exactly(tmp_path):
    spec = str(_tiny_lite_checkpoint(tmp_path))
    train, val = _records(tmp_path / "train", 18), _records(tmp_path / "val", 9)

    straight = _trainer(spec, tmp_path / "a", train, val)
    state = straight.run()
    assert straight.features.cache["train_images"].shape[:2] == (2, 18)  # 2 views of 18 photos
    assert straight.data.hard_texts is not None and len(state.history) == 3

    def interrupt(trainer):
        if trainer.state.step == 4:
            raise KeyboardInterrupt

    # the second run loads the features the first one cached
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1
    with pytest.raises(KeyboardInterrupt):
        _trainer(spec, tmp_path / "b", train, val, on_step=interrupt).run()
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1
    resumed = _trainer(spec, tmp_path / "b", train, val)
    resumed.load_state()
    resumed.run()
    expected, got = straight.model.state_dict(), resumed.model.state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
