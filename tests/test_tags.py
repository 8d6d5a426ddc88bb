"""Labels from the user's words: a labels file read and checked, every photo tagged with the
labels whose text matches it (a payload field, replaced on a rerun), and the tags filtered on
from the command line and the JSON API; point payloads set on both stores."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from conftest import index_args, shape_records
from test_store import DIM, MODEL

from indexer.commands.search import where_fields
from indexer.store import CollectionSpec, Point, SearchFilter
from indexer.tags import check_field, choose, read_labels
from multimodal.cli import main as cli


def test_a_labels_file_is_read_and_checked(tmp_path):
    good = tmp_path / "course.txt"
    good.write_text("# courses\ndessert: a sweet dish, cake or pie\n\nmain course\n")
    labels = read_labels(good)
    assert [(label.name, label.text) for label in labels] == [
        ("dessert", "a sweet dish, cake or pie"),
        ("main course", "main course"),
    ]
    twice = tmp_path / "twice.txt"
    twice.write_text("soup\nsoup: hot\n")
    with pytest.raises(ValueError, match="twice.txt:2: the label 'soup' is given twice"):
        read_labels(twice)
    lonely = tmp_path / "one.txt"
    lonely.write_text("soup\n")
    with pytest.raises(ValueError, match="at least two labels"):
        read_labels(lonely)
    with pytest.raises(FileNotFoundError, match="no labels file"):
        read_labels(tmp_path / "gone.txt")
    for bad in ("root", "image", "label_scores", "9lives", "a-b"):
        with pytest.raises(ValueError):
            check_field(bad)
    assert check_field("course") == "course"


def test_the_best_label_and_those_within_the_margin():
    chosen, scores = choose(np.array([0.1, 0.35, 0.34, 0.2]), ["a", "b", "c", "d"], margin=0.02)
    assert chosen == ["b", "c"] and list(scores) == ["b", "c", "d", "a"]
    assert choose(np.array([0.1, 0.35, 0.34]), ["a", "b", "c"], margin=0.0)[0] == ["b"]


def test_point_payloads_are_set_each_its_own(store):
    store.create_or_open("c", CollectionSpec(DIM, MODEL))
    ids = [str(uuid.uuid4()) for _ in range(3)]
    vectors = np.eye(DIM, dtype=np.float32)
    store.upsert(
        "c",
        [Point(i, {"image": vectors[n].tolist()}, {"title": f"t{n}"}) for n, i in enumerate(ids)],
    )
    store.set_point_payloads("c", {ids[0]: {"course": ["dessert"]}, ids[1]: {"course": ["main"]}})
    found = {p.id: p.payload for p in store.retrieve("c", ids)}
    assert found[ids[0]] == {"title": "t0", "course": ["dessert"]}
    assert found[ids[1]]["course"] == ["main"] and "course" not in found[ids[2]]
    desserts = store.count("c", SearchFilter(fields={"course": ["dessert", "starter"]}))
    assert desserts == 1


def test_tag_writes_the_field_replaces_it_and_search_filters_on_it(tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    shape_records(data, variants=1, seed=0)
    assert cli(index_args(data, store, collection="shapes")) == 0
    capsys.readouterr()
    labels = tmp_path / "colours.txt"
    labels.write_text("red: a red shape\ngreen: a green shape\nblue: a blue shape\n")
    where = ["--collection", "shapes", "--store", str(store)]
    tag = ["tag", *where, "--field", "colour", "--labels", str(labels), "--no-progress"]
    assert cli([*tag, "--dry-run", "--json"]) == 0
    sample = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(sample) == 9 and all(row["colour"] and row["path"] for row in sample)
    search = ["search", "a shape", "--json", "-k", "20", "--no-collapse", *where]
    assert cli(search) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert not any("colour" in row for row in rows)  # a dry run writes nothing
    assert cli([*tag, "--margin", "0"]) == 0
    assert "tagged 9 photos in 'colour'" in capsys.readouterr().out
    assert cli(search) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(
        len(row["colour"]) == 1 and set(row["colour_scores"]) == {"red", "green", "blue"}
        for row in rows
    )
    by_tag = {row["id"]: row["colour"][0] for row in rows}
    some = next(iter(by_tag.values()))
    assert cli([*search, "--where", f"colour={some}"]) == 0
    only = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only and {row["colour"][0] for row in only} == {some}
    assert len(only) == sum(tag == some for tag in by_tag.values())
    # a rerun replaces the field: every label within reach now
    assert cli([*tag, "--margin", "2"]) == 0
    capsys.readouterr()
    assert cli(search) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(sorted(row["colour"]) == ["blue", "green", "red"] for row in rows)
    assert cli([*tag, "--field", "root"]) == 2
    assert "written by multimodal index" in capsys.readouterr().err


def test_where_conditions_are_parsed():
    assert where_fields(["course=dessert", "course=starter", "diet=vegan"]) == {
        "course": ["dessert", "starter"],
        "diet": ["vegan"],
    }
    with pytest.raises(ValueError, match="--where takes FIELD=VALUE"):
        where_fields(["course"])
