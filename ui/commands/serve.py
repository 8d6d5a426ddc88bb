"""``multimodal serve``: the search page over an indexed collection.

    multimodal serve --collection recipes5k-1a2b3c4d5e [--store PATH | --qdrant-url URL]

Binds 127.0.0.1 unless ``--host`` says otherwise, and says so on stderr when it does: the
page has no login (docs/security.md). Never creates a public share link.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys

from indexer.commands.common import add_store_arguments, open_store_from_args
from multimodal.commands.common import add_tta_argument, command


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: loopback only; 0.0.0.0 serves your network, with no "
        "login: see docs/security.md)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to bind (default: 7860)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="searches run at once (default: 2)"
    )
    parser.add_argument(
        "--device", default=None, help="cuda or cpu for the model (default: cuda if available)"
    )
    add_tta_argument(parser, "a query photo", default=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multimodal serve", description="Serve the search page for a collection."
    )
    add_store_arguments(parser)
    parser.add_argument(
        "--model", default=None, help="model spec for queries (default: the collection's model)"
    )
    add_server_arguments(parser)
    return parser


def serve(store, collection: str, model: str | None, args, encoder=None) -> int:
    """Serve the page; photo queries with ``args.tta`` (``encoder``, when given, is the
    model already loaded, which keeps its weights and device)."""
    from indexer.search import Searcher
    from multimodal.encoder import load_encoder
    from ui.app import RecipeApp, example_photos, launch

    if encoder is None:
        model = model or store.metadata(collection)["model"]["name"]
        encoder = load_encoder(model, args.device)
    searcher = Searcher(encoder.with_tta(args.tta), store, collection)
    app = RecipeApp(searcher, example_photos(store, collection))
    if not is_loopback(args.host):
        print(
            f"warning: serving {args.host}, beyond this machine, with no login: anyone who "
            "reaches it can search and see the indexed photos (docs/security.md)",
            file=sys.stderr,
        )
    blocks = launch(app, args.host, args.port, args.concurrency, block=False)
    print(f"search page: {blocks.local_url}  (Ctrl-C stops)", flush=True)
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop: close the store cleanly
    try:
        blocks.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        blocks.close()
    return 0


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
    with open_store_from_args(args) as store:
        store.metadata(args.collection)  # a clear error before the model loads
        return serve(store, args.collection, args.model, args)
