"""Near-duplicates: exact copies by their bytes, one picture by its pixels among the image
vectors' neighbours, grouped by complete linkage, on both stores; ``multimodal duplicates`` end
to end."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
from conftest import draw_image, index_args
from PIL import Image, ImageOps
from test_store import MODEL

from indexer.duplicates import find_duplicates
from indexer.store import CollectionSpec, Point
from multimodal.cli import main as cli
from multimodal.data.fingerprint import fingerprint, picture_similarity

DIM = 8


def _pattern(seed: int, size=(96, 72)) -> np.ndarray:
    """A smooth random grey pattern (float, mean 0, unit length): a picture of its own."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (9, 12), dtype=np.uint8))
    field = np.asarray(small.resize(size, Image.BICUBIC), np.float32)
    field -= field.mean()
    return field / np.linalg.norm(field)


def _save(pixels: np.ndarray, path: Path) -> Path:
    scaled = 128 + 100 * pixels / np.abs(pixels).max()
    Image.fromarray(scaled.astype(np.uint8)).convert("RGB").save(path)
    return path


def _collection(store, tmp_path) -> dict[str, str]:
    """Real files: A and its half-size, JPEG-30, mirrored and 90%-cropped copies; B, C, D a
    chain (C the mean of B and D, B and D alike at 0.6 only); E alone; F1 and F2 the same
    bytes. Every photo gets nearly the same image vector, so the pixels decide. Ids by name."""
    folder = tmp_path / "photos"
    folder.mkdir()
    a = _save(_pattern(1), folder / "A.png")
    with Image.open(a) as original:
        original.resize((48, 36)).save(folder / "A-half.png")
        original.save(folder / "A-q30.jpg", quality=30)
        ImageOps.mirror(original).save(folder / "A-mirror.png")
        original.crop((5, 4, 91, 68)).save(folder / "A-crop.png")
    b, noise = _pattern(2), _pattern(3)
    d = 0.6 * b + 0.8 * noise
    _save(b, folder / "B.png")
    _save(d, folder / "D.png")
    _save((b + d) / np.linalg.norm(b + d), folder / "C.png")
    _save(_pattern(4), folder / "E.png")
    _save(_pattern(5), folder / "F1.png")
    shutil.copy(folder / "F1.png", folder / "F2.png")
    store.create_or_open("c", CollectionSpec(DIM, MODEL))
    files = sorted(folder.iterdir())
    ids = {path.stem: str(uuid.uuid4()) for path in files}
    rng = np.random.default_rng(0)
    points = [
        Point(
            ids[path.stem],
            {"image": (np.ones(DIM) + 0.01 * rng.normal(size=DIM)).tolist()},
            {"image": path.name, "root": str(folder)},
        )
        for path in files
    ]
    store.upsert("c", points)
    return ids


def _similarity(tmp_path, x: str, y: str) -> float:
    def made(name):
        (path,) = (tmp_path / "photos").glob(f"{name}.*")
        return fingerprint(Image.open(path))

    return picture_similarity(made(x), made(y))


def test_groups_are_exact_copies_then_one_picture_the_most_alike_first(store, tmp_path):
    ids = _collection(store, tmp_path)
    names = {point_id: name for name, point_id in ids.items()}
    # what the grouping rests on: copies alike, the chain's ends not
    for copy in ("A-half", "A-q30", "A-mirror", "A-crop"):
        assert _similarity(tmp_path, "A", copy) > 0.97, copy
    assert _similarity(tmp_path, "B", "C") >= 0.85 and _similarity(tmp_path, "C", "D") >= 0.85
    assert _similarity(tmp_path, "B", "D") < 0.85 and _similarity(tmp_path, "A", "E") < 0.5
    groups = find_duplicates(store, "c", threshold=0.85)
    found = [sorted(names[i] for i in group.ids) for group in groups]
    assert found[0] == ["F1", "F2"] and groups[0].exact and groups[0].similarity == 1.0
    assert found[1] == ["A", "A-crop", "A-half", "A-mirror", "A-q30"]
    assert groups[1].similarity > 0.97 and len(groups[1].pairs) == 10
    # a chain is not one group: B and D are not one picture, so C joins one of them only
    assert found[2] in (["B", "C"], ["C", "D"]) and len(groups) == 3
    assert groups[2].similarity < groups[1].similarity  # the most alike first
    assert all(path.startswith(str(tmp_path)) for group in groups for path in group.paths)


def test_a_photo_gone_since_it_was_indexed_is_alike_to_nothing(store, tmp_path):
    ids = _collection(store, tmp_path)
    (tmp_path / "photos" / "F2.png").unlink()
    (tmp_path / "photos" / "A-half.png").unlink()
    groups = find_duplicates(store, "c", threshold=0.85)
    assert not any(group.exact for group in groups)
    assert ids["A"] in groups[0].ids and ids["A-half"] not in groups[0].ids


def test_cli_prints_groups_as_json_lines_with_the_paths_search_prints(tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    draw_image(data / "red.png", "red", "square")
    draw_image(data / "blue.png", "blue", "circle")
    shutil.copy(data / "red.png", data / "red copy.png")
    assert cli(index_args(data, store)) == 0
    capsys.readouterr()
    where = ["--collection", "c", "--store", str(store), "--no-progress"]
    assert cli(["duplicates", *where, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    exact = [row for row in rows if row["exact"]]
    assert len(exact) == 1 and exact[0]["similarity"] == 1.0
    assert sorted(exact[0]["paths"]) == [str(data / "red copy.png"), str(data / "red.png")]
    assert cli(["search", "a red square", "--json", "-k", "3", "--no-collapse", *where[:4]]) == 0
    printed = {json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()}
    assert set(exact[0]["paths"]) <= printed  # the same spelling of a path
    assert cli(["duplicates", *where]) == 0
    out = capsys.readouterr().out
    assert "2 photos, same bytes:" in out and "at threshold 0.9" in out.splitlines()[-1]


def test_cli_refuses_a_bad_threshold_and_a_missing_collection(tmp_path, capsys):
    where = ["--store", str(tmp_path / "store")]
    assert cli(["duplicates", "--collection", "none", *where]) == 2
    assert "no collection 'none'" in capsys.readouterr().err
    assert cli(["duplicates", "--collection", "none", "--threshold", "1.5", *where]) == 2
    assert "--threshold must be above 0 and at most 1" in capsys.readouterr().err


def test_search_hits_fold_photos_that_are_one_picture(tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    data.mkdir()
    original = _save(_pattern(1), data / "dish.png")
    with Image.open(original) as photo:
        photo.resize((48, 36)).save(data / "dish small.png")
        ImageOps.mirror(photo).save(data / "dish mirrored.png")
    _save(_pattern(2), data / "other.png")
    _save(_pattern(3), data / "third.png")
    assert cli(index_args(data, store)) == 0
    capsys.readouterr()
    search = ["search", "a dish", "--json", "-k", "5", "--collection", "c", "--store", str(store)]
    assert cli(search) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3  # five photos, three pictures
    folded = [row for row in rows if row["duplicates"]]
    (kept,) = folded
    names = {Path(kept["path"]).name} | {Path(d["path"]).name for d in kept["duplicates"]}
    assert names == {"dish.png", "dish small.png", "dish mirrored.png"}
    assert cli([*search, "--no-collapse"]) == 0
    every = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(every) == 5 and not any(row["duplicates"] for row in every)
    assert cli([arg for arg in search if arg != "--json"]) == 0  # the table says how many
    assert "(+2 similar)" in capsys.readouterr().out


def test_the_collapser_keeps_the_search_order_and_hits_without_a_photo(tmp_path):
    from indexer.collapse import Collapser
    from indexer.store import StoredPoint

    folder = tmp_path / "photos"
    folder.mkdir()
    a = _save(_pattern(1), folder / "a.png")
    _save(_pattern(2), folder / "b.png")
    with Image.open(a) as photo:
        photo.resize((48, 36)).save(folder / "a-small.png")

    def hit(name, score):
        payload = {"image": name, "root": str(folder)} if name else {"title": "text only"}
        return StoredPoint(str(uuid.uuid4()), payload, score=score)

    hits = [hit("b.png", 0.9), hit("a-small.png", 0.8), hit(None, 0.7), hit("a.png", 0.6)]
    kept, folded = Collapser().fold(hits, k=2)
    assert [h.id for h in kept] == [hits[0].id, hits[1].id]  # the order is the search's
    assert folded == {hits[1].id: [hits[3]]}
    kept, folded = Collapser().fold(hits, k=5)
    assert [h.id for h in kept] == [hits[0].id, hits[1].id, hits[2].id] and len(folded) == 1
    (folder / "a.png").unlink()  # a photo gone: kept as it is, alike to nothing
    assert Collapser().fold(hits, k=5) == (hits, {})
