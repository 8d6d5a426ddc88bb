"""The collection's map: fitted once per collection and model, kept in memory and on disk,
t-SNE beside PCA, a query placed on both, and what a search sends the page (a few hundred
bytes, not the collection)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from indexer.edge import EdgeStore
from indexer.store import CollectionSpec, Point
from ui.map import MAP_POINTS, NEIGHBOURS, CollectionMap, MapCache, MapSample
from ui.map_view import MapView, figure

DIM = 16
MODEL = {"name": "tiny-random", "weights_sha256": "a" * 64}
CLUSTERS = ("red", "green", "blue")


def clustered(count: int, seed: int = 0) -> list[Point]:
    """``count`` photos in three tight clusters (one per dish type) far apart."""
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM)[: len(CLUSTERS)] * 4
    points = []
    for i in range(count):
        vector = centres[i % len(CLUSTERS)] + rng.normal(0, 0.3, DIM)
        vector /= np.linalg.norm(vector)
        dish = CLUSTERS[i % len(CLUSTERS)]
        payload = {
            "title": f"{dish.title()} cake {i}",
            "label": f"{dish}_cake",
            "ingredients": [f"{dish} colouring", "flour"],
        }
        points.append(Point(str(uuid.uuid4()), {"image": vector.tolist()}, payload))
    return points


@pytest.fixture
def store(tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        store.create_or_open("cakes", CollectionSpec(DIM, MODEL))
        store.upsert("cakes", clustered(45))
        yield store


@pytest.fixture(autouse=True)
def a_new_process():
    """Each test starts as a new process would: no map in memory."""
    MapCache._loaded.clear()
    yield
    MapCache._loaded.clear()


def vectors_of(store, ids: list[str]) -> np.ndarray:
    found = {p.id: p.vectors["image"] for p in store.retrieve("cakes", ids, with_vectors=True)}
    return np.asarray([found[i] for i in ids], np.float32)


def test_pca_against_a_naive_reference(store, tmp_path):
    fitted = MapCache(tmp_path / "maps").get(store, "cakes", MODEL, background=False)
    assert len(fitted) == 45 and set(fitted.layouts) == {"pca", "tsne"}
    vectors = vectors_of(store, fitted.sample.ids)
    # naive: the two eigenvectors of the covariance with the largest eigenvalues
    centred = vectors - vectors.mean(0)
    values, vecs = np.linalg.eigh(np.cov(centred.T))
    axes = vecs[:, np.argsort(values)[::-1][:2]].T
    expected = centred @ axes.T
    signs = np.sign((fitted.layouts["pca"] * expected).sum(0))  # an axis may point either way
    np.testing.assert_allclose(fitted.layouts["pca"] * signs, expected, atol=1e-4)
    query = vectors[7]
    placed = np.asarray(fitted.place(query)["pca"])
    np.testing.assert_allclose(placed * signs, (query - vectors.mean(0)) @ axes.T, atol=1e-3)


def test_fitted_once_then_read_from_disk(store, tmp_path, monkeypatch):
    fits = []
    fit = CollectionMap.fit.__func__
    monkeypatch.setattr(
        CollectionMap, "fit", classmethod(lambda cls, *a: fits.append(a) or fit(cls, *a))
    )
    cache = MapCache(tmp_path / "maps")
    first = cache.get(store, "cakes", MODEL, background=False)
    assert cache.get(store, "cakes", MODEL) is first and len(fits) == 1  # in memory
    saved = list((tmp_path / "maps").glob("*.npz"))
    assert [p.name for p in saved] == [f"{first.key}.npz"] and first.key.endswith("-45")
    MapCache._loaded.clear()  # the page restarted: read from disk, fitted again never
    monkeypatch.setattr(CollectionMap, "fit_tsne", lambda *a: pytest.fail("t-SNE again"))
    again = MapCache(tmp_path / "maps").get(store, "cakes", MODEL)
    assert again is not first and len(fits) == 1 and again.tsne_done.is_set()
    assert again.sample.ids == first.sample.ids and again.sample.titles == first.sample.titles
    for layout in ("pca", "tsne"):
        np.testing.assert_array_equal(again.layouts[layout], first.layouts[layout])
    assert again.tsne_seconds == first.tsne_seconds > 0


def test_fitted_again_when_the_collection_or_the_model_changes(store, tmp_path):
    cache = MapCache(tmp_path / "maps")
    first = cache.get(store, "cakes", MODEL, background=False)
    other_model = cache.get(store, "cakes", {"name": "recipe-starter"}, background=False)
    assert other_model is not first and other_model.key != first.key
    store.upsert("cakes", clustered(1, seed=1))  # one more point: another count
    grown = cache.get(store, "cakes", MODEL, background=False)
    assert len(grown) == 46 and grown.key.endswith("-46")
    # the same count with other points (one replaced): the saved sample is not trusted
    MapCache._loaded.clear()
    store.delete("cakes", [grown.sample.ids[0]])
    store.upsert("cakes", clustered(1, seed=2))
    replaced = cache.get(store, "cakes", MODEL, background=False)
    assert replaced.key == grown.key and grown.sample.ids[0] not in replaced.sample.ids
    assert len(list((tmp_path / "maps").glob("*.npz"))) == 3


def test_a_large_collection_is_sampled_without_reading_past_the_sample(store, tmp_path):
    pulled = []
    scroll = store.scroll

    def counted(*args, **options):
        pulled.append(options.get("page"))
        for record in scroll(*args, **options):
            pulled.append(record.id)
            yield record

    store.scroll = counted
    fitted = MapCache(tmp_path / "maps", limit=20).get(store, "cakes", MODEL)
    page, ids = pulled[0], pulled[1:]
    assert len(fitted) == 20 and ids == fitted.sample.ids and 20 % page == 0
    assert MAP_POINTS == 5000 and fitted.key.endswith("-45-20")


def test_tsne_places_a_query_beside_its_own_photo(store, tmp_path):
    fitted = MapCache(tmp_path / "maps").get(store, "cakes", MODEL, background=False)
    xy, labels = fitted.layouts["tsne"], np.array(fitted.sample.labels)
    # the clusters stay apart: each photo's nearest on the map is of its own dish type
    distances = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).all()
    vectors = vectors_of(store, fitted.sample.ids)
    for i in (0, 1, 2, 10):
        query = vectors[i] + np.random.default_rng(i).normal(0, 0.01, DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        placed = np.asarray(fitted.place(query)["tsne"])
        # naive reference: the median position of the nearest photos by cosine similarity
        nearest = np.argsort(-(vectors @ query))[:NEIGHBOURS]
        np.testing.assert_allclose(placed, np.median(xy[nearest], axis=0), atol=1e-3)
        own = np.linalg.norm(xy[i] - placed)
        others = np.linalg.norm(xy[labels != labels[i]] - placed, axis=1).min()
        assert own < others / 3


def test_tsne_in_the_background_and_pca_at_once(store, tmp_path):
    fitted = MapCache(tmp_path / "maps").get(store, "cakes", MODEL)  # not waiting
    assert "pca" in fitted.layouts and set(fitted.place(np.ones(DIM) / 4)) <= {"pca", "tsne"}
    assert fitted.tsne_done.wait(60) and fitted.tsne_failed is None
    assert set(fitted.place(np.ones(DIM) / 4)) == {"pca", "tsne"}


def test_too_few_photos(tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        store.create_or_open("few", CollectionSpec(DIM, MODEL))
        cache = MapCache(tmp_path / "maps")
        assert cache.get(store, "few", MODEL) is None
        store.upsert("few", clustered(5))
        fitted = cache.get(store, "few", MODEL, background=False)
        assert set(fitted.layouts) == {"pca"} and fitted.tsne_failed == "only 5 photos"


def test_a_search_sends_marks_not_the_collection(store, tmp_path):
    store.upsert("cakes", clustered(400, seed=3))
    fitted = MapCache(tmp_path / "maps").get(store, "cakes", MODEL, background=False)
    view = MapView(fitted, searcher=None)
    hits = [{"id": i} for i in fitted.sample.ids[:12]]
    marks = view.marks(vectors_of(store, fitted.sample.ids[:1])[0], hits, "text query")
    assert set(marks) == {"what", "positions", "hits"} and marks["hits"] == [h["id"] for h in hits]
    assert set(marks["positions"]) == {"pca", "tsne"}
    sent = json.dumps(marks)
    assert len(sent) < 1000 and not any(i in sent for i in fitted.sample.ids[12:])
    # the figure, by contrast, has every point: sent once per page load or layout change
    whole = view.show("tsne")[0].plot
    assert len(whole) > 50 * len(sent) and all(i in whole for i in fitted.sample.ids)


def test_the_figure_shows_titles_and_dish_types_escaped(store, tmp_path):
    payload = {"title": "<script>alert(1)</script>", "label": "hot_dog"}
    vector = [1.0] + [0.0] * (DIM - 1)
    store.upsert("cakes", [Point(str(uuid.uuid4()), {"image": vector}, payload)])
    fitted = MapCache(tmp_path / "maps").get(store, "cakes", MODEL, background=False)
    shown = figure(fitted, "tsne")
    dishes, results, star = shown.data
    assert list(dishes.customdata) == fitted.sample.ids and not results.x and not star.x
    shown_as = dict(zip(dishes.text, dishes.hovertext, strict=True))
    assert shown_as["Red cake 0"] == "red cake" and "%{text}" in dishes.hovertemplate
    assert shown_as["&lt;script&gt;alert(1)&lt;/script&gt;"] == "hot dog"
    assert shown.layout.meta == {"layout": "tsne"}


def test_sample_read_keeps_titles_and_dish_types(store):
    sample = MapSample.read(store, "cakes", 9)
    assert len(sample.ids) == 9 and sample.vectors.shape == (9, DIM)
    assert all(t.endswith(" cake " + t.split()[-1]) for t in sample.titles)
    assert {label.split("_")[0] for label in sample.labels} <= set(CLUSTERS)


def test_the_page_shows_pca_until_tsne_is_ready(store):
    fitted = CollectionMap.fit("cakes-test", MapSample.read(store, "cakes"))  # t-SNE not yet
    view = MapView(fitted, searcher=None)
    plot, note, choice = view.show("tsne")
    assert json.loads(plot.plot)["layout"]["meta"] == {"layout": "pca"} and choice["value"] == "pca"
    assert note.startswith("**PCA** of 45 photos") and "t-SNE is being computed" in note
    fitted.fit_tsne()
    fitted.tsne_done.set()
    plot, note, choice = view.show("tsne")
    assert (
        json.loads(plot.plot)["layout"]["meta"] == {"layout": "tsne"} and choice["value"] == "tsne"
    )
    assert note.startswith("**t-SNE** of 45 photos") and "computed" not in note


def test_a_clicked_point_opens_its_card(store, tmp_path):
    from types import SimpleNamespace

    payload = {
        "title": 'Cake "<img src=x onerror=alert(1)>"',
        "label": "layer_cake",
        "ingredients": ["flour", "<b>sugar</b>"],
    }
    odd = Point(str(uuid.uuid4()), {"image": [0.0, 1.0] + [0.0] * (DIM - 2)}, payload)
    store.upsert("cakes", [odd])
    fitted = MapCache(tmp_path / "maps").get(store, "cakes", MODEL)
    view = MapView(fitted, SimpleNamespace(store=store, collection="cakes"))
    card = view.open_point(odd.id)
    assert f'<img src="/photo/{odd.id}"' in card and "dish type <b>layer cake</b>" in card
    assert (
        "&lt;img src=x onerror=alert(1)&gt;" in card and "<li>&lt;b&gt;sugar&lt;/b&gt;</li>" in card
    )
    assert "<img src=x" not in card
    assert view.open_point(str(uuid.uuid4())) == "" and view.open_point("") == ""  # not on the map
