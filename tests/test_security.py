"""The page and its server as an attacker sees them: only indexed points' photos are served, as
images; a query's text is never read as a path on the server; no response carries a path of
the server's disk; with credentials, nothing is served without them; bodies are bounded."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote, urlparse

import gradio as gr
import pytest
from conftest import draw_image, write_recipes5k
from gradio.utils import get_upload_folder
from PIL import Image

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher, Term, parse_query
from multimodal.data.readers import read_records
from ui.app import RecipeApp, example_photos, launch

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- not-for-the-web"
SCRIPT = b"<!doctype html><script>alert(document.cookie)</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_encoder):
    """A served page over an indexed folder that also holds what must never be served: a key,
    an HTML page, a photo nobody indexed, a link out of the folder; and an indexed photo
    replaced by an HTML page after indexing."""
    base = tmp_path_factory.mktemp("site")
    root = write_recipes5k(base / "data", per_split=3)
    png_named_jpg, tiff = sorted(root.glob("images/circle/*.jpg"))
    Image.open(png_named_jpg).save(png_named_jpg, format="PNG")  # the suffix lies
    Image.open(tiff).save(tiff, format="TIFF")  # a format browsers do not show
    store_path = base / "store"
    store = EdgeStore(store_path)
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    draw_image(outside / "private.jpg", "green", "circle")
    planted = {
        "key": _plant(root / ".ssh" / "id_rsa", SECRET),
        "html": _plant(root / "images" / "square" / "page.html", SCRIPT),
        "annotations": root / "annotations" / "classes_Recipes5k.txt",
        "unindexed photo": draw_image(root / "images" / "square" / "extra.jpg"),
        "link out": _link(root / "images" / "square" / "link.jpg", outside / "secret.txt"),
        "outside photo": outside / "private.jpg",
        "outside": outside / "secret.txt",
        "store file": next(p for p in sorted(store_path.rglob("*")) if p.is_file()),
    }
    app = RecipeApp(
        Searcher(tiny_encoder, store, "dishes"),
        example_photos(store, "dishes"),
        map_folder=store_path.parent / "maps",
    )
    swapped = next(root.glob("images/triangle/*.jpg"))
    swapped_id = next(h.id for h in _all_points(app) if h.image_path == swapped)
    swapped.write_bytes(SCRIPT)  # an indexed photo, now an HTML page
    blocks = launch(app, block=False)
    yield {
        "url": blocks.local_url,
        "app": app,
        "root": root,
        "base": base,
        "store": store_path,
        "planted": planted,
        "png_named_jpg": png_named_jpg,
        "tiff": tiff,
        "swapped_id": swapped_id,
    }
    blocks.close()
    store.close()


def _plant(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _link(path: Path, target: Path) -> Path:
    os.symlink(target, path)
    return path


def _all_points(app: RecipeApp):
    return list(app.searcher.store.scroll("dishes", fields=["image", "root"]))


def _get(url: str, raw_path: str) -> tuple[int, dict[str, str], bytes]:
    """GET exactly ``raw_path`` (no client-side normalisation of ``..`` or escapes)."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", raw_path)
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def _refused(url: str, raw_path: str) -> None:
    status, headers, body = _get(url, raw_path)
    assert status in (400, 403, 404, 405), (raw_path, status)
    assert SECRET not in body and SCRIPT not in body, raw_path


# -- files -------------------------------------------------------------------------------


def test_gradio_file_route_serves_nothing_from_the_data_roots(site):
    """Gradio's own /file= route: not the indexed photos, the planted files, the store, or
    anything a traversal, an escape or a link reaches."""
    url, root = site["url"], site["root"]
    indexed = next(root.glob("images/square/*_square.jpg"))
    paths = [*site["planted"].values(), indexed, root]
    for path in paths:
        _refused(url, f"/gradio_api/file={quote(str(path))}")
        _refused(url, f"/gradio_api/file={path}")
    key = f"{root}/.ssh/id_rsa"
    for variant in (
        f"{root}/images/../.ssh/id_rsa",
        f"{root}/images/%2e%2e/.ssh/id_rsa",
        f"{root}/images/%2E%2E%2F.ssh%2Fid_rsa",
        quote(key, safe=""),  # every slash encoded
        f"{root}/images/square/../../../outside/secret.txt",
        f"{root}//.ssh/id_rsa",
        "/etc/passwd",
        f"..%2F..%2F..{key}",
    ):
        _refused(url, f"/gradio_api/file={variant}")


def test_indexed_photos_are_served_by_point_id_as_images(site):
    url, app = site["url"], site["app"]
    served = 0
    for point in _all_points(app):
        if point.id == site["swapped_id"]:
            continue
        status, headers, body = _get(url, f"/photo/{point.id}")
        assert status == 200, point.image_path
        assert headers["x-content-type-options"] == "nosniff"
        sent = Image.open(io.BytesIO(body))
        if point.image_path == site["tiff"]:  # sent as a JPEG preview
            assert sent.format == "JPEG" and sent.size == Image.open(site["tiff"]).size
        else:
            assert body == point.image_path.read_bytes()
        assert headers["content-type"] == Image.MIME[sent.format]  # the bytes', not the suffix's
        assert sent.format == ("PNG" if point.image_path == site["png_named_jpg"] else "JPEG")
        served += 1
    assert served == 5


def test_photo_route_refuses_everything_but_indexed_photos(site):
    url, root = site["url"], site["root"]
    key = f"{root}/.ssh/id_rsa"
    for raw in (
        f"/photo/{site['swapped_id']}",  # indexed, but now an HTML page: not an image
        f"/photo/{uuid.uuid4()}",  # no such point
        "/photo/not-a-point",
        "/photo/",
        f"/photo/{quote(key, safe='')}",
        f"/photo/{key}",
        f"/photo/..%2F..%2F..{quote(key)}",
        "/photo/../../../../etc/passwd",
        "/photo/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/photo/{site['planted']['html']}",
    ):
        _refused(url, raw)


# -- queries -----------------------------------------------------------------------------


def test_path_terms_in_a_page_query_are_refused_and_reveal_nothing(site):
    """A page query naming a file is refused before anything touches the disk, with the same
    message whether the file exists, is outside the roots or is not there at all."""
    app, planted = site["app"], site["planted"]
    existing = str(planted["outside photo"])
    missing = str(site["base"] / "no-such-photo.jpg")
    inside = str(next(site["root"].glob("images/square/*.jpg")))
    messages = []
    for term in (existing, missing, inside, f"tart + {existing}", f"2:{inside} - cream"):
        with pytest.raises(gr.Error) as refused:
            app.text_to_image(term, None, 1.0, [], "", "")
        message = str(refused.value)
        assert "upload" in message and "path" in message, message
        for path in (existing, missing, inside):
            message = message.replace(path, "<term>")
        messages.append(message.replace("tart + ", "").replace("2:", "").replace(" - cream", ""))
    assert len(set(messages)) == 1, messages
    assert "exist" not in messages[0] and "no image file" not in messages[0]


def test_path_terms_through_the_api_are_refused(site):
    from gradio_client import Client

    client = Client(site["url"], verbose=False, download_files=False)
    with pytest.raises(Exception, match="upload") as refused:
        client.predict(
            str(site["planted"]["outside photo"]), None, 1, [], "", "", api_name="/text_to_image"
        )
    assert "exist" not in str(refused.value)


def test_library_text_is_text_unless_paths_are_allowed(tmp_path):
    """parse_query's default never reads the disk; the CLI opts in to path terms."""
    photo = draw_image(tmp_path / "dish.jpg")
    with pytest.raises(ValueError, match="upload"):
        parse_query(f"{photo} + tart")
    assert parse_query("2:apple pie + cinnamon")[0] == Term("text", "apple pie", 2.0)
    point = "0b1e5c7a-58a4-4f44-9a0e-2f6a1d9b3c10"
    assert parse_query(f"id:{point.upper()}")[0] == Term("point", point, 1.0)
    with pytest.raises(ValueError, match="no point '1234'"):  # ids are parsed once, here
        parse_query("id:1234")
    terms = parse_query(f"{photo} + tart", allow_paths=True)
    assert [(t.kind, t.value) for t in terms] == [("image", photo), ("text", "tart")]
    with pytest.raises(ValueError, match="no image file"):
        parse_query(str(tmp_path / "gone.jpg"), allow_paths=True)
    # quoting a term keeps it text, as the message says
    assert parse_query(f'"{photo}"', allow_paths=True)[0] == Term("text", str(photo), 1.0)
    assert parse_query('"menu.jpg"')[0] == Term("text", "menu.jpg", 1.0)


def test_cli_search_keeps_path_terms(tmp_path, capsys):
    from multimodal.cli import main as cli

    data = tmp_path / "shapes"
    for colour, shape in (("red", "square"), ("blue", "circle"), ("green", "triangle")):
        draw_image(data / f"{colour}_{shape}.png", colour, shape)
    common = ["--collection", "shapes", "--store", str(tmp_path / "store")]
    assert (
        cli(["index", "--model", "tiny-random", "--data", str(data), *common, "--no-progress"]) == 0
    )
    capsys.readouterr()
    photo = data / "red_square.png"
    for query in ([f"{photo} + 2:a red square"], ["--image", str(photo)]):
        assert cli(["search", *query, "-k", "1", "--json", *common]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(rows) == 1
    assert cli(["search", str(tmp_path / "gone.png"), *common]) == 2
    assert "no image file" in capsys.readouterr().err


# -- what responses carry ----------------------------------------------------------------


def _no_server_paths(site, text: str, where: str) -> None:
    """No path of the data, the store or the working folder; an absolute path that exists
    here is only ever one of Gradio's own copies (uploads, the example photos) in its cache."""
    for path in (site["base"], site["root"], site["store"], Path.cwd()):
        assert str(path) not in text, (where, str(path))
    cache = Path(get_upload_folder()).resolve()
    for candidate in re.findall(r"/[\w.~-]+(?:/[\w.~-]+)+", text):
        if os.path.lexists(candidate):
            assert Path(candidate).resolve().is_relative_to(cache), (where, candidate)


def test_responses_carry_no_server_paths(site):
    from gradio_client import Client

    url, app = site["url"], site["app"]
    client = Client(url, verbose=False, download_files=False)
    words = client.predict("red square cake", None, 1, [], "", "", api_name="/text_to_image")
    gallery, hits, _ = words
    assert len(gallery) == len(hits) > 0
    assert all("root" not in hit["payload"] and hit["payload"]["image"] for hit in hits)
    for item in gallery:
        photo = urlparse(item["image"]["url"])
        assert photo.path.startswith("/photo/"), item
        assert _get(url, photo.path)[0] in (200, 404)  # 404: the swapped photo
    _no_server_paths(site, json.dumps(words), "text_to_image")
    more = client.predict(hits[0]["id"], [], "", "", api_name="/more_like_this")
    _no_server_paths(site, json.dumps(more), "more_like_this")
    card, chosen = app.select(hits, gr.SelectData(None, {"index": 0, "value": None}))
    assert chosen == hits[0]["id"] and "Cake" in card
    _no_server_paths(site, card, "recipe card")
    for raw in ("/", "/config", "/gradio_api/info"):
        status, _, body = _get(url, raw)
        assert status == 200, raw
        _no_server_paths(site, body.decode(), raw)


def test_an_uploaded_page_comes_back_as_a_download(site):
    """What someone uploads is served back by Gradio from its cache, an HTML page only as an
    attachment, never as a page on the app's origin."""
    import httpx

    url = site["url"]
    answer = httpx.post(f"{url}gradio_api/upload", files={"files": ("x.html", SCRIPT, "text/html")})
    (uploaded,) = answer.json()
    status, headers, body = _get(url, f"/gradio_api/file={quote(uploaded)}")
    assert status == 200 and body == SCRIPT
    assert "text/html" not in headers["content-type"]
    assert headers["content-disposition"].startswith("attachment")


def test_serve_warns_when_the_page_leaves_loopback():
    from ui.commands.serve import is_loopback

    assert all(map(is_loopback, ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.20", "example.org")))


def test_a_payload_leaves_its_server_paths_behind():
    """An image outside its manifest's folder is stored by its absolute path: the browser gets
    its name only, and never the data root."""
    from ui.photos import public_payload

    stored = {"image": "/srv/photos/x/dish.jpg", "root": "/srv/data", "title": "Tacos"}
    assert public_payload(stored) == {"image": "dish.jpg", "title": "Tacos"}
    inside = {"image": "images/tacos/1.jpg", "root": "/srv/data", "label": "tacos"}
    assert public_payload(inside) == {"image": "images/tacos/1.jpg", "label": "tacos"}


# -- credentials and limits, through a real server ---------------------------------------

KEY = "k" * 12 + "-a-long-api-key"
LOGIN = ("ann", "correct horse battery staple")


@pytest.fixture(scope="module")
def guarded(site, tiny_encoder):
    """A second server over the same collection, on loopback with a login and an API key:
    credentials given are asked for, on loopback too. (Its tests send many wrong ones: the
    limit on them is tested with its default in test_attacks.py.)"""
    from dataclasses import replace

    from ui.guard import Access

    app = RecipeApp(site["app"].searcher, map_folder=site["app"].maps.folder)
    access = replace(Access.parse(":".join(LOGIN), KEY), max_failures=10_000)
    server = launch(app, block=False, access=access)
    yield server.local_url
    server.close()


def test_nothing_is_served_without_credentials(site, guarded):
    import httpx

    point = _all_points(site["app"])[0].id
    paths = [
        "/",
        "/config",
        "/gradio_api/info",
        "/docs",
        "/openapi.json",
        "/api/health",
        f"/api/items/{point}",
        f"/photo/{point}",
        f"/gradio_api/file={site['tiff']}",
        "/gradio_api/upload",
        "/theme.css",
        "/no/such/page",
    ]
    wrong_logins = [("ann", "wrong"), ("bob", LOGIN[1]), ("", ""), (LOGIN[0], LOGIN[1] + "x")]
    for path in paths:
        answer = httpx.get(f"{guarded.rstrip('/')}{path}")
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert SECRET not in answer.content and b"gradio" not in answer.content.lower()
        for login in wrong_logins:
            assert httpx.get(f"{guarded.rstrip('/')}{path}", auth=login).status_code == 401
        for key in ("wrong", KEY[:-1], KEY + "x", ""):
            refused = httpx.get(f"{guarded.rstrip('/')}{path}", headers={"X-API-Key": key})
            assert refused.status_code == 403, (path, key)
    posted = httpx.post(f"{guarded}api/search", json={"text": "cake"})
    assert posted.status_code == 401 and "credentials required" in posted.json()["detail"]
    garbled = httpx.get(f"{guarded}api/health", headers={"Authorization": "Basic %%%"})
    assert garbled.status_code == 401


def test_the_right_credentials_open_everything(site, guarded):
    import httpx

    page = httpx.get(guarded, auth=LOGIN)
    assert page.status_code == 200 and "<!doctype html>" in page.text.lower()  # the page
    assert "gradio" in page.text.lower()
    with httpx.Client(base_url=guarded, headers={"X-API-Key": KEY}, timeout=60) as client:
        assert client.get("/api/health").json()["points"] == 6
        hits = client.post("/api/search", json={"text": "red square cake", "k": 3}).json()["hits"]
        assert len(hits) == 3 and hits[0]["photo"].startswith(guarded)
        photo = client.get(hits[0]["photo"])
        assert photo.status_code in (200, 404)  # 404: the photo swapped for a page
    by_login = httpx.post(f"{guarded}api/search", json={"text": "cake", "k": 1}, auth=LOGIN)
    assert by_login.status_code == 200  # programs may use the login too


def test_the_page_works_behind_the_login(site, guarded):
    """The page's own calls (its config, its queue's event stream) carry the credentials a
    browser sends after the login; gradio_client sends them as headers."""
    from gradio_client import Client

    client = Client(guarded, verbose=False, download_files=False, headers={"X-API-Key": KEY})
    gallery, hits, _ = client.predict(
        "red square cake", None, 1, [], "", "", api_name="/text_to_image"
    )
    assert len(gallery) == len(hits) > 0


def test_paths_outside_the_roots_are_refused_with_credentials(site, guarded):
    """Logged in, nothing but the indexed photos is served still, and Gradio's file route
    fetches no URL for the caller."""
    import httpx

    root, outside = site["root"], site["planted"]["outside"]
    for raw in (
        f"/photo/..%2F..%2F..{quote(str(outside))}",
        "/photo/../../../../etc/passwd",
        f"/gradio_api/file={outside}",
        f"/gradio_api/file={site['planted']['key']}",
        f"/gradio_api/file={root}/images/../.ssh/id_rsa",
        f"/api/items/{outside}",
        "/gradio_api/file=http://example.com/secret.txt",
        "/gradio_api/file=https://127.0.0.1:1/x",
    ):
        answer = httpx.get(f"{guarded.rstrip('/')}{raw}", auth=LOGIN)
        assert answer.status_code in (403, 404), (raw, answer.status_code)
        assert SECRET not in answer.content and SCRIPT not in answer.content


def test_the_server_refuses_oversized_bodies_everywhere(site, guarded):
    """Past the limit a body is refused before it is read, on the page's routes too."""
    import httpx

    big = bytes(12 * 2**20)
    for path in ("/gradio_api/upload", "/api/suggest", "/api/search/photo"):
        answer = httpx.post(
            f"{guarded.rstrip('/')}{path}", files={"files": ("x.jpg", big)}, auth=LOGIN
        )
        assert answer.status_code == 413, path
        assert "10 MB limit" in answer.text


def test_serving_beyond_loopback_needs_credentials(tmp_path, monkeypatch, capsys):
    from ui.commands.serve import build_parser, main, server_access

    monkeypatch.delenv("MULTIMODAL_API_KEY", raising=False)
    store = ["--collection", "dishes", "--store", str(tmp_path / "no-store")]
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        assert main([*store, "--host", host]) == 2  # before any store or model is opened
        (line,) = capsys.readouterr().err.splitlines()
        assert "needs credentials" in line and "--auth" in line and "--no-auth" in line
    assert not (tmp_path / "no-store").exists()
    for wrong in (
        ["--auth", "ann"],
        ["--auth", ":pw"],
        ["--auth", "ann:"],
        ["--auth", "ann:pw", "--no-auth"],
    ):
        assert main([*store, *wrong]) == 2
        assert len(capsys.readouterr().err.splitlines()) == 1
    monkeypatch.setenv("SHORT_KEY", "1234")
    assert main([*store, "--host", "0.0.0.0", "--key-env", "SHORT_KEY"]) == 2
    assert "at least 16" in capsys.readouterr().err
    monkeypatch.setenv("ODD_KEY", "clé-" * 8)
    assert main([*store, "--key-env", "ODD_KEY"]) == 2
    assert "printable ASCII" in capsys.readouterr().err

    def access(*argv):
        return server_access(build_parser().parse_args([*store, *argv]))

    assert access("--host", "0.0.0.0", "--auth", "ann:pw").password == "pw"
    monkeypatch.setenv("MULTIMODAL_API_KEY", KEY)
    assert access("--host", "0.0.0.0").api_key == KEY  # the key alone will do
    assert access().api_key == KEY  # and is asked for on loopback too
    assert not access("--host", "0.0.0.0", "--no-auth").required
    assert "with no login (--no-auth)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_page_works_in_a_browser_behind_the_login(guarded):
    """Chromium sends the login with every request once it has it (as after its login
    prompt): the page loads, searches through its queue and shows the photos."""
    import base64

    from browser import _photos_shown, _settled, _type, _wait, find_chromium, open_browser
    from selenium.webdriver.common.by import By

    if find_chromium() is None:
        if os.environ.get("MULTIMODAL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here: apt-get install chromium chromium-driver")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    driver = open_browser()
    try:
        driver.get(guarded)
        assert not driver.find_elements(By.CSS_SELECTOR, "#query")  # a login prompt, no page
        login = base64.b64encode(":".join(LOGIN).encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {login}"}}
        )
        driver.get(guarded)
        _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#query textarea"))
        _type(driver, "#query textarea", "red square cake")
        driver.find_element(By.CSS_SELECTOR, "#search").click()
        captions = _wait(driver, lambda d: _settled(d, "#gallery", []))
        assert captions and all(" · " in caption for caption in captions)
        assert _photos_shown(driver, "#gallery") >= len(captions) - 1  # one photo is a page
    finally:
        driver.quit()
