"""Issue 22 on the library and indexer side: phone photos (HEIC, AVIF) are read everywhere,
every file a folder holds is indexed or a reject with its reason, links never take a read
outside the data folder unless asked, the decoding workers die with a killed indexer, and an
index run against a busy store says so before it loads the model.

Real files drawn in the test, real embedded stores, the real command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import draw_image, index_args, kill_once_written, write_recipes5k
from PIL import Image

from indexer.edge import EdgeStore
from indexer.store import StoreError
from multimodal.cli import main as cli
from multimodal.data.folders import LINKS_OUTSIDE, list_folder
from multimodal.data.images import ImageLoadError, load_image
from multimodal.data.readers import read_records

SECRET = "host-secret-4711"


def save_photo(path: Path, format: str, colour=(200, 40, 40), size=(64, 48)) -> Path:
    """A flat-coloured photo in ``format`` (HEIF and AVIF: pillow-heif and Pillow encode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=format)
    return path


def rejects_of(store: Path) -> dict[str, str]:
    """{file name: reason} of the rejects file an index run wrote."""
    lines = (store / "c.rejects.jsonl").read_text().splitlines()
    return {Path(row["path"]).name: row["reason"] for row in map(json.loads, lines)}


def stored_titles(store: Path) -> dict[str, str]:
    """{image path: title} of every point in collection ``c``."""
    with EdgeStore(store) as opened:
        return {p.payload["image"]: p.payload["title"] for p in opened.scroll("c")}


# -- HEIC, HEIF and AVIF --------------------------------------------------------------------


@pytest.mark.parametrize("name,format", [("phone.heic", "HEIF"), ("photo.avif", "AVIF")])
def test_a_phone_photo_loads_as_rgb(tmp_path, name, format):
    image = load_image(save_photo(tmp_path / name, format, size=(80, 60)))
    assert image.mode == "RGB" and image.size == (80, 60)
    red, green, blue = image.getpixel((40, 30))
    assert red > 150 and green < 100 and blue < 100  # lossy, but the colour it was drawn in


def test_an_uploaded_heic_decodes_and_a_file_of_no_format_says_which_are_read(tmp_path):
    from multimodal.data.decoding import decode_photo  # what the server's uploads go through

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 60, 220)).save(buffer, format="HEIF")
    assert decode_photo(buffer.getvalue(), "upload").size == (40, 30)
    with pytest.raises(ImageLoadError) as raised:
        decode_photo(b"a shopping list, not a photo", "upload")
    assert "not an image file" in raised.value.reason and "HEIC" in raised.value.reason
    (tmp_path / "fake.heic").write_text("not a photo either")
    with pytest.raises(ImageLoadError, match="not an image file .*HEIC"):
        load_image(tmp_path / "fake.heic")


def test_a_folder_of_heic_and_avif_in_any_letter_case_is_indexed(tmp_path, capsys):
    data, store = tmp_path / "phone", tmp_path / "store"
    save_photo(data / "IMG_0001.HEIC", "HEIF")
    save_photo(data / "lunch.heic", "HEIF", (30, 180, 40))
    save_photo(data / "cake.heif", "HEIF", (30, 60, 220))
    save_photo(data / "dinner.avif", "AVIF")
    save_photo(data / "DINNER2.AVIF", "AVIF", (30, 60, 220))
    draw_image(data / "old" / "SCAN.JPG")
    (data / "lunch.txt").write_text("green salad\n")
    assert cli(index_args(data, store)) == 0
    assert "indexed 6, unchanged 0, rejected 0" in capsys.readouterr().out
    titles = stored_titles(store)
    assert set(titles) == {
        "IMG_0001.HEIC",
        "lunch.heic",
        "cake.heif",
        "dinner.avif",
        "DINNER2.AVIF",
        "old/SCAN.JPG",
    }
    assert titles["lunch.heic"] == "green salad"


# -- every skipped file is a reject ---------------------------------------------------------


def test_every_file_a_folder_holds_is_indexed_or_a_reject_with_its_reason(tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    draw_image(data / "a.png")
    (data / "a.txt").write_text("a red square")  # a caption: used, no reject
    draw_image(data / "b.JPG", "green", "circle")
    (data / "b.TXT").write_text("a green circle")  # any letter case
    (data / "notes.pdf").write_bytes(b"%PDF-1.4")
    (data / "README").write_text("my photos")
    (data / "orphan.txt").write_text("no photo of this name")
    (data / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    draw_image(data / ".git" / "objects" / "c.png")  # below a hidden folder: one entry
    assert cli(index_args(data, store)) == 0
    out = capsys.readouterr().out
    assert "indexed 2, unchanged 0, rejected 5" in out and "5 files skipped" in out
    reasons = rejects_of(store)
    assert set(reasons) == {"notes.pdf", "README", "orphan.txt", ".DS_Store", ".git"}
    assert reasons["notes.pdf"] == "not a photo (unknown suffix .pdf)"
    assert reasons["README"] == "not a photo (no suffix)"
    assert "nor the caption of one" in reasons["orphan.txt"]
    assert "hidden" in reasons[".DS_Store"] and "hidden" in reasons[".git"]
    assert stored_titles(store) == {"a.png": "a red square", "b.JPG": "a green circle"}


def test_a_caption_that_is_a_named_pipe_makes_its_photo_a_reject_without_blocking(tmp_path):
    draw_image(tmp_path / "a.png")
    os.mkfifo(tmp_path / "a.txt")
    (record,) = read_records(tmp_path)
    assert "a.txt" in record.error and "named pipe" in record.error


def test_a_manifest_row_with_nothing_to_index_is_a_reject(tmp_path):
    draw_image(tmp_path / "a.png")
    rows = ['{"image": "a.png", "caption": "a red square"}', '{"image": "", "caption": ""}']
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    fine, empty = read_records(tmp_path / "m.jsonl")
    assert fine.error is None and "nothing to index" in empty.error


# -- links stay inside the data folder ------------------------------------------------------


@pytest.fixture
def linked(tmp_path):
    """A data folder with a photo and a caption linked from outside it, a folder linked from
    outside, a link inside it, and a loop; the outside files beside it."""
    data, outside = tmp_path / "photos", tmp_path / "outside"
    draw_image(data / "own.png")
    draw_image(data / "real" / "inner.png", "green", "circle")
    draw_image(outside / "private.jpg", "blue", "triangle")
    draw_image(outside / "album" / "far.png", "green", "square")
    (outside / "hostname").write_text(SECRET + "\n")
    draw_image(data / "captioned.png", "blue", "circle")
    (data / "captioned.txt").symlink_to(outside / "hostname")
    (data / "private.jpg").symlink_to(outside / "private.jpg")
    (data / "alias.png").symlink_to(data / "real" / "inner.png")  # inside: works
    (data / "album").symlink_to(outside / "album", target_is_directory=True)
    (data / "real" / "loop").symlink_to(data, target_is_directory=True)  # inside, read once
    return data


def test_links_that_leave_the_data_folder_are_rejects_and_their_files_are_never_read(
    tmp_path, linked, capsys
):
    store = tmp_path / "store"
    assert cli(index_args(linked, store)) == 0
    assert "indexed 3, unchanged 0, rejected 3" in capsys.readouterr().out
    reasons = rejects_of(store)
    assert reasons == {
        "private.jpg": LINKS_OUTSIDE,
        "captioned.png": f"its caption captioned.txt {LINKS_OUTSIDE}",
        "album": LINKS_OUTSIDE,
    }
    titles = stored_titles(store)
    assert set(titles) == {"own.png", "real/inner.png", "alias.png"}
    assert not any(SECRET in title for title in titles.values())


def test_follow_links_reads_them(tmp_path, linked, capsys):
    store = tmp_path / "store"
    assert cli(index_args(linked, store, "--follow-links")) == 0
    assert "indexed 6, unchanged 0, rejected 0" in capsys.readouterr().out
    titles = stored_titles(store)
    assert titles["captioned.png"] == SECRET and "album/far.png" in titles
    assert "private.jpg" in titles


def test_a_loop_of_links_is_listed_once_when_links_are_followed(tmp_path):
    data = tmp_path / "photos"
    draw_image(data / "a.png")
    (data / "up").symlink_to(tmp_path, target_is_directory=True)  # outside, and a way back
    listing = list_folder(data, follow_links=True)
    assert [p.path.relative_to(data).as_posix() for p in listing.photos] == ["a.png"]


def test_a_manifest_photo_linked_outside_its_folder_is_a_reject_unless_followed(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    draw_image(outside / "private.jpg")
    draw_image(data / "own.png")
    (data / "linked.jpg").symlink_to(outside / "private.jpg")
    rows = [
        {"image": "own.png", "caption": "mine"},
        {"image": "linked.jpg", "caption": "a link out"},
        {"image": str(outside / "private.jpg"), "caption": "named by its own path"},
    ]
    (data / "m.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    own, linked, named = read_records(data / "m.jsonl")
    assert own.error is None and named.error is None  # a path the manifest gives: its choice
    assert linked.error == LINKS_OUTSIDE and linked.image == data / "linked.jpg"
    assert read_records(data / "m.jsonl", follow_links=True)[1].error is None


def test_a_recipes5k_photo_linked_outside_is_a_reject_unless_followed(tmp_path):
    root = write_recipes5k(tmp_path / "recipes5k", splits=("train",), per_split=3)
    photo = next((root / "images").rglob("*.jpg"))
    outside = draw_image(tmp_path / "outside" / "private.jpg")
    photo.unlink()
    photo.symlink_to(outside)
    errors = {r.image.name: r.error for r in read_records(root)}
    assert errors.pop(photo.name) == LINKS_OUTSIDE and set(errors.values()) == {None}
    assert all(r.error is None for r in read_records(root, follow_links=True))


def test_training_and_eval_never_open_a_rejected_photo(tmp_path, tiny_encoder):
    from multimodal.embedding import embed_pairs

    root = write_recipes5k(tmp_path / "recipes5k", splits=("val",), per_split=3)
    photo = next((root / "images").rglob("*.jpg"))
    photo.unlink()
    photo.symlink_to(tmp_path / "outside-and-missing.jpg")  # opening it would be a decode error
    pairs = embed_pairs(tiny_encoder, read_records(root), workers=0, progress=False)
    assert len(pairs.records) == 2
    (reject,) = pairs.rejects
    assert reject.reason == LINKS_OUTSIDE


# -- a killed indexer leaves the store free at once -----------------------------------------


@pytest.mark.slow
def test_the_store_opens_at_once_after_the_indexer_is_killed(tmp_path):
    """SIGKILL an index run whose decoding workers are busy: the workers die with it, so
    their copy of the store's lock goes at once (it took about 5 s: torch's own check)."""
    data, store = tmp_path / "photos", tmp_path / "store"
    for n in range(400):
        draw_image(data / f"{n:03d}.png", ("red", "green", "blue")[n % 3], size=(64, 48))
    command = [
        sys.executable,
        "-m",
        "multimodal.cli",
        *index_args(data, store, workers=2, progress=True),
    ]
    command += ["--batch-size", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env, text=True)
    kill_once_written(process, total=400, at_least=20, timeout=300)
    killed = time.monotonic()
    while True:
        try:
            with EdgeStore(store) as reopened:
                assert reopened.count("c") >= 20
            break
        except StoreError:
            assert time.monotonic() - killed < 3, "the store stayed locked after the kill"
            time.sleep(0.05)


# -- a busy store is said before the model loads --------------------------------------------


def test_index_against_a_busy_store_says_so_before_it_loads_the_model(tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    draw_image(data / "a.png")
    assert cli(index_args(data, store)) == 0
    capsys.readouterr()
    # A model spec that parses but cannot load (no hub offline): the store is opened first.
    unloadable = index_args(data, store)
    unloadable[unloadable.index("tiny-random")] = "hf-hub:nobody/no-such-model"
    with EdgeStore(store) as holder:
        holder.count("c")  # holds the collection's shard, as a running serve does
        assert cli(unloadable) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "open in another process" in line and "could not fetch" not in line
    assert cli(unloadable) == 1  # free again: now the model is what fails
    assert "could not fetch hf-hub:nobody/no-such-model" in capsys.readouterr().err


def test_index_refuses_settings_an_existing_collection_lacks_before_the_model(tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    draw_image(data / "a.png")
    assert cli(index_args(data, store)) == 0
    args = index_args(data, store, "--quantization", "int8")
    args[args.index("tiny-random")] = "hf-hub:nobody/no-such-model"
    assert cli(args) == 2
    assert "was made with" in capsys.readouterr().err


def test_embed_skips_links_out_of_the_folder_unless_followed(tmp_path, linked):
    def embedded(out: Path, *more: str) -> list[str]:
        args = ["embed", "--model", "tiny-random", "--data", str(linked), "--out", str(out)]
        assert cli([*args, "--workers", "0", "--no-progress", *more]) == 0
        rows = (out / "metadata" / "metadata_0000.jsonl").read_text().splitlines()
        return sorted(Path(json.loads(row)["image"]).name for row in rows)

    kept = embedded(tmp_path / "safe")
    assert "private.jpg" not in kept and "far.png" not in kept and "own.png" in kept
    followed = embedded(tmp_path / "all", "--follow-links")
    assert {"private.jpg", "far.png", "own.png"} <= set(followed)
