"""The scaling benchmarks run end to end on tiny sizes (their figures are not asserted on:
tests never time anything), and what they compute besides time is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from indexer.bm25 import Bm25Words
from indexer.edge import EdgeStore
from indexer.store import SearchFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import serve_start, store_bench  # noqa: E402


def test_store_bench_draws_the_same_rows_however_asked():
    whole = store_bench.draw(0, 0, 2500)
    pieces = np.vstack([store_bench.draw(0, start, 700) for start in range(0, 2500, 700)])
    assert np.array_equal(whole, pieces[:2500])
    assert np.allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)


def test_store_bench_exact_top10_is_the_true_nearest():
    queries = store_bench.draw(0, 10**9, 5)
    truth = store_bench.exact_top10(0, 3000, queries, batch=1000)
    scores = queries @ store_bench.draw(0, 0, 3000).T  # the naive way: every score at once
    naive = np.argsort(-scores, axis=1)[:, :10]
    assert truth == [[str(uuid.UUID(int=int(i) + 1)) for i in row] for row in naive]


@pytest.mark.slow
def test_store_bench_runs_every_store():
    command = [
        sys.executable,
        "benchmarks/store_bench.py",
        "--sizes",
        "1500",
        "--queries",
        "5",
        "--stores",
        "edge,edge-int8,local",
    ]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        found = re.match(r"\s+1,500\s+(edge|edge-int8|local)\s+(\d.*)", line)
        if found:
            rows[found[1]] = [float(value) for value in found[2].split()]
    assert set(rows) == {"edge", "edge-int8", "local"}
    assert rows["local"][5] == 1.0  # local mode searches exactly: recall 1 against numpy's
    assert re.search(r"edge-int8 / local: load [\d.]+x", out)


def test_serve_start_builds_a_resumable_synthetic_collection(tmp_path):
    centres = np.eye(8, 16, dtype=np.float32)
    words = Bm25Words()
    first = serve_start.synthetic_batch(0, 5, centres, words)
    again = serve_start.synthetic_batch(0, 5, centres, words)
    assert [p.id for p in first] == [p.id for p in again]
    assert all(
        np.array_equal(a.vectors["image"], b.vectors["image"])
        for a, b in zip(first, again, strict=True)
    )
    assert all(p.vectors["bm25"] and p.payload["label"] in serve_start.LABELS for p in first)
    with EdgeStore(tmp_path) as store:
        stamp = {"name": "synthetic", "arch": "none", "weights_sha256": None}
        serve_start.build(store, "big", 2500, stamp, 16, index=False)
        store.delete("big", [p.id for p in store.retrieve("big", [str(uuid.UUID(int=2400))])])
        store.update_metadata("big", {"synthetic_complete": None})  # as if killed near the end
        serve_start.build(store, "big", 2500, stamp, 16, index=False)
        assert store.count("big") == 2500
        assert store.count("big", SearchFilter(labels=[serve_start.LABELS[0]])) > 0
        assert store.metadata("big")["indexed"] is False
        serve_start.build(store, "big", 2500, stamp, 16)  # loaded unbuilt, now built
        assert store.metadata("big")["indexed"] is True
        assert store.count("big") == 2500


@pytest.mark.slow
def test_serve_start_times_two_real_servers(tmp_path):
    command = [
        sys.executable,
        "benchmarks/serve_start.py",
        "--points",
        "400",
        "--baseline",
        "200",
        "--store",
        str(tmp_path),
        "--model",
        "tiny-random",
        "--searches",
        "2",
    ]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert re.search(r"^\s+200\s+[\d.]+\s+[\d.]+", out, re.M)
    assert re.search(r"^\s+400\s+[\d.]+\s+[\d.]+", out, re.M)
    assert "ratio 400 / 200: page ready" in out


@pytest.mark.slow
def test_upload_memory_runs_both_servers():
    command = [sys.executable, "benchmarks/upload_memory.py", "--model", "tiny-random"]
    command += ["--side", "600", "--rounds", "1", "--uploads", "2"]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    for way in ("bounded", "unbounded"):
        assert re.search(rf"^{way}\s+before\s+\d+ MB .* answers \[200\]$", out, re.M), out
    assert re.search(r"bounded / unbounded peak growth: [\d.]+x", out), out


@pytest.mark.slow
def test_watch_latency_times_both_ways(tmp_path):
    from conftest import write_recipes5k

    root = write_recipes5k(tmp_path / "r5k", per_split=6)
    command = [sys.executable, "benchmarks/watch_latency.py", "--data", str(root)]
    command += ["--model", "tiny-random", "--photos", "3", "--trials", "1"]
    env = {**os.environ, "MULTIMODAL_HOME": str(tmp_path / "home")}
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, env=env)
    assert re.search(r"^rerun multimodal index: [\d.]+s$", out.stdout, re.M), out.stdout
    assert re.search(r"^--watch: [\d.]+s$", out.stdout, re.M), out.stdout
    assert re.search(r"^ratio: [\d.]+x sooner$", out.stdout, re.M), out.stdout


@pytest.mark.slow
def test_calibration_benchmark_measures_both_halves(tmp_path):
    from conftest import write_recipes5k

    root = write_recipes5k(tmp_path / "r5k", per_split=8)
    plot = tmp_path / "reliability.png"
    command = [sys.executable, "benchmarks/calibration.py", "--data", str(root)]
    command += ["--model", "tiny-random", "--seeds", "1", "--ood", "8", "--plot", str(plot)]
    env = {**os.environ, "MULTIMODAL_HOME": str(tmp_path / "home")}
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, env=env)
    assert re.search(r"^ECE, all held-out hits pooled: +[\d.]+$", out.stdout, re.M), out.stdout
    assert re.search(r"^val queries still answered: +[\d.]+$", out.stdout, re.M), out.stdout
    assert re.search(r"^ratio: [\d.]+x$", out.stdout, re.M), out.stdout
    assert plot.stat().st_size > 10_000  # a PNG was drawn


def test_marks_benchmark_trains_with_and_without_the_simulated_users_marks(tmp_path):
    from conftest import write_recipes5k

    root = write_recipes5k(tmp_path / "r5k", per_split=12)
    command = [sys.executable, "benchmarks/marks.py", "--data", str(root), "--model"]
    command += ["tiny-random", "--out", str(tmp_path / "runs"), "--queries", "6", "--top", "4"]
    command += ["--seeds", "0", "--feature-cache", str(tmp_path / "cache"), "--train-args"]
    command += ["--no-augment --epochs 1 --patience 0 --batch-size 4 --warmup-steps 1"]
    env = {**os.environ, "MULTIMODAL_HOME": str(tmp_path / "home")}
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True, env=env)
    marked = re.search(r"marked (\d+) Good and (\d+) Not this on 6 queries", out.stdout)
    assert marked and int(marked[1]) + int(marked[2]) == 6 * 4, out.stdout
    for group in ("other", "marked"):
        assert f"\n{group} val queries\n" in out.stdout
    assert re.search(r"^fine-tuned, marks +[\d.]+", out.stdout, re.M), out.stdout
    assert re.search(r"marks vs control, R@10 t->i: [-+][\d.]+ per seed \(x[\d.]+\)", out.stdout)
    assert (tmp_path / "runs" / "marks-seed0" / "marks.jsonl").stat().st_size > 0
