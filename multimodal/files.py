"""Reading only regular files, and writing files so that a reader, or a run killed half-way,
sees the old file or the new one."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

SPECIAL_FILES = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFile(OSError):
    """A path that names a pipe, a device or a socket: reading one can block forever."""


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (a symlink to one included).

    A named pipe, a device or a socket raises :class:`NotARegularFile` without being opened
    (opening a FIFO waits for a writer; reading a device may never end), a directory
    :class:`IsADirectoryError`; the type is checked again on the opened file, so a swap in
    between cannot slip through.
    """
    _refuse_special(path, os.stat(path).st_mode)
    # O_NONBLOCK: should the path become a FIFO after the check, the open does not wait.
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        _refuse_special(path, os.fstat(descriptor).st_mode)
    except OSError:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def _refuse_special(path: str | Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    kind = next((name for test, name in SPECIAL_FILES if test(mode)), "a special file")
    raise NotARegularFile(errno.EINVAL, f"is {kind}, not a regular file", str(path))


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
