"""Where the product keeps its data: models, downloaded data sets, the embedded store."""

from __future__ import annotations

import os
import re
from pathlib import Path


def data_home() -> Path:
    """``$MULTIMODAL_HOME``, else ``$XDG_DATA_HOME/multimodal`` (``~/.local/share/multimodal``)."""
    home = os.environ.get("MULTIMODAL_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser() / "multimodal"


def default_store_path() -> Path:
    """The embedded store's folder: ``$MULTIMODAL_HOME/qdrant`` (see :func:`data_home`)."""
    return data_home() / "qdrant"


MARKS_FOLDER = ".marks"  # in an embedded store's folder; the dot keeps it from the collections


def marks_path(collection: str, store: str | Path | None = None) -> Path:
    """Where collection ``collection``'s Good / Not this marks are kept: beside the embedded
    store at folder ``store`` (default :func:`default_store_path`), or, for a Qdrant server
    (``store`` an ``http(s)://`` URL or ``:memory:``), under ``$MULTIMODAL_HOME/marks/HOST``
    on the machine that records them."""
    text = str(store) if store is not None else ""
    if text.startswith(("http://", "https://")) or text == ":memory:":
        host = re.sub(r"[^A-Za-z0-9._-]+", "_", text.split("://")[-1]).strip("_") or "memory"
        return data_home() / "marks" / host / f"{collection}.jsonl"
    root = Path(store).expanduser() if store is not None else default_store_path()
    return root / MARKS_FOLDER / f"{collection}.jsonl"
