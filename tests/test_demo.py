"""The demo: finding the data, downloading it (from an archive served on loopback), training
the recipe model on first use, and a second run that does nothing again."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import re
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import write_recipes5k

from multimodal.builtin import SHIPPED_DIR
from multimodal.cli import main as cli
from multimodal.data.download import DownloadError, fetch_dataset, unpack
from multimodal.data.recipes5k import find_recipes5k, recipes5k_root


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODAL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MULTIMODAL_RECIPES5K", raising=False)
    return tmp_path / "home"


@pytest.fixture
def loopback(tmp_path):
    """An HTTP server on 127.0.0.1 serving ``tmp_path / "www"``."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def zip_folder(folder: Path, archive: Path, inside: str = "Recipes5k") -> str:
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            bundle.write(path, f"{inside}/{path.relative_to(folder)}")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_checks_the_checksum_and_unpacks(tmp_path, loopback):
    www, url = loopback
    source = write_recipes5k(tmp_path / "source")
    checksum = zip_folder(source, www / "Recipes5k.zip")
    target = tmp_path / "datasets" / "recipes5k"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_dataset(f"{url}/Recipes5k.zip", target, recipes5k_root, "0" * 64, progress=False)
    assert not target.exists() and not list(target.parent.glob("*.archive*"))
    root = fetch_dataset(f"{url}/Recipes5k.zip", target, recipes5k_root, checksum, progress=False)
    assert root == target / "Recipes5k"
    assert sorted(p.name for p in (root / "annotations").iterdir()) == sorted(
        p.name for p in (source / "annotations").iterdir()
    )
    assert (target / "SHA256").read_text().startswith(checksum)
    with pytest.raises(DownloadError, match="cannot download"):
        fetch_dataset(f"{url}/missing.zip", tmp_path / "other", recipes5k_root, progress=False)


def test_unpack_refuses_paths_outside_the_target(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../outside.txt", "no")
    with pytest.raises(DownloadError, match="outside the target"):
        unpack(archive, tmp_path / "target")
    assert not (tmp_path / "outside.txt").exists()


def test_data_is_found_in_order(tmp_path, home, monkeypatch):
    first = write_recipes5k(tmp_path / "first")
    second = write_recipes5k(tmp_path / "second")
    monkeypatch.chdir(tmp_path)  # no ../shared copy from here
    assert find_recipes5k() is None
    monkeypatch.setenv("MULTIMODAL_RECIPES5K", str(second))
    assert find_recipes5k() == second
    assert find_recipes5k(str(first)) == first
    with pytest.raises(ValueError, match="not a Recipes5k folder"):
        find_recipes5k(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        find_recipes5k(str(tmp_path / "nope"))


def test_demo_downloads_when_nothing_is_local(tmp_path, home, loopback, monkeypatch, capsys):
    www, url = loopback
    checksum = zip_folder(write_recipes5k(tmp_path / "source"), www / "r5k.zip")
    monkeypatch.chdir(tmp_path)
    args = [
        "demo",
        "--model",
        "tiny-random",
        "--no-serve",
        "--no-progress",
        "--download-url",
        f"{url}/r5k.zip",
        "--sha256",
        checksum,
    ]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert f"data: {home / 'datasets' / 'recipes5k' / 'Recipes5k'}" in out
    assert re.search(r"indexed 12, unchanged 0, rejected 0", out), out


@pytest.mark.slow
def test_demo_uses_the_shipped_model_and_a_second_run_redoes_nothing(tmp_path, home, capsys):
    data = write_recipes5k(tmp_path / "r5k", per_split=6)
    older = home / "models" / "recipe"  # what an earlier release trained on first use
    (older / "best").mkdir(parents=True)
    (older / "best" / "checkpoint.json").write_text("{}")
    (older / "done").write_text("best epoch 10\n")
    assert cli(["demo", "--data", str(data), "--no-serve", "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "model: recipe (" in first and "Training" not in first
    assert "is no longer the default" in first  # the shipped model replaces it
    assert re.search(r"indexed 12, unchanged 0", first), first
    assert cli(["demo", "--data", str(data), "--no-serve", "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "Training" not in second
    assert re.search(r"indexed 0, unchanged 12, rejected 0, pruned 0; 12 points", second), second


@pytest.mark.slow
def test_demo_retrains_the_recipe_model_and_then_uses_it(tmp_path, home, capsys):
    data = write_recipes5k(tmp_path / "r5k", per_split=6)
    argv = ["demo", "--data", str(data), "--no-serve", "--no-progress"]
    assert cli([*argv, "--retrain", "--model", "recipe"]) == 2  # bad input
    assert "--retrain trains the demo's recipe model" in capsys.readouterr().err
    assert cli([*argv, "--retrain"]) == 0
    first = capsys.readouterr().out
    assert "Training the recipe model" in first and "recipe model trained" in first
    assert re.search(r"val R@1 image->text [\d.]+, text->image [\d.]+", first), first
    recorded = json.loads((SHIPPED_DIR / "recipe" / "checkpoint.json").read_text())
    config = json.loads((home / "models" / "recipe" / "train_config.json").read_text())
    for name in ("model", "class_loss", "ingredient_loss", "unlock_image_groups", "epochs"):
        assert config[name] == recorded["train_config"][name], name  # the shipped recipe
    assert cli(argv) == 0
    second = capsys.readouterr().out
    assert "the recipe model you trained again" in second and "Training" not in second
    shutil.rmtree(home / "feature-cache", ignore_errors=True)
