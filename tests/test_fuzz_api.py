"""Property-based tests of the JSON API through a real server on loopback: any JSON body sent
to ``/api/search``, any search body the model allows or nearly allows, and any upload (random
bytes, real images in every format and mode, damaged or not, with a random query) sent to
``/api/search/photo`` and ``/api/suggest`` get an answer or a refusal with one readable line,
never a server error, and the server keeps answering."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import write_recipes5k
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz_images import FUZZ, uploads

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.data.readers import read_records
from ui.app import RecipeApp, launch

pytestmark = pytest.mark.slow

REFUSALS = {400, 404, 413, 422}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = {
    "text": st.text(max_size=60) | st.text(max_size=1200),
    "point_id": st.none() | st.uuids().map(str) | st.text(max_size=70),
    "photo_weight": st.floats(-20, 20),
    "target": st.sampled_from(["image", "text", "both", ""]),
    "k": st.integers(-5, 120),
    "mode": st.sampled_from([None, "dense", "hybrid", "sparse", "exact"]),
    "diversity": st.floats(-1, 2),
    "like": st.lists(st.uuids().map(str) | st.text(max_size=10), max_size=3),
    "unlike": st.lists(st.uuids().map(str), max_size=3),
    "filters": st.fixed_dictionaries(
        {},
        optional={
            "labels": st.lists(st.text(max_size=20), max_size=3),
            "with_ingredients": st.lists(st.text(max_size=20), max_size=3),
            "without_ingredients": st.lists(st.text(max_size=20), max_size=3),
        },
    ),
}
SEARCH_BODIES = st.fixed_dictionaries({}, optional=FIELDS)


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_encoder):
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=3)
    store = EdgeStore(tmp_path_factory.mktemp("store"))
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    page = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=root.parent / "maps")
    server = launch(page, block=False)
    with httpx.Client(base_url=server.local_url, timeout=120) as http:
        yield http
    server.close()
    store.close()


def _answered(answer: httpx.Response) -> None:
    """A result, or a refusal with one readable line: never a server error."""
    assert answer.status_code == 200 or answer.status_code in REFUSALS, (
        answer.status_code,
        answer.text[:500],
    )
    if answer.status_code != 200:
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail


@settings(FUZZ, max_examples=60)
@given(JSON_VALUES)
def test_any_json_body_is_answered_or_refused(client, body):
    headers = {"content-type": "application/json"}
    _answered(client.post("/api/search", content=json.dumps(body), headers=headers))


@settings(FUZZ, max_examples=80)
@given(SEARCH_BODIES)
def test_any_search_body_is_answered_or_refused(client, body):
    answer = client.post("/api/search", json=body)
    _answered(answer)
    if answer.status_code == 200:
        hits = answer.json()["hits"]
        assert len(hits) <= body.get("k", 12)


@settings(FUZZ, max_examples=60)
@given(uploads(), SEARCH_BODIES)
def test_any_upload_with_any_query_is_answered_or_refused(client, upload, body):
    data, suffix = upload
    files = {"photo": (f"upload{suffix}", data)}
    _answered(client.post("/api/search/photo", files=files, data={"query": json.dumps(body)}))
    _answered(client.post("/api/suggest", files=files))
    assert client.get("/api/health").status_code == 200
