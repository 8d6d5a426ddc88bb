"""The JSON API through a real server on loopback (httpx): every endpoint's answers checked
against the Searcher called directly, and every refusal a 4xx with one readable line."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid

import httpx
import pytest
from conftest import write_recipes5k
from PIL import Image
from test_ui import png_header, unreadable_uploads

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from indexer.service import MAX_TEXT
from indexer.store import SearchFilter
from multimodal.data.readers import read_records
from multimodal.suggestions import VOTERS
from multimodal.tower_locks import tower_locks
from ui.api import MAX_K
from ui.app import RecipeApp, launch
from ui.photos import public_payload
from ui.uploads import MAX_UPLOAD_BYTES


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_encoder):
    """A drawn Recipes5k-shaped collection (18 items) served on loopback, with no
    credentials (the default there); yields an httpx client on it, the page and the root."""
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=9)
    store = EdgeStore(tmp_path_factory.mktemp("store"))
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    page = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=root.parent / "maps")
    server = launch(page, block=False)
    with httpx.Client(base_url=server.local_url, timeout=60) as client:
        yield client, page, root
    server.close()
    store.close()


def _seen(hits) -> list[tuple[float, str]]:
    """(score, title) of each hit, best first, ties in title order: what a person sees, the
    same whichever of two tied copies (train and val) the store puts first."""
    pairs = [
        (h["score"], h["payload"]["title"])
        if isinstance(h, dict)
        else (h.score, h.payload["title"])
        for h in hits
    ]
    return sorted(((round(s, 4), t) for s, t in pairs), key=lambda p: (-p[0], p[1]))


def _photo(root, shape: str = "square") -> bytes:
    return next(root.glob(f"images/{shape}/*.jpg")).read_bytes()


def _refused(answer: httpx.Response, status: int, words: str = "") -> str:
    """The refusal's one line, checked: the status, JSON ``detail``, no traceback."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    assert words.lower() in detail.lower(), detail
    return detail


# -- answers -------------------------------------------------------------------------------


def test_health(api):
    client, page, _ = api
    assert client.get("/api/health").json() == {
        "status": "ok",
        "collection": "dishes",
        "points": 18,
        "model": "tiny-random",
        "modes": ["dense", "hybrid", "sparse"],
    }


def test_a_model_on_the_servers_disk_is_named_without_its_path():
    from ui.api import public_model

    assert public_model("/root/.local/share/multimodal/models/recipe/best") == "recipe/best"
    assert public_model("recipe") == "recipe"
    assert public_model("ViT-B-32:laion2b_s34b_b79k") == "ViT-B-32:laion2b_s34b_b79k"
    assert public_model("runs/mine/best") == "runs/mine/best"  # relative: the user's words


def test_text_search_is_the_searchers(api):
    client, page, _ = api
    searcher = page.searcher
    cases = [
        ({"text": "red square cake", "k": 5}, "hybrid"),
        ({"text": "red square cake", "mode": "dense"}, "dense"),
        ({"text": "blue", "mode": "sparse", "target": "text"}, "sparse"),
    ]
    for body, mode in cases:
        body["collapse"] = False  # every photo, as the searcher lists them
        answer = client.post("/api/search", json=body)
        assert answer.status_code == 200, answer.text
        found = answer.json()
        expected = searcher.search(
            body["text"], body.get("target", "image"), body.get("k", 12), mode=mode
        )
        assert found["mode"] == mode and found["target"] == body.get("target", "image")
        assert _seen(found["hits"]) == _seen(expected)
        for hit in found["hits"]:
            assert hit["photo"] == f"{client.base_url}photo/{hit['id']}"
            assert "root" not in hit["payload"] and not hit["payload"]["image"].startswith("/")


def test_filters_modes_and_marks(api):
    client, page, _ = api
    only_blue = {"text": "cake", "filters": {"with_ingredients": ["blue"]}}
    blue = client.post("/api/search", json=only_blue).json()
    assert blue["hits"] and all("Blue" in h["payload"]["title"] for h in blue["hits"])
    label = page.labels[0]
    one = client.post("/api/search", json={"text": "cake", "filters": {"labels": [label]}})
    assert {h["payload"]["label"] for h in one.json()["hits"]} == {label}
    plain = client.post("/api/search", json={"text": "red square cake", "mode": "dense"}).json()
    first, third = plain["hits"][0]["id"], plain["hits"][2]["id"]
    marked = {"text": "red square cake", "mode": "dense", "like": [third], "unlike": [first]}
    marked["collapse"] = False  # every photo, as the searcher lists them
    steered = client.post("/api/search", json=marked).json()
    expected = page.searcher.search(
        "red square cake", "image", 12, SearchFilter(), mode="dense", like=[third], unlike=[first]
    )
    assert _seen(steered["hits"]) == _seen(expected)
    assert {first, third}.isdisjoint(h["id"] for h in steered["hits"])
    liked_only = client.post("/api/search", json={"like": [third], "k": 3}).json()
    assert len(liked_only["hits"]) == 3 and third not in [h["id"] for h in liked_only["hits"]]
    mixed = client.post("/api/search", json={"text": '"2:red square" - blue', "k": 4})
    assert mixed.status_code == 200 and len(mixed.json()["hits"]) == 4
    diverse = {"text": "cake", "mode": "dense", "diversity": 0.9, "collapse": False}
    diverse = client.post("/api/search", json=diverse)
    expected = page.searcher.search("cake", "image", 12, mode="dense", diversity=0.9)
    assert [h["payload"]["title"] for h in diverse.json()["hits"]] == [
        h.payload["title"] for h in expected
    ]


def test_stored_points_items_and_similar(api):
    client, page, root = api
    hit = client.post("/api/search", json={"text": "green circle cake", "k": 1}).json()["hits"][0]
    stored = page.searcher.store.retrieve("dishes", [hit["id"]])[0]
    item = client.get(f"/api/items/{hit['id']}").json()
    assert item == {
        "id": hit["id"],
        "score": None,
        "probability": None,
        "photo": hit["photo"],
        "payload": public_payload(stored.payload),
        "duplicates": [],
    }
    photo = client.get(item["photo"])
    assert photo.status_code == 200 and photo.content == stored.image_path.read_bytes()
    every = {"k": 5, "collapse": False}  # every photo, as the searcher lists them
    similar = client.get(f"/api/similar/{hit['id']}", params=every).json()
    expected = page.searcher.search(("id", hit["id"]), "image", 5)
    assert _seen(similar["hits"]) == _seen(expected) and similar["mode"] == "dense"
    assert hit["id"] not in [h["id"] for h in similar["hits"]]
    by_body = client.post("/api/search", json={"point_id": hit["id"], **every}).json()
    assert by_body["hits"] == similar["hits"]
    as_text = client.get(f"/api/similar/{hit['id']}", params={"target": "text", "k": 2})
    assert as_text.json()["target"] == "text" and len(as_text.json()["hits"]) == 2


def test_photo_search_and_suggest(api):
    client, page, root = api
    data = _photo(root, "triangle")
    image = Image.open(io.BytesIO(data)).convert("RGB")
    every = {"query": json.dumps({"collapse": False})}  # every photo, as the searcher lists
    answer = client.post("/api/search/photo", files={"photo": ("dish.jpg", data)}, data=every)
    assert answer.status_code == 200, answer.text
    assert _seen(answer.json()["hits"]) == _seen(page.searcher.search(image, "image", 12))
    query = json.dumps({"text": "blue cake", "photo_weight": 2, "target": "text", "k": 4})
    photo = {"photo": ("d.jpg", data)}
    mixed = client.post("/api/search/photo", files=photo, data={"query": query})
    assert mixed.json()["target"] == "text" and len(mixed.json()["hits"]) == 4
    suggested = client.post("/api/suggest", files={"photo": ("dish.jpg", data)}).json()
    voters = page.searcher.search(image, "text", VOTERS)
    shares = [(s["name"], pytest.approx(s["share"])) for s in suggested["looks_like"]]
    assert shares == [(n, v) for n, v in page.searcher.looks_like(voters, 5) if v > 0]
    assert _seen(suggested["recipes"]) == _seen(voters)
    names = [s["name"] for s in suggested["ingredients"]]
    assert names == [n for n, _ in page.searcher.ingredients_of(voters, 10, "specific")]
    by_share = client.post(
        "/api/suggest", files={"photo": ("d.jpg", data)}, data={"ranking": "share", "top": 2}
    ).json()
    assert len(by_share["ingredients"]) == 2


def test_openapi_describes_every_endpoint(api):
    client, _, _ = api
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/search",
        "/api/search/photo",
        "/api/suggest",
        "/api/items/{point_id}",
        "/api/similar/{point_id}",
        "/api/health",
    } <= set(paths)
    assert not any(path.startswith("/photo") or path.startswith("/gradio") for path in paths)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "gradio" in page.text.lower()  # the page, beside it


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        ({"text": "x" * (MAX_TEXT + 1)}, "at most 1,000"),
        ({"text": "cake", "k": MAX_K + 1}, "k:"),
        ({"text": "cake", "k": 0}, "k:"),
        ({"text": "cake", "mode": "fuzzy"}, "mode:"),
        ({"text": "cake", "diversity": 1.5}, "diversity must be from 0 to 1"),
        ({"text": "cake", "target": "sound"}, "target:"),
        ({"text": "cake", "colour": "red"}, "colour:"),  # a misspelt field is not ignored
        ({"text": "cake", "like": [str(uuid.uuid4()) for _ in range(101)]}, "at most 100"),
        (
            {
                "text": "cake",
                "like": [str(uuid.uuid4()) for _ in range(60)],
                "unlike": [str(uuid.uuid4()) for _ in range(60)],
            },
            "at most 100",
        ),
        ({"text": "cake", "filters": {"labels": ["x" * 201]}}, "filters.labels.0:"),
        ({"text": 5}, "text:"),
        ({}, "nothing to search for"),
        ({"text": "   "}, "nothing to search for"),
        ({"text": "- chocolate"}, "positive term"),
        ({"text": "/etc/shadow.jpg + cake"}, "upload the photo"),  # never a path on the server
    ],
)
def test_bad_searches_are_422_with_one_line(api, body, words):
    _refused(api[0].post("/api/search", json=body), 422, words)


def test_bodies_that_are_not_a_search(api):
    client = api[0]
    for content in (b"not json", b"[1, 2]", b"null", b'{"text": "cake"', "🍰".encode()):
        answer = client.post(
            "/api/search", content=content, headers={"content-type": "application/json"}
        )
        _refused(answer, 422)
    _refused(
        client.post(
            "/api/search/photo",
            files={"photo": ("d.jpg", _photo(api[2]))},
            data={"query": '{"k": 500}'},
        ),
        422,
        "query: k:",
    )
    _refused(client.post("/api/search/photo", data={"query": "{}"}), 422, "photo")
    _refused(
        client.post(
            "/api/suggest", files={"photo": ("d.jpg", _photo(api[2]))}, data={"ranking": "loudest"}
        ),
        422,
        "ranking",
    )


def test_unknown_points_are_404(api):
    client, page, _ = api
    missing = str(uuid.uuid4())
    for answer in (
        client.get(f"/api/items/{missing}"),
        client.get("/api/items/not-a-point"),
        client.get(f"/api/similar/{missing}"),
        client.post("/api/search", json={"point_id": missing}),
        client.post("/api/search", json={"point_id": "../../etc/passwd"}),
        client.post("/api/search", json={"text": "cake", "like": ["not-a-point"]}),
    ):
        _refused(answer, 404, "no point")


def test_unreadable_uploads_get_the_reason(api, tmp_path):
    client = api[0]
    for path, reason in unreadable_uploads(tmp_path / "uploads").items():
        status = 413 if reason in ("pixel limit", "decompression bomb") else 422
        for route in ("/api/search/photo", "/api/suggest"):
            answer = client.post(route, files={"photo": (path.name, path.read_bytes())})
            detail = _refused(answer, status, "that photo cannot be used")
            assert reason in detail
            assert str(tmp_path) not in detail and "/tmp" not in detail


def test_oversized_uploads_are_413(api):
    client, _, root = api
    big = _photo(root) + bytes(MAX_UPLOAD_BYTES)  # a photo with 10 MB of trailing bytes
    detail = _refused(client.post("/api/search/photo", files={"photo": ("big.jpg", big)}), 413)
    assert "10 MB limit" in detail and "smaller photo" in detail
    far = _photo(root) + bytes(MAX_UPLOAD_BYTES + 2 * 2**20)  # refused by Content-Length alone
    _refused(client.post("/api/suggest", files={"photo": ("big.jpg", far)}), 413, "10 MB limit")

    def chunked():  # no Content-Length: counted as it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="photo"; filename="x.jpg"\r\n\r\n'
        for _ in range(12):
            yield bytes(2**20)
        yield b"\r\n--b--\r\n"

    answer = client.post(
        "/api/search/photo",
        content=chunked(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    _refused(answer, 413, "10 MB limit")
    huge_json = json.dumps({"text": "cake", "pad": "x" * 2**21})
    answer = client.post(
        "/api/search", content=huge_json, headers={"content-type": "application/json"}
    )
    _refused(answer, 413, "limit for JSON")
    assert client.get("/api/health").status_code == 200  # and the server carries on


def test_a_huge_header_is_refused_before_decoding(api):
    client = api[0]
    answer = client.post("/api/suggest", files={"photo": ("h.png", png_header(9000, 9000))})
    _refused(answer, 413, "pixel limit")


# -- one model lock ------------------------------------------------------------------------


def test_the_page_and_the_api_share_the_towers_locks(api, monkeypatch):
    """Searches from the API (many at once) and the page's handlers never run the text tower
    twice at the same time; the results are those of one search at a time. The locks belong
    to the model, shared by its TTA and plain variants."""
    client, page, root = api
    encoder = page.searcher.encoder
    assert tower_locks(encoder) is tower_locks(encoder.with_tta(not encoder.tta))
    running, overlaps = [0], []
    encode_texts = encoder.encode_texts

    def watched(texts, **options):
        running[0] += 1
        overlaps.append(running[0])
        time.sleep(0.01)
        try:
            return encode_texts(texts, **options)
        finally:
            running[0] -= 1

    monkeypatch.setattr(encoder, "encode_texts", watched)
    expected = _seen(page.searcher.search("blue circle cake", "image", 12, mode="hybrid"))
    answers, errors = [], []

    def search():
        try:
            body = {"text": "blue circle cake", "collapse": False}
            answers.append(client.post("/api/search", json=body).json())
        except Exception as err:  # noqa: BLE001 - counted below
            errors.append(err)

    threads = [threading.Thread(target=search) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(4):
        page.text_to_image("red cake", None, 1.0, [], "", "")
    for thread in threads:
        thread.join()
    assert not errors and len(answers) == 8
    assert all(_seen(a["hits"]) == expected for a in answers)
    assert max(overlaps) == 1 and len(overlaps) >= 12


def test_tag_fields_filter_and_the_indexers_own_fields_are_refused(api):
    client, page, _ = api
    store = page.searcher.store
    first = client.post("/api/search", json={"text": "red square cake", "k": 3}).json()["hits"]
    store.set_point_payloads("dishes", {first[0]["id"]: {"course": ["dessert"]}})
    body = {"text": "cake", "filters": {"fields": {"course": ["dessert", "starter"]}}}
    tagged = client.post("/api/search", json=body).json()["hits"]
    assert [hit["id"] for hit in tagged] == [first[0]["id"]]
    assert tagged[0]["payload"]["course"] == ["dessert"]
    for field in ("root", "image", "no spaces"):
        probe = {"text": "cake", "filters": {"fields": {field: ["/home"]}}}
        answer = client.post("/api/search", json=probe)
        assert answer.status_code == 422, field
