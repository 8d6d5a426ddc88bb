"""Point ids as the store spells them, parsed in one place: from a query term, a liked or
disliked result, a URL, a request.

    >>> point_id(" 7A049D7A-0B52-5B83-9C36-1E2C7D8F0A11 ")
    '7a049d7a-0b52-5b83-9c36-1e2c7d8f0a11'
"""

from __future__ import annotations

import uuid

MAX_FEEDBACK = 100  # liked plus disliked points in one search


class UnknownPoint(LookupError, ValueError):
    """A point id the collection does not hold, or that is not a point id at all (a
    ValueError too: the caller's mistake)."""

    def __init__(self, value, collection: str | None = None):
        where = f" in collection {collection!r}" if collection else ""
        shown = str(value)[:80]
        shown = shown if _is_uuid(shown) else repr(shown)  # a stranger's text, quoted
        super().__init__(f"no point {shown}{where}")


def point_id(value, collection: str | None = None) -> str:
    """``value`` as the store spells a point id; anything that is not a UUID names no point
    (:class:`UnknownPoint`)."""
    try:  # point ids are UUIDs; a server store would answer anything else with an error
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise UnknownPoint(value, collection) from None


def feedback(like, unlike, collection: str | None = None) -> tuple[list[str], list[str]]:
    """Liked and disliked point ids as the store spells them, each once; one ValueError for
    too many, or for a point both liked and disliked."""
    if len(like or ()) + len(unlike or ()) > MAX_FEEDBACK:
        raise ValueError(f"at most {MAX_FEEDBACK} liked and disliked results in one search")
    like = list(dict.fromkeys(point_id(i, collection) for i in like or ()))
    unlike = list(dict.fromkeys(point_id(i, collection) for i in unlike or ()))
    both = set(like) & set(unlike)
    if both:
        raise ValueError(f"point {sorted(both)[0]} is both liked and disliked: pick one")
    return like, unlike


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
