"""The server as an attacker and a careless user try it (issue 22): each test reproduces one
defect found that way, against a real server on loopback with real files.

- the page's inputs take only the page's own uploads: no file of the server's disk is read,
  copied or served back, whatever path a request names;
- uploads decode within a memory budget;
- only the server's own host names are answered (DNS rebinding), forwarded headers only from
  named proxies, no CORS for other origins, no cross-site state-changing requests;
- body limits whatever the spelling of the media type; wrong credentials rate-limited;
- /docs and /redoc work with no network; uploads do not outlive the server, and a file
  served back is never sniffed into a page.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import REPO, draw_image, write_recipes5k
from PIL import Image, ImageDraw

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.data.decoding import SHARED_BUDGET, BudgetExhausted, PixelBudget, decode_photo
from multimodal.data.readers import read_records
from ui.app import RecipeApp, launch
from ui.guard import MAX_FAILURES, Access, client_key
from ui.origins import Origins
from ui.server import NOT_UPLOADED

SECRET = b"top secret: not for any web page"
FOREIGN = "http://evil.example"
# Headless Chromium that resolves no name but loopback: nothing can come from elsewhere.
OFFLINE_CHROMIUM = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_encoder):
    """A collection of drawn dishes served on loopback with no credentials (the default),
    and a secret file beside it that no request may read."""
    base = tmp_path_factory.mktemp("attacks")
    root = write_recipes5k(base / "data", per_split=3)
    store = EdgeStore(base / "store")
    index_records(tiny_encoder, store, "dishes", read_records(root), workers=0, progress=False)
    secret = base / "secret.txt"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    page = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=base / "maps")
    server = launch(page, block=False)
    with httpx.Client(base_url=server.local_url, timeout=120) as client:
        yield {
            "client": client,
            "page": page,
            "root": root,
            "base": base,
            "secret": secret,
            "url": server.local_url,
            "server": server,
        }
    server.close()
    store.close()


def _file_data(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def _call(client: httpx.Client, endpoint: str, data: list) -> tuple[str, str]:
    """A named endpoint called through Gradio's HTTP protocol: the event and its data."""
    started = client.post(f"/gradio_api/call/{endpoint}", json={"data": data})
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    stream = client.get(f"/gradio_api/call/{endpoint}/{event_id}").text
    events = [
        line.split(":", 1)[1].strip() for line in stream.splitlines() if line.startswith("event:")
    ]
    data_lines = [line[5:].strip() for line in stream.splitlines() if line.startswith("data:")]
    return events[-1], data_lines[-1] if data_lines else ""


def _cached_copies(name: str) -> list[Path]:
    """Copies named ``name`` anywhere Gradio could have put them."""
    folders = {Path(os.environ.get("GRADIO_TEMP_DIR", "/tmp/gradio")), Path("/tmp/gradio")}
    return [p for folder in folders if folder.is_dir() for p in folder.rglob(name)]


# -- 1. a path where an upload is expected ------------------------------------------------


def test_a_server_path_given_to_the_page_is_refused_and_never_copied(served, fetched):
    client, secret = served["client"], served["secret"]
    photo = next(served["root"].glob("images/*/*.jpg"))  # an image on the disk: not analysed
    missing = served["base"] / "no-such-file.txt"
    folder = os.environ["GRADIO_TEMP_DIR"]
    traversal = os.path.join(folder, os.path.relpath(secret, folder))  # .. out of the uploads
    urls = [f"{fetched.url}huge.bin", "https://example.com/huge.bin"]  # a download, any size
    answers = set()
    for path in (secret, photo, missing, traversal, *urls):
        event, data = _call(client, "image_to_text", [_file_data(path), [], "", ""])
        assert event == "error", (path, event, data)
        answers.add(data)
        event, data = _call(
            client, "text_to_image", ["cake", _file_data(path), 1.0, [], "", "", "hybrid", 0.0]
        )
        assert event == "error", (path, event, data)
    (answer,) = answers  # one message, whatever the path names and whether it exists
    assert NOT_UPLOADED in answer and str(served["base"]) not in answer
    assert fetched.requests == []  # nothing was fetched
    assert _cached_copies("secret.txt") == [] and _cached_copies(photo.name) == []
    assert _cached_copies("huge.bin") == []
    for route in (f"/gradio_api/file={secret}", "/gradio_api/file=" + "/".join(secret.parts[1:])):
        answer = client.get(route)
        assert answer.status_code in (403, 404) and SECRET not in answer.content


@pytest.fixture
def fetched():
    """A web server on loopback that records what it is asked for."""
    requests = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 1024)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url, server.requests = f"http://127.0.0.1:{server.server_address[1]}/", requests
    yield server
    server.shutdown()


def test_special_files_as_a_path_neither_hang_nor_spin_the_server(served, tmp_path):
    client = served["client"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        event, _ = _call(client, "image_to_text", [_file_data(path), [], "", ""])
        assert event == "error"
        assert client.get("/api/health", timeout=10).status_code == 200


def test_an_upload_through_the_page_still_works(served):
    client = served["client"]
    photo = next(served["root"].glob("images/*/*.jpg"))
    uploaded = client.post("/gradio_api/upload", files={"files": (photo.name, photo.read_bytes())})
    assert uploaded.status_code == 200, uploaded.text
    (path,) = uploaded.json()
    assert Path(path).is_relative_to(os.environ["GRADIO_TEMP_DIR"])
    event, data = _call(client, "image_to_text", [_file_data(path), [], "", ""])
    assert event == "complete", data
    assert json.loads(data)[0]["data"]  # the recipe rows


UPLOAD_FOLDER_PROBE = """
import json, os, sys, httpx
from pathlib import Path
from conftest import write_recipes5k
from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.data.readers import read_records
from multimodal.encoder import load_encoder
from ui.app import RecipeApp, launch

base = Path(sys.argv[1])
root = write_recipes5k(base / "data", per_split=2)
encoder = load_encoder("tiny-random", device="cpu")
with EdgeStore(base / "store") as store:
    index_records(encoder, store, "d", read_records(root), workers=0, progress=False)
    server = launch(RecipeApp(Searcher(encoder, store, "d"), map_folder=base / "maps"), block=False)
    folder = os.environ["GRADIO_TEMP_DIR"]
    mode = oct(os.stat(folder).st_mode & 0o777)
    photo = next(root.glob("images/*/*.jpg")).read_bytes()
    answer = httpx.post(server.local_url + "gradio_api/upload", files={"files": ("a.jpg", photo)})
    (uploaded,) = answer.json()
    there = os.path.exists(uploaded)
    server.close()
    print(json.dumps({"folder": folder, "mode": mode, "uploaded": uploaded, "there": there,
                      "env_after": os.environ.get("GRADIO_TEMP_DIR")}))
"""


def test_uploads_live_in_a_private_folder_removed_with_the_server(tmp_path):
    """In a process of its own: the test process's other servers share its folder."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    probe = subprocess.run(
        [sys.executable, "-c", UPLOAD_FOLDER_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # a hang guard, not a timing check
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["mode"] == "0o700" and found["there"]
    assert Path(found["uploaded"]).is_relative_to(found["folder"])
    assert not Path(found["folder"]).exists() and found["env_after"] is None


# -- 2. one small upload, gigabytes ---------------------------------------------------------


def _huge_png(size: int = 8000) -> bytes:
    """8000 x 8000 RGBA (64 million pixels, the cap) in about 300 KB."""
    image = Image.new("RGBA", (size, size), (200, 120, 40, 255))
    ImageDraw.Draw(image).ellipse(
        (size // 8, size // 8, size * 7 // 8, size * 7 // 8), fill=(250, 250, 250, 128)
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


@pytest.mark.slow
def test_concurrent_huge_uploads_decode_one_at_a_time(served):
    """Three 64-megapixel PNGs at once through the API: all answered, never more than the
    budget decoding at once (one such photo), each shrunk to 2,048 pixels a side."""
    client, data = served["client"], _huge_png()
    SHARED_BUDGET.peak = 0

    def search(_):
        return client.post("/api/search/photo", files={"photo": ("big.png", data)})

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(search, range(3)))
    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    assert 0 < SHARED_BUDGET.peak <= SHARED_BUDGET.capacity
    assert SHARED_BUDGET.in_use == 0


def test_a_budget_holds_no_more_than_its_capacity_at_once():
    budget, seen, lock = PixelBudget(100, wait=30), [], threading.Lock()
    inside = [0]

    def work(pixels):
        pixels = min(pixels, budget.capacity)  # a photo past the budget waits for all of it
        with budget.hold(pixels):
            with lock:
                inside[0] += pixels
                seen.append(inside[0])
            threading.Event().wait(0.01)
            with lock:
                inside[0] -= pixels

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, [60, 60, 30, 30, 30, 100, 500, 10] * 3))
    assert max(seen) <= 100 and budget.in_use == 0 and budget.peak <= 100


def test_large_photos_are_decoded_small():
    big = Image.new("RGB", (6000, 4000), "orange")
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        big.save(buffer, fmt)
        decoded = decode_photo(buffer.getvalue(), max_side=2048)
        assert decoded.size == (2048, 1365) and decoded.mode == "RGB", fmt


def test_a_sixteen_bit_photo_is_shrunk_before_any_conversion():
    """A 16-bit greyscale PNG went through float64 arrays at full size (2 GB at 64 MP)."""
    import numpy as np

    ramp = np.tile(np.linspace(0, 65535, 4000, dtype=np.uint16), (3000, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    tracemalloc.start()
    try:
        decoded = decode_photo(buffer.getvalue(), max_side=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.size == (1000, 750) and decoded.mode == "RGB"
    assert decoded.getpixel((999, 0))[0] > 240 and decoded.getpixel((0, 0))[0] < 15
    assert peak < 40 * 2**20, peak  # numpy's arrays at 1000 x 750, not 4000 x 3000


def test_uploads_wait_their_turn_and_a_crowd_is_refused_at_once():
    budget = PixelBudget(100, wait=5, max_waiting=2)
    order, started = [], threading.Event()

    def holder():
        with budget.hold(100):
            started.set()
            threading.Event().wait(0.3)

    def waiter(name, pixels):
        with budget.hold(pixels):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    started.wait()
    big = threading.Thread(target=waiter, args=("big", 100))
    big.start()
    while len(budget._queue) < 1:
        threading.Event().wait(0.005)
    small = threading.Thread(target=waiter, args=("small", 1))
    small.start()
    while len(budget._queue) < 2:
        threading.Event().wait(0.005)
    with pytest.raises(BudgetExhausted, match="busy"), budget.hold(1):  # a third: at once
        pass
    for thread in (first, big, small):
        thread.join()
    assert order == ["big", "small"]  # first come, first served: no starving the large one
    assert budget.in_use == 0 and not budget._queue
    full = PixelBudget(10, wait=0.05)
    with full.hold(10), pytest.raises(BudgetExhausted), full.hold(10):  # no room in the wait
        pass


def test_a_busy_decoder_is_503_with_retry_after(served):
    client = served["client"]
    photo = next(served["root"].glob("images/*/*.jpg")).read_bytes()
    wait, SHARED_BUDGET.wait = SHARED_BUDGET.wait, 0.2
    try:
        with SHARED_BUDGET.hold(SHARED_BUDGET.capacity):  # another upload at the cap, decoding
            answer = client.post("/api/search/photo", files={"photo": ("a.jpg", photo)})
    finally:
        SHARED_BUDGET.wait = wait
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "busy" in answer.json()["detail"]
    assert client.post("/api/search/photo", files={"photo": ("a.jpg", photo)}).is_success


# -- 3. host names and forwarded headers ----------------------------------------------------


def test_a_foreign_host_name_is_refused(served):
    client = served["client"]
    answer = client.get("/api/health", headers={"host": "evil.example"})
    assert answer.status_code == 400 and "--allowed-hosts" in answer.json()["detail"]
    assert client.get("/", headers={"host": "evil.example:7860"}).status_code == 400
    port = httpx.URL(served["url"]).port
    for name in ("localhost", "127.0.0.1", "LOCALHOST"):
        answer = client.get("/api/health", headers={"host": f"{name}:{port}"})
        assert answer.status_code == 200, name


def test_host_names_the_user_allows():
    origins = Origins.for_server("127.0.0.1", ["recipes.lan", "*.example.org"])
    assert origins.host_allowed("recipes.lan:7860")
    assert origins.host_allowed("photos.example.org")
    assert not origins.host_allowed("example.org.evil.test")
    assert not origins.host_allowed("evil.example")
    assert origins.host_allowed("[::1]:7860") and origins.host_allowed("localhost")
    assert origins.host_allowed("10.1.2.3:7860", local_address="10.1.2.3")  # the IP dialled
    assert not origins.host_allowed("10.1.2.3", local_address="10.9.9.9")
    assert Origins.for_server("myhost.lan").host_allowed("MyHost.lan:80")
    assert Origins.for_server("0.0.0.0", ["*"]).host_allowed("anything.example")
    v6 = Origins.for_server("127.0.0.1", ["fe80::2", "[2001:db8::1]", "192.168.1.20"])
    assert v6.host_allowed("[fe80::2]:7860") and v6.host_allowed("[2001:db8::1]")
    assert v6.host_allowed("192.168.1.20:7860") and not v6.host_allowed("[2001:db8::2]")
    assert Origins.for_server("127.0.0.1", [], [], ["*", "10.0.0.0/8"]).forwarded_allow_ips == (
        "*",
    )
    for bad in ("http://x", "a/b", "x:y:z", "*evil"):
        with pytest.raises(ValueError, match="--allowed-hosts"):
            Origins.for_server("127.0.0.1", [bad])
    for none in (None, "", "a b", "x@y"):
        assert not origins.host_allowed(none)


def test_forwarded_headers_count_only_from_named_proxies(served, tiny_encoder):
    client = served["client"]
    forged = {"x-forwarded-host": "evil.example", "x-forwarded-proto": "https"}
    hits = client.post("/api/search", json={"text": "red square", "k": 3}, headers=forged)
    assert hits.status_code == 200
    assert all("evil.example" not in h["photo"] for h in hits.json()["hits"])
    assert all(h["photo"].startswith(served["url"].rstrip("/")) for h in hits.json()["hits"])
    proxied = Origins.for_server("127.0.0.1", ["public.example"], [], ["127.0.0.1"])
    server = launch(served["page"], block=False, origins=proxied)
    port = httpx.URL(server.local_url).port
    try:
        behind = {
            "x-forwarded-host": "public.example",
            "x-forwarded-proto": "https",
            "host": "public.example",
        }
        answer = httpx.post(
            f"{server.local_url}api/search",
            json={"text": "red", "k": 2},
            headers=behind,
            timeout=60,
        )
        assert answer.status_code == 200
        assert all(
            h["photo"].startswith("https://public.example/photo/") for h in answer.json()["hits"]
        )
        # the page's own requests through the proxy: same-origin by the forwarded host only
        page_origin = {"origin": "https://public.example", "host": f"127.0.0.1:{port}"}
        search = {"json": {"text": "red", "k": 2}, "timeout": 60}
        forwarded = {**page_origin, "x-forwarded-host": "public.example"}
        assert httpx.post(f"{server.local_url}api/search", headers=forwarded, **search).is_success
        refused = httpx.post(f"{server.local_url}api/search", headers=page_origin, **search)
        assert refused.status_code == 403
        # a proxy that rewrites Host and passes any name on: the forwarded name is checked
        rebound = {"host": f"127.0.0.1:{port}", "x-forwarded-host": "evil.example"}
        answer = httpx.get(f"{server.local_url}api/health", headers=rebound)
        assert answer.status_code == 400 and "evil.example" in answer.json()["detail"]
    finally:
        server.close()


# -- 4. other web pages -------------------------------------------------------------------


def test_no_cors_headers_for_other_origins(served):
    client = served["client"]
    for origin in (FOREIGN, "http://localhost:9999", "null"):
        answer = client.get("/api/health", headers={"origin": origin})
        assert "access-control-allow-origin" not in answer.headers, origin
        preflight = client.options(
            "/api/search",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers, origin
        assert preflight.status_code >= 400
        config = client.get("/config", headers={"origin": origin})
        assert "access-control-allow-origin" not in config.headers, origin


def test_cross_site_requests_that_change_something_are_refused(served):
    client, root = served["client"], served["root"]
    photo = next(root.glob("images/*/*.jpg")).read_bytes()
    attempts = [
        lambda h: client.post("/api/search", json={"text": "cake"}, headers=h),
        lambda h: client.post("/api/search/photo", files={"photo": ("a.jpg", photo)}, headers=h),
        lambda h: client.post("/gradio_api/upload", files={"files": ("a.jpg", photo)}, headers=h),
        lambda h: client.post(
            "/gradio_api/call/text_to_image",
            headers=h,
            json={"data": ["cake", None, 1.0, [], "", "", "hybrid", 0.0]},
        ),
    ]
    for attempt in attempts:
        for foreign in (
            {"origin": FOREIGN},
            {"origin": "http://localhost:9999"},
            {"origin": "null"},
            {"sec-fetch-site": "cross-site"},
        ):
            answer = attempt(foreign)
            assert answer.status_code == 403, (foreign, answer.text)
            assert "cross-site" in answer.text
        own = {"origin": served["url"].rstrip("/"), "sec-fetch-site": "same-origin"}
        assert attempt(own).status_code == 200
        assert attempt({}).status_code == 200  # a program sends no Origin


def test_an_origin_the_user_names_may_call_the_api(served):
    allowed = "http://app.example:3000"
    origins = Origins.for_server("127.0.0.1", cors_origins=[allowed])
    server = launch(served["page"], block=False, origins=origins)
    try:
        url = f"{server.local_url}api/search"
        preflight = httpx.options(
            url,
            headers={
                "origin": allowed,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == allowed
        answer = httpx.post(
            url, json={"text": "cake", "k": 2}, headers={"origin": allowed}, timeout=60
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == allowed
        other = httpx.post(url, json={"text": "cake"}, headers={"origin": FOREIGN})
        assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    finally:
        server.close()
    with pytest.raises(ValueError, match="--cors-origin"):
        Origins.for_server("127.0.0.1", cors_origins=["app.example"])


# -- 5. body limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "media_type",
    [
        "Application/JSON",
        "application/x+json",
        "APPLICATION/json; charset=utf-8",
        "text/plain",
        "application/vnd.api+json",
        "",
    ],
)
def test_the_json_limit_holds_whatever_the_media_type_says(served, media_type):
    body = json.dumps({"text": "cake", "pad": "x" * (3 * 2**20)})
    headers = {"content-type": media_type} if media_type else {}
    answer = served["client"].post("/api/search", content=body, headers=headers)
    assert answer.status_code == 413, (media_type, answer.status_code)


# -- 6. guessing ----------------------------------------------------------------------------


def test_wrong_credentials_are_rate_limited_per_client(served):
    key = "a-key-of-twenty-characters"
    server = launch(served["page"], block=False, access=Access.parse("ann:pw-right", key))
    try:
        url = f"{server.local_url}api/health"
        for _ in range(MAX_FAILURES):
            assert httpx.get(url, headers={"x-api-key": "x" * 20}).status_code == 403
        refused = httpx.get(url, headers={"x-api-key": "x" * 20})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "too many wrong credentials" in refused.json()["detail"]
        # the right key from the same client waits too: no more guessing by interleaving
        assert httpx.get(url, headers={"x-api-key": key}).status_code == 429
        assert httpx.get(url, auth=("ann", "nope")).status_code == 429
        other = httpx.HTTPTransport(local_address="127.0.0.2")  # another client
        with httpx.Client(transport=other) as elsewhere:
            assert elsewhere.get(url, headers={"x-api-key": key}).status_code == 200
            assert elsewhere.get(url, auth=("ann", "pw-right")).status_code == 200
            assert elsewhere.get(url).status_code == 401  # no credential is not a guess
    finally:
        server.close()
    # one IPv6 /64 (one host or home) is one client; a v4-mapped address is its IPv4 one
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:10.1.2.3") == client_key("10.1.2.3") == "10.1.2.3"


# -- 7. the API's docs, offline -------------------------------------------------------------


def test_docs_and_redoc_load_nothing_from_elsewhere(served):
    client = served["client"]
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200, page
        sources = [s.split('"')[0] for s in html.text.split('src="')[1:]]
        sources += [s.split('"')[0] for s in html.text.split('href="')[1:]]
        assert sources and all(s.startswith("/") for s in sources), sources
        for source in sources:
            assert client.get(source).status_code == 200, source


def test_docs_render_the_operations_in_a_browser_with_no_network(served):
    from browser import find_chromium

    found = find_chromium()
    if found is None:
        if os.environ.get("MULTIMODAL_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromium-driver are required here")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in OFFLINE_CHROMIUM:
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=found[1])
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(f"{served['url']}docs")
        WebDriverWait(driver, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 6
        )
        paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/api/search", "/api/search/photo", "/api/health"} <= paths
        driver.get(f"{served['url']}redoc")
        WebDriverWait(driver, 60).until(
            lambda d: "/api/search" in d.page_source and d.find_elements(By.CSS_SELECTOR, "h1")
        )
    finally:
        driver.quit()


# -- 10. leftovers --------------------------------------------------------------------------


def test_an_uploaded_page_named_jpg_is_never_sniffed(served):
    client = served["client"]
    html = b"<!doctype html><script>alert(document.cookie)</script>"
    (path,) = client.post("/gradio_api/upload", files={"files": ("x.jpg", html)}).json()
    answer = client.get(f"/gradio_api/file={path}")
    assert answer.headers.get("x-content-type-options") == "nosniff"
    assert "text/html" not in answer.headers.get("content-type", "")
    for route in ("/", "/api/health", "/docs", "/no/such/page"):
        assert client.get(route).headers.get("x-content-type-options") == "nosniff", route


def test_a_drawn_photo_still_searches(served):
    """The checks above leave ordinary use alone: an upload through the API gets hits."""
    photo = draw_image(served["base"] / "query.jpg", "red", "circle")
    answer = served["client"].post(
        "/api/search/photo", files={"photo": ("q.jpg", photo.read_bytes())}
    )
    assert answer.status_code == 200 and answer.json()["hits"]


# -- 8. phone photos ------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["HEIF", "AVIF"])
def test_a_phone_photo_searches_through_the_api_and_the_page(served, format):
    client, buffer = served["client"], io.BytesIO()
    Image.new("RGB", (120, 90), (220, 40, 40)).save(buffer, format=format)
    name = "IMG_0001.HEIC" if format == "HEIF" else "photo.avif"
    files = {"photo": (name, buffer.getvalue())}
    answer = client.post("/api/search/photo", files=files)
    assert answer.status_code == 200 and answer.json()["hits"], answer.text
    uploaded = client.post("/gradio_api/upload", files={"files": (name, buffer.getvalue())})
    (path,) = uploaded.json()
    event, data = _call(client, "image_to_text", [_file_data(path), [], "", ""])
    assert event == "complete", data
