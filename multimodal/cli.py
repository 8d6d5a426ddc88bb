"""The ``multimodal`` console command: ``multimodal SUBCOMMAND [options]``.

Each package owns its subcommands and lists them in a ``COMMANDS`` registry (name -> module
with ``main(argv) -> int``, one-line summary). The registries are found through the
``multimodal.commands`` entry point group declared in ``pyproject.toml``, so this dispatcher
imports nothing from the packages built on the library; a command's module is imported only
when it runs, so ``--help`` is instant.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

from multimodal.commands import COMMANDS as LIBRARY_COMMANDS

ENTRY_POINT_GROUP = "multimodal.commands"


def registry() -> dict[str, tuple[str, str]]:
    """Every installed command: the library's first, then each registered package's."""
    commands = dict(LIBRARY_COMMANDS)
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for entry_point in found:
        for name, entry in entry_point.load().items():
            commands.setdefault(name, entry)
    return commands


def usage(commands: dict[str, tuple[str, str]]) -> str:
    return "usage: multimodal {" + ",".join(commands) + "} [options]  (multimodal COMMAND --help)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = registry()
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(commands))
        width = max(map(len, commands))
        for name, (_, summary) in commands.items():
            print(f"  {name:<{width}} {summary}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"multimodal: unknown command {name!r}\n{usage(commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(commands[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
