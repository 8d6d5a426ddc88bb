"""Like / dislike on the page: the results a person marked good or bad, and the controls that
mark them and search again with the marks (Qdrant's recommendation, through
:meth:`indexer.search.Searcher.nearest`; the text query stays a positive example).

The marks are point ids kept in the page (hidden JSON components, not ``gr.State``, so the
named API endpoint ``/feedback`` takes them as arguments too)::

    client.predict("apple pie", None, 1, [], "", "", "hybrid", 0.0, [liked_id], [],
                   api_name="/feedback")
"""

from __future__ import annotations

import gradio as gr

NO_MARKS = "No marks yet: click a photo, then **👍 Good** or **👎 Not this**."


def point_ids(value, what: str) -> list[str]:
    """The point ids of a mark list as the page or an API caller sends it: a list of ids,
    a comma-separated string, or nothing; each id once, in order."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of point ids, not {type(value).__name__}")
    return list(dict.fromkeys(v.strip() for v in value if v.strip()))


def mark(point_id: str, liked, disliked, good: bool) -> tuple[list[str], list[str], str]:
    """``point_id`` added to the liked (``good``) or disliked ids, and taken out of the
    other list: a result is either good or bad. Returns both lists and their summary."""
    liked, disliked = point_ids(liked, "liked"), point_ids(disliked, "disliked")
    if point_id:
        chosen, other = (liked, disliked) if good else (disliked, liked)
        if point_id in other:
            other.remove(point_id)
        if point_id not in chosen:
            chosen.append(point_id)
    return liked, disliked, marks_text(liked, disliked)


def marks_text(liked, disliked, kept: bool = False) -> str:
    """The marks in a line: "👍 liked 2 · 👎 disliked 1"; ``kept``: the last one was saved
    for training."""
    if not liked and not disliked:
        return NO_MARKS
    return (
        f"👍 liked {len(liked)} · 👎 disliked {len(disliked)} "
        "(marked photos are left out of the results)"
        + (" · saved for `multimodal train --marks`" if kept else "")
    )


def searched_words(words) -> dict:
    """What a words search asked, for the marks made on its results (:mod:`indexer.marks`)."""
    return {"text": words.strip()} if isinstance(words, str) and words.strip() else {}


def searched_point(point_id) -> dict:
    """What "more like this" asked: the stored point it started from."""
    return {"point": point_id} if point_id else {}


def feedback_controls(
    app, chosen, searched, search_inputs: list, outputs: list, extras, verdict
) -> None:
    """The like / dislike buttons, the marks, "Clear marks" and "Search again with my
    marks", wired to ``app`` (a :class:`ui.app.RecipeApp`). ``chosen`` holds the clicked
    result's id, ``searched`` what the results' search asked (each mark is kept with it for
    ``multimodal train --marks``); ``search_inputs`` are the words search's inputs,
    ``outputs`` its outputs, ``extras`` what the page's own events add (the switch that folds
    copies of one picture, the least match probability, the page's flag), ``verdict`` where
    "no good match" shows."""
    with gr.Row():
        like = gr.Button("👍 Good", elem_id="like", size="sm")
        dislike = gr.Button("👎 Not this", elem_id="dislike", size="sm")
        clear = gr.Button("Clear marks", elem_id="clear-marks", size="sm")
    marks = gr.Markdown(NO_MARKS, elem_id="marks")
    again = gr.Button("Search again with my marks", variant="primary", elem_id="again")
    liked = gr.JSON([], visible=False)  # point ids; the API passes lists of its own
    disliked = gr.JSON([], visible=False)
    marked = [liked, disliked, marks]
    marking = [chosen, liked, disliked, searched]
    like.click(app.like, marking, marked, api_visibility="private")
    dislike.click(app.dislike, marking, marked, api_visibility="private")
    clear.click(lambda: ([], [], NO_MARKS), None, marked, api_visibility="private")
    asked = [*search_inputs, liked, disliked, *extras]
    shown = [*outputs, verdict]
    again.click(app.feedback, asked, shown, api_name="page_feedback", api_visibility="private")
    named = gr.Button(visible=False)  # the endpoint's inputs as they have always been
    named.click(app.feedback, [*search_inputs, liked, disliked], outputs, api_name="feedback")
