"""One server, one port: the JSON API (``/api``, OpenAPI at ``/docs``), the indexed photos
(``/photo/{id}``) and the Gradio page (``/``), all behind one :class:`ui.guard.Guard`.

    >>> server = start(RecipeApp(searcher), host="127.0.0.1", port=0)  # 0: any free port
    >>> server.local_url
    'http://127.0.0.1:41235/'
    >>> server.close()

uvicorn serves the app from a background thread; :meth:`Server.block_thread` waits on it.
The page and the API ask one :class:`indexer.service.SearchService`, the page's.

The page's uploads go to a private folder of this process (:class:`UploadFolder`), removed
when the last server of the process closes; the page's inputs take only files from it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute

# Swagger UI and ReDoc bundled in a package, so /docs and /redoc render offline (FastAPI's
# own pages load them from a CDN).
from fastapi_offline import FastAPIOffline
from gradio import route_utils
from gradio import utils as gradio_utils
from gradio_client import utils as client_utils
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from ui.api import install
from ui.guard import Access, Guard
from ui.marks_api import router as marks_router
from ui.origins import Origins, forwarded_headers
from ui.page import CSS, build_blocks
from ui.photos import photo_routes
from ui.uploads import MAX_UPLOAD_BYTES

QUEUE_SIZE = 64  # searches waiting in the page's queue
START_TIMEOUT = 30.0  # seconds for the server to come up
STOP_TIMEOUT = 5.0  # seconds for open connections (the page's event streams) to end


def build_app(
    page,
    concurrency: int = 2,
    access: Access | None = None,
    origins: Origins | None = None,
) -> FastAPI:
    """The app: API routes, photo routes, then the page mounted at ``/``; ``page`` is a
    :class:`ui.app.RecipeApp`. Returns the FastAPI app, with the page's Blocks as
    ``app.state.blocks``. Build it while :class:`UploadFolder` is held: the page's inputs
    keep the folder they were built with."""
    origins = origins or Origins()
    blocks = build_blocks(page)
    blocks.queue(default_concurrency_limit=concurrency, max_size=QUEUE_SIZE)
    app = FastAPIOffline(
        title="Recipe search",
        summary="Search an indexed collection by words, photos and stored items.",
        docs_url="/docs",
        redoc_url="/redoc",
    )
    install(app, page.service)
    app.include_router(marks_router)
    searcher = page.service.searcher
    for route in photo_routes(searcher.store, searcher.collection, searcher.max_pixels):
        app.router.routes.append(route)  # ahead of the page's own routes
    app.router.routes.append(_no_fetching())
    gr.mount_gradio_app(
        app, blocks, path="/", footer_links=[], max_file_size=MAX_UPLOAD_BYTES, css=CSS
    )
    # Gradio checks that a file given to an input was uploaded through the page only once its
    # Blocks "has launched", which launch() records and mounting does not: unset, any path on
    # the server was copied into the cache and served back. The page is live once mounted.
    blocks.has_launched = True
    only_uploads(blocks)
    app.add_middleware(Guard, access=access, origins=origins)
    # CORS for the origins --cors-origin names, and none for any other. A parent app's
    # CORSMiddleware also switches off Gradio's own, which allows every localhost origin.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-API-Key", "Authorization"],
        allow_credentials=bool(origins.cors_origins),
    )
    app.state.blocks = blocks
    app.state.origins = origins
    return app


NOT_UPLOADED = "not a file uploaded to this page: upload the photo, then search"


def only_uploads(blocks: gr.Blocks) -> None:
    """Make ``blocks``' inputs take only files in the upload folder, refused before Gradio
    looks at them. Gradio's own check (above) lets an http(s) URL through, which it then
    downloads whole into the upload folder (any size, from any public server); and it names
    the path it refuses. Here every other value gets one message, whatever it names."""
    preprocess = blocks.preprocess_data

    async def checked(block_fn, inputs, state, explicit_call=False):
        if not explicit_call:  # a request's inputs, not the app's own call
            for value in inputs:
                client_utils.traverse(value, _uploaded, client_utils.is_file_obj_with_meta)
        return await preprocess(block_fn, inputs, state, explicit_call)

    blocks.preprocess_data = checked


def _uploaded(file_data: dict) -> dict:
    path = file_data.get("path")
    if not isinstance(path, str) or client_utils.is_http_url_like(path):
        raise gr.Error(NOT_UPLOADED, print_exception=False)
    if not gradio_utils.is_in_or_equal(path, gradio_utils.get_upload_folder()):
        raise gr.Error(NOT_UPLOADED, print_exception=False)
    return file_data


class UploadFolder:
    """The page's upload folder for this process: a private one (mode 0700, so other users of
    the machine cannot list or read the uploads) made when the first server starts and
    removed with everything in it when the last one closes, unless ``$GRADIO_TEMP_DIR``
    names the user's own."""

    _lock = threading.Lock()
    _users = 0
    _made: str | None = None

    @classmethod
    def acquire(cls) -> None:
        with cls._lock:
            if cls._users == 0 and not os.environ.get("GRADIO_TEMP_DIR"):
                cls._made = tempfile.mkdtemp(prefix="multimodal-uploads-")
                os.environ["GRADIO_TEMP_DIR"] = cls._made
            cls._users += 1

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._made is not None:
                shutil.rmtree(cls._made, ignore_errors=True)
                if os.environ.get("GRADIO_TEMP_DIR") == cls._made:
                    del os.environ["GRADIO_TEMP_DIR"]
                cls._made = None


def _no_fetching() -> APIRoute:
    """Gradio's file route also fetches any public http(s) URL for the caller; the page
    needs that only for its own photos (served by the photo routes, ahead of this one)."""

    def refused(address: str) -> Response:
        return Response("no such file\n", 404, media_type="text/plain")

    path = f"{route_utils.API_PREFIX}/file=http{{address:path}}"
    return APIRoute(path, refused, methods=["GET", "HEAD"], include_in_schema=False)


class Server:
    """The app served by uvicorn from a background thread, on a socket already bound."""

    def __init__(self, app: FastAPI, sock: socket.socket, host: str):
        self.app, self.socket = app, sock
        self.closed = False
        port = sock.getsockname()[1]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host.strip("[]"), host.strip("[]"))
        self.local_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
        origins = getattr(app.state, "origins", None) or Origins()
        config = uvicorn.Config(
            forwarded_headers(app, origins),  # our rule for X-Forwarded-*, not uvicorn's
            proxy_headers=False,
            log_level="warning",
            timeout_graceful_shutdown=STOP_TIMEOUT,
            lifespan="on",
        )
        self.uvicorn = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.uvicorn.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn"
        )

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.uvicorn.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.socket.close()
                raise RuntimeError(f"the server at {self.local_url} did not start")
            time.sleep(0.01)
        return self

    def block_thread(self) -> None:
        """Wait until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self.thread.is_alive():
            self.thread.join(0.5)

    def close(self) -> None:
        """Stop the page's queue and the server, free the port, and let go of the uploads
        (kept should the server not stop in time: it may still write there)."""
        if self.closed:
            return
        self.closed = True
        self.app.state.blocks.close(verbose=False)
        self.uvicorn.should_exit = True
        self.thread.join(STOP_TIMEOUT + 5)
        self.socket.close()
        if not self.thread.is_alive():
            UploadFolder.release()


def bind(host: str, port: int | None) -> socket.socket:
    """A listening-ready socket on ``host``:``port`` (None or 0: any free port), or a
    RuntimeError saying why not."""
    address = host.strip("[]")
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            address, port or 0, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError as err:
        raise RuntimeError(
            f"cannot serve on {host}:{port}: {err.strerror or err} (another --port, or an "
            "address of this machine for --host)"
        ) from None
    return sock


def start(
    page,
    host: str = "127.0.0.1",
    port: int | None = None,
    concurrency: int = 2,
    access: Access | None = None,
    origins: Origins | None = None,
) -> Server:
    """Serve ``page`` (a :class:`ui.app.RecipeApp`) and the API over its searcher on
    ``host``:``port``, answering to ``origins`` (default: the names of ``host``); returns the
    running :class:`Server`."""
    origins = origins or Origins.for_server(host)
    sock = bind(host, port)
    UploadFolder.acquire()
    try:
        app = build_app(page, concurrency, access, origins)
        return Server(app, sock, host).start()
    except BaseException:
        sock.close()
        UploadFolder.release()
        raise
