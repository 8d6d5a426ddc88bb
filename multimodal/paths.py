"""Where the product keeps its data: models, downloaded data sets, the embedded store."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$MULTIMODAL_HOME``, else ``$XDG_DATA_HOME/multimodal`` (``~/.local/share/multimodal``)."""
    home = os.environ.get("MULTIMODAL_HOME")
    if home:
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser() / "multimodal"
