"""A folder that indexes itself: the collection kept in step with a data folder as it changes.

    >>> folder = WatchedData(encoder, store, "photos", "~/Pictures/dishes")
    >>> folder.watch(stop)      # a full pass, then each change within seconds, until stop is set

After a first full pass (the incremental indexer: unchanged photos are not read twice),
file-system events (:mod:`watchfiles`: inotify, FSEvents, ReadDirectoryChangesW) bring each
change in: a new or changed photo or caption is embedded and written, a deleted one's point is
removed, and a moved or renamed photo keeps its point: its vectors, tags and every other field
go to the id of its new path without embedding it again (matched by content hash within one
batch of events). Events are gathered for a moment (:data:`DEBOUNCE_MS`) so a burst is one
batch. A photo that cannot be read yet (half copied) while it was modified within
:data:`RETRY_SECONDS` is retried every tick, not rejected; one still unreadable after that is
a reject, said once. A full rescan every ``rescan`` seconds is the safety net for events the
system dropped (an overflowing queue, a network folder). Files that changed while the first
pass ran, before the system's watch was up, are caught up once it is (by their change time,
with every point whose file went meanwhile).

Every write is a whole point (:mod:`indexer.pipeline`) and a move writes the new point before
it deletes the old one, so a watcher stopped at any moment, ``kill -9`` included, leaves
nothing that its next start (a full pass) does not finish.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from indexer.collection_settings import CollectionSettings
from indexer.pipeline import IndexRun, Item, payload, root_path, start_index, write_todo
from indexer.roots import point_id, recorded_root_ids, stored_hashes
from indexer.store import SPARSE_VECTOR, Point, SearchFilter, Store
from multimodal.data.folders import CAPTION_SUFFIX
from multimodal.data.images import DEFAULT_MAX_PIXELS, is_photo_name
from multimodal.data.loading import Reject
from multimodal.data.readers import MANIFEST_SUFFIXES, read_records
from multimodal.data.records import Record
from multimodal.encoder import DualEncoder

RESCAN_SECONDS = 600  # a full pass however quiet the folder: events can be dropped
RETRY_SECONDS = 60.0  # an unreadable file modified this recently is retried, not rejected
TICK_MS = 1000  # how often the watcher wakes without events (retries, the rescan, stop)
DEBOUNCE_MS = 800  # events gathered at most this long into one batch
STEP_MS = 200  # ... ending early after this long without a new one


@dataclass
class SyncReport:
    """What one pass over the changes did."""

    collection: str
    indexed: int = 0  # embedded and written: new or changed
    moved: int = 0  # points that followed their file to a new path, not embedded again
    removed: int = 0  # points whose file is gone
    retrying: int = 0  # unreadable files modified recently: tried again at the next tick
    rejects: list[Reject] = field(default_factory=list)  # given up on, with the reason
    total: int = 0  # points in the collection afterwards
    seconds: float = 0.0
    full: bool = False  # a pass over everything (its rejects include every file ever skipped)

    @property
    def changed(self) -> bool:
        """Whether anything is worth a line: points written or removed, or (after events) a
        file given up on."""
        return bool(self.indexed or self.moved or self.removed or self.rejects and not self.full)

    def summary(self) -> str:
        line = (
            f"{time.strftime('%H:%M:%S')} {self.collection}: indexed {self.indexed}, moved "
            f"{self.moved}, removed {self.removed}; {self.total} points ({self.seconds:.1f}s)"
        )
        if self.retrying:
            line += f"; {self.retrying} files not readable yet, retried"
        return line


class WatchedData:
    """One collection kept in step with one data folder (or a manifest and the folder it
    lies in); ``read`` gives the data's records (default: :func:`read_records` of ``data``)."""

    def __init__(
        self,
        encoder: DualEncoder,
        store: Store,
        collection: str,
        data: str | Path,
        read: Callable[[], list[Record]] | None = None,
        settings: CollectionSettings | None = None,
        batch_size: int = 16,
        workers: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        ignore: Iterable[str | Path] = (),
    ):
        self.encoder, self.store, self.collection = encoder, store, collection
        self.data = Path(data).expanduser().resolve()
        self.folder = self.data if self.data.is_dir() else self.data.parent
        self.read = read or (lambda: read_records(self.data))
        self.settings = settings
        self.batch = {"batch_size": batch_size, "workers": workers, "max_pixels": max_pixels}
        self.ignore = [Path(path).resolve() for path in ignore]  # e.g. the store, if inside
        self.pending: dict[str, float] = {}  # unreadable path -> when it was first tried
        self.lock = threading.Lock()  # one pass at a time

    # -- passes -----------------------------------------------------------------------------

    def sync(
        self, changed: set[str] | None = None, progress: bool = False, prune: bool = False
    ) -> SyncReport:
        """Bring the collection in step with the data: everything (``changed`` None: a full
        pass), or what the ``changed`` paths touch (and, with ``prune``, every point whose
        file is gone)."""
        started = time.perf_counter()
        with self.lock:
            records = self.read()
            touched = records if changed is None else _touched(records, changed)
            run = start_index(
                self.encoder, self.store, self.collection, touched, self.settings, progress
            )
            gone = self._gone(records, changed, prune)
            report = SyncReport(self.collection, full=changed is None)
            report.moved = self._move(run, gone)
            write_todo(self.encoder, self.store, run, progress=progress, **self.batch)
            self.store.delete(self.collection, list(gone))
            report.indexed, report.removed = run.report.indexed, len(gone) - report.moved
            self._sort_rejects(run.report.rejects, report)
            report.total = self.store.count(self.collection)
        report.seconds = time.perf_counter() - started
        return report

    def watch(
        self,
        stop: threading.Event,
        rescan: float = RESCAN_SECONDS,
        said: Callable[[SyncReport], None] = lambda report: None,
        progress: bool = False,
    ) -> None:
        """A full pass, then every change until ``stop`` is set; ``said`` gets each pass that
        changed something. Ctrl-C in the main thread raises KeyboardInterrupt out of here."""
        started = time.time()
        said(self.sync(None, progress))
        scanned, caught_up = time.monotonic(), False
        events = watchfiles.watch(
            self.folder,
            watch_filter=self.wanted,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            rust_timeout=TICK_MS,
            yield_on_timeout=True,
            raise_interrupt=threading.current_thread() is threading.main_thread(),
        )
        for changes in events:  # the system's watch starts at the first
            paths = {path for _, path in changes} | set(self.pending)
            if not caught_up:  # what changed during the first pass, before events were seen
                report, caught_up = self.sync(paths | self._since(started), prune=True), True
            elif time.monotonic() - scanned >= rescan:
                report, scanned = self.sync(None), time.monotonic()
            elif paths:
                report = self.sync(paths)
            else:
                continue
            if report.changed:
                said(report)

    def wanted(self, change: watchfiles.Change | None, path: str) -> bool:
        """Whether a change can matter: a photo, a caption, a manifest, or a folder (no
        suffix); never a hidden name, a partial download's suffix or the ignored folders."""
        target = Path(path)
        if any(target.is_relative_to(ignored) for ignored in self.ignore):
            return False
        try:
            parts = target.relative_to(self.folder).parts
        except ValueError:
            return False
        if any(part.startswith(".") for part in parts):
            return False
        suffix = target.suffix.lower()
        return (
            is_photo_name(target)
            or suffix in (CAPTION_SUFFIX, *MANIFEST_SUFFIXES)
            or not suffix
            or target.is_dir()
        )

    # -- the steps of a pass -----------------------------------------------------------------

    def _since(self, started: float) -> set[str]:
        """The files of the folder changed, created or renamed (their ctime) since
        ``started``: a walk, no file read."""
        found = set()
        for folder, dirs, files in os.walk(self.folder):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if os.stat(path).st_ctime >= started - 1 and self.wanted(None, path):
                        found.add(path)
                except OSError:
                    continue
        return found

    def _gone(self, records: list[Record], changed: set[str] | None, prune: bool) -> dict:
        """The points whose photo file is gone (id -> content hash): of the deleted paths
        among ``changed``, or, on a full pass or when a folder went, under the data's roots."""
        roots = {root_path(r) for r in records if r.root} | {str(self.folder)}
        ids = recorded_root_ids(self.store.metadata(self.collection))
        candidates: list[str] = []
        missing = [Path(p) for p in changed or () if not os.path.lexists(p)]
        whole = prune or changed is None or any(not path.suffix for path in missing)
        for root in sorted(roots):
            if root not in ids:
                continue
            if whole:
                candidates += self._missing_under(root)
                continue
            for path in missing:
                if path.is_relative_to(root):
                    candidates.append(point_id(ids[root], path.relative_to(root).as_posix()))
        return stored_hashes(self.store, self.collection, candidates)

    def _missing_under(self, root: str) -> list[str]:
        found = self.store.scroll(self.collection, SearchFilter(root=root), fields=["image"])
        return [
            point.id
            for point in found
            if point.payload.get("image") and not (Path(root) / point.payload["image"]).exists()
        ]

    def _move(self, run: IndexRun, gone: dict[str, str]) -> int:
        """Give each new item whose content a gone point holds that point's vectors and
        fields at its own id (the gone point is deleted with the others); take it off the
        run's work. Returns how many moved."""
        stored = stored_hashes(self.store, self.collection, [item.id for item in run.todo])
        by_hash: dict[str, list[str]] = defaultdict(list)
        for old_id, digest in gone.items():
            by_hash[digest].append(old_id)
        pairs: list[tuple[str, Item]] = []
        for item in run.todo:
            if item.id not in stored and by_hash.get(item.content_hash):
                pairs.append((by_hash[item.content_hash].pop(), item))
        if not pairs:
            return 0
        old = self.store.retrieve(self.collection, [o for o, _ in pairs], with_vectors=True)
        by_id = {point.id: point for point in old}
        points = []
        for old_id, item in pairs:
            point = by_id[old_id]
            data = {**point.payload, **payload(item)}  # tags and other fields follow it
            vectors = {k: v for k, v in point.vectors.items() if k != SPARSE_VECTOR}
            vectors[SPARSE_VECTOR] = run.words.document(data)
            points.append(Point(item.id, vectors, data))
        self.store.upsert(self.collection, points)
        moved = {item.id for _, item in pairs}
        run.todo = [item for item in run.todo if item.id not in moved]
        return len(points)

    def _sort_rejects(self, rejects: list[Reject], report: SyncReport) -> None:
        """Rejects of files modified within :data:`RETRY_SECONDS` wait for the next tick (a
        copy still being written); the others are given up on."""
        now, retry = time.time(), {}
        for reject in rejects:
            try:
                recent = now - os.stat(reject.path).st_mtime < RETRY_SECONDS
            except OSError:
                recent = False  # gone meanwhile: its deletion is an event of its own
            first = self.pending.get(reject.path, now)
            if recent and now - first < RETRY_SECONDS:
                retry[reject.path] = first
            else:
                report.rejects.append(reject)
        self.pending = retry
        report.retrying = len(retry)


def _touched(records: list[Record], changed: set[str]) -> list[Record]:
    """The records a change can touch: all of them when a manifest changed; else those whose
    photo, or caption (same folder and name), changed, or that lie in a folder that
    arrived whole (moved in: one event for the folder)."""
    paths = [Path(p) for p in changed]
    if any(p.suffix.lower() in MANIFEST_SUFFIXES for p in paths):
        return records
    names = {(p.parent, p.stem) for p in paths}
    folders = [p for p in paths if p.is_dir()]
    return [
        r
        for r in records
        if r.image is not None
        and (
            (r.image.parent, r.image.stem) in names
            or any(r.image.is_relative_to(folder) for folder in folders)
        )
    ]
