"""A folder that indexes itself: real files in a temporary folder, a real embedded store, the
tiny random model. Each change (add, change, rename, delete, a burst, a partial write) is
brought in by one pass over the changed paths; the watcher's own loop brings them in from the
system's file events; ``multimodal index --watch`` stops cleanly on Ctrl-C; ``serve --watch``
makes a new photo searchable through the running server."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import COLOURS, SHAPES, draw_image, index_args, kill_once_written

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.roots import point_id
from indexer.search import Searcher
from indexer.store import SearchFilter
from indexer.tags import Label, tag_points
from indexer.watch import WatchedData
from multimodal.data.readers import read_records
from ui.app import RecipeApp, launch
from ui.commands.serve import watch_in_background

WAIT = 60.0  # seconds a change may take to show up (a loaded CI machine; about 1 s here)


@pytest.fixture
def folder(tmp_path, tiny_encoder):
    """Six drawn photos, one with a caption, indexed into a fresh embedded store."""
    data = tmp_path / "photos"
    for i, (colour, shape) in enumerate(zip(list(COLOURS) * 2, SHAPES * 2, strict=True)):
        draw_image(data / f"{i}_{colour}_{shape}.png", colour, shape)
    (data / "0_red_square.txt").write_text("a red square on a plate")
    store = EdgeStore(tmp_path / "store")
    watched = WatchedData(tiny_encoder, store, "c", data)
    first = watched.sync(None)
    assert (first.indexed, first.total, first.full) == (6, 6, True)
    yield data, store, watched
    store.close()


def _ids_by_path(store) -> dict[str, str]:
    return {p.payload["image"]: p.id for p in store.scroll("c", fields=["image"])}


def test_added_changed_and_deleted_files_are_brought_in(folder):
    data, store, watched = folder
    new = draw_image(data / "sub" / "new.png", "blue", "circle")
    report = watched.sync({str(new)})
    assert (report.indexed, report.moved, report.removed, report.total) == (1, 0, 0, 7)
    before = store.retrieve("c", [_ids_by_path(store)["1_green_circle.png"]], True)[0]
    draw_image(data / "1_green_circle.png", "red", "triangle")  # the same name, new content
    changed = watched.sync({str(data / "1_green_circle.png")})
    after = store.retrieve("c", [before.id], True)[0]
    assert (changed.indexed, changed.total) == (1, 7)
    assert after.vectors["image"] != before.vectors["image"]
    caption = data / "0_red_square.txt"
    caption.write_text("a red square with cream")  # a caption changed: its photo again
    assert watched.sync({str(caption)}).indexed == 1
    hit = store.retrieve("c", [_ids_by_path(store)["0_red_square.png"]], fields=["text"])[0]
    assert hit.payload["text"] == "a red square with cream"
    new.unlink()
    gone = watched.sync({str(new)})
    assert (gone.removed, gone.total) == (1, 6)
    assert "sub/new.png" not in _ids_by_path(store)
    unchanged = watched.sync(None)  # a full pass finds nothing left to do
    assert (unchanged.indexed, unchanged.removed, unchanged.moved) == (0, 0, 0)


def test_a_moved_file_keeps_its_point_and_its_tags(folder, tiny_encoder):
    data, store, watched = folder
    tag_points(tiny_encoder, store, "c", "course", [Label("dessert", "a cake"), Label("main", "a")])
    old_path = data / "2_blue_triangle.png"
    old = store.retrieve("c", [_ids_by_path(store)["2_blue_triangle.png"]], True)[0]
    (data / "renamed").mkdir()
    target = data / "renamed" / "blue.png"
    old_path.rename(target)
    report = watched.sync({str(old_path), str(target)})
    assert (report.moved, report.indexed, report.removed, report.total) == (1, 0, 0, 6)
    ids = _ids_by_path(store)
    assert "2_blue_triangle.png" not in ids
    moved = store.retrieve("c", [ids["renamed/blue.png"]], True)[0]
    assert moved.vectors["image"] == old.vectors["image"]  # not embedded again
    assert moved.payload["course"] == old.payload["course"]
    assert moved.payload["course_scores"] == old.payload["course_scores"]
    assert moved.payload["content_hash"] == old.payload["content_hash"]
    # a folder moved away whole: its photo's point goes on the next pass
    shutil.move(str(data / "renamed"), str(data.parent / "elsewhere"))
    assert watched.sync({str(data / "renamed")}).removed == 1


def test_photos_added_later_get_the_collections_tags(folder, tiny_encoder):
    data, store, watched = folder
    labels = [Label("dessert", "a sweet cake"), Label("main", "a main course")]
    tag_points(tiny_encoder, store, "c", "course", labels)
    new = draw_image(data / "later.png", "green", "square")
    watched.sync({str(new)})
    point = store.retrieve("c", [_ids_by_path(store)["later.png"]], True)[0]
    assert point.payload["course"][0] in {"dessert", "main"}
    assert set(point.payload["course_scores"]) == {"dessert", "main"}
    tagged = store.count("c", SearchFilter(fields={"course": ["dessert", "main"]}))
    assert tagged == store.count("c") == 7


def test_a_burst_of_200_files_is_indexed_once_each(folder):
    data, store, watched = folder
    burst = data / "burst"
    paths = {
        str(draw_image(burst / f"{i:03d}.png", list(COLOURS)[i % 3], SHAPES[i % 3], size=(32, 32)))
        for i in range(200)
    }
    report = watched.sync(paths | {str(burst)})
    assert (report.indexed, report.total) == (200, 206)
    again = watched.sync(paths)  # the same events twice: nothing written twice
    assert (again.indexed, again.total) == (0, 206)


def test_a_half_written_photo_is_retried_not_rejected(folder):
    data, store, watched = folder
    whole = (data / "0_red_square.png").read_bytes()
    partial = data / "arriving.png"
    partial.write_bytes(whole[: len(whole) // 3])
    report = watched.sync({str(partial)})
    assert (report.indexed, report.retrying, report.rejects) == (0, 1, [])
    assert str(partial) in watched.pending
    partial.write_bytes(whole)  # the copy finishes
    done = watched.sync(set(watched.pending))
    assert (done.indexed, done.retrying, watched.pending) == (1, 0, {})
    # a file broken long ago is a reject, said once, not retried forever
    old = data / "broken.png"
    old.write_bytes(b"not a png at all")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    given_up = watched.sync({str(old)})
    assert [r.path for r in given_up.rejects] == [str(old)] and given_up.retrying == 0


def _until(condition, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("the change did not show up in time")


def test_the_watcher_follows_the_systems_events(folder):
    data, store, watched = folder
    stop, passes = threading.Event(), []
    thread = threading.Thread(target=watched.watch, args=(stop,), kwargs={"said": passes.append})
    thread.start()
    try:
        _until(lambda: passes)  # its own first pass
        before = set(_ids_by_path(store))
        draw_image(data / "arrived.png", "green", "triangle")
        _until(lambda: "arrived.png" in _ids_by_path(store))
        (data / "arrived.png").rename(data / "renamed.png")
        _until(lambda: {"renamed.png"} == set(_ids_by_path(store)) - before)
        (data / "renamed.png").unlink()
        _until(lambda: "renamed.png" not in _ids_by_path(store))
        (data / ".hidden.png").write_bytes((data / "0_red_square.png").read_bytes())
        draw_image(data / "last.png", "blue", "square")  # after the hidden one
        _until(lambda: "last.png" in _ids_by_path(store))
    finally:
        stop.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert sum(p.moved for p in passes) + sum(p.indexed for p in passes[1:]) >= 2
    assert store.count("c") == 7 and ".hidden.png" not in _ids_by_path(store)


def test_a_photo_added_during_the_first_pass_is_caught_up(tmp_path, tiny_encoder):
    data = tmp_path / "photos"
    draw_image(data / "a.png", "red", "square")
    calls = []

    def read():  # the first pass's listing; a photo arrives before the watch is up
        calls.append(1)
        records = read_records(data)
        if len(calls) == 1:
            draw_image(data / "during.png", "blue", "circle")
        return records

    with EdgeStore(tmp_path / "store") as store:
        watched = WatchedData(tiny_encoder, store, "c", data, read=read)
        stop, passes = threading.Event(), []
        said = {"said": passes.append}
        thread = threading.Thread(target=watched.watch, args=(stop,), kwargs=said)
        thread.start()
        try:
            _until(lambda: passes)
            _until(lambda: "during.png" in _ids_by_path(store))
        finally:
            stop.set()
            thread.join(WAIT)
        assert passes[0].total == 1 and store.count("c") == 2


def test_index_watch_stops_cleanly_on_ctrl_c(tmp_path):
    data = tmp_path / "photos"
    for i in range(3):
        draw_image(data / f"{i}.png", list(COLOURS)[i], SHAPES[i])
    store = tmp_path / "store"
    command = [sys.executable, "-m", "multimodal.cli", *index_args(data, store), "--watch"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MULTIMODAL_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    lines = []
    try:
        while not any("indexed 3" in line for line in lines):
            lines.append(process.stdout.readline())
            assert lines[-1], "the watcher ended before its first pass"
        draw_image(data / "3.png", "blue", "circle")
        while not any("indexed 1" in line for line in lines):
            lines.append(process.stdout.readline())
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=WAIT)
    finally:
        process.kill()
    assert process.returncode == 0, out
    assert "stopped; c holds 4 points" in out
    with EdgeStore(store) as reopened:
        assert reopened.count("c") == 4


@pytest.mark.slow
def test_kill_9_during_a_watch_loses_nothing_its_restart_does_not_finish(tmp_path):
    data = tmp_path / "photos"
    for i in range(300):
        draw_image(data / f"{i:03d}.png", list(COLOURS)[i % 3], SHAPES[i % 3], size=(40, 40))
    store = tmp_path / "store"
    index = index_args(data, store, "--batch-size", "2", progress=True)
    command = [sys.executable, "-m", "multimodal.cli", *index, "--watch"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MULTIMODAL_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env, text=True)
    kill_once_written(process, total=300, at_least=30, timeout=300)
    with EdgeStore(store) as reopened:
        assert 0 < reopened.count("c") < 300
    restarted = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    try:
        line = restarted.stdout.readline()
        while "points" not in line:
            assert line, "the watcher ended before its first pass"
            line = restarted.stdout.readline()
        restarted.send_signal(signal.SIGINT)
        out, _ = restarted.communicate(timeout=WAIT)
    finally:
        restarted.kill()
    assert "; 300 points" in line and "stopped; c holds 300 points" in out


def test_serve_watch_makes_new_photos_searchable(tmp_path, tiny_encoder):
    data = tmp_path / "photos"
    draw_image(data / "a.png", "red", "square")
    draw_image(data / "b.png", "green", "circle")
    draw_image(data / "c.png", "blue", "triangle")
    store = EdgeStore(tmp_path / "store")
    index_records(tiny_encoder, store, "c", read_records(data), workers=0, progress=False)
    app = RecipeApp(Searcher(tiny_encoder, store, "c"), map_folder=tmp_path / "maps")
    server = launch(app, block=False)
    args = argparse.Namespace(watch=str(data), qdrant_url=None, store=str(tmp_path / "store"))
    stop = watch_in_background(args, store, "c", tiny_encoder, app)
    try:
        draw_image(data / "new.png", "red", "triangle")
        (data / "new.txt").write_text("a red triangle tart")
        new_id = point_id(str(data.resolve()), "new.png")
        with httpx.Client(base_url=server.local_url, timeout=60) as client:

            def found():
                body = {"text": "a red triangle tart", "k": 10, "collapse": False}
                hits = client.post("/api/search", json=body).json()["hits"]
                return new_id in [hit["id"] for hit in hits]

            _until(found)
            _until(lambda: app.changes >= 1)
            _until(lambda: app.map is not None and len(app.map) == 4)  # the map follows
            assert any("new" in str(p.payload.get("image")) for p in store.scroll("c"))
    finally:
        stop()
        server.close()
        store.close()
