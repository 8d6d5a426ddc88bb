"""The page: its handlers, its named API through gradio_client, and the running page driven in
a real headless Chromium."""

from __future__ import annotations

import json
import os
import struct
import uuid
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from browser import drive, find_chromium
from conftest import draw_image, write_recipes5k
from PIL import Image

from indexer.duplicates import find_duplicates
from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher, parse_query
from indexer.service import DEFAULT_DIVERSITY, DEFAULT_MODE, DEFAULT_RANKING
from indexer.store import SearchFilter, StoredPoint
from indexer.tags import Label, record_field, tag_points
from multimodal.data.readers import read_records
from multimodal.suggestions import SUGGESTIONS, VOTERS
from ui.app import RESULTS, RecipeApp, example_photos, launch
from ui.cards import filter_choices, looks_like, page_filter, recipe_markdown
from ui.feedback import NO_MARKS, mark
from ui.page import ranked_label


@pytest.fixture(scope="module")
def recipe_app(tmp_path_factory, tiny_encoder):
    """A drawn Recipes5k-shaped data set, indexed with a tiny model into an embedded store."""
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=9)
    store = EdgeStore(tmp_path_factory.mktemp("store"))
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    maps = tmp_path_factory.mktemp("maps")
    app = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=maps)
    assert app.map.tsne_done.wait(60) and "tsne" in app.map.layouts  # 18 photos: a second
    yield app, root
    store.close()


@pytest.fixture(scope="module")
def served(recipe_app):
    app, root = recipe_app
    blocks = launch(app, block=False)
    yield blocks.local_url, app, root
    blocks.close()


def test_handlers(recipe_app):
    app, root = recipe_app
    gallery, hits, marks = app.text_to_image(
        "blue circle cake", None, 1.0, [], "", "", collapse=False
    )
    assert len(gallery) == len(hits) == 12  # RESULTS, out of 18 items
    assert all(" · " in caption for _, caption in gallery)
    assert [url for url, _ in gallery] == [f"/photo/{h['id']}" for h in hits]  # by point id
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # the map's marks: where the query falls in each layout, and its results' ids
    vector, _ = app.searcher.query_vector(parse_query("blue circle cake"))
    assert marks == {
        "what": "text query",
        "positions": app.map.place(vector),
        "hits": [h["id"] for h in hits],
    }
    assert len(app.map) == 18 and set(marks["positions"]) == {"pca", "tsne"}
    pca = (vector - app.map.sample.vectors.mean(0)) @ app.map.axes.T
    np.testing.assert_allclose(marks["positions"]["pca"], pca, atol=1e-3)
    only_blue = app.text_to_image("cake", None, 1.0, [], "blue", "", collapse=False)[1]
    assert only_blue and all("Blue" in h["payload"]["title"] for h in only_blue)
    no_red = app.text_to_image("cake", None, 1.0, [], "", "red, green", collapse=False)[1]
    assert no_red and all("Blue" in h["payload"]["title"] for h in no_red)
    one_dish = app.text_to_image("cake", None, 1.0, [app.labels[0]], "", "", collapse=False)[1]
    assert {h["payload"]["label"] for h in one_dish} == {app.labels[0]}

    photo = Image.open(next(root.glob("images/*/*.jpg")))
    rows, suggested, similar, marks, looks_like = app.image_to_text(
        photo, [], "", "", collapse=False
    )
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1)) and len(rows) == 12
    assert set(suggested) >= {"flour", "sugar"} and max(suggested.values()) == pytest.approx(1.0)
    assert len(similar) == 12 and looks_like
    assert marks["what"] == "photo" and [f"/photo/{i}" for i in marks["hits"]] == [
        url for url, _ in similar
    ]

    chosen = hits[0]["id"]
    more = app.more_like_this(chosen, [], "", "", collapse=False)[1]
    assert chosen not in [h["id"] for h in more]
    card = recipe_markdown(hits[0])
    assert hits[0]["payload"]["title"] in card and "flour" in card


def test_tags_are_filters_and_show_on_the_card(tmp_path, tiny_encoder):
    root = write_recipes5k(tmp_path / "r5k")
    store = EdgeStore(tmp_path / "store")
    index_records(tiny_encoder, store, "d", read_records(root), workers=0, progress=False)
    app = RecipeApp(Searcher(tiny_encoder, store, "d"), map_folder=tmp_path / "maps")
    assert app.tags == {} and filter_choices(app.labels, app.tags) == app.labels
    labels = [Label("sweet", "a cake"), Label("savoury", "a pie"), Label("odd", "a shape")]
    tagged = tag_points(tiny_encoder, store, "d", "taste", labels)
    app.refresh()
    assert app.tags == {"taste": ["sweet", "savoury", "odd"]} and app.changes == 1
    choices = app.filter_choices().constructor_args["choices"]
    assert choices[: len(app.labels)] == app.labels and "taste: savoury" in choices
    wanted = {point_id for point_id, chosen, _ in tagged if "savoury" in chosen}
    # a tag and a dish type in one filter: both apply
    dish = app.labels[0]
    both = page_filter([dish, "taste: savoury"], "", "", app.tags)
    assert both.labels == [dish] and both.fields == {"taste": ["savoury"]}
    hits = app.text_to_image("cake", None, 1.0, ["taste: savoury"], "", "", collapse=False)[1]
    assert hits and {hit["id"] for hit in hits} <= wanted
    card = recipe_markdown(hits[0])
    assert "taste **" in card and "savoury" in card.split("taste **")[1]
    # a choice that is no tag of the collection is a dish type (none has that name: no hits)
    assert page_filter(["taste: bitter"], "", "", app.tags).labels == ["taste: bitter"]
    store.close()


def test_bad_input_is_a_readable_message(recipe_app):
    app, _ = recipe_app
    with pytest.raises(gr.Error, match="Type a dish"):
        app.text_to_image("   ", None, 1.0, [], "", "", collapse=False)
    with pytest.raises(gr.Error, match="Upload, paste or drop"):
        app.image_to_text(None, [], "", "", collapse=False)
    huge = Image.new("1", (9000, 9000))  # 81 million pixels in 10 MB: over the 64M limit
    with pytest.raises(gr.Error, match="pixel limit"):
        app.image_to_text(huge, [], "", "", collapse=False)
    with pytest.raises(gr.Error, match="Click a photo"):
        app.more_like_this("", [], "", "", collapse=False)
    with pytest.raises(gr.Error, match="positive term"):
        app.text_to_image("- chocolate", None, 1.0, [], "", "", collapse=False)


def _titles(hits: list[dict]) -> list[str]:
    return [hit["payload"]["title"] for hit in hits]


def _ids(hits) -> list[str]:
    return [hit["id"] if isinstance(hit, dict) else hit.id for hit in hits]


def _seen(hits) -> list[tuple[float, str]]:
    """(score, title) of each hit, best first: what a person sees, the same whichever of two
    tied results the store puts first (each recipe is drawn twice, for train and val)."""
    pairs = [
        (hit["score"], hit["payload"]["title"])
        if isinstance(hit, dict)
        else (hit.score, hit.payload["title"])
        for hit in hits
    ]
    return sorted(((round(score, 4), title) for score, title in pairs), key=lambda p: (-p[0], p[1]))


def _twin(app: RecipeApp, hit: dict) -> str:
    """The other split's copy of ``hit``: the same title, the same drawn photo."""
    found = app.searcher.store.scroll("dishes", None, ["title"], page=64)
    return next(
        p.id for p in found if p.payload["title"] == hit["payload"]["title"] and p.id != hit["id"]
    )


@pytest.fixture
def asked(recipe_app, monkeypatch):
    """What the page asks the Searcher: the keyword arguments of each ``nearest`` call."""
    searcher, calls = recipe_app[0].searcher, []
    nearest = searcher.nearest

    def spy(*args, **how):
        marks = ("like", "unlike") if how.get("like") else ()
        calls.append({key: how[key] for key in ("mode", "diversity", *marks)})
        return nearest(*args, **how)

    monkeypatch.setattr(searcher, "nearest", spy)
    return calls


def test_search_modes_on_the_page(recipe_app, asked):
    app, root = recipe_app
    assert app.mode == DEFAULT_MODE  # the collection has its BM25 words
    app.text_to_image("blue cake", None, 1.0, [], "", "", collapse=False)
    assert asked[-1] == {"mode": DEFAULT_MODE, "diversity": DEFAULT_DIVERSITY}
    for mode in ("dense", "hybrid", "sparse"):
        hits = app.text_to_image("blue cake", None, 1.0, [], "", "", mode, 0.25, collapse=False)[1]
        assert asked[-1] == {"mode": mode, "diversity": 0.25} and len(hits) == RESULTS
    # sparse: exactly the recipes with a word of the query (6 of 18 say "blue")
    sparse = app.text_to_image("blue", None, 1.0, [], "", "", "sparse", collapse=False)[1]
    found = app.searcher.store.scroll("dishes", None, ["title", "ingredients"])
    words = {p.id: f"{p.payload['title']} {' '.join(p.payload['ingredients'])}" for p in found}
    blue = [i for i, text in words.items() if "blue" in text.lower()]
    assert sorted(_ids(sparse)) == sorted(blue) and len(blue) == 6
    # hybrid: the two rankings fused by reciprocal rank (scores 1/(60 + rank) each at most)
    hybrid = app.text_to_image("blue cake", None, 1.0, [], "", "", "hybrid", collapse=False)[1]
    assert all(0 < hit["score"] <= 2 / 60 for hit in hybrid)
    # a photo alone has no words: matched densely whatever the mode
    photo = Image.open(next(root.glob("images/*/*.jpg")))
    as_sparse = app.text_to_image("", photo, 1.0, [], "", "", "sparse", collapse=False)[1]
    assert _seen(as_sparse) == _seen(
        app.text_to_image("", photo, 1.0, [], "", "", "dense", collapse=False)[1]
    )
    with pytest.raises(gr.Error, match="unknown mode 'fuzzy'"):
        app.text_to_image("blue cake", None, 1.0, [], "", "", "fuzzy", collapse=False)


def test_a_collection_without_words_is_searched_densely(recipe_app):
    app, _ = recipe_app
    old = Searcher(app.searcher.encoder, app.searcher.store, "dishes")
    old.words = None  # as a collection indexed before BM25 words opens
    page = RecipeApp(old, map_folder=app.maps.folder)
    assert page.mode == "dense"
    dense = app.text_to_image("blue cake", None, 1.0, [], "", "", "dense", collapse=False)[1]
    assert _seen(
        page.text_to_image("blue cake", None, 1.0, [], "", "", collapse=False)[1]
    ) == _seen(dense)
    with pytest.raises(gr.Error, match="no BM25 words.*multimodal index"):
        page.text_to_image("blue cake", None, 1.0, [], "", "", "hybrid", collapse=False)


def test_diversity_spreads_the_gallery(recipe_app):
    app, _ = recipe_app
    assert DEFAULT_DIVERSITY == 0.0 or 0 < DEFAULT_DIVERSITY <= 1
    plain = app.text_to_image(
        "red square cake", None, 1.0, [], "", "", "dense", 0.0, collapse=False
    )[1]
    diverse = app.text_to_image(
        "red square cake", None, 1.0, [], "", "", "dense", 0.9, collapse=False
    )[1]
    expected = app.searcher.search(
        "red square cake", "image", RESULTS, SearchFilter(), mode="dense", diversity=0.9
    )
    # each recipe is drawn twice (train and val): by score alone the twins sit side by side;
    # which of two twins MMR picks is not fixed (they tie), so compare titles
    assert _titles(diverse) == [hit.payload["title"] for hit in expected]
    assert len(set(_titles(plain[:6]))) < len(set(_titles(diverse[:6]))) == 6
    chosen = plain[0]["id"]
    more = app.more_like_this(chosen, [], "", "", 0.9, collapse=False)[1]
    expected = app.searcher.search(("id", chosen), "image", RESULTS, diversity=0.9)
    assert _titles(more) == [hit.payload["title"] for hit in expected]
    with pytest.raises(gr.Error, match="diversity must be from 0 to 1"):
        app.text_to_image("cake", None, 1.0, [], "", "", "dense", 1.5, collapse=False)


def test_example_photos_look_at_a_bounded_number_of_points(recipe_app):
    """The examples come from the first photos that exist on disk, and the look stops after
    ``read`` points: a large collection whose photos are elsewhere starts as fast as a small
    one (it used to scroll the whole collection)."""
    app, root = recipe_app
    store, collection = app.searcher.store, app.searcher.collection
    every = list(store.scroll(collection, None, ["label"]))
    found = example_photos(store, collection, count=6)
    assert 1 <= len(found) == len(set(found)) <= 6
    assert all(path.is_file() and root in path.parents for path in found)
    few = example_photos(store, collection, count=len(every), read=4)
    assert 1 <= len(few) <= 4 < len(every)  # four points looked at, whatever the count asked
    assert set(few) <= set(example_photos(store, collection, count=len(every)))


def test_marks():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    liked, disliked, text = mark(a, [], [], good=True)
    assert (liked, disliked) == ([a], []) and "liked 1 · 👎 disliked 0" in text
    liked, disliked, text = mark(b, liked, disliked, good=False)
    assert (liked, disliked) == ([a], [b]) and "liked 1 · 👎 disliked 1" in text
    liked, disliked, _ = mark(b, liked, disliked, good=True)  # changed its mind
    assert (liked, disliked) == ([a, b], [])
    assert mark(a, liked, disliked, good=True)[:2] == ([a, b], [])  # marked once
    assert mark(a, f" {a}, {b}", None, good=False)[:2] == ([b], [a])  # as an API may send
    assert mark("", [], [], good=True)[2] == NO_MARKS


def test_search_again_with_marks(recipe_app):
    app, _ = recipe_app
    query = "red square cake"
    plain = app.text_to_image(query, None, 1.0, [], "", "", "dense", collapse=False)[1]
    liked = plain[5]
    twin = _twin(app, liked)
    assert _ids(plain).index(twin) < 6
    marks = app.like(liked["id"], [], [])
    assert marks[0] == [liked["id"]] and "liked 1" in marks[2]
    again = app.feedback(query, None, 1.0, [], "", "", "dense", 0.0, *marks[:2], collapse=False)[1]
    # as the Searcher answers it, the query staying a positive example
    expected = app.searcher.search(
        query, "image", RESULTS, SearchFilter(), mode="dense", like=[liked["id"]]
    )
    assert _seen(again) == _seen(expected)
    # the liked photo's twin (the same drawing) comes first; the liked one is in the marks
    assert _ids(again)[0] == twin and liked["id"] not in _ids(again)
    # ranked by the best of the query's and the liked photo's similarity (naive reference)
    query_vector = app.searcher.prepare(query).vector
    liked_vector = app.searcher.point_vector(liked["id"])
    points = {p.id: p for p in app.searcher.store.scroll("dishes", with_vectors=True)}
    best = {
        i: max(
            float(np.dot(query_vector, p.vectors["image"])),
            float(np.dot(liked_vector, p.vectors["image"])),
        )
        for i, p in points.items()
        if i != liked["id"]
    }
    top = sorted(best.values(), reverse=True)[:RESULTS]
    np.testing.assert_allclose([best[i] for i in _ids(again)], top, atol=1e-4)
    # a disliked photo goes, and its twin goes away or down
    disliked = plain[0]
    _, unlike, _ = app.dislike(disliked["id"], [], [])
    fewer = app.feedback(query, None, 1.0, [], "", "", "dense", 0.0, [], unlike, collapse=False)[1]
    assert disliked["id"] not in _ids(fewer)
    twin = _twin(app, disliked)
    assert twin not in _ids(fewer) or _ids(fewer).index(twin) > _ids(plain).index(twin)


def test_search_again_keeps_the_words(recipe_app, asked):
    app, _ = recipe_app
    green = app.text_to_image("green", None, 1.0, [], "", "", "sparse", collapse=False)[1][0]
    liked = [green["id"]]
    alone = app.feedback("", None, 1.0, [], "", "", "hybrid", 0.0, liked, [], collapse=False)[1]
    with_words = app.feedback(
        "blue", None, 1.0, [], "", "", "hybrid", 0.0, liked, [], collapse=False
    )[1]
    assert asked[-1] == {"mode": "hybrid", "diversity": 0.0, "like": liked, "unlike": []}
    # the words still count: more blue cakes come first than for the liked photo alone
    blue_first = sum("Blue" in title for title in _titles(with_words[:6]))
    assert blue_first > sum("Blue" in title for title in _titles(alone[:6]))
    assert _seen(alone) == _seen(app.searcher.search(None, "image", RESULTS, like=liked))


def test_feedback_refusals(recipe_app):
    app, _ = recipe_app
    some = app.text_to_image("cake", None, 1.0, [], "", "", collapse=False)[1][0]["id"]
    with pytest.raises(gr.Error, match="Nothing to search again"):
        app.feedback("  ", None, 1.0, [], "", "", "dense", 0.0, [], [], collapse=False)
    with pytest.raises(gr.Error, match="Nothing to search again"):
        app.feedback(
            "", None, 1.0, [], "", "", "dense", 0.0, [], [some], collapse=False
        )  # dislikes alone
    missing = str(uuid.uuid4())
    for liked in ([missing], ["not-an-id"]):
        with pytest.raises(gr.Error, match="no point "):
            app.feedback("cake", None, 1.0, [], "", "", "dense", 0.0, liked, [], collapse=False)
    with pytest.raises(gr.Error, match="both liked and disliked"):
        app.feedback("cake", None, 1.0, [], "", "", "dense", 0.0, [some], [some], collapse=False)
    with pytest.raises(gr.Error, match="liked must be a list of point ids"):
        app.feedback("cake", None, 1.0, [], "", "", "dense", 0.0, {"id": some}, [], collapse=False)
    with pytest.raises(gr.Error, match="Click a photo"):
        app.like("", [], [])


def test_looks_like_and_specific_suggestions(recipe_app):
    app, root = recipe_app
    photo = Image.open(next(root.glob("images/triangle/*.jpg")))
    rows, suggested, _, _, looks_like = app.image_to_text(photo, [], "", "", collapse=False)
    recipes = app.searcher.search(photo, "text", RESULTS)
    assert [row[2] for row in rows] == [r.payload["title"] for r in recipes]
    # naive: each of the voting recipes adds its score (floored at 0) to its dish type
    votes: dict[str, float] = defaultdict(float)
    for recipe in recipes[:VOTERS]:
        votes[recipe.payload["label"]] += max(recipe.score, 0.0)
    naive = {label: vote / sum(votes.values()) for label, vote in votes.items() if vote > 0}
    assert looks_like == pytest.approx(naive) and sum(looks_like.values()) <= 1 + 1e-9
    assert list(looks_like) == sorted(looks_like, key=looks_like.get, reverse=True)
    specific = app.searcher.ingredients_of(recipes[:VOTERS], SUGGESTIONS, DEFAULT_RANKING)
    assert list(suggested.items()) == specific  # in the ranking's order, with shares


def test_looks_like_names_dish_types_as_words(recipe_app):
    app, _ = recipe_app

    def recipe(label, score):
        return StoredPoint(str(uuid.uuid4()), {"label": label}, score=score)

    hits = [
        recipe("hamburger", 0.6),
        recipe("crab_cakes", 0.3),
        recipe("hamburger", 0.3),
        recipe(None, 0.5),
        recipe("salad", -0.2),
    ]
    shown = looks_like(app.searcher.looks_like(hits))
    assert shown == pytest.approx({"hamburger": 0.75, "crab cakes": 0.25})
    assert list(shown) == ["hamburger", "crab cakes"]  # no vote, no line: "salad" 0 is left out


def test_suggestions_keep_their_ranking_on_the_page():
    shown = ranked_label().postprocess({"saffron": 0.4, "salt": 0.9, "egg": 0.5})
    assert [c.label for c in shown.confidences] == ["saffron", "salt", "egg"]
    assert shown.label == "saffron" and shown.confidences[1].confidence == 0.9
    assert ranked_label().postprocess({}) == {}


def test_named_endpoints_through_gradio_client(served):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, app, root = served
    client = Client(url, verbose=False)
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/text_to_image", "/image_to_text", "/more_like_this", "/feedback"} <= set(named)
    gallery, hits, marks = client.predict(
        "red square cake", None, 1, [], "", "", api_name="/text_to_image"
    )  # the arguments added since (mode, diversity, collapse) have defaults: the page's
    # copies of one picture folded by default (each drawing is in the data twice), as the
    # handler folds them; unfolded, all 12
    folded = app.text_to_image("red square cake", None, 1, [], "", "")[0]
    assert [g["caption"] for g in gallery] == [caption for _, caption in folded]
    assert len(gallery) < 12 and all("similar · " in g["caption"] for g in gallery)
    assert sum(len(h["duplicates"]) + 1 for h in hits) >= 12 and hits[0]["payload"]["title"]
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert len(params["/text_to_image"]["parameters"]) == 8  # no input added: old clients work
    # the map gets the query's place and the results' ids, not the collection's 18 points
    assert marks["hits"] == _ids(hits) and set(marks["positions"]) == {"pca", "tsne"}
    assert len(json.dumps(marks)) < 1000
    assert all(hit["score"] <= 2 / 60 for hit in hits) == (DEFAULT_MODE == "hybrid")
    dense = client.predict(
        "red square cake", None, 1, [], "", "", "dense", 0.0, api_name="/text_to_image"
    )[1]
    assert _seen(dense) == _seen(
        app.text_to_image("red square cake", None, 1, [], "", "", "dense")[1]
    )
    sparse = client.predict("blue", None, 1, [], "", "", "sparse", 0.0, api_name="/text_to_image")
    assert _ids(sparse[1]) == _ids(app.text_to_image("blue", None, 1, [], "", "", "sparse")[1])
    more = client.predict(hits[0]["id"], [], "", "", api_name="/more_like_this")[1]
    expected = app.more_like_this(hits[0]["id"], [], "", "")[1]
    assert _ids(more) == _ids(expected) and hits[0]["id"] not in _ids(more)
    liked, disliked = [hits[3]["id"]], [hits[0]["id"]]
    again = client.predict(
        "red square cake", None, 1, [], "", "", "dense", 0.0, liked, disliked, api_name="/feedback"
    )[1]
    expected = app.feedback("red square cake", None, 1, [], "", "", "dense", 0.0, liked, disliked)
    assert _seen(again) == _seen(expected[1]) and hits[0]["id"] not in _ids(again)
    with pytest.raises(AppError, match="Nothing to search again"):
        client.predict("", None, 1, [], "", "", "dense", 0.0, [], [], api_name="/feedback")
    photo = handle_file(str(next(root.glob("images/*/*.jpg"))))
    table, suggested, similar, _, looks_like = client.predict(
        photo, [], "", "", api_name="/image_to_text"
    )
    assert len(table["data"]) == 12 and suggested["confidences"] and looks_like["confidences"]


def test_only_loopback_and_indexed_files_are_served(served):
    import urllib.error
    import urllib.request

    url, app, root = served
    assert url.startswith("http://127.0.0.1:")
    hit = app.text_to_image("red square cake", None, 1.0, [], "", "")[1][0]
    inside = root / hit["payload"]["image"]
    with urllib.request.urlopen(f"{url}photo/{hit['id']}") as response:
        assert response.status == 200 and response.read() == inside.read_bytes()
    outside = Path(__file__).resolve()
    for path in (inside, outside):  # Gradio's file route serves neither
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert refused.value.code in (403, 404)


def _alike(shown: list[str], gallery: list) -> bool:
    """Whether the page shows ``gallery`` (a handler's): the same captions, in order up to
    results with equal scores (reciprocal rank fusion ties often, and the store orders ties
    as it likes), and of those at the last score, as many."""
    expected = [caption for _, caption in gallery]

    def ranked(captions: list[str]) -> tuple[list[str], list[str]]:
        scores = [caption.split(" · ")[0] for caption in captions]
        return sorted(c for c, s in zip(captions, scores, strict=True) if s != scores[-1]), scores

    return bool(shown) and ranked(shown) == ranked(expected)


@pytest.mark.slow
def test_page_in_headless_chromium(served, tmp_path):
    if find_chromium() is None:
        if os.environ.get("MULTIMODAL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here: apt-get install chromium chromium-driver")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    url, app, root = served
    photo = next(root.glob("images/square/*.jpg"))
    # the squares labelled "party", the other dishes "weekday" (as multimodal tag writes
    # labels; the random model's own choice would not split them)
    store = app.searcher.store
    dishes = {p.id: p.payload["label"] for p in store.scroll("dishes", fields=["label"])}
    occasion = {i: "party" if label == "square" else "weekday" for i, label in dishes.items()}
    store.set_point_payloads(
        "dishes",
        {i: {"occasion": [name], "occasion_scores": {name: 0.3}} for i, name in occasion.items()},
    )
    record_field(store, "dishes", "occasion", [Label("party", "a"), Label("weekday", "b")], 0)
    app.refresh()  # the filter's choices at the next page load
    counts = Counter(occasion.values())
    rarer = "party"
    tag = f"occasion: {rarer}"
    seen = drive(url, photo, "red square cake", "blue", screenshots=tmp_path, tag=tag)
    # words -> photos: the page shows what the search gives, in order, with scores
    words, hits, _ = app.text_to_image("red square cake", None, 1.0, [], "", "")
    assert _alike(seen.gallery_captions, words)
    assert seen.gallery_photos_shown == len(words)  # each photo loaded from its point's URL
    # the first photo's recipe, then more like it (that photo left out)
    first = next(h for (_, c), h in zip(words, hits, strict=True) if c == seen.gallery_captions[0])
    title = first["payload"]["title"]
    assert seen.recipe_card.startswith(title)
    more = app.more_like_this(first["id"], [], "", "")[0]
    assert seen.more_captions == [caption for _, caption in more] != seen.gallery_captions
    # the words matched densely; that photo marked good and searched again: the liked
    # photo's twin (the same drawing, from the other split) first; then the marks cleared
    dense = app.text_to_image("red square cake", None, 1.0, [], "", "", "dense")[0]
    assert seen.dense_captions == [caption for _, caption in dense]
    assert "liked 1 · 👎 disliked 0" in seen.marks_after_like
    # the mark is kept with the collection, with the words searched, for training
    said = " ".join(seen.marks_after_like.split())  # the command shows as code
    assert "saved for multimodal train --marks" in said
    kept = [m for m in app.service.marks.marks() if m["query"] == {"text": "red square cake"}]
    assert [(m["hit"]["id"], m["good"]) for m in kept] == [(first["id"], True)]
    again = app.feedback(
        "red square cake", None, 1.0, [], "", "", "dense", DEFAULT_DIVERSITY, [first["id"]], []
    )[0]
    assert _alike(seen.again_captions, again) and seen.again_captions != seen.dense_captions
    assert seen.again_captions[0].split(" · ")[1] == title
    assert seen.marks_after_clear.startswith("No marks")
    # the words in hybrid mode: scores of reciprocal rank fusion
    hybrid = app.text_to_image("red square cake", None, 1.0, [], "", "", "hybrid")[0]
    assert _alike(seen.hybrid_captions, hybrid)
    assert all(float(c.split(" · ")[0]) <= round(2 / 60, 3) for c in seen.hybrid_captions)
    # the filter changed the results: only recipes with blue in their ingredients
    blue = app.text_to_image("red square cake", None, 1.0, [], "blue", "", "hybrid")[0]
    assert _alike(seen.filtered_captions, blue) and seen.filtered_captions != seen.hybrid_captions
    assert all("Blue" in c for c in seen.filtered_captions)
    # a photo -> what it looks like, recipes (a score per row), suggested ingredients with
    # shares, similar dishes
    looks_like = app.image_to_text(Image.open(photo), [], "", "")[4]
    for name, share in looks_like.items():  # e.g. "triangle 76%"
        assert f"{name}\n{round(share * 100)}%" in seen.looks_like
    assert any(cell.endswith("Cake") for cell in seen.recipe_rows)
    assert "flour" in seen.suggested and "%" in seen.suggested
    _, _, similar, marks, _ = app.image_to_text(Image.open(photo), [], "", "")
    assert seen.similar_images == len(similar) < 12  # copies of one picture folded
    # the map: every photo drawn (t-SNE first), the star where the photo fell in each layout,
    # its similar dishes ringed; a point hovered shows its title and dish type, and clicked,
    # its card
    shown = seen.map
    assert shown.layout == "tsne" and shown.points == len(app.map) == 18
    assert set(shown.star) == {"tsne", "pca"} and shown.ringed == len(marks["hits"])
    for layout, star in shown.star.items():
        np.testing.assert_allclose(star, marks["positions"][layout], atol=1e-3)
    (point,) = app.searcher.store.retrieve("dishes", [shown.hovered_id], fields=["title", "label"])
    title, dish = point.payload["title"], point.payload["label"]
    assert title in shown.hover and dish in shown.hover
    assert shown.card.startswith(f"{title}\ndish type {dish}") and "flour" in shown.card
    assert "Type a dish" in seen.empty_query_message
    # copies of one picture: folded by default ("+N similar"), every photo once unfolded
    assert any("similar · " in caption for caption in seen.gallery_captions)
    every = app.text_to_image("red square cake", None, 1.0, [], "", "", collapse=False)[0]
    assert seen.unfolded_captions == [caption for _, caption in every] and len(every) == 12
    # the Duplicates tab: the groups multimodal duplicates finds, their photos drawn
    groups = find_duplicates(app.searcher.store, "dishes")
    photos = sum(len(group.ids) for group in groups)
    assert seen.duplicates_summary.startswith(f"{len(groups)} groups, {photos} photos")
    assert seen.duplicates_photos == photos > 0
    # a label of the collection's tags chosen in the filter: only photos that have it, the
    # card says it
    tagged, kept, _ = app.text_to_image(
        "red square cake",
        None,
        1.0,
        [tag],
        "",
        "",
        collapse=False,  # unfolded, as left
    )
    assert seen.tagged_captions == [caption for _, caption in tagged]
    assert kept and all(hit["payload"]["occasion"] == [rarer] for hit in kept)
    assert len(kept) == min(counts[rarer], 12)
    assert f"occasion {rarer}" in seen.tagged_card.replace("\n", " ")
    assert all(p.stat().st_size > 10_000 for p in seen.screenshots)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def unreadable_uploads(folder: Path) -> dict[Path, str]:
    """Files a careless user or an attacker uploads, and what the page's message must say."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = draw_image(folder / "photo.jpg", size=(256, 256)).read_bytes()
    png = draw_image(folder / "photo.png", size=(256, 256)).read_bytes()
    contents = {
        "corrupt.png": (png[:60] + bytes(60) + png[120:], "unreadable image data"),
        "truncated.jpg": (photo[:300], "unreadable image data"),
        "empty.png": (b"", "not an image file"),
        "notes.png": (b"shopping list: flour, sugar\n", "not an image file"),
        "bomb.png": (png_header(20000, 20000), "decompression bomb"),
        "huge.png": (png_header(9000, 9000), "pixel limit"),
    }
    uploads = {}
    for name, (data, reason) in contents.items():
        (folder / name).write_bytes(data)
        uploads[folder / name] = reason
    Image.new("L", (30000, 1), 128).save(folder / "strip.png")  # 30000x1 in 100 bytes
    uploads[folder / "strip.png"] = "aspect ratio"
    return uploads


def test_unreadable_uploads_get_the_reason_and_one_log_line(recipe_app, tmp_path, caplog):
    app, _ = recipe_app
    uploads = unreadable_uploads(tmp_path / "uploads")
    for path, reason in uploads.items():
        for search in (
            lambda upload: app.image_to_text(upload, [], "", ""),
            lambda upload: app.text_to_image("cake", upload, 1.0, [], "", ""),
        ):
            caplog.clear()
            with pytest.raises(gr.Error, match=reason) as refused:
                search(str(path))  # what the page's photo input hands the handler
            assert refused.value.message.startswith("That photo cannot be used: ")
            assert str(tmp_path) not in refused.value.message  # no server paths on the page
            assert not refused.value.print_exception  # no traceback in the server's log...
            assert [r.name for r in caplog.records] == ["ui.app"]  # ...one line instead
            assert reason.split()[0] in caplog.records[0].getMessage()


def test_unreadable_uploads_through_the_served_page(served, tmp_path, caplog, capfd):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _, root = served
    client = Client(url, verbose=False)
    uploads = unreadable_uploads(tmp_path / "uploads")
    caplog.clear()
    for path, reason in uploads.items():
        with pytest.raises(AppError, match=f"That photo cannot be used: .*{reason}"):
            client.predict(handle_file(str(path)), [], "", "", api_name="/image_to_text")
        with pytest.raises(AppError, match=reason):
            client.predict("cake", handle_file(str(path)), 1, [], "", "", api_name="/text_to_image")
    # other refusals are messages too, with no traceback in the log
    with pytest.raises(AppError, match="Type a dish"):
        client.predict("   ", None, 1, [], "", "", api_name="/text_to_image")
    with pytest.raises(AppError, match="does not read paths on the server"):
        client.predict("/etc/photo.jpg", None, 1, [], "", "", api_name="/text_to_image")
    assert "Traceback" not in capfd.readouterr().err
    assert len([r for r in caplog.records if r.name == "ui.app"]) == 2 * len(uploads)
    # and a good photo still works after all that
    photo = handle_file(str(next(root.glob("images/*/*.jpg"))))
    table, *_ = client.predict(photo, [], "", "", api_name="/image_to_text")
    assert len(table["data"]) == 12
