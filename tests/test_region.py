"""Search by a region of a photo: the box parsed and cut the same way in the service, the
CLI's --box, the API's box, and the page's two clicks in a real Chromium."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from conftest import write_recipes5k
from PIL import Image

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from indexer.service import SearchQuery, SearchService
from multimodal.cli import main as cli
from multimodal.data.readers import read_records
from multimodal.data.regions import crop_box, parse_box
from ui.app import RecipeApp, launch


def test_a_box_in_pixels_or_fractions_is_cut_and_bad_ones_refused():
    image = Image.new("RGB", (200, 100))
    assert crop_box(image, parse_box("0.5,0,1,0.5")).size == (100, 50)
    assert crop_box(image, parse_box([10, 10, 50, 60])).size == (40, 50)
    assert crop_box(image, parse_box("150,50,900,900")).size == (50, 50)  # clipped
    assert crop_box(image, None) is image
    for bad, words in [
        ("1,2,3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("nan,0,1,1", "four numbers"),
        (5, "four numbers"),
        ("5,5,1,1", "x0 < x1"),
        ("-1,0,5,5", "0 <= x0"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_box(bad)
    with pytest.raises(ValueError, match="less than 8 pixels"):
        crop_box(image, parse_box("0,0,0.01,0.01"))
    with pytest.raises(ValueError, match="less than 8 pixels"):
        crop_box(image, parse_box("300,300,400,400"))  # off the photo


@pytest.fixture(scope="module")
def dishes(tmp_path_factory, tiny_encoder):
    base = tmp_path_factory.mktemp("region")
    root = write_recipes5k(base / "data", per_split=6)
    store = EdgeStore(base / "store")
    index_records(tiny_encoder, store, "dishes", read_records(root), progress=False)
    searcher = Searcher(tiny_encoder, store, "dishes")
    yield base, root, searcher
    store.close()


def _photo(root):
    return sorted((root / "images").rglob("*.jpg"))[0]


def test_the_region_is_what_is_embedded(dishes):
    _, root, searcher = dishes
    service = SearchService(searcher)
    photo = Image.open(_photo(root)).convert("RGB")
    region = service.search(SearchQuery(photos=[photo], box="0,0,0.5,0.5", collapse=False))
    cut = service.search(SearchQuery(photos=[photo.crop((0, 0, 48, 32))], collapse=False))
    whole = service.search(SearchQuery(photos=[photo], collapse=False))
    assert [h.id for h in region.hits] == [h.id for h in cut.hits]
    assert abs(region.vector @ cut.vector - 1) < 1e-5 and abs(region.vector @ whole.vector) < 0.9999
    with pytest.raises(ValueError, match="give the photo too"):
        SearchQuery(text="cake", box="0,0,1,1")


def test_cli_box_searches_the_region(dishes, capsys):
    base, root, searcher = dishes
    searcher.store.close()
    try:
        ask = ["search", "--image", str(_photo(root)), "--collection", "dishes"]
        ask += ["--store", str(base / "store"), "--json", "--no-tta", "--no-collapse"]
        assert cli([*ask, "--box", "0,0,0.5,0.5"]) == 0
        boxed = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
        assert cli([*ask, "--box", "0,0,48,32"]) == 0  # the same region in pixels
        assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == boxed
        assert cli([*ask, "--box", "0,0,1"]) == 2
        assert "a box is four numbers" in capsys.readouterr().err
    finally:
        searcher.store = EdgeStore(base / "store")


def test_api_box_on_the_photo_route(dishes):
    base, root, searcher = dishes
    server = launch(RecipeApp(searcher, map_folder=base / "maps"), block=False)
    try:
        with httpx.Client(base_url=server.local_url, timeout=60) as client:
            photo = _photo(root).read_bytes()

            def ask(body):
                files = {"photo": ("p.jpg", photo, "image/jpeg")}
                return client.post("/api/search/photo", files=files, data={"query": body})

            body = json.dumps({"box": [0, 0, 0.5, 0.5], "collapse": False})
            answered = [h["id"] for h in ask(body).json()["hits"]]
            direct = SearchService(searcher).search(
                SearchQuery(photos=[Image.open(_photo(root))], box=[0, 0, 0.5, 0.5], collapse=False)
            )
            assert answered == [h.id for h in direct.hits]
            refused = ask(json.dumps({"box": [0, 0, 1]}))
            assert refused.status_code == 422 and "box" in refused.text
            tiny = ask(json.dumps({"box": [0, 0, 2, 2]}))
            assert tiny.status_code == 422 and "less than 8 pixels" in tiny.text
            words = client.post("/api/search", json={"text": "cake", "box": [0, 0, 1, 1]})
            assert words.status_code == 422 and "give the photo too" in words.text
    finally:
        server.close()


def test_the_page_draws_a_region_in_chromium(dishes):
    from browser import drive_region, find_chromium

    if find_chromium() is None:
        if os.environ.get("MULTIMODAL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here: apt-get install chromium chromium-driver")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    base, root, searcher = dishes
    app = RecipeApp(searcher, map_folder=base / "maps")
    server = launch(app, block=False)
    try:
        seen = drive_region(server.local_url, _photo(root))
    finally:
        server.close()
    box = seen["note"].split()[1]  # "Region x0,y0,x1,y1 (WxH px): ..."
    assert seen["preview"] == 1 and "Whole photo" in seen["cleared"]
    # the clicks, a tenth of the photo element either side of its centre, are the photo's
    # pixels under them: the page shows the photo centred, fitted to the element and never
    # enlarged (a small photo sits at its own size in the middle)
    width, height = Image.open(_photo(root)).size
    element_width, element_height = seen["shown"]
    scale = min(1.0, element_width / width, element_height / height)
    reach_x, reach_y = element_width / 10 / scale, element_height / 10 / scale
    expected_box = [
        max(0.0, width / 2 - reach_x),
        max(0.0, height / 2 - reach_y),
        min(width, width / 2 + reach_x),
        min(height, height / 2 + reach_y),
    ]
    corners = [float(v) for v in box.split(",")]
    assert corners == pytest.approx(expected_box, abs=1 + 1 / scale), (box, seen["shown"])
    rows, *_ = app.image_to_text(str(_photo(root)), [], "", "", box=box)
    expected = [str(cell) for row in rows for cell in row]
    assert seen["rows"][: len(expected)][2::5] == expected[2::5]  # titles, in order
    whole, *_ = app.image_to_text(str(_photo(root)), [], "", "")
    assert rows != whole  # the region, not the whole photo, was searched
