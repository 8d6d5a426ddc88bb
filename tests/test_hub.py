"""open_clip's real model-hub loading, without a network: an unreachable hub fails fast with
one line, and weights already in the local hub cache still load (through hf_hub_download)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from multimodal.checkpoint import save_checkpoint
from multimodal.encoder import DualEncoder
from multimodal.factory import create_model_and_transforms

# A closed loopback port: connections are refused at once, nothing leaves the machine.
UNREACHABLE_HUB = "http://127.0.0.1:9"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _run(code: str, hub_cache, tmp_path) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(
        HF_ENDPOINT=UNREACHABLE_HUB, HF_HUB_CACHE=str(hub_cache), HF_HOME=str(tmp_path / "hf")
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )


def _without_offline_flags() -> dict:
    return {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }


@pytest.mark.slow
def test_unreachable_hub_is_one_line(recipes5k_folder, tmp_path):
    data = str(recipes5k_folder)
    result = subprocess.run(
        [sys.executable, "-m", "multimodal", "eval", "--model", "RN50:openai", "--data", data],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
            "HF_ENDPOINT": UNREACHABLE_HUB,
            "HF_HOME": str(tmp_path / "hf"),
        },
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "multimodal eval: error: could not fetch the pretrained weights RN50:openai from the "
        "model hub (no network?); offline choices: recipe-starter (packaged pretrained towers), "
        "a checkpoint folder made by `multimodal train`, or ARCH:/path/to/weights.pt"
    ]


@pytest.mark.slow
def test_hub_model_loads_from_the_local_cache_when_the_hub_is_unreachable(tmp_path):
    loaded = create_model_and_transforms("tiny-random")
    snapshot = tmp_path / "cache" / "models--testorg--tiny-clip" / "snapshots" / COMMIT
    save_checkpoint(
        snapshot,
        loaded.model,
        arch="tiny-random",
        model_cfg=loaded.info.model_cfg,
        preprocess_cfg=loaded.info.preprocess_cfg,
        tokenizer=loaded.tokenizer,
    )
    refs = tmp_path / "cache" / "models--testorg--tiny-clip" / "refs"
    refs.mkdir()
    (refs / "main").write_text(COMMIT)
    expected = DualEncoder(loaded, "cpu").encode_texts(["red"])
    np.save(tmp_path / "expected.npy", expected)

    code = (
        "import numpy as np\n"
        "from multimodal.encoder import load_encoder\n"
        "e = load_encoder('hf-hub:testorg/tiny-clip', device='cpu')\n"
        f"np.testing.assert_allclose(e.encode_texts(['red']), np.load(r'{tmp_path}/expected.npy'),"
        " atol=1e-6)\n"
        "print('loaded', e.info.kind)\n"
    )
    result = _run(code, tmp_path / "cache", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "loaded hf-hub" in result.stdout
