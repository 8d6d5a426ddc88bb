"""The map of the collection: its photos' vectors laid out in 2-D, fitted once per collection
and model, and where a search's query falls on it.

Two layouts of one sample of the collection (its first :data:`MAP_POINTS` points with a photo,
read with the store's scroll and never more):

* ``pca``: the two main axes of the vectors; ready at once (well under a second).
* ``tsne``: openTSNE's t-SNE, which keeps each photo's neighbours beside it, so dish types
  form islands; about 13 s for 4,043 points on one core, so it runs once, in a background
  thread, and the page offers it when it is ready.

A query is placed on PCA by projecting its vector, on t-SNE at the median position of its
:data:`NEIGHBOURS` nearest sample photos (0.15 ms; openTSNE's own ``transform`` optimises
the new point for about 0.5 s, too slow for every search).

:class:`MapCache` keeps each fitted map in memory for the process and on disk under
``$MULTIMODAL_HOME/maps``, named by the collection, the model's identity and the number of
points, so a restarted page neither refits PCA nor recomputes t-SNE; a collection whose count
or model changed, or whose sampled points are gone, is fitted again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.store import SearchFilter, Store, model_identity
from multimodal.paths import data_home

log = logging.getLogger(__name__)

MAP_POINTS = 5000  # the map samples this many photos at most
NEIGHBOURS = 5  # a query sits at the median t-SNE position of its nearest sample photos
MIN_POINTS = 3  # fewer: no map
MIN_TSNE_POINTS = 10  # fewer: PCA only
LAYOUTS = {"tsne": "t-SNE", "pca": "PCA"}  # the page's names, its preferred first
FORMAT = 1  # of the files on disk; another is fitted again
CHECKED_IDS = 16  # sampled ids looked up when a map is read from disk


@dataclass
class MapSample:
    """The points the map shows: their ids, dish types, titles and photo vectors."""

    ids: list[str]
    labels: list[str]
    titles: list[str]
    vectors: np.ndarray  # (N, D) float32, unit length

    @classmethod
    def read(cls, store: Store, collection: str, limit: int = MAP_POINTS) -> MapSample:
        """The first ``limit`` points with a photo vector, in the store's scroll order."""
        ids, labels, titles, vectors = [], [], [], []
        records = store.scroll(
            collection,
            SearchFilter(has_vector="image"),
            ["label", "title"],
            page=_page(limit),
            with_vectors=True,
        )
        for record in records:
            ids.append(record.id)
            labels.append(str(record.payload.get("label") or ""))
            titles.append(str(record.payload.get("title") or ""))
            vectors.append(record.vectors["image"])
            if len(ids) >= limit:
                break  # before the scroll reads another page
        return cls(ids, labels, titles, np.asarray(vectors, np.float32))


def _page(limit: int) -> int:
    """A scroll page that divides ``limit`` (at most 1000), so no page reads past it."""
    return next(size for size in range(min(limit, 1000), 0, -1) if limit % size == 0)


@dataclass
class CollectionMap:
    """One collection's sample and its layouts; ``layouts["tsne"]`` appears when computed."""

    key: str  # collection, model and point count: see MapCache.key
    sample: MapSample
    mean: np.ndarray  # PCA: the sample's mean vector
    axes: np.ndarray  # PCA: (2, D)
    layouts: dict[str, np.ndarray]  # layout name -> (N, 2) positions of the sample
    tsne_seconds: float | None = None  # how long t-SNE took, once it has
    tsne_failed: str | None = None  # why t-SNE could not be computed
    tsne_started: bool = False  # one thread per map, however many pages ask
    tsne_done: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def fit(cls, key: str, sample: MapSample) -> CollectionMap:
        """PCA of the sample (t-SNE comes later: :meth:`fit_tsne`)."""
        centred = sample.vectors - sample.vectors.mean(0)
        # the covariance's top eigenvectors: a D x D problem (an SVD of the N x D sample
        # takes seconds); each axis pointed so that its largest entry is positive
        values, vectors = np.linalg.eigh(centred.T @ centred)
        axes = vectors[:, np.argsort(values)[::-1][:2]].T
        axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]
        pca = (centred @ axes.T).astype(np.float32)
        return cls(key, sample, sample.vectors.mean(0), axes.astype(np.float32), {"pca": pca})

    def __len__(self) -> int:
        return len(self.sample.ids)

    @property
    def tsne_possible(self) -> bool:
        return len(self) >= MIN_TSNE_POINTS

    def fit_tsne(self, seed: int = 0) -> np.ndarray:
        """The sample's t-SNE (openTSNE, one thread, PCA initialisation: the same layout for
        the same sample); stored in :attr:`layouts` and returned."""
        from openTSNE import TSNE

        started = time.perf_counter()
        perplexity = min(30.0, (len(self) - 1) / 3)
        tsne = TSNE(perplexity=perplexity, n_jobs=1, random_state=seed, verbose=False)
        xy = np.asarray(tsne.fit(self.sample.vectors), np.float32)
        self.tsne_seconds = time.perf_counter() - started
        self.layouts["tsne"] = xy
        return xy

    def place(self, vector) -> dict[str, list[float]]:
        """Where ``vector`` falls in each layout computed so far: ``{"pca": [x, y], ...}``."""
        vector = np.asarray(vector, np.float32)
        placed = {"pca": (vector - self.mean) @ self.axes.T}
        if "tsne" in self.layouts:
            nearest = _nearest(self.sample.vectors, vector, NEIGHBOURS)
            placed["tsne"] = np.median(self.layouts["tsne"][nearest], axis=0)
        return {name: [round(float(v), 4) for v in xy] for name, xy in placed.items()}

    def marks(self, vector, hit_ids: list[str], what: str) -> dict:
        """What a search sends the page's map: the query's position in each layout and the
        ids of its results (the page rings those in the sample); a few hundred bytes."""
        return {"what": what, "positions": self.place(vector), "hits": list(hit_ids)}

    def save(self, path: Path) -> None:
        """Write the map to ``path`` (a ``.npz``), whole or not at all."""
        s = self.sample
        text = {
            "format": FORMAT,
            "key": self.key,
            "ids": s.ids,
            "labels": s.labels,
            "titles": s.titles,
            "tsne_seconds": self.tsne_seconds,
        }
        arrays = {f"layout_{name}": xy for name, xy in self.layouts.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(partial, "wb") as out:
            np.savez(
                out,
                text=np.array(json.dumps(text)),
                vectors=s.vectors,
                mean=self.mean,
                axes=self.axes,
                **arrays,
            )
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path, key: str) -> CollectionMap | None:
        """The map saved at ``path`` for ``key``, or None (none, another format, unreadable)."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                text = json.loads(str(saved["text"]))
                if text.get("format") != FORMAT or text.get("key") != key:
                    return None
                sample = MapSample(text["ids"], text["labels"], text["titles"], saved["vectors"])
                layouts = {n[7:]: saved[n] for n in saved.files if n.startswith("layout_")}
                loaded = cls(key, sample, saved["mean"], saved["axes"], layouts)
        except (OSError, ValueError, KeyError) as err:
            log.warning("map %s is unreadable (%s): fitting it again", path.name, err)
            return None
        loaded.tsne_seconds = text.get("tsne_seconds")
        if "tsne" in layouts:
            loaded.tsne_done.set()
        return loaded


def _nearest(matrix: np.ndarray, vector: np.ndarray, count: int) -> np.ndarray:
    """Rows of ``matrix`` most similar to ``vector`` (dot product: vectors are unit length)."""
    similarity = matrix @ vector
    count = min(count, len(similarity))
    return np.argpartition(-similarity, count - 1)[:count]


class MapCache:
    """Fitted maps, once per collection, model and point count: in memory for the process,
    on disk in ``folder`` (default ``$MULTIMODAL_HOME/maps``) across restarts.

    >>> collection_map = MapCache().get(store, "recipes5k", searcher.metadata["model"])
    >>> collection_map.marks(query_vector, hit_ids, "text query")
    """

    _loaded: dict[Path, CollectionMap] = {}  # shared by every cache of the process
    _lock = threading.Lock()

    def __init__(self, folder: Path | str | None = None, limit: int = MAP_POINTS):
        self.folder = Path(folder) if folder is not None else data_home() / "maps"
        self.limit = limit

    def key(self, collection: str, model: dict, count: int) -> str:
        """``collection``-``model hash``-``count of photos`` (-``sample size``, when it is
        not the default)."""
        identity = hashlib.sha256(model_identity(model).encode()).hexdigest()[:16]
        limit = "" if self.limit == MAP_POINTS else f"-{self.limit}"
        return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', collection)}-{identity}-{count}{limit}"

    def get(
        self, store: Store, collection: str, model: dict, background: bool = True
    ) -> CollectionMap | None:
        """The map of ``collection`` (None when it has fewer than :data:`MIN_POINTS`
        photos): from memory, else from disk, else fitted now (PCA), with t-SNE computed in a
        background thread (``background=False``: before returning)."""
        count = store.count(collection, SearchFilter(has_vector="image"))
        if count < MIN_POINTS:
            return None
        key = self.key(collection, model, count)
        path = self.folder / f"{key}.npz"
        with self._lock:
            found = self._loaded.get(path) or self._read(path, key, store, collection)
            if found is None:
                found = CollectionMap.fit(key, MapSample.read(store, collection, self.limit))
                _save(found, path)
            self._loaded[path] = found
            if not found.tsne_done.is_set() and not found.tsne_started:
                found.tsne_started = True
                name = f"t-SNE of {collection}"
                threading.Thread(
                    target=_compute_tsne, args=(found, path), name=name, daemon=True
                ).start()
        if not background:
            found.tsne_done.wait()
        return found

    def _read(self, path: Path, key: str, store: Store, collection: str) -> CollectionMap | None:
        """The map saved at ``path``, if its sampled points are still in the collection."""
        if not path.is_file():
            return None
        saved = CollectionMap.load(path, key)
        if saved is None:
            return None
        step = max(1, len(saved) // CHECKED_IDS)
        checked = saved.sample.ids[::step][:CHECKED_IDS]
        if len(store.retrieve(collection, checked, fields=["label"])) != len(checked):
            log.info("map %s: its points were replaced; fitting it again", path.name)
            return None
        return saved


def _compute_tsne(collection_map: CollectionMap, path: Path) -> None:
    """The background thread: t-SNE of the map, then the map saved with it."""
    try:
        if not collection_map.tsne_possible:
            collection_map.tsne_failed = f"only {len(collection_map)} photos"
            return
        collection_map.fit_tsne()
        _save(collection_map, path)
        log.info("t-SNE of %s in %.1fs", path.stem, collection_map.tsne_seconds)
    except Exception as err:  # the page keeps PCA, and says why t-SNE is missing
        collection_map.tsne_failed = f"{type(err).__name__}: {err}"
        log.warning("t-SNE of %s failed: %s", path.stem, collection_map.tsne_failed)
    finally:
        collection_map.tsne_done.set()


def _save(collection_map: CollectionMap, path: Path) -> None:
    """Save the map; a folder that cannot be written costs a refit at the next start, not
    the page."""
    try:
        collection_map.save(path)
    except OSError as err:
        log.warning("map %s not saved (%s): it is fitted again at the next start", path.name, err)
