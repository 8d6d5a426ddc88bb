"""The page: its handlers, its named API through gradio_client, and the running page driven in
a real headless Chromium."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from browser import drive, find_chromium
from conftest import draw_image, write_recipes5k
from PIL import Image

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher, parse_query
from multimodal.data.readers import read_records
from ui.app import RecipeApp, launch, recipe_markdown


@pytest.fixture(scope="module")
def recipe_app(tmp_path_factory, tiny_encoder):
    """A drawn Recipes5k-shaped data set, indexed with a tiny model into an embedded store."""
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=9)
    store = EdgeStore(tmp_path_factory.mktemp("store"))
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    app = RecipeApp(Searcher(tiny_encoder, store, "dishes"))
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
    gallery, hits, figure = app.text_to_image("blue circle cake", None, 1.0, [], "", "")
    assert len(gallery) == len(hits) == 12  # RESULTS, out of 18 items
    assert all(" · " in caption for _, caption in gallery)
    assert [url for url, _ in gallery] == [f"/photo/{h['id']}" for h in hits]  # by point id
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # the map: every item of the collection, and a star where the query's vector projects
    items, star = figure.axes[0].collections
    assert len(items.get_offsets()) == 18
    vector, _ = app.searcher.query_vector(parse_query("blue circle cake"))
    np.testing.assert_allclose(star.get_offsets()[0], app.map.project(vector), rtol=1e-5)
    only_blue = app.text_to_image("cake", None, 1.0, [], "blue", "")[1]
    assert only_blue and all("Blue" in h["payload"]["title"] for h in only_blue)
    no_red = app.text_to_image("cake", None, 1.0, [], "", "red, green")[1]
    assert no_red and all("Blue" in h["payload"]["title"] for h in no_red)
    one_dish = app.text_to_image("cake", None, 1.0, [app.labels[0]], "", "")[1]
    assert {h["payload"]["label"] for h in one_dish} == {app.labels[0]}

    photo = Image.open(next(root.glob("images/*/*.jpg")))
    rows, suggested, similar, _ = app.image_to_text(photo, [], "", "")
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1)) and len(rows) == 12
    assert set(suggested) >= {"flour", "sugar"} and max(suggested.values()) == pytest.approx(1.0)
    assert len(similar) == 12

    chosen = hits[0]["id"]
    more = app.more_like_this(chosen, [], "", "")[1]
    assert chosen not in [h["id"] for h in more]
    card = recipe_markdown(hits[0])
    assert hits[0]["payload"]["title"] in card and "flour" in card


def test_bad_input_is_a_readable_message(recipe_app):
    app, _ = recipe_app
    with pytest.raises(gr.Error, match="Type a dish"):
        app.text_to_image("   ", None, 1.0, [], "", "")
    with pytest.raises(gr.Error, match="Upload, paste or drop"):
        app.image_to_text(None, [], "", "")
    huge = Image.new("1", (9000, 9000))  # 81 million pixels in 10 MB: over the 64M limit
    with pytest.raises(gr.Error, match="pixel limit"):
        app.image_to_text(huge, [], "", "")
    with pytest.raises(gr.Error, match="Click a photo"):
        app.more_like_this("", [], "", "")
    with pytest.raises(gr.Error, match="positive term"):
        app.text_to_image("- chocolate", None, 1.0, [], "", "")


def test_named_endpoints_through_gradio_client(served):
    from gradio_client import Client, handle_file

    url, app, root = served
    client = Client(url, verbose=False)
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/text_to_image", "/image_to_text", "/more_like_this"} <= set(named)
    gallery, hits, _ = client.predict(
        "red square cake", None, 1, [], "", "", api_name="/text_to_image"
    )
    assert len(gallery) == 12 and hits[0]["payload"]["title"]
    more = client.predict(hits[0]["id"], [], "", "", api_name="/more_like_this")[1]
    assert len(more) == 12 and hits[0]["id"] not in [hit["id"] for hit in more]
    photo = handle_file(str(next(root.glob("images/*/*.jpg"))))
    table, suggested, similar, _ = client.predict(photo, [], "", "", api_name="/image_to_text")
    assert len(table["data"]) == 12 and suggested["confidences"]


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


@pytest.mark.slow
def test_page_in_headless_chromium(served, tmp_path):
    if find_chromium() is None:
        if os.environ.get("MULTIMODAL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here: apt-get install chromium chromium-driver")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    url, app, root = served
    photo = next(root.glob("images/square/*.jpg"))
    seen = drive(url, photo, "red square cake", "blue", screenshots=tmp_path)
    # words -> photos: the page shows what the search gives, in order, with scores
    words, hits, _ = app.text_to_image("red square cake", None, 1.0, [], "", "")
    assert seen.gallery_captions == [caption for _, caption in words]
    assert seen.gallery_photos_shown == len(words)  # each photo loaded from its point's URL
    # the first photo's recipe, then more like it (that photo left out)
    assert seen.recipe_card.startswith(hits[0]["payload"]["title"])
    more = app.more_like_this(hits[0]["id"], [], "", "")[0]
    assert seen.more_captions == [caption for _, caption in more] != seen.gallery_captions
    # the filter changed the results: only recipes with blue in their ingredients
    blue = app.text_to_image("red square cake", None, 1.0, [], "blue", "")[0]
    assert seen.filtered_captions == [caption for _, caption in blue] != seen.gallery_captions
    assert all("Blue" in c for c in seen.filtered_captions)
    # a photo -> recipes (a score per row), suggested ingredients with shares, similar dishes
    assert any(cell.endswith("Cake") for cell in seen.recipe_rows)
    assert "flour" in seen.suggested and "%" in seen.suggested
    similar = app.image_to_text(Image.open(photo), [], "", "")[2]
    assert seen.similar_images == len(similar) == 12
    assert "Type a dish" in seen.empty_query_message
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
    table, _, _, _ = client.predict(photo, [], "", "", api_name="/image_to_text")
    assert len(table["data"]) == 12
