"""The only files the page serves: the photos of indexed points, by point id.

    GET /photo/{point_id}  ->  the point's image, as an image

The id is looked up in the store and the point's recorded image is read; nothing in the
request names a file, so no path, escape or link in a URL reaches any other file. The
``Content-Type`` comes from the format PIL finds in the bytes (a PNG named ``.jpg`` is
``image/png``; an HTML page renamed ``.jpg`` is not served at all), with ``nosniff`` so a
browser never reads it as anything else. Formats browsers do not show (TIFF) are sent as a
JPEG preview. Every refusal is the same 404, telling nothing about the disk.

The page's results carry these URLs (:func:`photo_url`) and :func:`public_payload`s, never
a path on the server.
"""

from __future__ import annotations

import io
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import BinaryIO

import gradio as gr
from fastapi.routing import APIRoute
from gradio import route_utils
from PIL import Image
from starlette.responses import Response, StreamingResponse

from indexer.store import Store, StoredPoint, StoreError
from multimodal.data.decoding import SHARED_BUDGET, BudgetExhausted, decode_photo
from multimodal.data.images import ImageLoadError
from multimodal.files import open_regular

ROUTE = "/photo/{point_id}"
BROWSER_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
}
PREVIEW_SIDE = 1600  # a photo in another format is sent as a JPEG this size at most
CHUNK = 256 * 1024
SERVER_FIELDS = ("root",)  # payload fields that are paths on the server: never sent
INTERNAL_FIELDS = ("text", "content_hash")  # the indexer's own: the embedded text, the hash
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # opened on its own, the photo can run nothing and load nothing
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
    "Cache-Control": "private, max-age=300",
}
BUSY_HEADERS = {**HEADERS, "Retry-After": "5", "Cache-Control": "no-store"}


def photo_url(point_id: str, root_url: str = "") -> str:
    """Where the page serves the point's photo; ``root_url`` is the page's own address."""
    return f"{root_url.rstrip('/')}{ROUTE.format(point_id=point_id)}"


def photo_routes(store: Store, collection: str, max_pixels: int) -> list[APIRoute]:
    """The routes that serve the photos of ``collection``'s points, for the page's app.

    The second one answers ``gradio_client``, which fetches every file of a result through
    the file route, ``/gradio_api/file=<the file's URL>``: for a photo URL of this page it
    serves the photo itself, whatever the host named (Gradio's route would refuse a
    loopback address, and a route that fetched a given host would reach other machines).
    """

    def photo(point_id: str) -> Response:
        try:
            return _photo_response(store, collection, point_id, max_pixels)
        except StoreError:
            return Response("the store is not available\n", 503, HEADERS, "text/plain")

    through_file_route = f"{route_utils.API_PREFIX}/file=http{{address:path}}{ROUTE}"
    return [
        APIRoute(ROUTE, photo, methods=["GET"], include_in_schema=False),
        APIRoute(through_file_route, photo, methods=["GET"], include_in_schema=False),
    ]


def _photo_response(store: Store, collection: str, point_id: str, max_pixels: int) -> Response:
    try:
        point_id = str(uuid.UUID(point_id))  # point ids are UUIDs; anything else is no point
    except ValueError:
        return _not_found()
    found = store.retrieve(collection, [point_id], fields=["root", "image"])
    path = found[0].image_path if found else None
    handle = _open_file(path) if path is not None else None
    if handle is None:
        return _not_found()
    try:  # one open file: what is checked is what is sent
        media_type = _sniffed(handle)
        if media_type is None:
            handle.close()
            return _not_found()
        if media_type == "":
            return _preview(handle, max_pixels)
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return StreamingResponse(_chunks(handle), 200, HEADERS, media_type)


def _open_file(path: Path) -> BinaryIO | None:
    """``path`` opened for reading if it is a regular file (never waiting on a FIFO)."""
    try:
        return open_regular(path)
    except (OSError, ValueError):  # gone, unreadable, special, or a NUL in the name
        return None


def _sniffed(handle: BinaryIO) -> str | None:
    """The browser type of the image in ``handle`` from its header; "" for an image format
    browsers do not show; None for anything that is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(handle) as image:  # reads the header only
                return BROWSER_FORMATS.get(image.format or "", "")
    except Exception:  # a damaged header can raise nearly anything inside PIL: not an image
        return None


def _preview(handle: BinaryIO, max_pixels: int) -> Response:
    """A JPEG preview of the photo open in ``handle``, decoded as uploads are: within the
    process's budget, shrunk as it is decoded."""
    with handle:
        try:
            handle.seek(0)
            image = decode_photo(
                handle, "photo", max_pixels, max_side=PREVIEW_SIDE, budget=SHARED_BUDGET
            )
        except BudgetExhausted:
            return Response("busy: try again in a moment\n", 503, BUSY_HEADERS, "text/plain")
        except ImageLoadError:
            return _not_found()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return Response(buffer.getvalue(), 200, HEADERS, "image/jpeg")


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _not_found() -> Response:
    return Response("no such photo\n", 404, HEADERS, "text/plain")


def public_payload(payload: dict) -> dict:
    """A payload as the browser gets it: no path on the server (the data root is left out;
    an image path is kept relative to it, or only its name), nor the indexer's own fields
    (the text the vector embeds repeats the title and ingredients; the content hash)."""
    hidden = SERVER_FIELDS + INTERNAL_FIELDS
    shown = {k: v for k, v in payload.items() if k not in hidden}
    image = payload.get("image")
    if image and PurePath(image).is_absolute():
        shown["image"] = PurePath(image).name
    return shown


def page_root_url(request: gr.Request | None) -> str:
    """The page's address as the browser reached it, worked out as Gradio does for its own
    links (behind a proxy too); "" when a handler is called directly."""
    raw = getattr(request, "request", None) if request is not None else None
    if raw is None:
        return ""
    root_path = getattr(raw.app, "root_path", None) or raw.scope.get("root_path")
    return route_utils.get_root_url(raw, route_utils.get_api_call_path(raw), root_path)


def hit_json(hit: StoredPoint, root_url: str = "", duplicates=()) -> dict:
    """A hit as a browser or an API client sees it: its id, score, photo URL (None for an
    item without a photo), public payload and the photos folded into it as one picture
    (``duplicates``: their id, score and photo URL). The page and the JSON API both render
    hits with it."""
    return {
        "id": hit.id,
        "score": hit.score,
        "probability": hit.probability,
        "photo": _photo(hit, root_url),
        "payload": public_payload(hit.payload),
        "duplicates": [
            {"id": d.id, "score": d.score, "photo": _photo(d, root_url)} for d in duplicates
        ],
    }


def _photo(hit: StoredPoint, root_url: str) -> str | None:
    return photo_url(hit.id, root_url) if hit.payload.get("image") else None
