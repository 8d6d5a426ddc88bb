"""The manual agrees with the program: docs/commands.md lists exactly each command's options,
with the defaults the parsers use, and the ``multimodal --help`` listing it shows."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

from multimodal import cli

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "commands.md"
COMMANDS = cli.registry()


def documented() -> dict[str, dict[str, str]]:
    """{command: {option: default cell}} from the reference's tables."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in REFERENCE.read_text().splitlines():
        heading = re.fullmatch(r"## multimodal (\S+)", line)
        if heading:
            current = sections.setdefault(heading.group(1), {})
            continue
        row = re.match(r"\| `([^`]+)`(?: / `--no-[^`]+`)? \| ([^|]*) \|", line)
        if row and current is not None:
            current[row.group(1)] = row.group(2).strip()
    return sections


def parser_options(name: str) -> dict[str, argparse.Action]:
    parser = importlib.import_module(COMMANDS[name][0]).build_parser()
    options = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        strings = action.option_strings or [action.dest]
        if isinstance(action, argparse.BooleanOptionalAction):  # --tta / --no-tta: one row
            options[strings[0]] = action
        else:
            options[max(strings, key=len)] = action
    return options


def test_every_command_has_a_section():
    assert set(documented()) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_reference_lists_exactly_the_options_and_their_defaults(name):
    docs, options = documented()[name], parser_options(name)
    assert set(docs) == set(options), f"docs/commands.md, multimodal {name}"
    for option, cell in docs.items():
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if literal and options[option].default is not None:  # None: worked out at run time
            assert literal.group(1) == str(options[option].default), f"{name} {option}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_text(name):
    missing = [option for option, action in parser_options(name).items() if not action.help]
    assert not missing, f"multimodal {name}: no help for {missing}"


def test_help_listing_is_the_one_in_the_reference(capsys):
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert len(listing.splitlines()) == 1 + len(COMMANDS)
    assert f"$ multimodal --help\n{listing}```" in REFERENCE.read_text()
