"""Collection settings (shards, replicas, write consistency, on disk, quantization), rescoring
and oversampling at query time, bulk loads, and the ``multimodal collections`` command, on
Qdrant Edge in a temporary folder and qdrant-client's in-process mode.

The in-process mode keeps the vectors' ``on_disk`` and the metadata but not shards, replicas,
write consistency, the HNSW placement, quantization or optimizer settings, and it searches
exactly: for those, the tests check the requests the server store sends (the real client,
each call written down on its way through)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import index_args, shape_records
from test_store import DIM, MODEL, make_points

from indexer.collection_settings import (
    DEFAULT_OVERSAMPLING,
    CollectionSettings,
)
from indexer.commands import collections
from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.server import ServerStore
from indexer.store import CollectionSpec, Point, SearchRequest
from multimodal.cli import main as cli

REPO = Path(__file__).resolve().parents[1]
EVERYTHING = CollectionSettings(on_disk=True, hnsw_on_disk=True, quantization="binary")


class Recording:
    """The real client, with every call of ``names`` written down as it goes through."""

    def __init__(self, client, names: set[str]):
        self.client, self.names, self.calls = client, names, []

    def __getattr__(self, attribute):
        method = getattr(self.client, attribute)
        if attribute not in self.names:
            return method

        def call(*args, **kwargs):
            self.calls.append((attribute, args, kwargs))
            return method(*args, **kwargs)

        return call


def recording(store: ServerStore) -> Recording:
    store.client = Recording(store.client, {"create_collection", "update_collection"})
    return store.client


def edge_config(store: EdgeStore, name: str) -> dict:
    return json.loads((store.root / name / "shard" / "edge_config.json").read_text())


# -- settings recorded and applied ------------------------------------------------------------


def test_edge_applies_and_records_each_setting(tmp_path):
    with EdgeStore(tmp_path) as store:
        store.create_or_open("plain", CollectionSpec(DIM, MODEL))
        store.create_or_open("tuned", CollectionSpec(DIM, MODEL, EVERYTHING))
        plain, tuned = edge_config(store, "plain"), edge_config(store, "tuned")
        # the default collection is made as before: Qdrant Edge's defaults throughout
        assert "on_disk" not in plain["vectors"]["image"] and not plain.get("hnsw_config")
        assert not plain.get("quantization_config")
        assert all(tuned["vectors"][v]["on_disk"] is True for v in ("image", "text"))
        assert tuned["hnsw_config"]["on_disk"] is True
        assert tuned["quantization_config"] == {"binary": {}}
        assert store.metadata("tuned")["settings"] == EVERYTHING.record()
        assert store.describe("tuned")["settings"] == EVERYTHING.record()
        store.create_or_open(
            "int8", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="int8"))
        )
        assert edge_config(store, "int8")["quantization_config"]["scalar"]["quantile"] == 0.99
        store.upsert("tuned", make_points())
        store.optimize("tuned")
        assert store.query("tuned", make_points()[2].vectors["image"], "image", 1)[0].id == (
            make_points()[2].id
        )


def test_local_mode_keeps_on_disk_and_the_server_is_sent_every_setting():
    with ServerStore(":memory:") as store:
        calls = recording(store)
        settings = CollectionSettings(
            shards=3,
            replicas=2,
            write_consistency=2,
            on_disk=True,
            hnsw_on_disk=True,
            quantization="binary",
        )
        store.create_or_open("c", CollectionSpec(DIM, MODEL, settings))
        config = store.client.get_collection("c").config
        assert config.params.vectors["image"].on_disk is True  # kept by the in-process mode
        assert config.metadata["settings"]["shards"] == 3
        ((_, args, sent),) = [call for call in calls.calls if call[0] == "create_collection"]
        assert args == ("c",)
        assert (sent["shard_number"], sent["replication_factor"]) == (3, 2)
        assert sent["write_consistency_factor"] == 2
        assert sent["hnsw_config"].on_disk is True
        assert sent["quantization_config"].binary is not None
        assert all(vector.on_disk for vector in sent["vectors_config"].values())


def test_a_default_collection_sends_the_server_none_of_them():
    with ServerStore(":memory:") as store:
        calls = recording(store)
        store.create_or_open("c", CollectionSpec(DIM, MODEL))
        (sent,) = [kwargs for name, _, kwargs in calls.calls if name == "create_collection"]
        assert sent["shard_number"] is sent["replication_factor"] is None
        assert sent["hnsw_config"] is sent["quantization_config"] is None
        assert sent["vectors_config"]["image"].on_disk is None


def test_cluster_settings_on_the_embedded_store_are_one_line_naming_qdrant_url(tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        with pytest.raises(ValueError, match="--qdrant-url"):
            store.create_or_open("c", CollectionSpec(DIM, MODEL, CollectionSettings(shards=2)))
        assert store.collections() == []
    data = tmp_path / "data"
    shape_records(data, variants=1, seed=0)
    for flag in (
        ["--shards", "2"],
        ["--replicas", "2"],
        ["--write-consistency", "1", "--replicas", "3"],
    ):
        assert cli(index_args(data, tmp_path / "store", *flag)) == 2
    assert not (tmp_path / "store" / "c").exists()


def test_bad_settings_are_refused_with_the_flag_named():
    with pytest.raises(ValueError, match="--write-consistency 3 needs at least as many"):
        CollectionSettings(replicas=2, write_consistency=3)
    with pytest.raises(ValueError, match="unknown quantization 'pq'"):
        CollectionSettings(quantization="pq")
    with pytest.raises(ValueError, match="--shards must be at least 1"):
        CollectionSettings(shards=0)


def test_other_settings_on_an_existing_collection_are_refused_and_nothing_is_lost(store):
    store.create_or_open("c", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="int8")))
    store.upsert("c", make_points())
    before = store.metadata("c")
    for asked in (CollectionSettings(quantization="binary"), CollectionSettings(on_disk=True)):
        with pytest.raises(ValueError, match="made with int8 quantization.*collections drop c"):
            store.create_or_open("c", CollectionSpec(DIM, MODEL, asked))
    assert store.metadata("c") == before and store.count("c") == 4
    # what the collection has, or nothing asked: it opens as it is
    store.create_or_open("c", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="int8")))
    assert store.create_or_open("c", CollectionSpec(DIM, MODEL)) == before


def test_a_collection_made_before_settings_reads_its_recorded_quantization(tmp_path):
    with EdgeStore(tmp_path) as store:
        store.create_or_open(
            "old", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="int8"))
        )
        metadata = store.metadata("old")
        del metadata["settings"]
        store._write_metadata("old", {**metadata, "quantization": "int8"})  # as it was written
        store._known_settings.clear()
        assert store.settings("old") == CollectionSettings(quantization="int8")
        store.create_or_open(
            "old", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="int8"))
        )
        with pytest.raises(ValueError, match="not quantization binary"):
            store.create_or_open(
                "old", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="binary"))
            )


# -- quantized search: rescoring and oversampling ---------------------------------------------


def tied_set(rng: np.random.Generator):
    """A query, 8 points whose binary codes all equal the query's (the same sign in every
    dimension: binary quantization cannot tell them apart) at different true similarities,
    and 200 points on the other side of the sphere. Listed worst first."""
    query = rng.normal(size=32)
    query /= np.linalg.norm(query)
    near = [
        np.sign(query) * np.abs(query + rng.normal(size=32) * (0.1 + 0.08 * i)) for i in range(8)
    ]
    far = [-query + rng.normal(size=32) * 0.8 for _ in range(200)]
    vectors = [v / np.linalg.norm(v) for v in near[::-1] + far]
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vectors))]
    return query, ids, np.array(vectors)


@pytest.mark.parametrize("quantization", ["binary", "int8"])
def test_rescored_quantized_search_gives_the_exact_top_results(store, quantization):
    query, ids, vectors = tied_set(np.random.default_rng(1))
    store.create_or_open(
        "q", CollectionSpec(32, MODEL, CollectionSettings(quantization=quantization))
    )
    store.upsert("q", [Point(i, {"image": v}) for i, v in zip(ids, vectors, strict=True)])
    store.optimize("q")
    cosines = vectors @ query
    truth = [ids[k] for k in np.argsort(-cosines)[:3]]  # the naive reference
    near = set(ids[:8])
    for oversampling in (None, 8 / 3, 4.0):  # None: the default for the quantization
        hits = store.search("q", SearchRequest("image", query, oversampling=oversampling), 3)
        assert [hit.id for hit in hits] == truth
        expected = sorted(cosines, reverse=True)[:3]
        assert [hit.score for hit in hits] == pytest.approx(expected, abs=1e-4)
    assert store.query("q", query, "image", 3, exact=True)[0].id == truth[0]
    # one candidate per result: the rescored three come from the tied eight, best or not
    hits = store.search("q", SearchRequest("image", query, oversampling=1.0), 3)
    assert {hit.id for hit in hits} <= near


def test_without_rescoring_binary_scores_cannot_order_the_tied_points(tmp_path):
    """Qdrant Edge searches the binary codes: the eight tied points score alike and not as
    their cosines; rescoring (the default) ranks them by the original vectors."""
    query, ids, vectors = tied_set(np.random.default_rng(1))
    with EdgeStore(tmp_path) as store:
        store.create_or_open(
            "q", CollectionSpec(32, MODEL, CollectionSettings(quantization="binary"))
        )
        store.upsert("q", [Point(i, {"image": v}) for i, v in zip(ids, vectors, strict=True)])
        rough = store.search("q", SearchRequest("image", query, rescore=False), 8)
        assert {hit.id for hit in rough} == set(ids[:8])
        assert len({hit.score for hit in rough}) == 1  # one binary score for all eight
        exact = sorted(vectors @ query, reverse=True)[:8]
        assert [hit.score for hit in rough] != pytest.approx(exact, abs=1e-3)


def test_quantization_search_parameters_as_both_stores_are_sent_them():
    request = SearchRequest("image", [1.0, 0.0])
    assert request.quantization(None) is None
    default = {"rescore": True, "oversampling": DEFAULT_OVERSAMPLING["binary"]}
    assert request.quantization("binary") == default
    assert SearchRequest("image", [1.0, 0.0], rescore=False, oversampling=2.5).quantization(
        "int8"
    ) == {"rescore": False, "oversampling": 2.5}
    assert SearchRequest("image", [1.0, 0.0], exact=True).quantization("int8") == {"ignore": True}
    with pytest.raises(ValueError, match="oversampling must be at least 1"):
        SearchRequest("image", [1.0, 0.0], oversampling=0.5)
    from indexer.edge_query import EDGE_QUERIES
    from indexer.query_plan import plan_query
    from indexer.server import SERVER_QUERIES

    asked = SearchRequest("image", [1.0, 0.0], oversampling=3.0)
    for make in (EDGE_QUERIES, SERVER_QUERIES):
        params = plan_query(asked, None, asked.quantization("binary"), make).params
        assert (params.quantization.rescore, params.quantization.oversampling) == (True, 3.0)
        assert not params.exact
        assert plan_query(request, None, None, make).params is None


def test_binary_quantization_end_to_end_through_the_index_pipeline(tiny_encoder, tmp_path, store):
    records = shape_records(tmp_path / "data", variants=2, seed=5)
    settings = CollectionSettings(quantization="binary")
    report = index_records(
        tiny_encoder, store, "bin", records, workers=0, settings=settings, progress=False
    )
    assert report.total == len(records) == 18
    assert store.settings("bin") == settings
    stored = {p.id: np.asarray(p.vectors["image"]) for p in store.scroll("bin", with_vectors=True)}
    for point_id, vector in stored.items():
        # every candidate rescored: the exact nearest, itself
        everything = SearchRequest("image", vector, oversampling=float(len(stored)))
        (first,) = store.search("bin", everything, 1)
        assert first.id == point_id and first.score == pytest.approx(1.0, abs=1e-4)
        # the default oversampling: whatever it preselects comes back with its true cosine
        for hit in store.search("bin", SearchRequest("image", vector), 5):
            assert hit.score == pytest.approx(float(stored[hit.id] @ vector), abs=1e-4)


# -- bulk loads ---------------------------------------------------------------------------------

BIG = 2048  # 1,300 such vectors pass Qdrant Edge's indexing threshold (10,000 KB): an HNSW


def big_points(count: int) -> list[Point]:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(count, BIG)).astype(np.float32)
    return [Point(str(uuid.UUID(int=i + 1)), {"image": v}) for i, v in enumerate(vectors)]


def test_edge_bulk_load_defers_the_hnsw_then_builds_it_once(tmp_path):
    points = big_points(1300)
    with EdgeStore(tmp_path) as store:
        # the reference: without a bulk load, the optimize after the load builds the index
        store.create_or_open("plain", CollectionSpec(BIG, MODEL))
        store.upsert("plain", points)
        store.optimize("plain")
        assert store.describe("plain")["indexed_vectors"] == 1300
        store.create_or_open("bulk", CollectionSpec(BIG, MODEL))
        store.begin_bulk("bulk")
        assert edge_config(store, "bulk")["optimizers"]["indexing_threshold"] == 0
        assert store.describe("bulk")["bulk_load"]["since"]
        store.upsert("bulk", points)
        store.optimize("bulk")  # what an ordinary run does at its end: nothing is built
        assert store.describe("bulk")["indexed_vectors"] == 0
        assert store.query("bulk", points[5].vectors["image"], "image", 1)[0].id == points[5].id
        store.end_bulk("bulk")
        described = store.describe("bulk")
        assert (described["indexed_vectors"], described["points"]) == (1300, 1300)
        assert described["bulk_load"] is None
        assert edge_config(store, "bulk")["optimizers"]["indexing_threshold"] is None
        store.end_bulk("bulk")  # nothing in progress: nothing to do
    with EdgeStore(tmp_path) as reopened:  # the restored configuration is the one on disk
        assert reopened.describe("bulk")["bulk_load"] is None
        assert edge_config(reopened, "bulk")["optimizers"]["indexing_threshold"] is None


def test_server_bulk_load_turns_indexing_off_and_restores_what_it_was():
    with ServerStore(":memory:") as store:
        store.create_or_open("c", CollectionSpec(DIM, MODEL))
        calls = recording(store)
        before = store.client.get_collection("c").config.optimizer_config.indexing_threshold
        store.begin_bulk("c")
        store.begin_bulk("c")  # again, as a rerun after a kill does: the record stays
        assert store.bulk_state("c")["indexing_threshold"] == before
        store.upsert("c", make_points())
        store.end_bulk("c", wait=True)  # the in-process mode is always indexed (green)
        assert store.bulk_state("c") is None and store.count("c") == 4
        sent = [kwargs.get("optimizers_config") for _, _, kwargs in calls.calls]
        thresholds = [optimizers.indexing_threshold for optimizers in sent if optimizers]
        assert thresholds == [0, 0, before]


KILLED_BULK_LOAD = """
import os, signal, sys
from pathlib import Path
from indexer.collection_settings import CollectionSettings
from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from multimodal.data.readers import read_records
from multimodal.encoder import load_encoder

store = EdgeStore(sys.argv[1])
real_upsert, batches = store.upsert, []

def upsert(name, points):  # SIGKILL after the third batch written, mid-load
    real_upsert(name, points)
    batches.append(len(points))
    if len(batches) == 3:
        os.kill(os.getpid(), signal.SIGKILL)

store.upsert = upsert
records = read_records(sys.argv[2])
index_records(load_encoder("tiny-random", device="cpu"), store, "photos", records,
              batch_size=2, workers=0, settings=CollectionSettings(bulk_load=True),
              progress=False)
"""


def test_a_bulk_load_killed_midway_is_noticed_and_finished_by_the_next_run(tmp_path, capsys):
    data, store_path = tmp_path / "data", tmp_path / "store"
    shape_records(data, variants=2, seed=2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", KILLED_BULK_LOAD, str(store_path), str(data)]
    killed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    with EdgeStore(store_path) as store:
        assert store.count("photos") == 6  # three batches of two
        assert store.bulk_state("photos") is not None
        assert edge_config(store, "photos")["optimizers"]["indexing_threshold"] == 0
    assert cli(["collections", "describe", "photos", "--store", str(store_path)]) == 0
    assert re.search(r"^bulk load +in progress since", capsys.readouterr().out, re.M)
    # the next run, without --bulk-load: finishes the load, then turns indexing back on
    assert cli(index_args(data, store_path, collection="photos")) == 0
    summary = capsys.readouterr().out
    assert "indexed 12, unchanged 6" in summary and "18 points" in summary
    assert "finished the bulk load an earlier run left in progress" in summary
    with EdgeStore(store_path) as store:
        assert store.bulk_state("photos") is None and store.count("photos") == 18
        assert edge_config(store, "photos")["optimizers"]["indexing_threshold"] is None


# -- multimodal collections -------------------------------------------------------------------


@pytest.fixture
def edge_store(tmp_path):
    """A store with two collections: a plain one of four points, a quantized one of none."""
    path = tmp_path / "store"
    with EdgeStore(path) as store:
        store.create_or_open("dishes", CollectionSpec(DIM, MODEL))
        store.upsert("dishes", make_points())
        store.create_or_open("small", CollectionSpec(DIM, MODEL, EVERYTHING))
    return path


def test_collections_list_and_describe(edge_store, capsys):
    assert cli(["collections", "--store", str(edge_store)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "name",
        "points",
        "model",
        "dim",
        "quantization",
        "on",
        "disk",
        "shards",
        "words",
    ]
    assert rows[0].split() == ["dishes", "4", "tiny-random", "8", "none", "no", "-", "no"]
    assert rows[1].split() == [
        "small",
        "0",
        "tiny-random",
        "8",
        "binary",
        "vectors+hnsw",
        "-",
        "no",
    ]
    assert cli(["collections", "list", "--json", "--store", str(edge_store)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["points"] for row in listed] == [4, 0]
    assert listed[1]["settings"] == EVERYTHING.record()
    assert cli(["collections", "describe", "small", "--store", str(edge_store)]) == 0
    lines = dict(
        line.split(None, 1)
        for line in capsys.readouterr().out.splitlines()
        if not line.startswith(("bulk load", "payload indexes"))
    )
    assert lines["settings"] == "binary quantization, vectors on disk, HNSW on disk"
    assert lines["points"].startswith("0 (indexed vectors 0")
    assert cli(["collections", "describe", "dishes", "--json", "--store", str(edge_store)]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["points"] == 4 and described["bulk_load"] is None
    assert described["settings"] == CollectionSettings().record()
    assert {"label", "ingredients"} <= set(described["payload_indexes"])


def test_collections_on_a_server_store(store, capsys):
    store.create_or_open("c", CollectionSpec(DIM, MODEL, CollectionSettings(quantization="int8")))
    store.upsert("c", make_points())
    assert collections.print_list(store, as_json=False) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:5] == [
        "c",
        "4",
        "tiny-random",
        "8",
        "int8",
    ]
    assert collections.print_description(store, "c", as_json=False) == 0
    assert "int8 quantization, vectors in RAM" in capsys.readouterr().out


def test_collections_missing_is_one_line_and_exit_2(edge_store, capsys):
    for action in ("describe", "drop"):
        assert cli(["collections", action, "nope", "--store", str(edge_store)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no collection 'nope'" in err
        assert "collections: dishes, small" in err
    assert cli(["collections", "describe", "--store", str(edge_store)]) == 2
    assert "name the collection" in capsys.readouterr().err


def test_collections_drop_asks_first(edge_store, capsys, monkeypatch):
    drop = [
        sys.executable,
        "-m",
        "multimodal.cli",
        "collections",
        "drop",
        "dishes",
        "--store",
        str(edge_store),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    refused = subprocess.run(
        drop,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    with EdgeStore(edge_store) as store:
        assert store.count("dishes") == 4

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    assert cli(drop[3:]) == 1 and "kept 'dishes'" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    assert cli(drop[3:]) == 0 and "dropped 'dishes' (4 points)" in capsys.readouterr().out
    assert cli(["collections", "drop", "small", "--yes", "--store", str(edge_store)]) == 0
    with EdgeStore(edge_store) as store:
        assert store.collections() == []


def test_drop_refuses_a_collection_open_in_another_process(edge_store, capsys):
    with EdgeStore(edge_store) as holder:
        holder.count("dishes")  # a serve or index run holding it
        assert cli(["collections", "drop", "dishes", "--yes", "--store", str(edge_store)]) == 1
        assert "open in another process" in capsys.readouterr().err
        assert holder.count("dishes") == 4
        assert cli(["collections", "--store", str(edge_store)]) == 0  # the rest still listed
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split()[:3] == ["dishes", "?", "tiny-random"]
        assert lines[2].split()[:2] == ["small", "0"]
        assert lines[3].startswith("dishes: the store") and "open in another process" in lines[3]


def test_cli_index_with_settings_then_search_with_and_without_rescoring(tmp_path, capsys):
    data = tmp_path / "data"
    shape_records(data, variants=1, seed=4)
    common = ["--collection", "shapes", "--store", str(tmp_path / "store")]
    index = index_args(data, tmp_path / "store", collection="shapes")
    assert cli([*index, "--quantization", "binary", "--on-disk", "--bulk-load"]) == 0
    assert "9 points" in capsys.readouterr().out
    assert cli([*index, "--quantization", "int8"]) == 2  # another setting: refused, one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "made with binary quantization, vectors on disk" in err
    search = ["search", "a red circle", "--mode", "dense", "--json", "-k", "3", *common]

    def scores(*flags) -> list[float]:
        assert cli([*search, *flags]) == 0
        return [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]

    cosines = scores()  # rescored by the original vectors
    assert all(-1.0 <= score <= 1.0 and not score.is_integer() for score in cosines)
    assert scores("--oversampling", "9") == pytest.approx(cosines)  # every point rescored
    rough = scores("--no-rescore")  # Qdrant Edge's scores of the binary codes: whole numbers
    assert all(score.is_integer() for score in rough) and rough != pytest.approx(cosines)
    for bad in ("0.5", "inf", "two"):
        with pytest.raises(SystemExit) as exit_info:
            cli([*search, "--oversampling", bad])
        assert exit_info.value.code == 2
        assert "--oversampling: must be a number of at least 1" in capsys.readouterr().err
    with EdgeStore(tmp_path / "store") as store:
        assert store.count("shapes") == 9 and store.bulk_state("shapes") is None


def test_one_replica_is_the_default_and_reruns_may_say_so(tmp_path):
    assert CollectionSettings(replicas=1, write_consistency=1) == CollectionSettings()
    with EdgeStore(tmp_path) as store:  # one shard is what the embedded store has
        spec = CollectionSpec(DIM, MODEL, CollectionSettings(shards=1, replicas=1))
        store.create_or_open("c", spec)
        assert store.create_or_open("c", spec)["settings"]["shards"] == 1
        store.create_or_open(
            "c", CollectionSpec(DIM, MODEL, CollectionSettings(write_consistency=1))
        )
