"""The Ray engine (``--engine ray``) on a real local Ray cluster, started once for the session:
the same points as the local engine, reruns, rejects, a killed job finished by a rerun, the
worker-side writer, ``embed``, and the one-line errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, SHAPES, draw_image, index_args, kill_once_written, shape_records

from indexer.edge import EdgeStore
from indexer.pipeline import index_records, make_items, start_index
from indexer.ray_index import PointWriter, ServerTarget, _row, index_records_ray
from indexer.server import ServerStore
from multimodal.cli import main as cli
from multimodal.data.records import Record
from multimodal.data.text import RecipeTextBuilder
from multimodal.ray_embed import (
    RAY_EXTRA,
    RayOptions,
    embed_dataset,
    plan_actors,
    ray_session,
    run_batches,
)

REPO = Path(__file__).resolve().parents[1]
TWO_ACTORS = RayOptions(actors=2, device="cpu")


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for the whole session; its address, for subprocesses."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def drawn_records(folder: Path) -> list[Record]:
    """Nine drawings with titles and ingredients, a corrupt photo with a title, and a recipe
    with no photo: every kind of item the engines must treat alike."""
    records = shape_records(folder, variants=1, seed=5)
    for record in records:
        colour, shape = record.label.split()
        record.root = folder
        record.ingredients = [f"{colour} paint", shape]
        record.ingredients_simplified = [colour]
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not a photo")
    records.append(Record(image=broken, title="a broken photo", root=folder))
    records.append(Record(image=None, title="a recipe with no photo", ingredients=["salt"]))
    return records


def contents(store, collection: str) -> dict[str, tuple[dict, dict]]:
    """id -> (payload, dense vectors) of every point."""
    points = store.scroll(collection, with_vectors=True)
    return {
        p.id: (p.payload, {k: np.asarray(v) for k, v in p.vectors.items() if k != "bm25"})
        for p in points
    }


def assert_same_points(store, reference, collection: str) -> None:
    got, expected = contents(store, collection), contents(reference, collection)
    assert sorted(got) == sorted(expected)
    for point_id, (payload, vectors) in expected.items():
        assert got[point_id][0] == payload
        assert sorted(got[point_id][1]) == sorted(vectors)
        for name, vector in vectors.items():
            np.testing.assert_allclose(got[point_id][1][name], vector, atol=1e-5)


def test_actor_plans():
    """GPU actors where there are GPUs, CPU actors leaving a share to decoding otherwise."""
    gpus = plan_actors(RayOptions(), {"CPU": 16.0, "GPU": 2.0})
    assert (gpus.actors, gpus.gpus, gpus.device, gpus.batch_size) == (2, 1, "cuda", 128)
    assert gpus.cpus * gpus.actors + gpus.decode_cpus <= 16
    cpu = plan_actors(RayOptions(actors=2), {"CPU": 2.0})
    assert (cpu.actors, cpu.gpus, cpu.device, cpu.threads, cpu.batch_size) == (2, 0, "cpu", 1, 16)
    assert cpu.cpus * cpu.actors + cpu.decode_cpus <= 2  # the decoding tasks always fit
    assert plan_actors(RayOptions(), {"CPU": 16.0}).actors == 4
    assert plan_actors(RayOptions(device="cpu"), {"CPU": 8.0, "GPU": 1.0}).device == "cpu"
    for options, resources, words in [
        (RayOptions(device="cuda"), {"CPU": 4.0}, "no GPU"),
        (RayOptions(actors=3), {"CPU": 4.0, "GPU": 2.0}, "2 GPUs"),
        (RayOptions(precision="bf16"), {"CPU": 4.0}, "GPU actors"),
        (RayOptions(batch_size=0), {"CPU": 4.0}, "--batch-size"),
    ]:
        with pytest.raises(ValueError, match=words):
            plan_actors(options, resources)


@pytest.mark.parametrize("command", ["index", "embed"])
def test_missing_ray_is_one_line(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    draw_image(tmp_path / "photos" / "red.png")
    args = index_args(tmp_path / "photos", tmp_path / "store", "--engine", "ray")
    if command == "embed":
        args = [
            "embed",
            "--model",
            "tiny-random",
            "--data",
            str(tmp_path / "photos"),
            "--out",
            str(tmp_path / "out"),
            "--engine",
            "ray",
        ]
    assert cli(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert RAY_EXTRA in line and "--engine ray" in line
    assert not (tmp_path / "store").exists() and not (tmp_path / "out").exists()


def test_unreachable_address_and_misplaced_flags_are_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{free.getsockname()[1]}"
    draw_image(tmp_path / "photos" / "red.png")
    store = tmp_path / "store"
    args = index_args(tmp_path / "photos", store, "--engine", "ray", "--ray-address", address)
    assert cli(args) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"cannot reach a Ray cluster at {address}" in line and "ray start --head" in line
    assert cli(index_args(tmp_path / "photos", store, "--actors", "2")) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--actors: only with --engine ray" in line
    assert not store.exists()  # nothing opened, nothing written


@pytest.mark.slow
def test_same_points_ids_and_payloads_as_the_local_engine(
    ray_cluster, store, tiny_encoder, tmp_path
):
    """Into each store (Qdrant Edge; qdrant-client's in-process mode, written through the
    driver): the local engine's ids, payloads and rejects, vectors within float noise, and a
    rerun that skips every item without any work on the cluster (a rejected photo, never
    stored, is tried again by every run, as with the local engine)."""
    records = drawn_records(tmp_path / "photos")
    with EdgeStore(tmp_path / "local") as reference:
        local = index_records(tiny_encoder, reference, "c", records, workers=0, progress=False)
        report = index_records_ray(tiny_encoder, store, "c", records, TWO_ACTORS, progress=False)
        assert (report.indexed, report.rejected, report.total) == (10, 1, 10)
        assert (local.indexed, local.rejected, local.total) == (10, 1, 10)
        assert [r.as_dict() for r in report.rejects] == [r.as_dict() for r in local.rejects]
        assert_same_points(store, reference, "c")
    assert store.metadata("c")["model"]["tta"] is False  # the photo-vector note was kept
    indexed = [r for r in records if r.image is None or r.image.name != "broken.jpg"]
    again = index_records_ray(tiny_encoder, store, "c", indexed, TWO_ACTORS, progress=False)
    assert (again.indexed, again.unchanged, again.total) == (0, 10, 10)
    assert "ray start" not in again.stages  # nothing to embed: no cluster work at all


@pytest.mark.slow
def test_ray_workers_read_heic_and_avif(ray_cluster, tmp_path, capsys):
    """The workers are Ray's processes, not forks of the driver: they get HEIC too."""
    from PIL import Image

    data, store = tmp_path / "phone", tmp_path / "store"
    data.mkdir()
    Image.new("RGB", (48, 40), (200, 40, 40)).save(data / "IMG_0001.HEIC", format="HEIF")
    Image.new("RGB", (48, 40), (30, 60, 220)).save(data / "dinner.avif", format="AVIF")
    assert cli(index_args(data, store, "--engine", "ray", "--actors", "1")) == 0
    assert "c: indexed 2, unchanged 0, rejected 0" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_ray_engine_rejects_file_and_a_changed_photo(ray_cluster, tmp_path, capsys):
    data, store = tmp_path / "photos", tmp_path / "store"
    for colour, shape in zip(COLOURS, SHAPES, strict=True):
        draw_image(data / f"{colour}_{shape}.png", colour, shape, size=(40, 40))
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    args = index_args(data, store, "--engine", "ray", "--actors", "2")
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"c: indexed 3, unchanged 0, rejected 1, pruned 0; 3 points; .*ray", out)
    (row,) = [json.loads(line) for line in (store / "c.rejects.jsonl").read_text().splitlines()]
    assert row["path"].endswith("broken.jpg") and "not an image file" in row["reason"]
    draw_image(data / "red_square.png", "blue", "circle", size=(40, 40))  # same file, new photo
    assert cli(args) == 0
    assert "c: indexed 1, unchanged 2, rejected 1, pruned 0; 3 points" in capsys.readouterr().out


@pytest.mark.slow
def test_worker_side_writer_writes_the_local_engines_points(ray_cluster, tiny_encoder, tmp_path):
    """The writer stage a Qdrant server gets, run here on the embedded batches against
    qdrant-client's in-process mode (no worker can reach that; a real server is reached by
    URL): every point is the local engine's."""
    records = drawn_records(tmp_path / "photos")
    reference, target = ServerStore(":memory:"), ServerTarget(":memory:")
    index_records(tiny_encoder, reference, "c", records, workers=0, progress=False)
    writer_store = ServerStore(":memory:")
    run = start_index(tiny_encoder, writer_store, "c", records, progress=False)
    writer = PointWriter(target, "c", run.words.settings)
    writer.store = writer_store  # the in-process mode exists once per client: share this one
    rows = [_row(i, item, with_item=True) for i, item in enumerate(run.todo)]
    written = 0
    with ray_session() as ray:
        plan = plan_actors(TWO_ACTORS, ray.cluster_resources())
        for batch in run_batches(embed_dataset(ray, rows, tiny_encoder, plan)):
            written += int(writer(batch)["written"].sum())
    assert written == 10 and writer_store.count("c") == 10
    assert_same_points(writer_store, reference, "c")


@pytest.mark.slow
def test_embed_with_ray_writes_the_local_engines_files(ray_cluster, tmp_path, capsys):
    data = tmp_path / "photos"
    for colour, shape in zip(COLOURS, SHAPES, strict=True):
        draw_image(data / f"{colour}_{shape}.png", colour, shape, size=(40, 40))
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    common = [
        "embed",
        "--model",
        "tiny-random",
        "--data",
        str(data),
        "--shard-size",
        "2",
        "--no-progress",
        "--workers",
        "0",
    ]
    assert cli([*common, "--out", str(tmp_path / "local")]) == 0
    assert cli([*common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--actors", "2"]) == 0
    assert "embedded now 4, already there 0, rejected images 1" in capsys.readouterr().out
    local, ray = tmp_path / "local", tmp_path / "ray"
    names = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(ray) for p in ray.rglob("*") if p.is_file())
    for name in names:
        if name.suffix == ".npy":
            np.testing.assert_allclose(np.load(ray / name), np.load(local / name), atol=1e-5)
        else:
            assert (ray / name).read_text() == (local / name).read_text(), name
    assert cli([*common, "--out", str(ray), "--engine", "ray"]) == 0
    assert "embedded now 0, already there 4" in capsys.readouterr().out


@pytest.mark.slow
def test_killed_ray_job_then_rerun_leaves_the_exact_count(ray_cluster, tiny_encoder, tmp_path):
    """``multimodal index --engine ray`` SIGKILLed once points are being written, then run
    again: every item exactly once."""
    data, store = tmp_path / "many", tmp_path / "store"
    for i in range(300):
        colour, shape = list(COLOURS)[i % 3], SHAPES[(i // 3) % 3]
        draw_image(data / f"{i:04d}_{colour}_{shape}.png", colour, shape, size=(32, 32))
    command = [
        sys.executable,
        "-m",
        "multimodal.cli",
        *index_args(
            data,
            store,
            "--engine",
            "ray",
            "--ray-address",
            ray_cluster,
            "--actors",
            "1",
            "--batch-size",
            "2",
            progress=True,  # the progress bar says when points are being written
        ),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env, text=True, cwd=REPO)
    kill_once_written(process, total=300, at_least=20, timeout=400)
    from multimodal.data.readers import read_records

    records = read_records(data)
    with EdgeStore(store) as reopened:
        survived = reopened.count("c")
        assert 0 < survived < 300
        one_actor = dataclasses.replace(TWO_ACTORS, actors=1)
        report = index_records_ray(tiny_encoder, reopened, "c", records, one_actor, progress=False)
        assert (report.unchanged, report.indexed, report.total) == (survived, 300 - survived, 300)
        build = RecipeTextBuilder.for_tokenizer(tiny_encoder.tokenizer)
        expected = {item.id for item in make_items(records, build)}
        assert {p.id for p in reopened.scroll("c", fields=[])} == expected


@pytest.mark.slow
def test_worker_side_writer_stage_reports_an_unreachable_server(
    ray_cluster, tiny_encoder, tmp_path, monkeypatch
):
    """The writer stage runs on the workers with the pickled items (and the driver's API key
    in their environment): a server they cannot reach is one line from the worker, and
    nothing is counted as written."""
    monkeypatch.setenv("QDRANT_API_KEY", "key-for-the-writers")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    records = drawn_records(tmp_path / "photos")
    planner = ServerStore(":memory:")  # the driver's view; the workers get only the URL
    with pytest.raises(RuntimeError) as failed:
        index_records_ray(
            tiny_encoder, planner, "c", records, TWO_ACTORS, ServerTarget(url), progress=False
        )
    (line,) = str(failed.value).splitlines()
    assert (
        line.startswith("a Ray worker failed:") and f"cannot reach a Qdrant server at {url}" in line
    )
    assert planner.count("c") == 0
