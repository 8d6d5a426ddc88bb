"""``open_store``: the one place that picks a store, the embedded one or a server.

The interface is :class:`indexer.store.Store`; this module sits above both implementations
(as qdrant-client's ``QdrantClient`` sits above its local and remote clients), so neither
they nor the interface import it.

    >>> with open_store() as store:  # Qdrant Edge in the default folder
    ...     store.collections()
    >>> open_store(url="http://localhost:6333")  # a Qdrant server
"""

from __future__ import annotations

import os
from pathlib import Path

from indexer.edge import EdgeStore
from indexer.store import Store
from multimodal.paths import default_store_path


def open_store(
    path: str | Path | None = None,
    url: str | None = None,
    api_key_env: str = "QDRANT_API_KEY",
    grpc: bool = False,
) -> Store:
    """The embedded store at ``path`` (default :func:`default_store_path`), or the server at
    ``url`` (``:memory:`` for qdrant-client's in-process mode)."""
    if url is not None and path is not None:
        raise ValueError("give --store PATH or --qdrant-url URL, not both")
    if url is not None:
        from indexer.server import ServerStore  # qdrant-client: imported by those who use it

        return ServerStore(url, api_key=os.environ.get(api_key_env) or None, grpc=grpc)
    return EdgeStore(Path(path) if path is not None else default_store_path())
