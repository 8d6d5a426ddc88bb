"""The page's Duplicates tab: the collection's groups of photos that are one picture, side by
side (what ``multimodal duplicates`` lists, :mod:`indexer.duplicates`)."""

from __future__ import annotations

import threading
from html import escape

import gradio as gr

from indexer.duplicates import DEFAULT_THRESHOLD, find_duplicates
from indexer.store import StoreError
from ui.photos import page_root_url, photo_url

SHOWN = 60  # groups drawn on the page; the command line lists them all


def duplicates_tab(app) -> None:
    """A button that finds the groups and the groups drawn, each a row of its photos."""
    find = gr.Button("Find duplicates", variant="primary", elem_id="find-duplicates")
    groups = gr.HTML(elem_id="duplicates")

    def found(request: gr.Request):
        return duplicate_groups(app.searcher, request, app.changes)

    find.click(found, None, groups, api_name="duplicates")


_found: dict[tuple, list] = {}  # (searcher, collection, points, changes) -> groups
_finding = threading.Lock()  # one search of the whole collection at a time, whoever asks


def duplicate_groups(searcher, request: gr.Request | None = None, changes: int = 0) -> str:
    """The groups as HTML: a line saying how many, then per group its kind and its photos.
    The groups are found once per collection size and ``changes`` (the page's count of the
    changes a watched folder made, as a photo replaced keeps the size): a second click, or
    another visitor's, reuses them; and by one request at a time: the search reads every
    photo."""
    try:
        with _finding:
            size = searcher.store.count(searcher.collection)
            key = (id(searcher), searcher.collection, size, changes)
            if key not in _found:
                _found.clear()
                _found[key] = find_duplicates(searcher.store, searcher.collection)
            found = _found[key]
    except StoreError as err:
        raise gr.Error(str(err), print_exception=False) from None
    root = page_root_url(request)
    photos = sum(len(group.ids) for group in found)
    more = f"; the first {SHOWN} shown" if len(found) > SHOWN else ""
    rows = [
        f'<p id="duplicates-summary">{len(found)} groups, {photos} photos that are one picture '
        f"(threshold {DEFAULT_THRESHOLD}){more}</p>"
    ]
    for group in found[:SHOWN]:
        kind = "same bytes" if group.exact else f"similarity {group.similarity:.3f}"
        images = "".join(
            f'<img src="{escape(photo_url(point_id, root))}" style="height:120px;margin:2px">'
            for point_id in group.ids  # no path: the server's folders are not the browser's
        )
        rows.append(
            f'<div class="duplicate-group"><b>{len(group.ids)} photos, {kind}</b>'
            f"<div>{images}</div></div>"
        )
    return "\n".join(rows)
