"""Who the server answers: the names it may be reached by, the web pages that may call it, and
the proxies whose forwarded headers it believes.

- **Host names** (:meth:`Origins.host_allowed`): a request whose ``Host`` is not one of the
  server's names is refused (``400``) before anything else runs. This is what stops DNS
  rebinding: a web page at ``evil.example`` that re-points its own name at ``127.0.0.1``
  reaches the socket, but with ``Host: evil.example``. Loopback names always; the name given
  to ``--host``; the machine's own names for a wildcard bind (``0.0.0.0``, ``::``); the
  address the connection came in on, as an IP literal (a rebinding needs a name); and
  whatever ``--allowed-hosts`` adds (``*.example.org``, or ``*`` for any).
- **Cross-site requests** (:meth:`Origins.cross_site`): a request that can change something
  (any method but ``GET``, ``HEAD`` and ``OPTIONS``, and every websocket) sent by a browser
  from another origin is refused (``403``), unless ``--cors-origin`` names that origin. The
  browser says where a request comes from in ``Origin`` (or ``Sec-Fetch-Site``); programs
  send neither, and are not browsers a page can steer. No ``Access-Control-Allow-Origin`` is
  sent to any origin ``--cors-origin`` does not name (Starlette's ``CORSMiddleware``, set up
  in :mod:`ui.server`).
- **Forwarded headers** (:func:`forwarded_headers`): ``X-Forwarded-For``, ``-Proto``,
  ``-Host`` (which the photo URLs in results are built from) are dropped unless the
  connection comes from an address ``--forwarded-allow-ips`` names, as uvicorn calls it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")  # bind addresses that mean "every address of this machine"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # requests that change nothing on this server
# headers only a proxy may set: dropped from anyone else
FORWARDED = {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"forwarded",
}


@dataclass(frozen=True)
class Origins:
    """The server's names, the web origins allowed to call it, and the trusted proxies."""

    hosts: tuple[str, ...] = LOOPBACK_NAMES  # names (lower case, no brackets) or *.suffix, *
    cors_origins: tuple[str, ...] = ()  # scheme://host[:port] of pages that may call the API
    forwarded_allow_ips: tuple[str, ...] = ()  # addresses or networks of trusted proxies

    @classmethod
    def for_server(
        cls,
        bind: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        cors_origins: Iterable[str] = (),
        forwarded_allow_ips: Iterable[str] = (),
    ) -> Origins:
        """The names a server bound to ``bind`` answers to, plus ``allowed_hosts``; each of
        the other lists checked (a ValueError naming the fix)."""
        names = [*LOOPBACK_NAMES, *(_host_name(name) for name in allowed_hosts)]
        bind = bind.strip("[]").lower()
        if bind in WILDCARDS:
            names += [socket.gethostname().lower(), socket.getfqdn().lower()]
        else:
            names.append(bind)
        origins = tuple(_origin(origin) for origin in cors_origins)
        proxies = tuple(_network(address) for address in forwarded_allow_ips)
        if "*" in proxies:  # any address: the one entry uvicorn takes it as
            proxies = ("*",)
        return cls(tuple(dict.fromkeys(names)), origins, proxies)

    def host_allowed(self, host_header: str | None, local_address: str | None = None) -> bool:
        """Whether a request with ``Host: host_header`` that came in on ``local_address``
        is for this server."""
        host = _parsed_host(host_header)
        if host is None:
            return False
        if host == _plain(local_address):  # the IP literal the client connected to
            return True
        return any(_matches(host, pattern) for pattern in self.hosts)

    def cross_site(self, method: str, headers: dict[str, str]) -> bool:
        """Whether a browser sent this state-changing request from a page of another origin
        than the server's own (``headers``: lower-case names)."""
        if method in SAFE_METHODS:
            return False
        origin = headers.get("origin")
        if origin is None:  # older browsers name the site only in Sec-Fetch-Site; programs, none
            return headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
        if origin.lower() in self.cors_origins:
            return False
        own = {headers.get("host", ""), first_entry(headers.get("x-forwarded-host", ""))}
        return urlsplit(origin.lower()).netloc not in {name.lower() for name in own} - {""}

    def trusts(self, address: str | None) -> bool:
        """Whether a connection from ``address`` is a proxy whose forwarded headers count."""
        if address is None or not self.forwarded_allow_ips:
            return False
        if "*" in self.forwarded_allow_ips:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net) for net in self.forwarded_allow_ips)


def forwarded_headers(app, origins: Origins):
    """``app`` behind the forwarded-header rule: from a trusted proxy, uvicorn's
    ``ProxyHeadersMiddleware`` applies them (client address, scheme) and the rest (the
    ``X-Forwarded-Host`` Gradio and the API build URLs from) pass; from anyone else they are
    dropped before any of the app sees them."""
    proxied = ProxyHeadersMiddleware(app, trusted_hosts=list(origins.forwarded_allow_ips))

    async def asgi(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        peer = (scope.get("client") or (None,))[0]
        if origins.trusts(peer):
            return await proxied(scope, receive, send)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in FORWARDED]
        return await app({**scope, "headers": headers}, receive, send)

    return asgi


def first_entry(value: str | None) -> str | None:
    """The first of a comma-separated header's entries (``X-Forwarded-Host: a, b``: ``a``,
    the name the client used), stripped; None stays None."""
    return value.split(",")[0].strip() if value is not None else None


def _matches(host: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


def _parsed_host(value: str | None) -> str | None:
    """The host of a ``Host`` header, lower case, IPv6 without brackets; None if malformed."""
    if not value or any(c in value for c in "/?#@ \t\\"):
        return None
    try:
        parts = urlsplit(f"//{value}")
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    return parts.hostname or None


def _plain(address: str | None) -> str | None:
    return address.lower().split("%")[0] if address else None


def _host_name(name: str) -> str:
    """An ``--allowed-hosts`` entry, checked: a name, an address, ``*.suffix`` or ``*``."""
    name = name.strip().lower().strip("[]")
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(name))  # an address, IPv6 included
    if name == "*" or (name.startswith("*.") and _parsed_host(name[2:])):
        return name
    if not name or "*" in name or _parsed_host(name) != name:
        raise ValueError(
            f"--allowed-hosts takes host names or addresses without a port (myhost.lan, "
            f"192.168.1.20, *.example.org, or * for any), not {name!r}"
        )
    return name


def _origin(origin: str) -> str:
    """A ``--cors-origin`` entry, checked: ``scheme://host[:port]`` and nothing more."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ValueError(
            f"--cors-origin takes an origin such as https://app.example.org or "
            f"http://localhost:3000, not {origin!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _network(address: str) -> str:
    """A ``--forwarded-allow-ips`` entry, checked: an address, a network, or ``*``."""
    address = address.strip()
    if address == "*":
        return address
    try:
        return str(ipaddress.ip_network(address, strict=False))
    except ValueError:
        raise ValueError(
            f"--forwarded-allow-ips takes addresses or networks (127.0.0.1, 10.0.0.0/8) or *, "
            f"not {address!r}"
        ) from None
