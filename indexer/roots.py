"""Data roots and point ids: ids follow the data, not where it sits.

Every data root (the folder a data set's relative paths start from) has an id, recorded in
the collection's metadata: ``root_ids`` maps each root's path to its id, beside ``roots``, the
paths themselves (the page serves photos from them). A point's id is UUID5 of its root's id
and its path relative to the root (:func:`point_id`). A root seen for the first time is known
by its absolute path, the string every point id was derived from before roots had ids, so the
collections built then keep their ids.

A root path the collection does not know, whose items (same relative path, same content hash)
are found under a recorded root whose folder is gone, is that root moved or renamed:
:func:`link_roots` gives the new path the old root's id, rewrites the ``root`` of its points
to the new path (and whatever else the caller says follows the folder, such as the data-set
name a folder's name gives) and records the new path in place of the old one. Nothing is
embedded again,
and ``--prune`` then works on the new path. Each step can be repeated: a run killed between
them re-links on the next run, because the match is made by id, not by the stored path.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from indexer.store import SearchFilter, Store

ID_NAMESPACE = uuid.UUID("8f0b7d4e-5d1c-4f43-9d55-6a1f0c2f7b10")  # this project's ids
RETRIEVE_CHUNK = 512
# Share of the smaller side (the folder's items, the gone root's points) that must be found
# unchanged for the folder to be taken as that root moved: most of it, so that a few edits,
# additions or deletions on the way still re-link.
RELINK_SHARE = 0.5


def point_id(root_id: str | None, key: str) -> str:
    """The same item always gets the same id, so a rerun overwrites instead of duplicating."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{root_id or ''}\n{key}"))


def recorded_root_ids(metadata: dict) -> dict[str, str]:
    """The collection's root ids by path; a root recorded before roots had ids (in ``roots``
    only) is known by its path."""
    ids = {root: root for root in metadata.get("roots", [])}
    ids.update(metadata.get("root_ids") or {})
    return ids


@dataclass
class RootLinks:
    """What :func:`link_roots` found: every root's id, and the roots it re-linked."""

    ids: dict[str, str]  # root path -> id: the recorded roots (moved ones at their new path)
    moved: dict[str, str] = field(default_factory=dict)  # old path -> new path, re-linked now
    relinked: int = 0  # points whose ``root`` was rewritten to the new path


def link_roots(
    store: Store,
    collection: str,
    contents: dict[str, dict[str, str]],
    payloads: dict[str, dict] | None = None,
) -> RootLinks:
    """The id of each root in ``contents`` (root path -> {item key: content hash}), a root
    not recorded yet either re-linked as a moved one or recorded as new (see the module
    doc); the collection's metadata is brought up to date. ``payloads`` (root path ->
    fields) is written, with ``root``, on the points of a root re-linked to that path.

    >>> link_roots(store, "photos", {"/data/b": {"cat.jpg": "9f86d0..."}}).moved
    {'/data/a': '/data/b'}
    """
    recorded = recorded_root_ids(store.metadata(collection))
    links = RootLinks(dict(recorded))
    for root in sorted(set(contents) - set(recorded)):
        old = _moved_from(store, collection, links.ids, contents[root])
        if old is None:
            links.ids[root] = _unused_id(root, links.ids.values())
            continue
        links.relinked += store.count(collection, SearchFilter(root=old))
        payload = {**(payloads or {}).get(root, {}), "root": root}
        store.set_payload(collection, payload, SearchFilter(root=old))
        links.ids[root] = links.ids.pop(old)
        links.moved[old] = root
    if links.ids != recorded:
        store.update_metadata(collection, {"roots": sorted(links.ids), "root_ids": links.ids})
    return links


def _moved_from(
    store: Store, collection: str, ids: dict[str, str], items: dict[str, str]
) -> str | None:
    """The recorded root whose folder is gone and whose points match the most ``items``, if
    they match at least :data:`RELINK_SHARE` of that root's points: a folder holding a few
    of a gone root's photos is new data, not the root moved."""
    best, best_matched = None, 0
    for old, old_id in ids.items():
        if Path(old).exists():
            continue
        matched = _matching(store, collection, old_id, items)
        points = store.count(collection, SearchFilter(root=old))
        needed = max(1, math.ceil(RELINK_SHARE * points))
        if matched >= needed and matched > best_matched:
            best, best_matched = old, matched
    return best


def _matching(store: Store, collection: str, root_id: str, items: dict[str, str]) -> int:
    """How many ``items`` (key -> content hash) the collection holds, unchanged, under the
    root of ``root_id``."""
    wanted = {point_id(root_id, key): digest for key, digest in items.items()}
    stored = stored_hashes(store, collection, list(wanted))
    return sum(1 for id_, digest in stored.items() if digest == wanted[id_])


def stored_hashes(store: Store, collection: str, ids: Sequence[str]) -> dict[str, str]:
    """The content hash of each of ``ids`` the collection holds, read in chunks."""
    stored: dict[str, str] = {}
    for start in range(0, len(ids), RETRIEVE_CHUNK):
        chunk = list(ids[start : start + RETRIEVE_CHUNK])
        for point in store.retrieve(collection, chunk, fields=["content_hash"]):
            stored[point.id] = point.payload.get("content_hash", "")
    return stored


def _unused_id(root: str, used: Iterable[str]) -> str:
    """The id of a new root: its path, unless a root moved away from that path took it with
    it (then the path with the first free ``#N``), so no two roots share an id."""
    taken = set(used)
    candidate, n = root, 1
    while candidate in taken:
        candidate, n = f"{root}#{n}", n + 1
    return candidate
