"""The batch indexer: records -> plan -> decode (worker processes) -> encode -> upsert.

Each stage is a small function with its own test and its own clock:

* :func:`make_items` gives every record a deterministic id (UUID5 of its data root's id and
  its relative path, :mod:`indexer.roots`) and :func:`hash_items` a content hash (image bytes
  + text); :func:`~indexer.roots.link_roots` re-links a data folder that moved (its points
  keep their ids and vectors); :func:`plan` compares ids and hashes with what the collection
  holds: an unchanged item is skipped without decoding, a changed one is embedded again.
* :func:`encode_batches` decodes images in a torch DataLoader's worker processes, so decoding
  overlaps the model, and yields batches of vectors.
* :func:`to_points` and ``store.upsert`` write whole items only (both vectors, the item's
  BM25 words and the hash in one point), so a run killed at any moment, SIGKILL included,
  leaves every item either done or absent, and a rerun finishes the job with the exact count.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from indexer.bm25 import Bm25Settings, Bm25Words, add_words
from indexer.collection_settings import CollectionSettings
from indexer.index_report import IndexReport
from indexer.roots import link_roots, point_id, stored_hashes
from indexer.store import SPARSE_VECTOR, CollectionSpec, Point, SearchFilter, Store
from indexer.tags import Tagger
from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.loading import Reject, check_records, iter_image_batches
from multimodal.data.records import Record, printable
from multimodal.data.text import RecipeTextBuilder
from multimodal.encoder import DualEncoder, model_stamp
from multimodal.files import open_regular, write_jsonl


@dataclass
class Item:
    record: Record
    root: str | None  # absolute path of the record's data root; None without one
    key: str  # what identifies it under its root: the relative image path, or its text's hash
    id: str  # point_id(id of the root, key)
    text: str  # what the text vector embeds; "" for an image-only item
    content_hash: str = ""  # set by hash_items


@dataclass
class Plan:
    todo: list[Item]
    unchanged: int
    changed: int  # of todo: in the collection with another hash


@dataclass
class EncodedBatch:
    items: list[Item]
    image: np.ndarray | None  # (n, D), row i for items[i]; None when no item has an image
    text: np.ndarray | None
    rejects: list[Reject]


def root_path(record: Record) -> str | None:
    """The record's data root as the collection records it: its absolute path."""
    return str(Path(record.root).resolve()) if record.root else None


def item_key(record: Record, text: str) -> str:
    """The image path relative to its root; a text-only item is keyed by its text."""
    if record.image is not None:
        return record.relative_image
    return "text:" + hashlib.sha256(text.encode()).hexdigest()


def content_hash(record: Record, text: str) -> str:
    digest = hashlib.sha256()
    if record.image is not None:
        with open_regular(record.image) as handle:  # a named pipe would block the run
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    digest.update(b"\0" + text.encode())
    return digest.hexdigest()[:32]


def make_items(records: Sequence[Record], build_text: RecipeTextBuilder) -> list[Item]:
    """Items of the records, with the ids of a root seen for the first time (its path; see
    :func:`link_roots` for the others); a missing image file is a reject for the caller."""
    items, seen = [], set()
    for record in records:
        text = build_text(record) if record.has_text else ""
        root, key = root_path(record), item_key(record, text)
        if (root, key) in seen:  # the same file twice in a manifest: one point
            continue
        seen.add((root, key))
        items.append(Item(record, root, key, point_id(root, key), text))
    return items


def hash_items(items: Sequence[Item]) -> tuple[list[Item], list[Reject]]:
    """The items whose content hash could be made (set on each), and a reject for each other."""
    rejects, hashed = [], []
    for index, item in enumerate(items):
        try:
            item.content_hash = content_hash(item.record, item.text)
        except (OSError, ValueError) as err:  # ValueError: a NUL in the name
            reason = f"cannot read: {getattr(err, 'strerror', None) or err}"
            rejects.append(Reject(index, printable(item.record.image), reason))
            continue
        hashed.append(item)
    return hashed, rejects


def link_items(store: Store, collection: str, items: Sequence[Item], report: IndexReport) -> None:
    """Give each hashed item the id its root has in the collection, re-linking a root that
    moved (:func:`indexer.roots.link_roots`; the data-set name, a folder's name for a plain
    folder, follows it when the root's records share one), and note the moves in ``report``."""
    contents: dict[str, dict[str, str]] = defaultdict(dict)
    sources: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if item.root is not None:
            contents[item.root][item.key] = item.content_hash
            sources[item.root].add(item.record.source)
    names = {root: {"source": found.pop()} for root, found in sources.items() if len(found) == 1}
    links = link_roots(store, collection, contents, names)
    for item in items:
        if item.root is not None:
            item.id = point_id(links.ids[item.root], item.key)
    report.relinked, report.relinked_points = links.moved, links.relinked


def plan(store: Store, collection: str, items: Sequence[Item]) -> Plan:
    """Keep the hashed items the collection does not already hold unchanged."""
    stored = stored_hashes(store, collection, [item.id for item in items])
    todo = [item for item in items if stored.get(item.id) != item.content_hash]
    changed = sum(1 for item in todo if item.id in stored)
    return Plan(todo, len(items) - len(todo), changed)


def encode_batches(
    encoder: DualEncoder,
    items: Sequence[Item],
    batch_size: int = 16,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    clock: dict[str, float] | None = None,
) -> Iterator[EncodedBatch]:
    """Vectors for the items, in batches: images decoded by worker processes while the model
    runs; texts encoded with their batch. Image-less items come last, in text-only batches."""
    clock = clock if clock is not None else defaultdict(float)
    with_image = [item for item in items if item.record.image is not None]
    text_only = [item for item in items if item.record.image is None and item.text]
    paths = [item.record.image for item in with_image]
    batches = iter_image_batches(paths, encoder.preprocess, batch_size, workers, max_pixels)
    while with_image:
        with _timed(clock, "decode wait"):
            batch = next(batches, None)
        if batch is None:
            break
        kept = [with_image[i] for i in batch.indices]
        image = None
        if batch.pixels is not None:
            with _timed(clock, "encode images"):
                image = encoder.encode_pixels(batch.pixels)
        yield EncodedBatch(kept, image, _encode_texts(encoder, kept, clock), batch.rejects)
    for start in range(0, len(text_only), batch_size * 4):
        chunk = text_only[start : start + batch_size * 4]
        yield EncodedBatch(chunk, None, _encode_texts(encoder, chunk, clock), [])


def _encode_texts(encoder: DualEncoder, items: Sequence[Item], clock) -> np.ndarray | None:
    texts = [item.text for item in items if item.text]
    if not texts:
        return None
    with _timed(clock, "encode texts"):
        return encoder.encode_texts(texts)


def payload(item: Item) -> dict:
    record = item.record
    data = record.metadata()
    base = record.ingredients_simplified
    data.update(
        image=record.relative_image if record.image is not None else None,
        root=item.root,
        base_ingredients=sorted({b.strip().lower() for b in base if b.strip()}),
        text=item.text,
        content_hash=item.content_hash,
    )
    data.pop("ingredients_simplified", None)
    return data


def to_points(
    batch: EncodedBatch, words: Bm25Words | None = None, tagger: Tagger | None = None
) -> list[Point]:
    """Whole points: every vector an item has, its BM25 ``words`` when the collection has
    them, plus its payload (with the content hash, and the collection's tag fields for a
    photo when ``tagger`` has them)."""
    points, text_row = [], 0
    for row, item in enumerate(batch.items):
        vectors = {}
        if batch.image is not None and item.record.image is not None:
            vectors["image"] = batch.image[row]
        if item.text and batch.text is not None:
            vectors["text"] = batch.text[text_row]
            text_row += 1
        if vectors:
            data = payload(item)
            if tagger is not None and "image" in vectors:
                data.update(tagger.payload(vectors["image"]))
            if words is not None:
                vectors[SPARSE_VECTOR] = words.document(data)
            points.append(Point(item.id, vectors, data))
    return points


@dataclass
class IndexRun:
    """What :func:`start_index` prepared on the driver for an engine to embed and write."""

    report: IndexReport
    words: Bm25Words  # the collection's BM25 words, for to_points
    todo: list[Item]  # the planned items: new or changed, hashed, with their ids
    recorded: dict  # the collection's model record, for record_tta
    empty: bool  # the collection held nothing before this run
    tagger: Tagger | None = None  # the collection's tag fields, for to_points


def start_index(
    encoder: DualEncoder,
    store: Store,
    collection: str,
    records: Sequence[Record],
    settings: CollectionSettings | None = None,
    progress: bool = True,
) -> IndexRun:
    """Open ``collection`` (created for this model, laid out as ``settings`` say, if it does
    not exist) and plan the run: ids, content hashes, moved roots re-linked, unchanged items
    skipped without decoding, unusable records listed as rejects. A bulk load
    (``settings.bulk_load``, or one an earlier run left in progress) defers index building
    until :func:`finish_index` (:meth:`Store.begin_bulk`). Every engine starts here."""
    report = IndexReport(collection)
    clock = report.stages
    settings = settings or CollectionSettings()
    bm25 = Bm25Settings().record()
    spec = CollectionSpec(encoder.embed_dim, model_stamp(encoder), settings, bm25)
    recorded = store.create_or_open(collection, spec)["model"]
    empty = store.count(collection) == 0
    report.resumed_bulk = store.bulk_state(collection) is not None
    if settings.bulk_load or report.resumed_bulk:
        store.begin_bulk(collection)
    with _timed(clock, "words"):
        words, report.worded = add_words(store, collection, progress)
    with _timed(clock, "plan"):
        usable, unusable = check_records(records)
        items = make_items(usable, RecipeTextBuilder.for_tokenizer(encoder.tokenizer))
        items, unreadable = hash_items(items)
        link_items(store, collection, items, report)  # records the roots, re-links moved ones
        work = plan(store, collection, items)
    report.unchanged, report.rejects = work.unchanged, unusable + list(unreadable)
    tagger = Tagger.for_collection(encoder, store.metadata(collection)) if work.todo else None
    return IndexRun(report, words, work.todo, recorded, empty, tagger)


def finish_index(
    store: Store,
    collection: str,
    records: Sequence[Record],
    report: IndexReport,
    prune: bool,
    started: float,
) -> IndexReport:
    """After the points are written: prune (``prune``), the bulk load ended or the indexes
    built, and the report's totals."""
    if prune:
        with _timed(report.stages, "prune"):
            report.pruned = prune_missing(store, collection, {r.root for r in records if r.root})
    with _timed(report.stages, "optimize"):
        store.end_bulk(collection) if store.bulk_state(collection) else store.optimize(collection)
    report.rejected = len(report.rejects)
    report.total = store.count(collection)
    report.seconds = time.perf_counter() - started
    return report


def index_records(
    encoder: DualEncoder,
    store: Store,
    collection: str,
    records: Sequence[Record],
    batch_size: int = 16,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    prune: bool = False,
    settings: CollectionSettings | None = None,
    progress: bool = True,
) -> IndexReport:
    """Index ``records`` into ``collection`` (created for this model, laid out as ``settings``
    say, if it does not exist). A bulk load (``settings.bulk_load``, or one an earlier run
    left in progress) defers index building until the load ends (:meth:`Store.begin_bulk`)."""
    started = time.perf_counter()
    run = start_index(encoder, store, collection, records, settings, progress)
    write_todo(encoder, store, run, batch_size, workers, max_pixels, progress)
    return finish_index(store, collection, records, run.report, prune, started)


def write_todo(
    encoder: DualEncoder,
    store: Store,
    run: IndexRun,
    batch_size: int = 16,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> None:
    """Embed and write the planned items of ``run``, batch by batch (the local engine)."""
    report, recorded, clock = run.report, run.recorded, run.report.stages
    collection = report.collection
    with tqdm(
        total=len(run.todo),
        unit="item",
        desc=f"indexing {collection}",
        disable=not progress or not run.todo,
    ) as bar:
        for batch in encode_batches(encoder, run.todo, batch_size, workers, max_pixels, clock):
            points = to_points(batch, run.words, run.tagger)
            with _timed(clock, "upsert"):
                store.upsert(collection, points)
            if batch.image is not None and len(batch.image):
                recorded = record_tta(store, collection, recorded, encoder.tta, run.empty)
            report.indexed += len(points)
            report.rejects += batch.rejects
            bar.update(len(batch.items) + len(batch.rejects))


def record_tta(store: Store, collection: str, recorded: dict, tta: bool, empty: bool) -> dict:
    """Keep the collection's note of how its photo vectors were made, ``model.tta``: this
    run's setting in a collection that held nothing before it, else ``"mixed"`` once runs with
    and without TTA have both written photos. Not a refusal: both kinds live in one space (a
    TTA vector is a slightly better placed version of the plain one), and unchanged photos
    are not embedded again; a new collection gives every photo the same kind. Returns the
    model record as it now stands."""
    before = recorded.get("tta", False)  # collections made before TTA existed had none
    now = tta if empty or before == tta else "mixed"
    if recorded.get("tta") != now:
        recorded = {**recorded, "tta": now}
        store.update_metadata(collection, {"model": recorded})
    return recorded


def prune_missing(store: Store, collection: str, roots: set) -> int:
    """Delete the points under ``roots`` whose image file is gone."""
    gone = []
    for root in sorted(str(Path(r).resolve()) for r in roots):
        for point in store.scroll(collection, SearchFilter(root=root), fields=["image"]):
            image = point.payload.get("image")
            if image and not (Path(root) / image).exists():
                gone.append(point.id)
    store.delete(collection, gone)
    return len(gone)


def write_rejects(path: str | Path, rejects: Sequence[Reject]) -> Path:
    return write_jsonl(path, (reject.as_dict() for reject in rejects))


@contextmanager
def _timed(clock: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        clock[stage] += time.perf_counter() - start
