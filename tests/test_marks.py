"""Marks a person makes (Good / Not this) kept with the collection, exported as training pairs
and learnt by ``multimodal train --marks``: real stores, a real server on loopback, real
training of a tiny open_clip model on drawn photos."""

from __future__ import annotations

import json

import gradio as gr
import httpx
import numpy as np
import pytest
from conftest import write_recipes5k

from indexer.commands.marks import main as marks_main
from indexer.edge import EdgeStore
from indexer.marks import MarkBook
from indexer.pipeline import index_records
from indexer.point_ids import UnknownPoint
from indexer.search import Searcher
from indexer.store import StoreError
from multimodal.commands.train import main as train_main
from multimodal.data.marks import append_mark, read_lines, read_pairs, training_pairs
from multimodal.data.readers import read_records
from multimodal.paths import marks_path
from multimodal.training.config import TrainConfig
from multimodal.training.marks import SOURCE
from multimodal.training.trainer import build_trainer
from ui.app import RecipeApp, launch
from ui.guard import Access


@pytest.fixture(scope="module")
def marked(tmp_path_factory, tiny_encoder):
    """A drawn Recipes5k-shaped collection in an embedded store; the page's handlers on it."""
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=9)
    folder = tmp_path_factory.mktemp("store")
    store = EdgeStore(folder)
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    app = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=root.parent / "maps")
    yield app, root, folder
    store.close()


def _points(app) -> dict[str, dict]:
    """Each stored point's payload, by title and split ("Red Square Cake/train")."""
    found = app.searcher.store.scroll("dishes", fields=["title", "split", "label", "image", "root"])
    return {f"{p.payload['title']}/{p.payload['split']}": p for p in found}


def test_the_marks_file_keeps_every_mark_and_survives_a_torn_write(tmp_path):
    path = tmp_path / "marks" / "c.jsonl"
    hit = {"id": "a", "image": "/p/1.jpg", "title": "Pie", "label": "pie"}
    append_mark(path, {"query": {"text": "apple pie"}, "hit": hit, "good": True})
    append_mark(path, {"query": {"text": "Apple  PIE"}, "hit": hit, "good": False})
    append_mark(path, {"query": {"text": "tart"}, "hit": {**hit, "image": None}, "good": True})
    with path.open("a") as file:
        file.write('{"query": {"text": "cut sh')  # a write cut short by a crash
    rows = read_lines(path)
    assert [row["good"] for row in rows] == [True, False, True]
    # the same words (case and spacing aside) on the same hit: the last mark counts; a hit
    # without a photo makes no pair
    pairs = training_pairs(rows)
    assert [(p["title"], p["image"], p["good"]) for p in pairs] == [
        ("Apple  PIE", "/p/1.jpg", False)
    ]
    path.write_text('{"query": {}}\nnot json\n')
    with pytest.raises(ValueError, match=r"c\.jsonl, line 2, is not a mark"):
        read_lines(path)
    assert read_lines(tmp_path / "none.jsonl") == []


def test_marks_live_beside_the_store_and_refusals_write_nothing(marked):
    app, _, folder = marked
    book = MarkBook(app.searcher.store, "dishes")
    assert book.path == folder / ".marks" / "dishes.jsonl" == marks_path("dishes", folder)
    assert app.searcher.store.collections() == ["dishes"]  # the marks are no collection
    points = _points(app)
    hit, query = points["Red Square Cake/train"], points["Red Square Cake/val"]
    before = len(book.marks())
    kept = book.record({"text": "  red square  "}, hit.id.upper(), good=True)
    assert kept["query"] == {"text": "red square"} and kept["hit"]["id"] == hit.id
    assert kept["hit"]["image"] == str(hit.image_path) and kept["hit"]["label"] == "square"
    from_point = book.record({"point": query.id}, hit.id, good=False)
    assert from_point["query"]["point"] == query.id
    assert from_point["query"]["title"] == "Red Square Cake"  # its caption, for training
    for asked, hit_id, error in [
        ({"text": "x"}, "not-an-id", UnknownPoint),
        ({"text": "x"}, "00000000-0000-0000-0000-000000000000", UnknownPoint),
        ({"text": "   "}, hit.id, ValueError),
        ({"point": "nope"}, hit.id, UnknownPoint),
        ("red square", hit.id, ValueError),
        ({"text": "x" * 2001}, hit.id, ValueError),
    ]:
        with pytest.raises(error):
            book.record(asked, hit_id, good=True)
    with pytest.raises(ValueError, match="true"):
        book.record({"text": "x"}, hit.id, good="yes")
    assert len(book.marks()) == before + 2


def test_the_pages_marks_are_kept_with_what_was_searched(marked):
    app, _, _ = marked
    points = _points(app)
    hit, query = points["Blue Circle Cake/train"], points["Blue Circle Cake/val"]
    before = len(app.service.marks.marks())
    liked, disliked, line = app.like(hit.id, [], [], {"text": "blue circle"})
    assert liked == [hit.id] and "saved for `multimodal train --marks`" in line
    liked, disliked, line = app.dislike(hit.id, liked, disliked, {"point": query.id})
    assert (liked, disliked) == ([], [hit.id])
    # marks of a search by an uploaded photo alone are kept in the page only
    _, _, line = app.like(hit.id, [], [], {})
    assert "saved" not in line
    rows = app.service.marks.marks()[before:]
    assert [(r["query"].get("text"), r["query"].get("point"), r["good"]) for r in rows] == [
        ("blue circle", None, True),
        (None, query.id, False),
    ]


def test_marks_export_writes_training_pairs(marked, tmp_path, capsys):
    app, _, folder = marked
    points = _points(app)
    book = app.service.marks
    book.record({"text": "green triangle"}, points["Green Triangle Cake/train"].id, good=True)
    out = tmp_path / "pairs.jsonl"
    args = ["--collection", "dishes", "--store", str(folder)]
    assert marks_main(["export", *args, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    pairs = read_pairs(out)
    assert summary["pairs"] == len(pairs) == len(training_pairs(book.marks()))
    assert summary["marks"] == len(book.marks()) and summary["current"] <= summary["marks"]
    assert {"title": "green triangle", "good": True}.items() <= next(
        p for p in pairs if p["title"] == "green triangle"
    ).items()
    assert marks_main(["show", *args]) == 0
    assert "training pairs" in capsys.readouterr().out
    assert marks_main(["show", "--collection", "other", "--store", str(folder)]) == 2
    assert "has no marks yet" in capsys.readouterr().err


def test_the_api_records_marks_behind_the_servers_credentials(marked):
    app, _, _ = marked
    points = _points(app)
    hit = points["Red Circle Cake/train"]
    key = "k" * 32
    server = launch(app, block=False, access=Access.parse(None, key))
    try:
        with httpx.Client(base_url=server.local_url, timeout=60) as client:
            body = {"text": "red circle", "hit": hit.id, "good": True}
            assert client.post("/api/marks", json=body).status_code == 401
            before = len(app.service.marks.marks())
            headers = {"X-API-Key": key}
            answer = client.post("/api/marks", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["hit"] == hit.id and answer.json()["marks"] == before + 1
            for bad, status in [
                ({**body, "hit": "00000000-0000-0000-0000-000000000000"}, 404),
                ({"hit": hit.id, "good": True}, 422),  # neither words nor a point
                ({**body, "good": "maybe"}, 422),
                ({**body, "path": "/etc/passwd"}, 422),
                ({**body, "text": "x" * 5000}, 422),
            ]:
                refused = client.post("/api/marks", json=bad, headers=headers)
                assert refused.status_code == status, (bad, refused.text)
                assert "Traceback" not in refused.text and "\n" not in refused.json()["detail"]
            # another site's page, or a name the server does not answer to, marks nothing
            foreign = {**headers, "Origin": "https://evil.example"}
            assert client.post("/api/marks", json=body, headers=foreign).status_code == 403
            stranger = {**headers, "Host": "evil.example"}
            assert client.post("/api/marks", json=body, headers=stranger).status_code in (400, 403)
            assert len(app.service.marks.marks()) == before + 1  # refusals wrote nothing
    finally:
        server.close()


def test_a_flood_of_marks_stops_at_the_files_cap(marked, monkeypatch):
    app, _, _ = marked
    book = app.service.marks
    hit = _points(app)["Green Circle Cake/train"]
    book.record({"text": "green"}, hit.id, good=True)
    size = book.path.stat().st_size
    monkeypatch.setattr("indexer.marks.MAX_MARKS_BYTES", size)
    with pytest.raises(StoreError, match="marks file is full"):
        book.record({"text": "green"}, hit.id, good=True)
    assert book.path.stat().st_size == size  # the marks kept are untouched
    _, _, _ = app.like(hit.id, [], [], {})  # the page's own marks still work, unsaved
    with pytest.raises(gr.Error, match="full"):
        app.like(hit.id, [], [], {"text": "green"})


def test_training_learns_good_marks_as_pairs_and_not_this_as_negatives(marked, tmp_path, capsys):
    app, root, folder = marked
    points = _points(app)
    book = MarkBook(app.searcher.store, "dishes")
    book.path.unlink(missing_ok=True)
    val_hit = points["Blue Square Cake/val"]  # a val photo: not a training item yet
    book.record({"text": "a square dessert"}, points["Red Square Cake/train"].id, good=True)
    book.record({"text": "a square dessert"}, points["Red Circle Cake/train"].id, good=False)
    book.record({"text": "a square dessert"}, val_hit.id, good=False)
    book.record({"text": "only bad"}, points["Red Circle Cake/train"].id, good=False)
    out = tmp_path / "run"
    config = TrainConfig(
        model="tiny-random",
        data=str(root),
        out=str(out),
        epochs=1,
        batch_size=4,
        warmup_steps=1,
        marks=str(book.path),
        feature_cache="",
        workers=0,
    )
    trainer = build_trainer(config, progress=False)
    records = trainer.data.train_set.records
    added = [i for i, r in enumerate(records) if r.source == SOURCE]
    # the Good pair, and the val photo marked Not this as its own pair
    assert sorted(records[i].title for i in added) == ["Blue Square Cake", "a square dessert"]
    anchor = next(i for i in added if records[i].title == "a square dessert")
    assert records[anchor].image == points["Red Square Cake/train"].image_path
    negatives = trainer.data.marked_images
    negative_images = {records[j].image for j in negatives[anchor] if j >= 0}
    assert negative_images == {
        points["Red Circle Cake/train"].image_path,
        val_hit.image_path,
    }
    assert (negatives[np.arange(len(records)) != anchor] == -1).all()  # "only bad": no pair
    # every batch holding the marked pair carries its Not this photos as candidates
    batches = [
        keys
        for epoch in range(10)  # an epoch drops its last, incomplete batch
        for keys in trainer.data.batches(epoch, 0, True, 0, 0)
        if anchor in keys["anchors"]
    ]
    assert batches and all(set(negatives[anchor]) <= {*b["extras"], *b["anchors"]} for b in batches)
    # the real command trains on them, copying the pairs into the run to resume from
    argv = ["--model", "tiny-random", "--data", str(root), "--out", str(tmp_path / "cli")]
    argv += ["--epochs", "1", "--batch-size", "4", "--warmup-steps", "1", "--no-progress"]
    argv += ["--feature-cache", "", "--workers", "0"]
    assert train_main([*argv, "--marks", "dishes", "--marks-store", str(folder)]) == 0
    assert read_pairs(tmp_path / "cli" / "marks.jsonl") == training_pairs(book.marks())
    assert (tmp_path / "cli" / "last").is_dir()
    missing = [*argv[:5], str(tmp_path / "other"), *argv[6:], "--marks", "nothing"]
    assert train_main([*missing, "--marks-store", str(folder)]) == 2
    assert "collection 'nothing' has no marks" in capsys.readouterr().err


def test_a_resumed_run_trains_on_the_marks_it_started_with(tmp_path):
    from multimodal.training.marks import run_pairs

    source, out = tmp_path / "marks.jsonl", tmp_path / "run"
    hit = {"id": "a", "image": "/p/1.jpg", "title": "Pie"}
    append_mark(source, {"query": {"text": "pie"}, "hit": hit, "good": True})
    config = TrainConfig(model="tiny-random", data="d", out=str(out), marks=str(source))
    assert [p["title"] for p in run_pairs(config)] == ["pie"]
    (out / "state.pt").write_bytes(b"")  # the run has started: a resume reads its own copy
    append_mark(source, {"query": {"text": "tart"}, "hit": hit, "good": True})
    assert [p["title"] for p in run_pairs(config)] == ["pie"]
    (out / "state.pt").unlink()  # a new run in the folder takes the marks as they are now
    assert [p["title"] for p in run_pairs(config)] == ["pie", "tart"]
    missing = TrainConfig(model="m", data="d", out=str(tmp_path / "x"), marks=str(tmp_path / "no"))
    with pytest.raises(ValueError, match="--marks: no file"):
        run_pairs(missing)
