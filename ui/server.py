"""One server, one port: the JSON API (``/api``, OpenAPI at ``/docs``), the indexed photos
(``/photo/{id}``) and the Gradio page (``/``), all behind one :class:`ui.guard.Guard`.

    >>> server = start(RecipeApp(searcher), host="127.0.0.1", port=0)  # 0: any free port
    >>> server.local_url
    'http://127.0.0.1:41235/'
    >>> server.close()

uvicorn serves the app from a background thread; :meth:`Server.block_thread` waits on it.
The page and the API share one :class:`ui.service.SearchService` (one model lock).
"""

from __future__ import annotations

import socket
import threading
import time

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute
from gradio import route_utils
from starlette.responses import Response

from ui.api import install
from ui.guard import Access, Guard
from ui.page import CSS, build_blocks
from ui.photos import photo_routes
from ui.service import MAX_UPLOAD_BYTES, SearchService

QUEUE_SIZE = 64  # searches waiting in the page's queue
START_TIMEOUT = 30.0  # seconds for the server to come up
STOP_TIMEOUT = 5.0  # seconds for open connections (the page's event streams) to end


def build_app(
    page, service: SearchService, concurrency: int = 2, access: Access | None = None
) -> FastAPI:
    """The app: API routes, photo routes, then the page mounted at ``/``; ``page`` is a
    :class:`ui.app.RecipeApp`. Returns the FastAPI app, with the page's Blocks as
    ``app.state.blocks``."""
    blocks = build_blocks(page)
    blocks.queue(default_concurrency_limit=concurrency, max_size=QUEUE_SIZE)
    app = FastAPI(
        title="Recipe search",
        summary="Search an indexed collection by words, photos and stored items.",
        docs_url="/docs",
        redoc_url=None,
    )
    install(app, service)
    searcher = service.searcher
    for route in photo_routes(searcher.store, searcher.collection, searcher.max_pixels):
        app.router.routes.append(route)  # ahead of the page's own routes
    app.router.routes.append(_no_fetching())
    gr.mount_gradio_app(
        app, blocks, path="/", footer_links=[], max_file_size=MAX_UPLOAD_BYTES, css=CSS
    )
    app.add_middleware(Guard, access=access)
    app.state.blocks = blocks
    return app


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
        port = sock.getsockname()[1]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host.strip("[]"), host.strip("[]"))
        self.local_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=STOP_TIMEOUT, lifespan="on"
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
        """Stop the page's queue and the server, and free the port."""
        self.app.state.blocks.close(verbose=False)
        self.uvicorn.should_exit = True
        self.thread.join(STOP_TIMEOUT + 5)
        self.socket.close()


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
) -> Server:
    """Serve ``page`` (a :class:`ui.app.RecipeApp`) and the API over its searcher on
    ``host``:``port``; returns the running :class:`Server`."""
    sock = bind(host, port)
    try:
        app = build_app(page, SearchService(page.searcher), concurrency, access)
    except BaseException:
        sock.close()
        raise
    return Server(app, sock, host).start()
