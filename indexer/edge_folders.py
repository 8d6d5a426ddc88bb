"""What a Qdrant Edge collection folder may hold besides its shard, and how it is cleaned.

``<collection>/shard`` is the shard. An optimize builds segments in
``shard/temp_segments/segment_builder_*``; adding the BM25 vector copies the shard into
``shard.upgrade`` and swaps the two by renames, setting the old one aside as ``shard.old``.
A process killed in the middle leaves some of these behind; the functions here put the
folder right when the shard is next opened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

UPGRADE = "shard.upgrade"  # beside "shard": its copy with the bm25 vector, renamed into place
OLD = "shard.old"  # "shard" while the upgraded copy takes its place


def restore_set_aside(folder: Path) -> None:
    """A run killed while adding the words swapped shards may leave the old shard
    set aside and none in place: put it back (the upgrade is made again)."""
    if (folder / OLD).exists() and not (folder / "shard").exists():
        (folder / OLD).rename(folder / "shard")


def remove_stale_copies(folder: Path) -> None:
    """Delete what a killed adding the words left beside the shard: a half-made
    upgrade, or the old shard once the new one is in place. Called once the shard is loaded:
    its lock is ours, so no other process is making either."""
    for leftover in (folder / UPGRADE, folder / OLD):
        shutil.rmtree(leftover, ignore_errors=True)


def remove_stale_builders(shard: Path) -> None:
    """Delete the segments an optimize was building when its process died (Qdrant Edge builds
    them in ``shard/temp_segments/segment_builder_*`` and nothing else removes them). Called
    once the shard is loaded: its lock is ours, and this process optimizes only when asked, so
    any builder there is stale."""
    for builder in (shard / "temp_segments").glob("segment_builder_*"):
        shutil.rmtree(builder, ignore_errors=True)
