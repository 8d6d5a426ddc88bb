"""The server's door: who may come in, and how much they may send.

:class:`Guard` wraps the whole app (the page, its photos and the JSON API) as ASGI middleware,
and checks, in this order:

- **The host name** (:class:`ui.origins.Origins`): a ``Host`` that is not one of the server's
  names is refused (400): the defence against DNS rebinding.
- **Cross-site requests**: a state-changing request a browser sends from a page of another
  origin is refused (403), unless ``--cors-origin`` names it.
- **Credentials**, when :class:`Access` has any: every request carries either the page's login
  (HTTP basic, ``--auth USER:PASSWORD``; a browser asks for it once) or the API key
  (``X-API-Key``). Both are compared in constant time. Without either: 401; with a wrong key:
  403. Nothing is served first, not even the page's HTML. A client (by address) that sent
  :data:`MAX_FAILURES` wrong credentials within :data:`FAILURE_WINDOW` gets 429 with
  ``Retry-After`` until the window moves on, whatever it sends; other clients are not slowed.
- **Bounded bodies**: a request whose ``Content-Length`` is past the limit is refused (413)
  before it is read; a body sent without one (chunked) is counted as it arrives and refused
  at the limit. A multipart form (an upload) gets the upload limit and room for the form
  around it; any other body (JSON, in any spelling of its media type) :data:`MAX_JSON_BYTES`.

Every response gets ``X-Content-Type-Options: nosniff``: a browser never reads a file as
another type than the one it is sent as (an uploaded HTML page named ``.jpg`` stays an image).

Refusals of ``/api`` requests are ``{"detail": "..."}``, of anything else one line of text.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import math
import time
from dataclasses import dataclass

# Counting failures per client in a moving window is what `limits` is made for (the engine
# under slowapi); slowapi's per-route decorators would not reach the page's routes.
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.exceptions import HTTPException

from ui.origins import Origins, first_entry
from ui.uploads import MAX_UPLOAD_BYTES, too_many_bytes

MAX_JSON_BYTES = 1024 * 1024  # a JSON request (a search is a few kilobytes at most)
FORM_ROOM = 1024 * 1024  # a multipart form's own bytes beside its one photo
MIN_KEY = 16  # characters of an API key
REALM = 'Basic realm="recipe search", charset="UTF-8"'
# Wrong credentials a client may send in the window before it must wait: enough for typos,
# about 1,400 guesses a day at most instead of about 1,000 a second.
MAX_FAILURES = 10
FAILURE_WINDOW = 10  # minutes
UPLOAD_TYPE = "multipart/form-data"
CROSS_SITE = (
    "cross-site request refused: this server takes no requests from other web pages "
    "(--cors-origin names those it should)"
)


@dataclass(frozen=True)
class Access:
    """The credentials the server asks for; none given: it asks for none."""

    user: str | None = None  # the page's login (HTTP basic)
    password: str | None = None
    api_key: str | None = None  # what programs send in X-API-Key
    max_failures: int = MAX_FAILURES  # wrong credentials per client per FAILURE_WINDOW

    @property
    def required(self) -> bool:
        return bool(self.password or self.api_key)

    @classmethod
    def parse(cls, auth: str | None, api_key: str | None = None, key_name: str = "the key"):
        """``--auth USER:PASSWORD`` and the API key (``key_name``: where it came from),
        checked: a login needs both parts, a key :data:`MIN_KEY` printable ASCII characters
        or more."""
        user = password = None
        if auth is not None:
            user, colon, password = auth.partition(":")
            if not colon or not user or not password:
                raise ValueError("--auth takes USER:PASSWORD, both non-empty")
        if api_key and not (api_key.isascii() and api_key.isprintable()):
            raise ValueError(f"{key_name} must be printable ASCII (it travels in a header)")
        if api_key and len(api_key) < MIN_KEY:
            raise ValueError(
                f"{key_name} is {len(api_key)} characters; an API key needs at least {MIN_KEY} "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"
            )
        return cls(user, password, api_key or None)

    def check(self, headers: dict[str, str]) -> int | None:
        """None if ``headers`` carry a valid credential; else the status that refuses them
        (401 with none, 403 with a wrong API key)."""
        key = headers.get("x-api-key")
        if key is not None and self.api_key is not None and _same(key, self.api_key):
            return None
        login = _basic(headers.get("authorization", ""))
        if login is not None and self.password is not None:
            user_ok = _same(login[0], self.user or "")
            if _same(login[1], self.password) & user_ok:  # both compared, always
                return None
        return 403 if key is not None else 401


class Failures:
    """Wrong credentials per client, in a sliding window (:data:`MAX_FAILURES` in
    :data:`FAILURE_WINDOW` minutes). A client is its IPv4 address, or its IPv6 /64 network
    (one home or host gets a whole /64: counted per address, it could guess forever). The
    window's counters expire and are dropped, so the memory stays bounded."""

    def __init__(self, allowed: int = MAX_FAILURES, minutes: int = FAILURE_WINDOW):
        self.limit = RateLimitItemPerMinute(allowed, minutes)
        self.window = SlidingWindowCounterRateLimiter(MemoryStorage())

    def wait(self, client: str) -> int:
        """Seconds ``client`` must wait before it may try again; 0: it may now."""
        key = client_key(client)
        if self.window.test(self.limit, key):
            return 0
        reset = self.window.get_window_stats(self.limit, key).reset_time
        return max(1, math.ceil(reset - time.time()))

    def add(self, client: str) -> None:
        self.window.hit(self.limit, client_key(client))


def client_key(address: str) -> str:
    """The key a client's failures are counted under: its IPv4 address, its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Guard:
    """ASGI middleware: the host name, cross-site requests, :class:`Access`, failed
    credentials and bounded request bodies (see the module)."""

    def __init__(
        self,
        app,
        access: Access | None = None,
        origins: Origins | None = None,
        upload_limit: int = MAX_UPLOAD_BYTES,
    ):
        self.app, self.access = app, access or Access()
        self.origins = origins or Origins()
        self.upload_limit = upload_limit
        self.failures = Failures(self.access.max_failures)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await _refuse(scope, send, *refusal)
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        return await self._bounded(scope, receive, send, headers)

    def _refusal(self, scope, headers) -> tuple | None:
        """(status, detail[, access, extra headers]) refusing the request, or None."""
        local = (scope.get("server") or (None,))[0]
        host = headers.get("host")
        if not self.origins.host_allowed(host, local):
            return 400, _not_our_name(host)
        forwarded = headers.get("x-forwarded-host")  # left only by a believed proxy
        if forwarded is not None and not self.origins.host_allowed(first_entry(forwarded)):
            return 400, _not_our_name(forwarded)
        method = scope.get("method", "WEBSOCKET")
        if self.origins.cross_site(method, headers):
            return 403, CROSS_SITE
        if not self.access.required:
            return None
        client = (scope.get("client") or ("unknown",))[0]
        wait = self.failures.wait(client)
        if wait:
            return 429, _too_many_failures(wait), None, [(b"retry-after", str(wait).encode())]
        status = self.access.check(headers)
        if status is None:
            return None
        if _gave_credentials(headers):
            self.failures.add(client)
        return status, _why(status), self.access

    async def _bounded(self, scope, receive, send, headers):
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        json_body = media_type != UPLOAD_TYPE  # any other body is parsed as JSON, or refused
        limit = MAX_JSON_BYTES if json_body else self.upload_limit + FORM_ROOM
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(scope, send, 413, _too_large(int(declared), limit, json_body))
        received, started = 0, False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(None, limit, json_body))
            return message

        async def watched(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": _no_sniffing(message.get("headers", []))}
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except HTTPException as err:  # the body ran past the limit outside any route
            if started or err.status_code != 413:
                raise
            await _refuse(scope, send, 413, err.detail)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _basic(authorization: str) -> tuple[str, str] | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        user, colon, password = decoded.partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


def _gave_credentials(headers: dict[str, str]) -> bool:
    """Whether the request carried a credential (a wrong one, then): a browser's first request
    of the page carries none and is not a guess."""
    return "x-api-key" in headers or "authorization" in headers


def _no_sniffing(headers: list) -> list:
    if any(name.lower() == b"x-content-type-options" for name, _ in headers):
        return headers
    return [*headers, (b"x-content-type-options", b"nosniff")]


def _not_our_name(host: str | None) -> str:
    shown = (host or "")[:100]
    return (
        f"this server does not answer to the host name {shown!r}: start it with "
        "--allowed-hosts NAME to reach it by that name (docs/security.md)"
    )


def _too_many_failures(wait: int) -> str:
    return (
        f"too many wrong credentials from this address: try again in {wait} s "
        f"(at most {MAX_FAILURES} every {FAILURE_WINDOW} minutes)"
    )


def _why(status: int) -> str:
    if status == 403:
        return "wrong API key: send the key the server was started with in X-API-Key"
    return "credentials required: log in (HTTP basic), or send the API key in X-API-Key"


def _too_large(size: int | None, limit: int, json_body: bool) -> str:
    if json_body:
        return f"the request body is over the {limit // 1024:,} KB limit for JSON"
    return too_many_bytes(size if size is not None and size > MAX_UPLOAD_BYTES else None)


async def _refuse(
    scope, send, status: int, detail: str, access: Access | None = None, extra: list = ()
):
    if scope["path"] == "/api" or scope["path"].startswith("/api/"):
        body, kind = json.dumps({"detail": detail}).encode(), b"application/json"
    else:
        body, kind = (detail + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *extra]
    headers = _no_sniffing(headers)
    if status == 401 and access is not None and access.password is not None:
        headers.append((b"www-authenticate", REALM.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
