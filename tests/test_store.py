"""One suite, both stores: Qdrant Edge on a temporary folder and qdrant-client's in-process
mode (no Qdrant server binary can be installed here; the mode speaks the server's API)."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from indexer.collection_settings import QUANTIZATIONS, CollectionSettings
from indexer.edge import EdgeStore
from indexer.factory import open_store
from indexer.store import CollectionSpec, Point, SearchFilter, StoredPoint, StoreError

DIM = 8
REPO = Path(__file__).resolve().parents[1]
MODEL = {"name": "tiny-random", "arch": "tiny-random", "weights_sha256": None}


def unit(vector) -> list[float]:
    vector = np.asarray(vector, dtype=np.float32)
    return (vector / np.linalg.norm(vector)).tolist()


def axis(i: int, tilt: float = 0.0) -> list[float]:
    vector = np.full(DIM, tilt, np.float32)
    vector[i] = 1.0
    return unit(vector)


def make_points() -> list[Point]:
    rows = [
        ("apple pie", "apple_pie", ["2 apples", "flour"], ["apple", "flour"]),
        ("beef tacos", "tacos", ["beef", "salsa"], ["beef", "salsa"]),
        ("chicken curry", "curry", ["chicken", "rice"], ["chicken", "rice"]),
        ("fish tacos", "tacos", ["white fish", "salsa"], ["fish", "salsa"]),
    ]
    points = []
    for i, (title, label, ingredients, base) in enumerate(rows):
        payload = {
            "title": title,
            "label": label,
            "ingredients": ingredients,
            "base_ingredients": base,
            "split": "train" if i % 2 == 0 else "val",
            "image": f"images/{i}.jpg",
            "root": "/data",
        }
        points.append(
            Point(str(uuid.UUID(int=i + 1)), {"image": axis(i), "text": axis(i, 0.1)}, payload)
        )
    return points


@pytest.fixture
def filled(store):
    store.create_or_open("dishes", CollectionSpec(DIM, MODEL))
    store.upsert("dishes", make_points())
    return store


def test_create_records_model_and_indexes(filled):
    assert filled.collections() == ["dishes"]
    described = filled.describe("dishes")
    assert described["points"] == 4
    if isinstance(filled, EdgeStore):  # qdrant-client's local mode keeps no payload indexes
        assert {"label", "base_ingredients", "ingredients"} <= set(described["payload_indexes"])
    assert described["metadata"]["model"] == MODEL


def test_nearest_in_each_vector_space(filled):
    hits = filled.query("dishes", axis(2), using="image", limit=2)
    assert all(isinstance(hit, StoredPoint) and hit.vectors == {} for hit in hits)
    assert hits[0].payload["title"] == "chicken curry"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].score > hits[1].score
    text_hits = filled.query("dishes", axis(1, 0.1), using="text", limit=1)
    assert text_hits[0].payload["title"] == "beef tacos"


def test_point_with_one_vector_is_found_only_in_that_space(filled):
    only_text = Point(str(uuid.UUID(int=99)), {"text": axis(5)}, {"title": "caption only"})
    filled.upsert("dishes", [only_text])
    image_titles = [h.payload["title"] for h in filled.query("dishes", axis(5), "image", 10)]
    text_titles = [h.payload["title"] for h in filled.query("dishes", axis(5), "text", 10)]
    assert "caption only" not in image_titles
    assert text_titles[0] == "caption only"
    assert filled.count("dishes", SearchFilter(has_vector="image")) == 4


def test_filters(filled):
    def titles(spec):
        return sorted(
            h.payload["title"] for h in filled.query("dishes", axis(0), "image", 10, spec)
        )

    assert titles(SearchFilter(labels=["tacos"])) == ["beef tacos", "fish tacos"]
    assert titles(SearchFilter(with_ingredients=["salsa"])) == ["beef tacos", "fish tacos"]
    assert titles(SearchFilter(with_ingredients=["salsa"], without_ingredients=["beef"])) == [
        "fish tacos"
    ]
    # a word inside an ingredient line, not a base ingredient
    assert titles(SearchFilter(with_ingredients=["white"])) == ["fish tacos"]
    assert titles(SearchFilter(splits=["val"])) == ["beef tacos", "fish tacos"]
    assert filled.count("dishes", SearchFilter(labels=["curry", "apple_pie"])) == 2


def test_upsert_same_id_replaces(filled):
    points = make_points()
    points[0].payload["title"] = "apple tart"
    filled.upsert("dishes", points)
    assert filled.count("dishes") == 4
    (record,) = filled.retrieve("dishes", [points[0].id], with_vectors=True)
    assert isinstance(record, StoredPoint) and record.score is None
    assert record.payload["title"] == "apple tart"
    assert np.allclose(record.vectors["image"], axis(0), atol=1e-5)


def test_retrieve_scroll_delete(filled):
    ids = [p.id for p in make_points()]
    found = filled.retrieve("dishes", ids[:2] + [str(uuid.UUID(int=1234))], fields=["title"])
    assert sorted(r.id for r in found) == sorted(ids[:2])
    assert set(found[0].payload) == {"title"}
    assert found[0].vectors == {}
    assert sorted(r.id for r in filled.scroll("dishes", page=3)) == sorted(ids)
    with_vectors = {r.id: r.vectors for r in filled.scroll("dishes", with_vectors=True)}
    assert np.allclose(with_vectors[ids[2]]["image"], axis(2), atol=1e-5)
    filled.delete("dishes", ids[:3])
    assert filled.count("dishes") == 1
    assert [r.id for r in filled.scroll("dishes")] == ids[3:]


def test_another_model_is_refused(filled):
    other = {"name": "runs/recipe/best", "arch": "recipe-starter", "weights_sha256": "ab" * 32}
    with pytest.raises(StoreError, match="new --collection"):
        filled.create_or_open("dishes", CollectionSpec(DIM, other))
    assert filled.count("dishes") == 4


def test_metadata_update_and_missing_collection(filled):
    filled.update_metadata("dishes", {"roots": ["/data"]})
    assert filled.metadata("dishes")["roots"] == ["/data"]
    assert filled.metadata("dishes")["model"] == MODEL
    with pytest.raises(StoreError, match="no collection 'nope'"):
        filled.metadata("nope")


@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_quantized_collection(store, quantization):
    settings = CollectionSettings(quantization=quantization)
    store.create_or_open("small", CollectionSpec(DIM, MODEL, settings))
    store.upsert("small", make_points())
    store.optimize("small")
    assert store.query("small", axis(3), "image", 1)[0].payload["title"] == "fish tacos"
    assert store.metadata("small")["settings"]["quantization"] == quantization
    assert store.settings("small") == settings


def test_edge_store_persists_and_is_locked(tmp_path):
    with EdgeStore(tmp_path) as first:
        first.create_or_open("dishes", CollectionSpec(DIM, MODEL))
        first.upsert("dishes", make_points())
        with pytest.raises(StoreError, match="open in another process"):
            EdgeStore(tmp_path).count("dishes")
    with EdgeStore(tmp_path) as reopened:
        assert reopened.count("dishes") == 4
        assert reopened.query("dishes", axis(1), "image", 1)[0].payload["title"] == "beef tacos"


def test_unreachable_server_is_one_clear_error():
    with pytest.raises(StoreError, match="cannot reach a Qdrant server at http://127.0.0.1:9"):
        open_store(url="http://127.0.0.1:9")


def test_store_and_url_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        open_store(tmp_path, url=":memory:")


CREATE_RACE = """
import sys, time, uuid
from pathlib import Path
from indexer.edge import EdgeStore
from indexer.store import CollectionSpec, Point, StoreError
store_path, go = sys.argv[1], Path(sys.argv[2])
while not go.exists():  # start together
    time.sleep(0.001)
try:
    with EdgeStore(store_path) as store:
        store.create_or_open("dishes", CollectionSpec(8, {"name": "tiny-random"}))
        store.upsert("dishes", [Point(str(uuid.uuid4()), {"image": [1.0] + [0.0] * 7})])
except StoreError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
"""


@pytest.mark.parametrize("round", range(4))
def test_edge_processes_creating_one_collection_together(tmp_path, round):
    """Two processes create the same collection at the same moment: one collection, complete,
    no debris; a process that loses says the store is open elsewhere, in one line."""
    store, go = tmp_path / "store", tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_RACE, str(store), str(go)],
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    go.touch()
    outcomes = [(racer.wait(timeout=120), racer.stderr.read().decode()) for racer in racers]
    for code, err in outcomes:
        assert code == 0 or (code == 1 and len(err.splitlines()) == 1), err
        assert code == 0 or "open in another process" in err, err
    succeeded = sum(code == 0 for code, _ in outcomes)
    assert succeeded >= 1, outcomes
    with EdgeStore(store) as reopened:
        assert reopened.collections() == ["dishes"]
        assert reopened.count("dishes") == succeeded  # each winner's point, nothing lost
    assert sorted(p.name for p in store.iterdir()) == [".create.lock", "dishes"]  # no debris


def test_edge_corrupt_metadata_is_one_line_naming_the_file(tmp_path):
    with EdgeStore(tmp_path) as store:
        store.create_or_open("dishes", CollectionSpec(DIM, MODEL))
        store.upsert("dishes", make_points())
    metadata = tmp_path / "dishes" / "collection.json"
    for broken in ('{"format": ', "[1, 2]", '{"format": "x"}', "\xff\xfe"):
        metadata.write_bytes(broken.encode("latin-1"))
        with EdgeStore(tmp_path) as store:
            for call in (
                lambda: store.metadata("dishes"),
                lambda: store.create_or_open("dishes", CollectionSpec(DIM, MODEL)),
            ):
                with pytest.raises(StoreError) as raised:
                    call()
                message = str(raised.value)
                assert str(metadata) in message and "index again" in message
                assert len(message.splitlines()) == 1
    assert (tmp_path / "dishes" / "shard").is_dir()  # nothing was deleted


def test_edge_open_removes_what_an_interrupted_optimize_left(tmp_path):
    with EdgeStore(tmp_path) as store:
        store.create_or_open("dishes", CollectionSpec(DIM, MODEL))
        store.upsert("dishes", make_points())
    # What a run killed during optimize leaves (the layout Qdrant Edge uses for the segment it
    # builds): <collection>/shard/temp_segments/segment_builder_XXXXXX/...
    builder = tmp_path / "dishes" / "shard" / "temp_segments" / "segment_builder_x1Yz2W"
    with EdgeStore(tmp_path) as holder:
        assert holder.count("dishes") == 4  # it holds the shard: a builder now may be its own
        (builder / "vector_storage-image").mkdir(parents=True)
        (builder / "vector_storage-image" / "matrix.dat").write_bytes(b"\0" * 4096)
        (builder / "id_tracker.mappings").write_bytes(b"\0" * 64)
        with pytest.raises(StoreError, match="open in another process"):
            EdgeStore(tmp_path).count("dishes")
        assert builder.is_dir()  # a process that could not open the shard removes nothing
    assert builder.is_dir()  # the holder died with it there
    with EdgeStore(tmp_path) as reopened:
        assert reopened.count("dishes") == 4
        assert not builder.exists()
        reopened.optimize("dishes")
        assert reopened.query("dishes", axis(2), "image", 1)[0].payload["title"] == "chicken curry"


def test_set_payload_by_filter_keeps_vectors_and_other_fields(filled):
    moved = SearchFilter(labels=["tacos"])
    filled.set_payload("dishes", {"root": "/moved"}, moved)
    assert filled.count("dishes", SearchFilter(root="/moved")) == 2
    assert filled.count("dishes", SearchFilter(root="/data")) == 2
    tacos = {p.id: p for p in filled.scroll("dishes", moved, with_vectors=True)}
    assert {p.payload["title"] for p in tacos.values()} == {"beef tacos", "fish tacos"}
    beef = next(p for p in tacos.values() if p.payload["title"] == "beef tacos")
    assert np.allclose(beef.vectors["image"], axis(1), atol=1e-5)
    assert beef.payload["base_ingredients"] == ["beef", "salsa"]
    with pytest.raises(ValueError, match="filter"):
        filled.set_payload("dishes", {"root": "/everything"}, SearchFilter())


def test_edge_payload_indexes_are_memory_mapped_and_still_filter(tmp_path):
    # Indexes kept in RAM are rebuilt at every open of the shard, which grows with the
    # collection (docs/scaling-out.md); the schema every segment builds from says "cold".
    with EdgeStore(tmp_path) as store:
        store.create_or_open("dishes", CollectionSpec(DIM, MODEL))
        store.upsert("dishes", make_points())
        store.optimize("dishes")
    configs = list((tmp_path / "dishes" / "shard" / "segments").glob("*/payload_index/config.json"))
    assert configs
    for config in configs:
        fields = json.loads(config.read_text())["indexed_fields"]
        assert {"label", "base_ingredients", "ingredients"} <= set(fields)
        assert {name: schema["memory"] for name, schema in fields.items()} == dict.fromkeys(
            fields, "cold"
        )
    with EdgeStore(tmp_path) as reopened:
        tacos = SearchFilter(labels=["tacos"], with_ingredients=["salsa"])
        found = reopened.query("dishes", axis(1), "image", 4, tacos)
        assert {p.payload["title"] for p in found} == {"beef tacos", "fish tacos"}
