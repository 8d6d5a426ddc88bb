"""The code stays readable in pieces: no module of the product past 400 lines, no function
past 60 (split by concept when one grows). The import layers are import-linter's job
(``lint-imports``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("multimodal", "indexer", "ui")
MODULE_LINES, FUNCTION_LINES = 400, 60


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_module_and_function_sizes(path):
    source = path.read_text()
    lines = len(source.splitlines())
    assert lines <= MODULE_LINES, f"{path.name} has {lines} lines: split it by concept"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > FUNCTION_LINES
    ]
    assert not long, f"{path.name}: functions past {FUNCTION_LINES} lines: {long}"
