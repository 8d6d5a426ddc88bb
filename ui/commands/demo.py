"""``multimodal demo``: the recipe search page on Recipes5k, in one command.

    multimodal demo [--data PATH] [--model SPEC | --retrain]

Finds Recipes5k (``--data``, ``$MULTIMODAL_RECIPES5K``, ``../shared/datasets/recipes5k``, or
a copy it downloaded before; downloads the official archive when none is found), gets the
recipe model (``--model``, else the one that ships with the package, or with ``--retrain`` the
same recipe trained again), indexes every split into the embedded store, and serves the page. A
second run skips what is done. ``--tta`` applies to the page's photo queries; the collection's
photos are indexed without it (4 times the work; ``multimodal index --tta`` makes such a
collection).
"""

from __future__ import annotations

import argparse
import time

from multimodal.commands.common import command
from ui.commands.serve import add_server_arguments, serve, server_access, server_origins


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multimodal demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a Recipes5k folder")
    parser.add_argument(
        "--model",
        default=None,
        help="a model spec (e.g. ViT-B-32:laion2b_s34b_b79k when online, or runs/NAME/best); "
        "default: the recipe model that ships with the package",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train the recipe model again with its recorded configuration (progress shown; "
        "run again to resume after Ctrl-C); later runs use it",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="embedded store folder (default: $MULTIMODAL_HOME/qdrant or "
        "~/.local/share/multimodal/qdrant)",
    )
    parser.add_argument(
        "--download-url",
        default=None,
        help="where to fetch Recipes5k from (default: the archive its authors link)",
    )
    parser.add_argument("--sha256", default=None, help="expected checksum of that archive")
    parser.add_argument("--no-serve", action="store_true", help="prepare everything, then stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_server_arguments(parser)
    return parser


@command("demo")
def main(argv: list[str] | None = None) -> int:
    from indexer.edge import EdgeStore
    from multimodal.data.download import RECIPES5K_SHA256, RECIPES5K_URL
    from multimodal.data.recipes5k import ensure_recipes5k
    from multimodal.encoder import load_encoder, model_stamp
    from multimodal.paths import default_store_path
    from ui.demo import collection_name, ensure_index, ensure_model

    args = build_parser().parse_args(argv)
    access = None if args.no_serve else server_access(args)  # refused before the long steps
    if not args.no_serve:
        server_origins(args)
    started = time.perf_counter()
    progress = not args.no_progress
    data = ensure_recipes5k(
        args.data, args.download_url or RECIPES5K_URL, args.sha256 or RECIPES5K_SHA256, progress
    )
    print(f"data: {data}")
    model = ensure_model(args.model, data, progress, args.retrain)
    encoder = load_encoder(model, args.device)
    collection = collection_name(model, model_stamp(encoder))
    with EdgeStore(args.store or default_store_path()) as store:
        report = ensure_index(encoder, store, collection, data, progress)
        print(report.summary())
        print(f"ready in {time.perf_counter() - started:.1f}s", flush=True)
        if args.no_serve:
            return 0
        return serve(store, collection, model, args, encoder, access)
