"""Hybrid and keyword search, diversity, like / dislike and facets, on both stores: Qdrant
Edge on a temporary folder and qdrant-client's in-process mode (the server's API)."""

import uuid

import numpy as np
import pytest

from indexer.bm25 import Bm25Settings, Bm25Words
from indexer.edge import EdgeStore
from indexer.pipeline import add_words
from indexer.server import ServerStore
from indexer.store import (
    CollectionSpec,
    Point,
    SearchFilter,
    SearchRequest,
    SparseVector,
    StoreError,
)

DIM = 8
MODEL = {"name": "tiny-random", "arch": "tiny-random", "weights_sha256": None}
WORDS = Bm25Words()


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    made = EdgeStore(tmp_path / "store") if request.param == "edge" else ServerStore(":memory:")
    yield made
    made.close()


def unit(vector) -> list[float]:
    vector = np.asarray(vector, np.float32)
    return (vector / np.linalg.norm(vector)).tolist()


def axis(i: int, tilt: float = 0.0) -> list[float]:
    vector = np.full(DIM, tilt, np.float32)
    vector[i % DIM] = 1.0
    return unit(vector)


def pid(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


ROWS = [  # title, dish type, ingredients; photo i points along axis i
    ("apple pie", "apple_pie", ["apples", "flour", "butter"]),
    ("beef tacos", "tacos", ["beef", "salsa", "tortillas"]),
    ("chicken curry", "curry", ["chicken", "rice", "curry paste"]),
    ("fish tacos", "tacos", ["white fish", "salsa", "tortillas"]),
    ("lemon tart", "tart", ["lemons", "flour", "butter"]),
]


def points(words: bool = True) -> list[Point]:
    made = []
    for i, (title, label, ingredients) in enumerate(ROWS):
        payload = {"title": title, "label": label, "ingredients": ingredients,
                   "base_ingredients": ingredients}  # fmt: skip
        vectors = {"image": axis(i), "text": axis(i, 0.1)}
        if words:
            vectors["bm25"] = WORDS.document(payload)
        made.append(Point(pid(i), vectors, payload))
    return made


@pytest.fixture
def filled(store):
    spec = CollectionSpec(DIM, MODEL, bm25=Bm25Settings().record())
    store.create_or_open("dishes", spec)
    store.upsert("dishes", points())
    return store


def ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def test_bm25_documents_and_queries_are_qdrants_own():
    """Stemmed, stop words dropped, the same index for a word in a document and a query."""
    document = WORDS.document({"title": "The apple pies", "ingredients": ["apples"]})
    query = WORDS.query("apple")
    assert query and set(query.indices) <= set(document.indices)
    assert not WORDS.query("the and of")  # only stop words: no words to match
    assert not WORDS.document({"title": "", "ingredients": []})


def test_sparse_mode_ranks_by_words(filled):
    """Keyword search finds both tacos by their words, whatever the dense vector says."""
    request = SearchRequest("image", axis(2), mode="sparse", words=WORDS.query("tacos salsa"))
    hits = filled.search("dishes", request, limit=5)
    assert set(ids(hits)) == {pid(1), pid(3)}  # only items with a matching word


def test_hybrid_fuses_words_and_vectors(filled):
    """The item both rankings put first wins; an item only the vector finds still comes."""
    dense_only = SearchRequest("image", axis(3), mode="dense")
    assert ids(filled.search("dishes", dense_only, limit=1)) == [pid(3)]
    request = SearchRequest("image", axis(2, 0.05), mode="hybrid", words=WORDS.query("fish"))
    hits = filled.search("dishes", request, limit=5)
    assert ids(hits)[:2] == [pid(3), pid(2)] or ids(hits)[:2] == [pid(2), pid(3)]
    assert len(hits) == 5  # the dense ranking brings every item, wordless or not
    with_filter = filled.search("dishes", request, 5, SearchFilter(labels=["tacos"]))
    assert set(ids(with_filter)) == {pid(1), pid(3)}


def test_mmr_trades_relevance_for_difference(store):
    """Three near-copies of one photo and a different one: MMR brings the different one up."""
    store.create_or_open("copies", CollectionSpec(DIM, MODEL, bm25=Bm25Settings().record()))
    copies = [unit(axis(0, 0.0) + np.eye(DIM)[1] * 0.01 * i) for i in range(3)]
    other = unit(np.eye(DIM)[0] + np.eye(DIM)[2])
    made = [Point(pid(i), {"image": v, "text": v}) for i, v in enumerate([*copies, other])]
    store.upsert("copies", made)
    plain = store.search("copies", SearchRequest("image", axis(0)), limit=2)
    assert set(ids(plain)) <= {pid(0), pid(1), pid(2)}
    diverse = store.search("copies", SearchRequest("image", axis(0), diversity=0.6), limit=2)
    assert pid(3) in ids(diverse)
    same = store.search("copies", SearchRequest("image", axis(0), diversity=0.0), limit=2)
    assert ids(same) == ids(plain)


def test_recommend_steers_by_liked_and_disliked_examples(filled):
    """Best-score recommendation: a liked example pulls its neighbours up, a disliked one
    pushes its own neighbourhood down."""
    query = unit(np.asarray(axis(1)) + np.asarray(axis(3)))  # between the two tacos
    liked = filled.search("dishes", SearchRequest("image", query, likes=[axis(3)]), limit=1)
    assert ids(liked) == [pid(3)]
    disliked = SearchRequest("image", query, dislikes=[axis(3)])
    hits = filled.search("dishes", disliked, limit=5)
    assert ids(hits)[0] == pid(1) and ids(hits)[-1] == pid(3)


def test_facets_count_keyword_values(filled):
    assert filled.facet("dishes", "label")[0] == ("tacos", 2)
    assert dict(filled.facet("dishes", "label")) == {"apple_pie": 1, "tacos": 2, "curry": 1,
                                                     "tart": 1}  # fmt: skip
    only = SearchFilter(ids=[pid(0), pid(4)])
    assert dict(filled.facet("dishes", "base_ingredients", only)) == {
        "flour": 2, "butter": 2, "apples": 1, "lemons": 1}  # fmt: skip


def test_bad_requests_are_one_line_each():
    with pytest.raises(ValueError, match="unknown mode 'fuzzy'"):
        SearchRequest("image", axis(0), mode="fuzzy", words=WORDS.query("x"))
    with pytest.raises(ValueError, match="needs words"):
        SearchRequest("image", axis(0), mode="hybrid", words=SparseVector())
    with pytest.raises(ValueError, match="diversity must be from 0 to 1"):
        SearchRequest("image", axis(0), diversity=1.5)


def test_a_collection_from_before_hybrid_search_gets_its_words_without_embedding(store):
    """A collection made without the bm25 vector keeps answering dense searches, refuses
    words with a line that says what to run, and after ``add_words`` (what ``multimodal
    index`` does on it) answers them, with every point, vector and payload kept."""
    store.create_or_open("old", CollectionSpec(DIM, MODEL))
    store.upsert("old", points(words=False))
    assert not store.has_words("old")
    assert ids(store.search("old", SearchRequest("image", axis(1)), limit=1)) == [pid(1)]
    words = SearchRequest("image", axis(1), mode="hybrid", words=WORDS.query("tacos"))
    with pytest.raises(StoreError, match="run multimodal index on it again"):
        store.search("old", words, limit=3)
    before = {p.id: p for p in store.scroll("old", with_vectors=True)}
    made, worded = add_words(store, "old", progress=False)
    assert worded == len(ROWS) and store.has_words("old")
    assert store.metadata("old")["bm25"] == made.settings.record()
    after = {p.id: p for p in store.scroll("old", with_vectors=True)}
    assert after.keys() == before.keys()
    for point_id, point in before.items():
        assert after[point_id].payload == point.payload
        for name in ("image", "text"):
            assert np.allclose(after[point_id].vectors[name], point.vectors[name])
    keyword = SearchRequest("image", axis(0), mode="sparse", words=WORDS.query("tacos"))
    assert set(ids(store.search("old", keyword, limit=5))) == {pid(1), pid(3)}
    assert add_words(store, "old", progress=False)[1] == 0  # the second time: nothing to do


def test_edge_upgrade_killed_during_the_swap_is_recovered(tmp_path):
    """The old shard set aside and none in place (a run killed between the two renames): the
    next open puts it back, and the upgrade runs again."""
    store = EdgeStore(tmp_path / "store")
    store.create_or_open("old", CollectionSpec(DIM, MODEL))
    store.upsert("old", points(words=False))
    store.close()
    folder = tmp_path / "store" / "old"
    (folder / "shard").rename(folder / "shard.old")
    (folder / "shard.upgrade").mkdir()  # what a half-made copy leaves
    store = EdgeStore(tmp_path / "store")
    assert store.count("old") == len(ROWS) and not store.has_words("old")
    assert not (folder / "shard.upgrade").exists() and not (folder / "shard.old").exists()
    assert add_words(store, "old", progress=False)[1] == len(ROWS)
    store.close()
