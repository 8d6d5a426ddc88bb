"""The indexer and search on real stores, with a tiny model trained in the test for the data."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, SHAPES, draw_image, index_args, kill_once_written, shape_records

from indexer.edge import EdgeStore
from indexer.pipeline import (
    content_hash,
    hash_items,
    index_records,
    make_items,
    plan,
    point_id,
    root_path,
)
from indexer.search import Searcher, Term, parse_query, vote_ingredients
from indexer.server import ServerStore
from indexer.store import CollectionSpec, SearchFilter, StoredPoint, StoreError
from multimodal import suggestions
from multimodal.cli import main as cli
from multimodal.data.records import Record
from multimodal.data.text import RecipeTextBuilder
from multimodal.encoder import load_encoder
from multimodal.suggestions import SUGGESTIONS


def shape_items(folder: Path, variants: int = 1) -> list[Record]:
    """Drawings of each colour x shape, with their root set, as a data set reader gives them."""
    records = shape_records(folder, variants=variants, seed=3)
    for record in records:
        record.root = folder
        record.ingredients = [f"{record.label.split()[0]} paint", record.label.split()[1]]
        record.ingredients_simplified = [record.label.split()[0]]
    return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained until it tells the nine drawings apart."""
    from multimodal.factory import create_model_and_transforms
    from multimodal.training.config import TrainConfig
    from multimodal.training.data import build_train_set
    from multimodal.training.trainer import Trainer

    folder = tmp_path_factory.mktemp("shapes")
    drawings = shape_items(folder / "data", variants=4)
    records = [r for r in drawings if r.image.stem.endswith("_0")]  # the nine that get indexed
    # The starting model with its projection heads trained (the towers stay locked): real
    # ImageNet and MiniLM features, fast on the CPU through the feature cache.
    config = TrainConfig(
        model="recipe-starter",
        data=str(folder),
        out=str(folder / "run"),
        epochs=8,
        batch_size=9,
        lr=5e-3,
        warmup_steps=5,
        augment=False,
        workers=0,
        patience=0,
        feature_cache="",
    )
    loaded = create_model_and_transforms(config.model)
    trainer = Trainer(
        config, loaded, build_train_set(drawings, loaded.tokenizer), records, progress=False
    )
    state = trainer.run()
    assert state.best_score == 100.0, state.history[-1]  # it knows all nine, both ways
    return load_encoder(str(folder / "run" / "best"), device="cpu"), records


def copied(records: list[Record], folder: Path) -> list[Record]:
    """The records with their files copied to ``folder``, for tests that change files."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for record in records:
        target = folder / record.image.name
        shutil.copyfile(record.image, target)
        out.append(dataclasses.replace(record, image=target, root=folder))
    return out


@pytest.mark.slow
def test_each_item_is_found_first_in_every_direction(trained, store):
    encoder, records = trained
    report = index_records(encoder, store, "shapes", records, workers=0, progress=False)
    assert (report.indexed, report.rejected, report.total) == (9, 0, 9)
    searcher = Searcher(encoder, store, "shapes")
    for record in records:
        own_id = point_id(root_path(record), record.relative_image)
        by_text = searcher.search(record.title, target="image", limit=3)
        by_image = searcher.search(Path(record.image), target="text", limit=3)
        image_to_image = searcher.search(Path(record.image), target="image", limit=1)
        assert by_text[0].id == own_id, (record.title, [h.payload["title"] for h in by_text])
        assert by_image[0].id == own_id
        assert image_to_image[0].id == own_id
        assert image_to_image[0].score == pytest.approx(1.0, abs=1e-3)
        assert by_text[0].image_path == record.image
        # "more like this" leaves the item itself out
        assert own_id not in [h.id for h in searcher.search(("id", own_id), "image", 8)]


@pytest.mark.slow
def test_filters_grouping_and_suggestions(trained, store):
    encoder, records = trained
    index_records(encoder, store, "shapes", records, workers=0, progress=False)
    searcher = Searcher(encoder, store, "shapes")
    only_circles = SearchFilter(labels=[f"{c} circle" for c in COLOURS])
    hits = searcher.search("a red square", "image", 9, only_circles)
    assert len(hits) == 3 and all(h.payload["label"].endswith("circle") for h in hits)
    no_red = searcher.search("a red square", "image", 9, SearchFilter(without_ingredients=["red"]))
    assert len(no_red) == 6 and all("red" not in h.payload["title"] for h in no_red)
    blue = searcher.search("a red square", "image", 9, SearchFilter(with_ingredients=["blue"]))
    assert sorted(h.payload["title"] for h in blue) == [f"a blue {s}" for s in sorted(SHAPES)]
    grouped = searcher.search("a red square", "image", 9, group_by="base_ingredients")
    assert sorted(h.payload["base_ingredients"][0] for h in grouped) == sorted(COLOURS)
    red = next(r for r in records if r.title == "a red square")
    suggested = dict(searcher.suggest_ingredients(Path(red.image), k=3))
    assert max(suggested, key=suggested.get) == "red"


@pytest.mark.slow
def test_mixed_query_moves_toward_and_away(trained, store):
    encoder, records = trained
    index_records(encoder, store, "shapes", records, workers=0, progress=False)
    searcher = Searcher(encoder, store, "shapes", allow_paths=True)  # terms name photos
    red_square = next(r for r in records if r.title == "a red square")
    plain = searcher.query_vector(Path(red_square.image))[0]
    mixed = searcher.query_vector(f'{red_square.image} + "2:a blue circle"')[0]
    blue_circle = searcher.query_vector("a blue circle")[0]
    assert float(mixed @ blue_circle) > float(plain @ blue_circle)
    away = searcher.query_vector(f"{red_square.image} - a red square")[0]
    red_text = searcher.query_vector("a red square")[0]
    assert float(away @ red_text) < float(plain @ red_text)
    assert np.linalg.norm(mixed) == pytest.approx(1.0)


def test_rerun_skips_unchanged_and_re_embeds_a_changed_file(tiny_encoder, tmp_path):
    encoder, records = tiny_encoder, shape_items(tmp_path / "shapes")
    records = copied(records, tmp_path / "data")
    with EdgeStore(tmp_path / "store") as store:
        first = index_records(encoder, store, "shapes", records, workers=0, progress=False)
        again = index_records(encoder, store, "shapes", records, workers=0, progress=False)
        assert (first.indexed, again.indexed, again.unchanged, again.total) == (9, 0, 9, 9)
        assert "decode wait" not in again.stages  # nothing was decoded
        target = next(r for r in records if r.title == "a red square")
        draw_image(target.image, "blue", "circle", size=(48, 48))  # the file changes
        changed = index_records(encoder, store, "shapes", records, workers=0, progress=False)
        assert (changed.indexed, changed.unchanged, changed.total) == (1, 8, 9)
        searcher = Searcher(encoder, store, "shapes")
        own = point_id(root_path(target), target.relative_image)
        (stored,) = store.retrieve("shapes", [own], with_vectors=True)
        assert np.allclose(
            stored.vectors["image"], searcher.query_vector(target.image)[0], atol=1e-4
        )


def test_bad_files_are_rejected_and_the_rest_indexed(tiny_encoder, tmp_path):
    encoder, records = tiny_encoder, shape_items(tmp_path / "shapes")
    records = list(records)
    broken = tmp_path / "data" / "broken.jpg"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    text_file = tmp_path / "data" / "notes.png"
    text_file.write_text("hello")
    gone = tmp_path / "data" / "gone.png"
    for path in (broken, text_file, gone):
        records.append(Record(image=path, title="bad", root=tmp_path / "data"))
    with EdgeStore(tmp_path / "store") as store:
        report = index_records(encoder, store, "shapes", records, workers=0, progress=False)
        assert (report.indexed, report.rejected, report.total) == (9, 3, 9)
        reasons = {Path(r.path).name: r.reason for r in report.rejects}
        assert set(reasons) == {"broken.jpg", "notes.png", "gone.png"}
        assert "cannot read" in reasons["gone.png"]


def test_prune_removes_points_whose_file_is_gone(tiny_encoder, tmp_path):
    encoder, records = tiny_encoder, shape_items(tmp_path / "shapes")
    records = copied(records, tmp_path / "data")
    with EdgeStore(tmp_path / "store") as store:
        index_records(encoder, store, "shapes", records, workers=0, progress=False)
        Path(records[0].image).unlink()
        kept = index_records(encoder, store, "shapes", records[1:], workers=0, progress=False)
        assert (kept.pruned, kept.total) == (0, 9)  # without --prune nothing is deleted
        pruned = index_records(
            encoder, store, "shapes", records[1:], workers=0, progress=False, prune=True
        )
        assert (pruned.pruned, pruned.total) == (1, 8)


@pytest.mark.slow
def test_another_model_is_refused_and_nothing_changes(trained, tmp_path, tiny_encoder):
    encoder, records = trained
    with EdgeStore(tmp_path / "store") as store:
        index_records(encoder, store, "shapes", records, workers=0, progress=False)
        with pytest.raises(StoreError, match="new --collection"):
            index_records(tiny_encoder, store, "shapes", records, workers=0, progress=False)
        with pytest.raises(StoreError, match="holds vectors of model"):
            Searcher(tiny_encoder, store, "shapes")
        assert store.count("shapes") == 9


def test_plan_stage_alone(tmp_path, tiny_encoder):
    records = shape_items(tmp_path / "data")
    build = RecipeTextBuilder.for_tokenizer(tiny_encoder.tokenizer)
    items = make_items(records + records[:2], build)  # duplicates collapse to one point
    assert len(items) == 9
    assert items[0].id == point_id(str((tmp_path / "data").resolve()), records[0].relative_image)
    with ServerStore(":memory:") as store:
        store.create_or_open("p", CollectionSpec(32, {"name": "tiny-random"}))
        hashed, rejects = hash_items(items)
        work = plan(store, "p", hashed)
        assert (len(work.todo), work.unchanged, rejects) == (9, 0, [])
        assert items[0].content_hash == content_hash(records[0], items[0].text)


def test_query_parsing():
    terms = parse_query('"2:strawberry tart" + whipped cream - chocolate')
    assert [(t.kind, t.value, t.weight) for t in terms] == [
        ("text", "strawberry tart", 2.0),
        ("text", "whipped cream", 1.0),
        ("text", "chocolate", -1.0),
    ]
    assert parse_query("stir-fry with bok choy")[0].value == "stir-fry with bok choy"
    some = "7A049D7A-0B52-5B83-9C36-1E2C7D8F0A11"
    assert parse_query(f"id:{some}")[0] == Term("point", some.lower(), 1.0)  # as stored
    with pytest.raises(ValueError, match="no point '1234'"):
        parse_query("id:1234")
    with pytest.raises(ValueError, match="empty query"):
        parse_query("   ")
    with pytest.raises(ValueError, match="positive term"):
        parse_query("- chocolate")
    with pytest.raises(ValueError, match="no image file"):
        parse_query("missing/photo.jpg + tart", allow_paths=True)


def test_ingredient_votes():
    hits = [
        StoredPoint("a", {"base_ingredients": ["egg", "flour"]}, score=0.6),
        StoredPoint("b", {"base_ingredients": ["egg", "sugar"]}, score=0.3),
        # a negative score casts no vote
        StoredPoint("c", {"base_ingredients": ["salt"]}, score=-0.2),
    ]
    votes = vote_ingredients(hits)
    assert votes[0] == ("egg", pytest.approx(1.0))
    assert dict(votes) == {
        "egg": pytest.approx(1.0),
        "flour": pytest.approx(2 / 3),
        "sugar": pytest.approx(1 / 3),
        "salt": 0.0,
    }


def test_ingredient_votes_of_hits_are_the_library_votes():
    """The page and ``search --suggest`` vote through the library: base ingredients, or else
    the ingredient phrases, of each hit, weighted by its score."""
    hits = [
        StoredPoint(
            "a", {"base_ingredients": ["egg", "flour"], "ingredients": ["2 eggs"]}, score=0.5
        ),
        StoredPoint("b", {"base_ingredients": [], "ingredients": [" Egg", "BUTTER "]}, score=0.5),
        StoredPoint("c", {"ingredients": ["flour"]}, score=0.25),
        StoredPoint("d", {"title": "no ingredients"}, score=0.25),
        StoredPoint("e", {"base_ingredients": ["salt"]}, score=-0.1),
    ]
    voters = [
        (0.5, ["egg", "flour"]),
        (0.5, [" Egg", "BUTTER "]),
        (0.25, ["flour"]),
        (0.25, []),
        (-0.1, ["salt"]),
    ]
    for top in (2, SUGGESTIONS):
        assert vote_ingredients(hits, top) == suggestions.vote_ingredients(voters, top)
    shares = {"egg": 1 / 1.5, "flour": 0.75 / 1.5, "butter": 0.5 / 1.5, "salt": 0.0}
    assert dict(vote_ingredients(hits)) == pytest.approx(shares)


@pytest.mark.slow
def test_cli_index_then_search(trained, tmp_path, capsys):
    encoder, records = trained
    folder = Path(records[0].root)
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"image": str(r.image), "caption": r.title, "ingredients": r.ingredients})
            + "\n"
            for r in records
        )
    )
    model = str(Path(encoder.info.spec))
    store = str(tmp_path / "store")
    common = ["--collection", "shapes", "--store", store]
    assert cli(["index", "--model", model, "--data", str(manifest), *common, "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert re.search(r"indexed 9, unchanged 0, rejected 0, pruned 0; 9 points", summary), summary
    assert (
        cli(["search", "a green triangle", "--target", "image", "-k", "2", "--json", *common]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["rank"] == 1 and rows[0]["title"] == "a green triangle"
    assert Path(rows[0]["path"]).resolve() == (folder / "green_triangle_0.png").resolve()
    image = str(folder / "blue_square_0.png")
    assert (
        cli(["search", "--image", image, "--target", "text", "-k", "3", "--suggest", *common]) == 0
    )
    table = capsys.readouterr().out
    # rank, score, probability ("-": the tiny model is not calibrated), then the title
    assert table.splitlines()[1].split()[2:6] == ["-", "a", "blue", "square"]
    assert "suggested ingredients" in table and "blue paint" in table
    assert cli(["search", "", *common]) == 2
    assert "empty query" in capsys.readouterr().err
    assert cli(["search", "tart", "--collection", "nope", "--store", store]) == 1
    assert "no collection 'nope'" in capsys.readouterr().err


def test_cli_unreachable_server_is_one_line(capsys, tmp_path):
    code = cli(["search", "tart", "--collection", "x", "--qdrant-url", "http://127.0.0.1:9"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "cannot reach a Qdrant server" in err


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_leaves_the_exact_count(tmp_path):
    data = tmp_path / "many"
    for i in range(600):
        colour, shape = list(COLOURS)[i % 3], SHAPES[(i // 3) % 3]
        draw_image(data / f"{i:04d}_{colour}_{shape}.png", colour, shape, size=(40, 40))
    store = tmp_path / "store"
    index = index_args(data, store, "--batch-size", "2", collection="many", progress=True)
    command = [sys.executable, "-m", "multimodal.cli", *index]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env, text=True)
    kill_once_written(process, total=600, at_least=40, timeout=300)
    encoder = load_encoder("tiny-random", device="cpu")
    with EdgeStore(store) as reopened:
        survived = reopened.count("many")
        assert 0 < survived < 600
        report = index_records(
            encoder, reopened, "many", _folder_records(data), workers=0, progress=False
        )
        assert report.unchanged == survived and report.indexed == 600 - survived
        assert reopened.count("many") == 600
        again = index_records(encoder, reopened, "many", _folder_records(data), progress=False)
        assert (again.indexed, again.total) == (0, 600)


def _folder_records(folder: Path) -> list[Record]:
    from multimodal.data.readers import read_records

    return read_records(folder)


def test_cli_writes_the_rejects_file(tmp_path, capsys):
    data = tmp_path / "photos"
    draw_image(data / "good.png", "red", "square")
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    store = tmp_path / "store"
    args = index_args(data, store)
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "indexed 1, unchanged 0, rejected 1" in out
    rejects = store / "c.rejects.jsonl"
    assert f"reasons in {rejects}" in out
    (row,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert row["path"].endswith("broken.jpg") and row["reason"]


INDEX_RACE = """
import sys, time
from pathlib import Path
import indexer.commands.index  # the slow imports before the start line
from multimodal.cli import main
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_two_index_runs_creating_one_collection(tmp_path):
    """Two ``multimodal index`` runs started together on a new collection in one store: one
    whole collection; a run that loses says in one line that the store is open elsewhere."""
    data, store, go = tmp_path / "photos", tmp_path / "store", tmp_path / "go"
    for colour, shape in zip(COLOURS, SHAPES, strict=True):
        draw_image(data / f"{colour}_{shape}.png", colour, shape, size=(40, 40))
    index = index_args(data, store)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", INDEX_RACE, str(flag), str(go), *index],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for flag in ready
    ]
    while not all(flag.exists() for flag in ready):  # both past their imports
        assert all(run.poll() is None for run in runs), [run.stderr.read() for run in runs]
        time.sleep(0.05)
    go.touch()
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert 0 in [code for code, _ in outcomes], outcomes
    for code, err in outcomes:
        assert "Traceback" not in err, err
        if code != 0:
            (line,) = err.strip().splitlines()
            assert code == 1 and "open in another process" in line, err
    with EdgeStore(store) as reopened:
        assert reopened.collections() == ["c"] and reopened.count("c") == 3
    assert sorted(p.name for p in store.iterdir()) == [".create.lock", "c"]


def _one_photo_collection(tmp_path: Path) -> tuple[list[str], Path]:
    """Index one drawn photo with the tiny model: the index arguments and the store folder."""
    store = tmp_path / "store"
    draw_image(tmp_path / "photos" / "red.png")
    args = index_args(tmp_path / "photos", store)
    assert cli(args) == 0
    return args, store


@pytest.mark.parametrize("limit", ["99999999999999999999", "0", "-3", "1000001", "ten"])
def test_search_result_count_is_checked_when_parsed(tmp_path, capsys, limit):
    from indexer.commands import search as search_command

    _, store = _one_photo_collection(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        search_command.main(["tart", "-k", limit, "--collection", "c", "--store", str(store)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "argument -k/--limit: must be a whole number from 1 to 10000" in err.splitlines()[-1]


def test_corrupt_collection_metadata_is_one_line_from_the_commands(tmp_path, capsys):
    index, store = _one_photo_collection(tmp_path)
    metadata = store / "c" / "collection.json"
    metadata.write_text('{"format": ')
    capsys.readouterr()
    assert cli(index) == 1
    assert cli(["search", "tart", "--collection", "c", "--store", str(store)]) == 1
    for line in capsys.readouterr().err.strip().splitlines():
        assert str(metadata) in line and "Traceback" not in line


def _index_folder(encoder, store, folder: Path, prune: bool = False):
    return index_records(
        encoder, store, "shapes", _folder_records(folder), workers=0, progress=False, prune=prune
    )


def _stored_roots(store) -> set[str]:
    return {p.payload["root"] for p in store.scroll("shapes", fields=["root"])}


def test_a_moved_folder_keeps_its_points_without_embedding_again(tiny_encoder, tmp_path, store):
    first = tmp_path / "photos"
    copied(shape_items(tmp_path / "drawn"), first)
    assert _index_folder(tiny_encoder, store, first).total == 9
    ids = sorted(p.id for p in store.scroll("shapes"))
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    first.rename(moved)
    report = _index_folder(tiny_encoder, store, moved, prune=True)
    assert (report.indexed, report.unchanged, report.pruned, report.total) == (0, 9, 0, 9)
    assert report.relinked == {str(first): str(moved)}
    assert "re-linked 9 points" in report.summary()
    assert sorted(p.id for p in store.scroll("shapes")) == ids  # the same points
    assert _stored_roots(store) == {str(moved)}
    assert {p.payload["source"] for p in store.scroll("shapes")} == {"renamed"}  # folder's name
    assert store.metadata("shapes")["roots"] == [str(moved)]
    assert store.count("shapes", SearchFilter(root=str(moved))) == 9
    assert all(p.image_path.is_file() for p in store.scroll("shapes", fields=["root", "image"]))
    # --prune works on the moved folder; a changed and a new file are all that is embedded
    (moved / "red_square_0.png").unlink()
    draw_image(moved / "blue_circle_0.png", "red", "triangle", size=(48, 48))
    draw_image(moved / "extra.png", "green", "circle", size=(48, 48))
    again = _index_folder(tiny_encoder, store, moved, prune=True)
    assert (again.indexed, again.unchanged, again.pruned, again.total) == (2, 7, 1, 9)
    assert not again.relinked


def test_a_few_photos_of_a_gone_folder_are_new_data_not_the_folder_moved(
    tiny_encoder, tmp_path, store
):
    # Before: 3 of 9 matched "half of the smaller side", so the small folder took over all nine
    # points (and --prune would then delete the six it does not hold).
    first = tmp_path / "photos"
    copied(shape_items(tmp_path / "drawn"), first)
    _index_folder(tiny_encoder, store, first)
    small = tmp_path / "small"
    small.mkdir()
    for name in ("red_square_0.png", "green_circle_0.png", "blue_triangle_0.png"):
        shutil.copyfile(first / name, small / name)
    shutil.rmtree(first)  # the big folder is gone (an unplugged drive, say)
    report = _index_folder(tiny_encoder, store, small, prune=True)
    assert not report.relinked and (report.indexed, report.pruned) == (3, 0)
    assert store.count("shapes", SearchFilter(root=str(first))) == 9  # untouched, still there
    assert store.count("shapes") == 12


def test_a_point_id_that_is_not_a_uuid_is_a_clear_error(tiny_encoder, tmp_path, store):
    folder = tmp_path / "photos"
    copied(shape_items(tmp_path / "drawn"), folder)
    _index_folder(tiny_encoder, store, folder)
    searcher = Searcher(tiny_encoder, store, "shapes")
    with pytest.raises(ValueError, match="no point 'not-a-point'"):
        searcher.query_vector("id:not-a-point")


def test_a_moved_folder_with_edits_is_relinked_and_a_copy_is_not(tiny_encoder, tmp_path, store):
    first = tmp_path / "photos"
    copied(shape_items(tmp_path / "drawn"), first)
    _index_folder(tiny_encoder, store, first)
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)  # the first folder is still there: a second data set
    assert _index_folder(tiny_encoder, store, copy).indexed == 9
    assert store.count("shapes") == 18
    moved = tmp_path / "moved"
    first.rename(moved)
    draw_image(moved / "green_square_0.png", "blue", "circle", size=(48, 48))  # edited on the way
    draw_image(moved / "new.png", "blue", "square", size=(48, 48))
    report = _index_folder(tiny_encoder, store, moved, prune=True)
    assert report.relinked == {str(first): str(moved)}
    assert (report.indexed, report.unchanged, report.total) == (2, 8, 19)
    assert _stored_roots(store) == {str(copy), str(moved)}
    assert sorted(store.metadata("shapes")["roots"]) == sorted([str(copy), str(moved)])


def test_first_seen_root_keeps_the_ids_collections_were_built_with(tmp_path, tiny_encoder):
    """Collections indexed before roots had ids keep theirs: a root seen for the first time is
    known by its absolute path, as every point id was derived before."""
    import uuid

    from indexer.roots import ID_NAMESPACE

    records = shape_items(tmp_path / "data")
    items = make_items(records, RecipeTextBuilder.for_tokenizer(tiny_encoder.tokenizer))
    root = (tmp_path / "data").resolve()
    legacy = uuid.uuid5(ID_NAMESPACE, f"{root}\n{records[0].relative_image}")
    assert items[0].id == str(legacy)


def test_cli_index_after_mv_does_not_duplicate(tmp_path, capsys):
    first, moved, store = tmp_path / "a", tmp_path / "b", tmp_path / "store"
    for colour in COLOURS:
        draw_image(first / f"{colour}.png", colour, "circle", size=(40, 40))

    def index(folder: Path) -> str:
        assert cli(index_args(folder, store, "--prune")) == 0
        return capsys.readouterr().out

    index(first)
    first.rename(moved)
    summary = index(moved)
    assert "indexed 0, unchanged 3, rejected 0, pruned 0; 3 points" in summary, summary
    assert f"re-linked 3 points moved from {first}" in summary


def test_a_collection_of_the_previous_version_is_relinked_too(tiny_encoder, tmp_path):
    """Built before roots had ids (its metadata lists only ``roots``) and interrupted after
    the points of a move were rewritten but before the move was recorded: the next run
    re-links by id, embeds nothing, and a new folder at the old path gets ids of its own."""
    first, moved = tmp_path / "photos", tmp_path / "moved"
    copied(shape_items(tmp_path / "drawn"), first)
    with EdgeStore(tmp_path / "store") as store:
        _index_folder(tiny_encoder, store, first)
    metadata_file = tmp_path / "store" / "shapes" / "collection.json"
    metadata = json.loads(metadata_file.read_text())
    assert metadata.pop("root_ids") == {str(first): str(first)}
    metadata_file.write_text(json.dumps(metadata))  # as the previous version wrote it
    first.rename(moved)
    with EdgeStore(tmp_path / "store") as store:
        store.set_payload("shapes", {"root": str(moved)}, SearchFilter(root=str(first)))
        report = _index_folder(tiny_encoder, store, moved)
        assert (report.indexed, report.unchanged, report.total) == (0, 9, 9)
        assert report.relinked == {str(first): str(moved)}
        assert store.metadata("shapes")["root_ids"] == {str(moved): str(first)}
        shutil.copytree(moved, first)  # a new data set where the old one was
        again = _index_folder(tiny_encoder, store, first)
        assert (again.indexed, again.total, again.relinked) == (9, 18, {})
        assert _stored_roots(store) == {str(first), str(moved)}
        assert _index_folder(tiny_encoder, store, moved).indexed == 0


def test_cli_rejects_names_and_captions_not_in_utf8_and_indexes_the_rest(tmp_path, capsys):
    # Before: "'utf-8' codec can't encode character '\udce9' ... surrogates not allowed", exit
    # 2, nothing indexed, and no file named.
    data = tmp_path / "photos"
    draw_image(data / "good.png", "red", "square")
    draw_image(data / "creme.png", "blue", "circle")
    (data / "creme.txt").write_bytes("crème brûlée".encode("latin-1"))
    try:
        handle = os.open(os.fsencode(data) + b"/caf\xe9.png", os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError:  # a file system that takes only UTF-8 names
        pytest.skip("this file system refuses names that are not UTF-8")
    os.close(handle)
    draw_image(Path(os.fsdecode(os.fsencode(data) + b"/caf\xe9.png")), "green", "triangle")
    store = tmp_path / "store"
    args = index_args(data, store)
    assert cli(args) == 0
    assert "indexed 1, unchanged 0, rejected 2, pruned 0; 1 points" in capsys.readouterr().out
    rows = [json.loads(line) for line in (store / "c.rejects.jsonl").read_text().splitlines()]
    reasons = {Path(row["path"]).name: row["reason"] for row in rows}
    assert set(reasons) == {"caf\\xe9.png", "creme.png"}
    assert "not valid UTF-8: rename" in reasons["caf\\xe9.png"]
    assert "creme.txt is not UTF-8 text" in reasons["creme.png"]
    with EdgeStore(store) as opened:
        (point,) = list(opened.scroll("c", SearchFilter(), fields=["image"]))
        assert point.payload["image"] == "good.png"
