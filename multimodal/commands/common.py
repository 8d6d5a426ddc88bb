"""What the subcommands share: model and data options, and turning errors into one line."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageLoadError
from multimodal.data.readers import dataset_splits, read_records
from multimodal.data.records import Record

if TYPE_CHECKING:
    from multimodal.ray_embed import RayOptions


def add_model_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--model",
        default=default,
        required=default is None,
        help="built-in name (recipe-starter, tiny-random), ARCH:TAG (ViT-B-32:laion2b_s34b_b79k), "
        "ARCH:/path/weights.pt, a checkpoint folder, or hf-hub:ORG/REPO",
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="bf16/fp16: GPU only"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default: 16 on the CPU, where larger batches are slower "
        "on 2 cores, 128 on a GPU)",
    )
    parser.add_argument("--workers", type=int, default=2, help="image decoding processes")


def add_tta_argument(
    parser: argparse.ArgumentParser, what: str = "each photo", default: bool = False
) -> None:
    """``--tta`` / ``--no-tta``: on by default for a query photo (one photo, about 0.1 s more,
    and better on every val figure), off for bulk embedding (4x the image tower's time)."""
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"test-time augmentation: embed {what} as the mean of 4 views (itself, its mirror "
        "image, two zoomed crops); 4x the image tower's time (docs/models.md; "
        f"default: {'on' if default else 'off'})",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="Recipes5k folder, .csv/.jsonl manifest, or image folder"
    )
    parser.add_argument("--split", default=None, help="train, val, test (default: see --help)")
    parser.add_argument("--image-column", default=None, help="manifest column of image paths")
    parser.add_argument("--caption-column", default=None, help="manifest column of captions")
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="skip images with more pixels than this (decompression-bomb guard)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and the Ray engine's ``--ray-address`` and ``--actors``."""
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process, images decoded by --workers processes; ray: a Ray cluster "
        '(pip install "recipe-search[ray]"; docs/scaling-out.md)',
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="with --engine ray: the Ray cluster to join, HOST:PORT as `ray start --head` "
        "prints it, or auto (default: start a local cluster on this machine)",
    )
    parser.add_argument(
        "--actors",
        type=positive_int,
        default=None,
        help="with --engine ray: embedding actors, one model each (default: one per GPU of the "
        "cluster; on CPUs, one per 4 CPUs)",
    )


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray engine's options from the command line, or None for the local engine (which
    takes neither --ray-address nor --actors)."""
    if args.engine != "ray":
        flags = {"--ray-address": args.ray_address, "--actors": args.actors}
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)}: only with --engine ray")
        return None
    from multimodal.ray_embed import RayOptions, import_ray, probe_address

    import_ray()  # a missing extra or a wrong address: one line before anything is read
    if args.ray_address:
        probe_address(args.ray_address)
    return RayOptions(args.ray_address, args.actors, args.device, args.precision, args.batch_size)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1, or a parse error naming the flag."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def load_data(
    args: argparse.Namespace, default_split: str | None = None, follow_links: bool = False
) -> list[Record]:
    """Records for ``--data``; ``default_split`` applies when the data set has splits; links
    that leave the data folder are read only with ``follow_links``."""
    split = args.split
    if split is None and default_split and default_split in dataset_splits(args.data):
        split = default_split
    args.split = split
    return read_records(args.data, split, args.image_column, args.caption_column, follow_links)


def image_batch_size(requested: int | None, device) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError("--batch-size must be at least 1")
        return requested
    return 128 if str(device).startswith("cuda") else 16


def command(name: str) -> Callable:
    """Wrap a ``main(argv) -> int``: a user or environment error becomes one line on stderr and
    a non-zero exit; Ctrl-C exits with 130."""

    def decorate(run: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(run)
        def main(argv: list[str] | None = None) -> int:
            try:
                return run(argv)
            except (ValueError, FileNotFoundError, ImageLoadError) as err:
                print(f"multimodal {name}: error: {err}", file=sys.stderr)
                return 2
            except (RuntimeError, OSError) as err:  # StoreError; a file we may not read
                if isinstance(err, OSError) and err.filename is not None:
                    err = f"{err.filename}: {err.strerror or err}"
                print(f"multimodal {name}: error: {err}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                print(f"multimodal {name}: interrupted", file=sys.stderr)
                return 130

        return main

    return decorate
