"""Test-time augmentation: a photo's embedding is the mean of its views, the same for its mirror
image, and the flag reaches the commands that embed photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_recipes5k
from PIL import Image, ImageDraw

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from multimodal.cli import main as cli
from multimodal.data.readers import read_records
from multimodal.encoder import load_encoder, model_stamp
from multimodal.tta import VIEWS
from ui.commands.demo import build_parser as demo_parser
from ui.commands.serve import build_parser as serve_parser
from ui.commands.serve import serve

MIRROR = Image.Transpose.FLIP_LEFT_RIGHT


@pytest.fixture(scope="module")
def encoders():
    """The tiny random model twice: plain, and with TTA."""
    return load_encoder("tiny-random", device="cpu"), load_encoder("tiny-random", "cpu", tta=True)


def lopsided_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Noise with a bright block near the left edge: nothing about it is mirror-symmetric."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    ImageDraw.Draw(image).rectangle((width // 10, height // 5, width // 3, height // 2), "yellow")
    return image


def naive_views(photo: Image.Image, zoomed_size: tuple[int, int]) -> list[Image.Image]:
    """The four views made with PIL alone, for the tiny model's 32-pixel input: the photo
    resized to 32 on its short side and centre-cropped, that mirrored, and the left and the
    mirrored right 32-pixel crop of the centre square of the photo resized to 37 (32 * 8/7)."""
    plain = photo.resize(_short_side(photo, 32), Image.Resampling.BICUBIC)
    plain = plain.crop(_centred(plain.size, 32, 32))
    zoomed = photo.resize(zoomed_size, Image.Resampling.BICUBIC)
    square = zoomed.crop(_centred(zoomed.size, 37, 37))
    top = (37 - 32) // 2
    left = square.crop((0, top, 32, top + 32))
    right = square.crop((37 - 32, top, 37, top + 32))
    return [plain, plain.transpose(MIRROR), left, right.transpose(MIRROR)]


def _short_side(photo: Image.Image, side: int) -> tuple[int, int]:
    width, height = photo.size
    scale = side / min(width, height)
    return round(width * scale), round(height * scale)


def _centred(size: tuple[int, int], width: int, height: int) -> tuple[int, int, int, int]:
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return left, top, left + width, top + height


# Sizes whose every crop has an even margin, so each step can be done by hand exactly: a
# square, and a 3:1 strip (32 x 96 then 37 x 111 after resizing).
PHOTOS = {"square": ((64, 64), (37, 37)), "strip": ((150, 50), (111, 37))}


@pytest.mark.parametrize("shape", sorted(PHOTOS))
def test_tta_embedding_is_the_renormalised_mean_of_the_views_made_by_hand(encoders, shape):
    plain, tta = encoders
    size, zoomed_size = PHOTOS[shape]
    photo = lopsided_photo(*size)
    views = naive_views(photo, zoomed_size)
    assert len(views) == VIEWS
    per_view = plain.encode_images(views)  # each view is already 32 x 32: preprocess keeps it
    mean = per_view.mean(axis=0)
    expected = mean / np.linalg.norm(mean)
    got = tta.encode_images([photo])[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("shape", sorted(PHOTOS))
def test_a_mirrored_photo_gets_the_same_tta_embedding(encoders, shape):
    plain, tta = encoders
    photo = lopsided_photo(*PHOTOS[shape][0], seed=1)
    mirrored = photo.transpose(MIRROR)
    # The random tower does tell a photo from its mirror image; the averaged views do not.
    apart = plain.encode_images([photo, mirrored])
    assert float(apart[0] @ apart[1]) < 0.9999
    together = tta.encode_images([photo, mirrored])
    np.testing.assert_allclose(together[0], together[1], atol=1e-5)


def test_views_are_stacked_per_photo_and_batches_mix_photos_correctly(encoders):
    plain, tta = encoders
    photos = [lopsided_photo(64, 64, seed) for seed in range(5)]
    assert tta.preprocess(photos[0]).shape == (VIEWS, 3, 32, 32)
    one_by_one = np.stack([tta.encode_images([photo])[0] for photo in photos])
    np.testing.assert_allclose(tta.encode_images(photos, batch_size=2), one_by_one, atol=1e-5)
    # The text tower is the same with or without TTA.
    texts = ["a red square", "a green circle"]
    np.testing.assert_array_equal(tta.encode_texts(texts), plain.encode_texts(texts))
    assert model_stamp(tta)["tta"] is True and model_stamp(plain)["tta"] is False


def test_embed_with_tta_writes_the_averaged_photo_vectors(recipes5k_folder, tmp_path, encoders):
    out = tmp_path / "emb"
    args = ["embed", "--model", "tiny-random", "--data", str(recipes5k_folder), "--split", "val"]
    assert cli([*args, "--out", str(out), "--tta", "--no-progress", "--device", "cpu"]) == 0
    summary = json.loads((out / "embed.json").read_text())
    assert summary["tta"] is True
    rows = np.load(out / "img_emb" / "img_emb_0000.npy")
    paths = [record.image for record in read_records(recipes5k_folder, "val")]  # rows' order
    expected = encoders[1].encode_images([Image.open(p).convert("RGB") for p in paths])
    np.testing.assert_allclose(rows, expected, atol=1e-5)
    # The same folder without --tta would mix two kinds of vectors: refused.
    assert cli([*args, "--out", str(out), "--no-progress", "--device", "cpu"]) == 2


def test_an_index_run_records_whether_photos_had_tta(recipes5k_folder, tmp_path, capsys):
    store = tmp_path / "store"
    common = ["--model", "tiny-random", "--collection", "dishes", "--store", str(store)]
    run = [*common, "--data", str(recipes5k_folder), "--no-progress", "--device", "cpu"]
    assert cli(["index", *run, "--split", "train", "--tta"]) == 0
    assert _recorded(store) is True
    assert cli(["index", *run, "--split", "train"]) == 0  # nothing new to embed: unchanged
    assert _recorded(store) is True
    assert cli(["index", *run, "--split", "val"]) == 0  # new photos, embedded without TTA
    assert _recorded(store) == "mixed"
    assert "indexed 0" not in capsys.readouterr().out.splitlines()[-1]
    # A photo query with TTA searches the same collection: both kinds share one space.
    photo = next((recipes5k_folder / "images").rglob("*.jpg"))
    query = ["search", "--image", str(photo), "--target", "text", "--tta", "--json"]
    assert cli([*query, "--collection", "dishes", "--store", str(store), "-k", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_eval_with_tta_says_so(recipes5k_folder, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", "--model", "tiny-random", "--data", str(recipes5k_folder), "--split", "val"]
    assert cli([*args, "--tta", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert json.loads(out.read_text())["tta"] is True


class StubPage:
    """What ``serve`` needs of launched Gradio blocks: it returns at once."""

    local_url = "http://127.0.0.1:0/"

    def block_thread(self):
        pass

    def close(self):
        pass


def test_the_page_embeds_photo_queries_with_tta(tmp_path, monkeypatch, encoders):
    plain, tta = encoders
    root = write_recipes5k(tmp_path / "r5k")
    launched = {}

    def launch(app, *_, **__):
        launched["app"] = app
        return StubPage()

    monkeypatch.setattr("ui.app.launch", launch)
    monkeypatch.setattr("signal.signal", lambda *_: None)  # serve's SIGTERM handler
    with EdgeStore(tmp_path / "store") as store:
        index_records(plain, store, "dishes", read_records(root), workers=0, progress=False)
        args = serve_parser().parse_args(["--collection", "dishes", "--tta", "--no-compile"])
        assert serve(store, "dishes", None, args, encoder=plain) == 0  # as the demo calls it
        searcher = launched["app"].searcher
        assert searcher.encoder.tta and searcher.encoder.model is plain.model  # loaded once
        photo = lopsided_photo(64, 64)
        vector, _ = searcher.query_vector(photo)
        np.testing.assert_allclose(vector, tta.encode_images([photo])[0], atol=1e-5)
    # on by default for query photos, --no-tta turns it off; so is the compiled image tower
    assert demo_parser().parse_args([]).tta and not demo_parser().parse_args(["--no-tta"]).tta
    assert demo_parser().parse_args([]).compile
    assert not demo_parser().parse_args(["--no-compile"]).compile


def _recorded(store: Path):
    with EdgeStore(store) as opened:
        return opened.metadata("dishes")["model"]["tta"]
