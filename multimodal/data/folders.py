"""Which files of a data folder are read, and why each other one is not.

:func:`list_folder` walks a folder of photos once: a file with a photo suffix (in any letter
case) is a photo, a ``.txt`` file beside a photo of the same name is its caption, and every
other file is :class:`Skipped` with its reason, so nothing in the folder is left out in
silence. A hidden file or folder (its name starts with a dot) is one skipped entry; nothing
below a hidden folder is read.

Links never take a read outside the data folder unless the caller follows them
(``--follow-links``; :func:`link_problem`): a photo or a caption that is a link to a file
outside, or that lies in a linked folder outside, is not read. A link that stays inside works;
a linked folder inside is read once, by its own path.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from multimodal.data.images import is_photo_name

CAPTION_SUFFIX = ".txt"
LINKS_OUTSIDE = "links outside the data folder; --follow-links reads it"
HIDDEN = "hidden (its name starts with a dot): not read"
UNUSED_TEXT = "not a photo, nor the caption of one (no photo of the same name beside it)"


@dataclass
class Photo:
    path: Path  # the photo below the data folder (a link's own path, not its target)
    caption: Path | None = None  # the .txt file beside it with the same name, if any
    problem: str | None = None  # why neither is read (a link that leaves the data folder)


@dataclass
class Skipped:
    path: Path  # a file or folder below the data folder that is not read
    reason: str


@dataclass
class Listing:
    photos: list[Photo]  # sorted by path
    skipped: list[Skipped]  # sorted by path


def link_problem(path: str | Path, root: str | Path, follow_links: bool = False) -> str | None:
    """Why ``path`` is not read: a link (the file itself or a folder on its way) takes it
    outside the data folder ``root``. None when it stays inside, when ``follow_links``, or
    when ``path`` itself names a place outside ``root`` (a manifest may name a photo by an
    absolute path: that is its author's choice, not a link's doing).

    >>> link_problem("/data/photos/a.jpg", "/data/photos") is None  # no link: inside
    True
    """
    if follow_links:
        return None
    root = os.path.realpath(root)
    if not _within(os.path.normpath(os.path.join(root, path)), root):
        return None
    try:
        target = os.path.realpath(path)
    except ValueError as err:  # a NUL in the name, a lone surrogate
        return f"not a valid file name ({err})"
    return None if _within(target, root) else LINKS_OUTSIDE


def list_folder(folder: str | Path, follow_links: bool = False) -> Listing:
    """The photos below ``folder``, each with its caption file, and every other file or
    folder there with the reason it is not read."""
    folder = Path(os.path.realpath(folder))
    skipped: list[Skipped] = []
    photos: list[Photo] = []
    texts: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for directory, names in _walk(folder, follow_links, skipped):
        for name in names:
            path = directory / name
            if name.startswith("."):
                skipped.append(Skipped(path, HIDDEN))
            elif is_photo_name(name):
                photos.append(Photo(path))
            elif path.suffix.lower() == CAPTION_SUFFIX:
                texts[directory, path.stem].append(path)
            else:
                skipped.append(Skipped(path, _not_a_photo(path)))
    skipped += _pair_captions(photos, texts)
    for photo in photos:
        photo.problem = _photo_problem(photo, folder, follow_links)
    return Listing(sorted(photos, key=_by_path), sorted(skipped, key=_by_path))


def _walk(folder: Path, follow_links: bool, skipped: list[Skipped]) -> Iterator:
    """``(folder, its file names)`` for each folder that is read below ``folder``; a hidden
    folder, a linked folder outside (unless ``follow_links``) and one that cannot be listed
    go to ``skipped``."""

    def unlisted(err: OSError) -> None:
        skipped.append(Skipped(Path(err.filename), f"cannot list it: {err.strerror or err}"))

    read = {str(folder)}  # real paths of the folders read: a loop of links ends there
    for top, folders, names in os.walk(folder, onerror=unlisted, followlinks=follow_links):
        here = Path(top)
        folders[:] = [
            name
            for name in sorted(folders)
            if _descend(here / name, folder, follow_links, read, skipped)
        ]
        yield here, sorted(names)


def _descend(path: Path, folder: Path, follow_links: bool, read: set, skipped: list) -> bool:
    """Whether to read the folder at ``path``: not a hidden one, nor one read already (a loop
    of links), nor one a link leads to inside ``folder`` (it is read by its own path); one a
    link leads to outside only when ``follow_links``."""
    if path.name.startswith("."):
        skipped.append(Skipped(path, HIDDEN))
        return False
    target = os.path.realpath(path)
    if target in read or (target != str(path) and _within(target, str(folder))):
        return False
    if not _within(target, str(folder)) and not follow_links:
        skipped.append(Skipped(path, LINKS_OUTSIDE))
        return False
    read.add(target)
    return True


def _pair_captions(photos: list[Photo], texts: dict) -> list[Skipped]:
    """Give each photo the ``.txt`` file beside it with the same name (``name.txt`` before
    ``name.TXT``); the text files no photo takes are skipped, with the reason."""
    for photo in photos:
        found = texts.get((photo.path.parent, photo.path.stem))
        if found:
            photo.caption = min(found, key=lambda path: (path.suffix != CAPTION_SUFFIX, path))
    taken = {photo.caption for photo in photos}
    return [
        Skipped(path, UNUSED_TEXT)
        for paths in texts.values()
        for path in paths
        if path not in taken
    ]


def _photo_problem(photo: Photo, folder: Path, follow_links: bool) -> str | None:
    """Why neither the photo nor its caption is read: one of them is a link that leaves
    ``folder``."""
    if _leaves(photo.path, folder, follow_links):
        return LINKS_OUTSIDE
    if photo.caption is not None and _leaves(photo.caption, folder, follow_links):
        return f"its caption {photo.caption.name} {LINKS_OUTSIDE}"
    return None


def _leaves(path: Path, folder: Path, follow_links: bool) -> bool:
    """Whether ``path`` (a file listed in ``folder``) is a link that leaves it."""
    return path.is_symlink() and link_problem(path, folder, follow_links) == LINKS_OUTSIDE


def _not_a_photo(path: Path) -> str:
    suffix = path.suffix.lower()
    return f"not a photo (unknown suffix {suffix})" if suffix else "not a photo (no suffix)"


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _by_path(entry: Photo | Skipped) -> Path:
    return entry.path
