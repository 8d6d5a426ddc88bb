"""Hybrid and keyword search, diversity, like / dislike and facets, on both stores: Qdrant
Edge on a temporary folder and qdrant-client's in-process mode (the server's API)."""

import json
import uuid

import numpy as np
import pytest
from conftest import index_args

from indexer.bm25 import Bm25Settings, Bm25Words
from indexer.edge import EdgeStore
from indexer.pipeline import add_words
from indexer.store import (
    RRF_K,
    CollectionSpec,
    NoWords,
    Point,
    SearchFilter,
    SearchRequest,
    SparseVector,
)

DIM = 8
MODEL = {"name": "tiny-random", "arch": "tiny-random", "weights_sha256": None}
WORDS = Bm25Words()


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
        payload = {
            "title": title,
            "label": label,
            "ingredients": ingredients,
            "base_ingredients": ingredients,
        }
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
    """Reciprocal rank fusion, checked by hand on untied rankings: 1 / (k + rank) summed over
    the dense and the keyword ranking, ranks from 0 as Qdrant counts them; an item only the
    vector finds still comes."""
    vector = unit(np.asarray(axis(2)) + 0.5 * np.asarray(axis(3)) + 0.2 * np.asarray(axis(1)))
    words = WORDS.query("salsa beef")  # beef tacos has both words, fish tacos one
    dense = filled.search("dishes", SearchRequest("image", vector), limit=5)
    keyword = filled.search("dishes", SearchRequest("image", vector, "sparse", words), limit=5)
    assert ids(keyword) == [pid(1), pid(3)] and keyword[0].score > keyword[1].score
    fused = {}
    for ranking in (dense, keyword):
        for rank, hit in enumerate(ranking):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
    request = SearchRequest("image", vector, mode="hybrid", words=words)
    hits = filled.search("dishes", request, limit=5)
    assert ids(hits) == sorted(fused, key=lambda i: -fused[i])
    assert {hit.id: hit.score for hit in hits} == pytest.approx(fused)
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
    assert dict(filled.facet("dishes", "label")) == {
        "apple_pie": 1,
        "tacos": 2,
        "curry": 1,
        "tart": 1,
    }
    only = SearchFilter(ids=[pid(0), pid(4)])
    assert dict(filled.facet("dishes", "base_ingredients", only)) == {
        "flour": 2,
        "butter": 2,
        "apples": 1,
        "lemons": 1,
    }


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
    with pytest.raises(NoWords, match="run multimodal index on it again"):
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


# -- through the Searcher and the command line, on an indexed drawn data set ---------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_encoder):
    """The drawn Recipes5k folder (titles "Red Circle Cake", dish types the shapes), indexed
    with the tiny random model into an embedded store."""
    from conftest import write_recipes5k

    from indexer.pipeline import index_records
    from multimodal.data.readers import read_records

    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=9)
    folder = tmp_path_factory.mktemp("store")
    with EdgeStore(folder) as store:
        index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    return root, folder


@pytest.fixture
def searcher(indexed, tiny_encoder):
    from indexer.search import Searcher

    root, folder = indexed
    with EdgeStore(folder) as store:
        yield Searcher(tiny_encoder, store, "dishes")


def titles(hits) -> list[str]:
    return [hit.payload["title"] for hit in hits]


def test_words_find_what_a_random_model_cannot(searcher):
    """The tiny model's vectors are random; BM25 finds the red circles by their words, and
    hybrid ranks them above where the vectors alone put them."""
    red_circles = {"Red Circle Cake"}
    sparse = searcher.search("red circle", "image", 4, mode="sparse")
    assert set(titles(sparse[:2])) == red_circles  # both splits' red circle cakes
    hybrid = searcher.search("red circle", "image", 18, mode="hybrid")
    dense = searcher.search("red circle", "image", 18, mode="dense")
    assert len(dense) == len(hybrid) == 18  # every item, whatever its words
    worded = {h.id for h in searcher.search("red circle", "image", 18, mode="sparse")}
    # Its dense share, plus its words' if it has any. Copies of a drawing tie, and tied items
    # may take either rank, so each share is bounded by its tie group's first and last rank
    # (the exact fusion, on untied rankings, is the store's test).
    fused = {h.id: h.score for h in hybrid}
    scores = [round(h.score, 6) for h in dense]
    for hit in dense:
        first = scores.index(round(hit.score, 6))
        last = len(scores) - 1 - scores[::-1].index(round(hit.score, 6))
        low, high = 1.0 / (RRF_K + last), 1.0 / (RRF_K + first)
        if hit.id in worded:
            low, high = low + 1.0 / (RRF_K + 17), high + 1.0 / RRF_K
        assert low - 1e-6 <= fused[hit.id] <= high + 1e-6
    photo = searcher.prepare(dense[0].image_path)
    assert searcher.mode_for(photo, "hybrid") == "dense"  # no words: dense
    stop_words = searcher.prepare("the of and")
    assert searcher.mode_for(stop_words, "sparse") == "dense"


def test_like_and_unlike_through_the_searcher(searcher):
    """Liked and disliked points leave the results; a disliked one's twin drops, a liked
    one's twin rises; the query stays a positive example."""
    hits = searcher.search("blue square", "image", 18)
    first, second = hits[0], hits[1]
    after = searcher.search("blue square", "image", 18, unlike=[first.id])
    assert first.id not in [h.id for h in after]
    liked = searcher.search("blue square", "image", 18, like=[hits[-1].id])
    assert hits[-1].id not in [h.id for h in liked]
    twin = searcher.search(("id", hits[-1].id), "image", 1)[0]  # nearest to the liked one
    assert liked[0].id == twin.id
    only_likes = searcher.search(None, "image", 5, like=[hits[-1].id])
    assert only_likes[0].id == twin.id
    assert second.id in [h.id for h in searcher.search("blue square", "image", 18)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"like": ["not-an-id"]}, "no point 'not-an-id'"),
        ({"like": [str(uuid.UUID(int=99))]}, "no point 00000000-0000-0000-0000-000000000063"),
        ({"like": [pid(0)], "unlike": [pid(0)]}, "both liked and disliked"),
        ({"mode": "fuzzy"}, "unknown mode 'fuzzy'"),
        ({"diversity": 2.0}, "diversity must be from 0 to 1"),
    ],
)
def test_bad_feedback_is_one_clear_message(searcher, call, message):
    with pytest.raises(ValueError, match=message):
        searcher.search("blue square", "image", 5, **call)


def test_feedback_on_nothing_is_refused(searcher):
    some = searcher.search("cake", "image", 1)[0].id
    with pytest.raises(ValueError, match="nothing to search for"):
        searcher.search(None, "image", 5, unlike=[some])
    with pytest.raises(ValueError, match="nothing to search for"):
        searcher.search(None, "image", 5)


def test_looks_like_and_specific_ingredients(searcher):
    """Dish votes are score-weighted shares of the voters' dish types; the specific ranking
    keeps each share and puts the ingredient every recipe has ("sugar") last."""
    recipes = searcher.search("green triangle", "text", 12)
    looks = searcher.looks_like(recipes, top=10)
    weights = {}
    for hit in recipes:
        weights[hit.payload["label"]] = weights.get(hit.payload["label"], 0) + max(hit.score, 0)
    total = sum(weights.values())
    assert looks == sorted(
        ((k, v / total) for k, v in weights.items()), key=lambda kv: (-kv[1], kv[0])
    )
    shares = dict(searcher.ingredients_of(recipes, 100, "share"))
    specific = searcher.ingredients_of(recipes, 100, "specific")
    assert dict(specific) == shares  # the same shares, another order
    assert searcher.prevalence()["sugar"] == 1.0  # every item has it
    assert specific[-1][0] in {"sugar", "flour", "colouring", "mould"}


def test_search_command_modes_feedback_and_suggestions(indexed, capsys):
    from multimodal.cli import main as cli

    root, folder = indexed
    common = ["--collection", "dishes", "--store", str(folder), "--model", "tiny-random"]
    every = ["--no-collapse"]  # the train and val copies of one drawing: both listed
    assert (
        cli(["search", "red circle", "--mode", "sparse", "-k", "2", "--json", *every, *common]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["title"] for row in rows] == ["Red Circle Cake"] * 2
    liked, disliked = rows[0]["id"], rows[1]["id"]
    argv = [
        "search",
        "cake",
        "--like",
        liked,
        "--unlike",
        disliked,
        "--diversity",
        "0.3",
        "--mode",
        "hybrid",
        "-k",
        "5",
        "--json",
        "--suggest",
        "--ranking",
        "specific",
    ]
    assert cli([*argv, *common]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {liked, disliked}.isdisjoint(row.get("id") for row in lines)
    assert lines[-1]["looks_like"] and lines[-1]["suggested_ingredients"]
    assert cli(["search", "--unlike", disliked, *common]) == 2
    assert "--unlike needs something to steer" in capsys.readouterr().err
    assert cli(["search", "cake", "--like", str(uuid.UUID(int=7)), *common]) == 2
    assert "no point" in capsys.readouterr().err
    for flag, value in (("--mode", "fuzzy"), ("--diversity", "1.5")):
        with pytest.raises(SystemExit) as refused:  # argparse: usage and one line, exit 2
            cli(["search", "cake", flag, value, *common])
        assert refused.value.code == 2
    assert "--diversity: must be a number from 0 to 1" in capsys.readouterr().err
    assert (
        cli(
            [
                "search",
                "--image",
                str(next(root.rglob("*.jpg"))),
                "--mode",
                "hybrid",
                "--target",
                "text",
                *common,
            ]
        )
        == 0
    )
    assert "matched as dense, not hybrid" in capsys.readouterr().out


def test_index_gives_an_old_collection_its_words_without_embedding(indexed, tmp_path, capsys):
    """A collection as the previous release made it (no bm25 vector, no settings): hybrid
    search says what to run; ``multimodal index`` adds the words and embeds nothing."""
    from multimodal.cli import main as cli

    root, folder = indexed
    with EdgeStore(folder) as new, EdgeStore(tmp_path / "old") as old:
        metadata = {k: v for k, v in new.metadata("dishes").items() if k != "bm25"}
        spec = CollectionSpec(metadata["dim"], metadata["model"])
        old.create_or_open("dishes", spec)
        old.update_metadata("dishes", metadata)
        copies = [
            Point(p.id, {k: v for k, v in p.vectors.items() if k != "bm25"}, p.payload)
            for p in new.scroll("dishes", with_vectors=True)
        ]
        old.upsert("dishes", copies)
        assert not old.has_words("dishes")
    common = ["--collection", "dishes", "--store", str(tmp_path / "old")]
    # asking for words the collection lacks is the caller's mistake (exit 2), not the store's
    assert cli(["search", "red circle", "--mode", "hybrid", *common]) == 2
    assert "run multimodal index on it again" in capsys.readouterr().err
    assert cli(index_args(root, tmp_path / "old", collection="dishes")) == 0
    out = capsys.readouterr().out
    assert "indexed 0, unchanged 18" in out and "added BM25 words to 18 points" in out
    every = ["--no-collapse"]  # the train and val copies of one drawing: both listed
    assert (
        cli(["search", "red circle", "--mode", "sparse", "-k", "2", "--json", *every, *common]) == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["title"] for row in rows] == ["Red Circle Cake"] * 2


def test_every_search_waits_for_the_tower_it_needs(searcher, indexed):
    """The searcher itself takes the towers' locks (the command line and benchmarks too, not
    only the server): a text search waits while the text tower is busy, a photo search while
    the image tower is; a stored point needs neither."""
    import threading

    from multimodal.tower_locks import tower_locks

    root, _ = indexed
    photo = next(root.glob("images/*/*.jpg"))
    point = next(iter(searcher.store.scroll("dishes", fields=["label"]))).id
    locks = tower_locks(searcher.encoder)
    for lock, query in ((locks.text, "red cake"), (locks.image, photo)):
        done = threading.Event()
        with lock:
            worker = threading.Thread(target=lambda q=query, d=done: (searcher.search(q), d.set()))
            worker.start()
            assert not done.wait(0.3)  # held up by the busy tower
            with locks.text if lock is locks.image else locks.image:
                assert searcher.search(("id", point))  # a stored point passes both
        worker.join(30)
        assert done.is_set()
