"""Writing files so that a reader, or a run killed half-way, sees the old file or the new one."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a staging path beside ``path``; when the block ends, it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".partial")
    yield staging
    staging.replace(path)


def write_json(path: str | Path, payload: dict) -> Path:
    with atomic_path(path) as staging:
        staging.write_text(json.dumps(payload, indent=2) + "\n")
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as staging, open(staging, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)
