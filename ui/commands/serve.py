"""``multimodal serve``: the search page over an indexed collection.

    multimodal serve --collection recipes5k-1a2b3c4d5e [--store PATH | --qdrant-url URL]

Serves the page, its photos and the JSON API (``/api``, docs/api.md) on one port. Binds
127.0.0.1 unless ``--host`` says otherwise; any other address needs credentials (``--auth
USER:PASSWORD`` for the page, an API key in ``$MULTIMODAL_API_KEY`` for programs) or an
explicit ``--no-auth`` (docs/security.md). Never creates a public share link.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from indexer.commands.common import add_store_arguments, open_store_from_args
from multimodal.commands.common import add_tta_argument, command

DEFAULT_KEY_ENV = "MULTIMODAL_API_KEY"
WATCH_STOP_TIMEOUT = 60.0  # seconds a pass under way gets to finish when the server stops


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: loopback only; any other address needs --auth or an "
        "API key, or --no-auth: see docs/security.md)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to bind (default: 7860)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="searches run at once (default: 2)"
    )
    parser.add_argument(
        "--device", default=None, help="cuda or cpu for the model (default: cuda if available)"
    )
    add_tta_argument(parser, "a query photo", default=True)
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile the image tower for query photos (torch.compile) in the background, "
        "the page serving meanwhile: photo searches about 1.9x faster on a CPU once ready, "
        "about 30 s of CPU at a first start (default: on)",
    )
    add_access_arguments(parser)


def add_access_arguments(parser: argparse.ArgumentParser) -> None:
    """Who may ask: credentials, host names, other web pages, proxies (docs/security.md)."""
    parser.add_argument(
        "--auth",
        default=None,
        metavar="USER:PASSWORD",
        help="the login the page asks for (HTTP basic; programs may use it too)",
    )
    parser.add_argument(
        "--key-env",
        default=DEFAULT_KEY_ENV,
        help="environment variable holding the API key programs send in X-API-Key "
        f"(default: {DEFAULT_KEY_ENV}; unset: no key)",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve an address beyond loopback without any credentials (anyone who reaches it "
        "can search and see every indexed photo)",
    )
    parser.add_argument(
        "--allowed-hosts",
        action="append",
        default=[],
        metavar="NAMES",
        help="more host names (comma-separated; *.example.org, or * for any) the server "
        "answers to, besides loopback's, --host's and the address a client connected to; "
        "any other Host header gets 400 (the defence against DNS rebinding)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGINS",
        help="web origins (comma-separated, e.g. https://app.example.org) whose pages may call "
        "the API from a browser; every other origin gets no CORS headers and its "
        "state-changing requests are refused (default: none)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default="",
        metavar="ADDRESSES",
        help="addresses or networks (comma-separated, or *) of reverse proxies whose "
        "X-Forwarded-For/-Proto/-Host headers are believed; dropped from anyone else "
        "(default: none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal serve", description="Serve the search page for a collection."
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--model", default=None, help="model spec for queries (default: the collection's model)"
    )
    parser.add_argument(
        "--watch",
        default=None,
        metavar="DATA",
        help="keep the collection in step with this data folder (or manifest) while serving: "
        "added, changed, moved and deleted photos are searchable within seconds, the filters "
        "and the map follow (what multimodal index --watch does, in this process: an "
        "embedded store admits one)",
    )
    add_server_arguments(parser)
    return parser


def serve(store, collection: str, model: str | None, args, encoder=None, access=None) -> int:
    """Serve the page and the API; photo queries with ``args.tta`` (``encoder``, when given,
    is the model already loaded, which keeps its weights and device; ``access``, when given,
    the credentials :func:`server_access` found)."""
    from indexer.search import Searcher
    from multimodal.compiled import compile_image_tower
    from multimodal.encoder import load_encoder
    from ui.app import RecipeApp, example_photos, launch

    if access is None:
        access = server_access(args)  # before the model loads: a refusal comes at once
    origins = server_origins(args)
    if getattr(args, "watch", None) and not Path(args.watch).expanduser().exists():
        raise ValueError(f"--watch {args.watch}: no such folder or manifest")
    if encoder is None:
        model = model or store.metadata(collection)["model"]["name"]
        encoder = load_encoder(model, args.device)
    searcher = Searcher(encoder.with_tta(args.tta), store, collection)
    if args.compile:
        compile_image_tower(searcher.encoder)
    app = RecipeApp(searcher, example_photos(store, collection))
    server = launch(
        app, args.host, args.port, args.concurrency, block=False, access=access, origins=origins
    )
    url = server.local_url
    print(f"search page: {url}  JSON API: {url}api/  (docs: {url}docs; Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop: close the store cleanly
    stop_watching = watch_in_background(args, store, collection, encoder, app)
    try:
        server.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        stop_watching()
        server.close()
    return 0


def watch_in_background(args, store, collection: str, encoder, app) -> Callable[[], None]:
    """With ``--watch DATA``: a thread that keeps ``collection`` in step with DATA (its own
    full pass first, the page serving meanwhile) and refreshes the page after each change;
    returns what stops it (a pass under way finishes first: every write is whole)."""
    if not getattr(args, "watch", None):
        return lambda: None
    from indexer.watch import WatchedData
    from multimodal.paths import default_store_path

    data = Path(args.watch).expanduser()
    tta = store.metadata(collection)["model"].get("tta") is True  # photos as indexed before
    ignored = None if args.qdrant_url else (args.store or default_store_path())
    watched = WatchedData(
        encoder.with_tta(tta), store, collection, data, ignore=[ignored] if ignored else []
    )
    stop = threading.Event()

    def said(report) -> None:
        print(report.summary(), flush=True)
        for reject in () if report.full else report.rejects:
            print(f"skipped {reject.path}: {reject.reason}", flush=True)
        app.refresh()

    def run() -> None:
        try:
            watched.watch(stop, said=said)
        except Exception as err:  # the store or the folder gone: serving goes on
            print(f"stopped watching {data}: {err}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=run, name=f"watch {data}", daemon=True)
    thread.start()
    print(f"watching {watched.folder} for {collection}", flush=True)

    def stop_watching() -> None:
        stop.set()
        thread.join(timeout=WATCH_STOP_TIMEOUT)

    return stop_watching


def server_access(args):
    """The credentials the server asks for (:class:`ui.guard.Access`), from ``--auth`` and
    the API key in ``$<--key-env>``; a ValueError naming the fix for an address beyond
    loopback without any, unless ``--no-auth``."""
    from ui.guard import Access

    if args.no_auth:
        if args.auth is not None:
            raise ValueError("--no-auth and --auth contradict each other: pick one")
        if not is_loopback(args.host):
            print(
                f"warning: serving {args.host}, beyond this machine, with no login (--no-auth): "
                "anyone who reaches it can search and see the indexed photos (docs/security.md)",
                file=sys.stderr,
            )
        return Access()
    access = Access.parse(args.auth, os.environ.get(args.key_env), args.key_env)
    if not access.required and not is_loopback(args.host):
        raise ValueError(
            f"serving {args.host} beyond this machine needs credentials: pass --auth "
            f"USER:PASSWORD for the page and/or set {args.key_env} to an API key for programs, "
            "or --no-auth to serve without any (docs/security.md)"
        )
    return access


def server_origins(args):
    """The host names, web origins and proxies the server trusts
    (:class:`ui.origins.Origins`), from ``--host``, ``--allowed-hosts``, ``--cors-origin``
    and ``--forwarded-allow-ips``; a ValueError naming the fix for a malformed one."""
    from ui.origins import Origins

    return Origins.for_server(
        args.host,
        _listed(args.allowed_hosts),
        _listed(args.cors_origin),
        _listed([args.forwarded_allow_ips]),
    )


def _listed(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _stop(signum, frame):
    raise KeyboardInterrupt


@command("serve")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    access = server_access(args)  # refused before the store opens or the model loads
    server_origins(args)  # a malformed name, origin or address: refused now too
    with open_store_from_args(args) as store:
        store.metadata(args.collection)  # a clear error before the model loads
        return serve(store, args.collection, args.model, args, access=access)
