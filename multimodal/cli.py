"""The ``multimodal`` console command: ``multimodal SUBCOMMAND [options]``."""

from __future__ import annotations

import importlib
import sys

# Subcommand -> module with ``main(argv) -> int``; imported on use, so ``--help`` is instant.
COMMANDS = {
    "demo": ("multimodal.commands.demo", "the recipe search page on Recipes5k, in one command"),
    "eval": ("multimodal.commands.eval", "recall of a model on a data set, both directions"),
    "embed": ("multimodal.commands.embed", "embed a data set to .npy files plus metadata"),
    "train": ("multimodal.commands.train", "fine-tune with a contrastive loss and hard negatives"),
    "index": ("multimodal.commands.index", "load a data set into Qdrant (incremental, resumable)"),
    "search": ("multimodal.commands.search", "search a collection: text, image, or a mix"),
    "serve": ("multimodal.commands.serve", "the search page for an indexed collection"),
}

USAGE = "usage: multimodal {" + ",".join(COMMANDS) + "} [options]  (multimodal COMMAND --help)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        for name, (_, summary) in COMMANDS.items():
            print(f"  {name:<8} {summary}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"multimodal: unknown command {name!r}\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
