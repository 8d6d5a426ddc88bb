"""The Ray engine of ``multimodal index``: the local engine's plan, Ray's decoding and actors.

    multimodal index --engine ray --model recipe --data photos/ --collection photos

Planning stays on the driver with the local engine's own functions
(:func:`~indexer.pipeline.start_index`: ids, content hashes, moved roots re-linked, unchanged
items skipped without decoding). The planned items go through
:func:`multimodal.ray_embed.embed_dataset` (decoding tasks, an actor pool of models), and whole
points (:func:`~indexer.pipeline.to_points`) are written by :func:`write_batch`:

* to a Qdrant server or cluster, by a :class:`PointWriter` stage on the workers, each with its
  own client, so the vectors never pass through the driver;
* to the embedded store (Qdrant Edge, or qdrant-client's in-process mode, which no worker can
  reach), on the driver, as the batches come back.

Either way a point is written with all its vectors and its payload or not at all, so a run
killed at any moment is finished by running it again, with the exact count.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from indexer.bm25 import Bm25Settings, Bm25Words
from indexer.collection_settings import CollectionSettings
from indexer.pipeline import (
    EncodedBatch,
    IndexReport,
    IndexRun,
    Item,
    finish_index,
    record_tta,
    start_index,
    to_points,
)
from indexer.server import ServerStore
from indexer.store import Store
from indexer.tags import Tagger
from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.loading import Reject
from multimodal.data.records import Record
from multimodal.encoder import DualEncoder
from multimodal.ray_embed import (
    RayOptions,
    embed_dataset,
    plan_actors,
    ray_session,
    run_batches,
)


@dataclass
class ServerTarget:
    """A Qdrant server the workers write to themselves (``--qdrant-url``)."""

    url: str
    api_key_env: str = "QDRANT_API_KEY"  # the variable holding its API key, on the driver
    grpc: bool = False


def worker_target(store: Store, api_key_env: str, grpc: bool) -> ServerTarget | None:
    """Where the workers write: the store's server, unless it is the in-process mode."""
    if isinstance(store, ServerStore) and store.url != ":memory:":
        return ServerTarget(store.url, api_key_env, grpc)
    return None


def index_records_ray(
    encoder: DualEncoder,
    store: Store,
    collection: str,
    records: Sequence[Record],
    options: RayOptions,
    target: ServerTarget | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    prune: bool = False,
    settings: CollectionSettings | None = None,
    progress: bool = True,
) -> IndexReport:
    """Index ``records`` into ``collection`` on a Ray cluster (``options``); the points go to
    ``target`` from the workers when given, else to ``store`` through the driver. The same
    collection, ids, payloads and report as :func:`~indexer.pipeline.index_records`."""
    started = time.perf_counter()
    run = start_index(encoder, store, collection, records, settings, progress)
    if run.todo:
        begun = time.perf_counter()
        with ray_session(options.address) as ray:
            run.report.stages["ray start"] += time.perf_counter() - begun
            plan = plan_actors(options, ray.cluster_resources())
            _write_all(ray, encoder, store, run, plan, target, max_pixels, progress)
    return finish_index(store, collection, records, run.report, prune, started)


def _write_all(ray, encoder, store, run: IndexRun, plan, target, max_pixels, progress) -> None:
    report, collection = run.report, run.report.collection
    rows = [_row(i, item, with_item=target is not None) for i, item in enumerate(run.todo)]
    dataset = embed_dataset(ray, rows, encoder, plan, max_pixels)
    if target is not None:
        dataset = dataset.map_batches(
            PointWriter,
            fn_constructor_kwargs={
                "target": target,
                "collection": collection,
                "bm25": run.words.settings,
                "tagger": run.tagger,
            },
            compute=ray.data.ActorPoolStrategy(size=max(1, min(plan.actors, len(rows)))),
            batch_size=None,
            batch_format="numpy",
            num_cpus=0.01,  # a client waiting on the server
            runtime_env=_api_key_env(target),
        )
    recorded, clock = run.recorded, report.stages
    bar = tqdm(
        total=len(run.todo), unit="item", desc=f"indexing {collection} on Ray", disable=not progress
    )
    with bar:
        waited = time.perf_counter()
        for batch in run_batches(dataset):
            # The first wait includes the actors starting and loading the model.
            clock["ray first batch" if "ray first batch" not in clock else "ray"] += (
                time.perf_counter() - waited
            )
            if target is None:
                items = [run.todo[row] for row in batch["row"]]
                upserting = time.perf_counter()
                batch = write_batch(store, collection, run.words, items, batch, run.tagger)
                clock["upsert"] += time.perf_counter() - upserting
            if batch["imaged"].any():
                recorded = record_tta(store, collection, recorded, encoder.tta, run.empty)
            report.indexed += int(batch["written"].sum())
            report.rejects += _rejects(run.todo, batch)
            bar.update(len(batch["row"]))
            waited = time.perf_counter()


def _row(index: int, item: Item, with_item: bool) -> dict[str, Any]:
    image = str(item.record.image) if item.record.image is not None else ""
    row = {"row": index, "image": image, "text": item.text}
    if with_item:  # the writer on a worker builds the point's payload from it
        row["item"] = pickle.dumps(item)
    return row


def _api_key_env(target: ServerTarget) -> dict | None:
    """The API key the driver has, for the writers' processes under the same name."""
    key = os.environ.get(target.api_key_env)
    return {"env_vars": {target.api_key_env: key}} if key else None


def write_batch(
    store: Store,
    collection: str,
    words: Bm25Words,
    items: Sequence[Item],
    batch: dict[str, np.ndarray],
    tagger: Tagger | None = None,
) -> dict[str, np.ndarray]:
    """Upsert the whole points of one embedded batch (``items[i]`` is row ``i``); returns per
    row its ``row``, ``reject`` reason, whether a point was ``written`` and whether it has a
    photo vector (``imaged``)."""
    encoded = encoded_batch(items, batch)
    points = to_points(encoded, words, tagger)
    store.upsert(collection, points)
    written = {point.id for point in points}
    return {
        "row": batch["row"],
        "reject": batch["reject"],
        "written": np.array([item.id in written for item in items], bool),
        "imaged": np.array(
            [item.id in written and item.record.image is not None for item in items], bool
        ),
    }


def encoded_batch(items: Sequence[Item], batch: dict[str, np.ndarray]) -> EncodedBatch:
    """The rows of an embedded batch as the local engine's :class:`EncodedBatch`: the items
    whose image could be used, their photo vectors, and the text vectors of those with text
    (stacked in order, as :func:`to_points` reads them); a rejected image drops its item."""
    kept = [row for row in range(len(items)) if not batch["reject"][row]]
    with_text = [row for row in kept if items[row].text]
    has_image = any(items[row].record.image is not None for row in kept)
    return EncodedBatch(
        [items[row] for row in kept],
        batch["image_vector"][kept] if has_image else None,
        batch["text_vector"][with_text] if with_text else None,
        [],
    )


def _rejects(todo: Sequence[Item], batch: dict[str, np.ndarray]) -> list[Reject]:
    return [
        Reject(int(row), str(todo[row].record.image), str(reason))
        for row, reason in zip(batch["row"], batch["reject"], strict=True)
        if reason
    ]


class PointWriter:
    """A writer stage on the workers: its own client of the Qdrant server, one batch of
    embedded rows at a time (their items travel with them, pickled by the driver)."""

    def __init__(
        self,
        target: ServerTarget,
        collection: str,
        bm25: Bm25Settings,
        tagger: Tagger | None = None,
    ):
        key = os.environ.get(target.api_key_env) or None
        self.store = ServerStore(target.url, api_key=key, grpc=target.grpc)
        self.collection = collection
        self.words = Bm25Words(bm25)
        self.tagger = tagger

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [pickle.loads(blob) for blob in batch["item"]]
        return write_batch(self.store, self.collection, self.words, items, batch, self.tagger)
