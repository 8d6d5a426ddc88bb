"""The page's layout: a header, the filters, the three tabs, and the events that wire them to a
:class:`ui.app.RecipeApp`'s handlers (which :func:`ui.app.launch` serves)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.components.label import LabelConfidence, LabelData

from indexer.store import MODES
from indexer.trust import DEFAULT_MIN_SCORE
from multimodal.suggestions import SUGGESTIONS
from ui.cards import filter_choices
from ui.duplicates_view import duplicates_tab
from ui.feedback import feedback_controls, searched_point, searched_words
from ui.map_view import map_tab
from ui.region import NO_REGION, RegionPicker, clear_region

CSS = """
.recipe-card {min-height: 12rem}
footer {display: none !important}
"""
MODE_HELP = "dense: the model's sense of the words · sparse: the exact words (BM25) · hybrid: both"


def photo_input(**options) -> gr.Image:
    """The page's photo input: a ``gr.Image`` whose handler gets the uploaded file's path,
    unopened. Left alone, ``gr.Image`` decodes the upload before any handler runs, so a bomb
    or a 30000x1 strip would be decoded before our limits apply and a broken file would end
    in Gradio's generic error; the handler's :func:`ui.uploads.read_upload_file` checks the
    header first, decodes within the process's budget, and says what is wrong. (An instance
    override, not a subclass: Gradio writes a ``.pyi`` file beside any module that defines a
    component class.)"""
    photo = gr.Image(type="filepath", image_mode=None, **options)
    photo.preprocess = _upload_path
    return photo


def _upload_path(payload) -> str | None:
    return None if payload is None or payload.path is None else str(payload.path)


def ranked_label(**options) -> gr.Label:
    """A ``gr.Label`` that shows its ``{name: share}`` in the order given: the suggested
    ingredients are ranked by how specific they are, each shown with its share (a plain
    ``gr.Label`` sorts by the number it shows). An instance override, as in
    :func:`photo_input`."""
    label = gr.Label(**options)
    label.postprocess = _in_given_order
    return label


def _in_given_order(value: dict[str, float] | None) -> LabelData | dict:
    if not value:
        return {}
    confidences = [LabelConfidence(label=name, confidence=share) for name, share in value.items()]
    return LabelData(label=confidences[0].label, confidences=confidences)


def build_blocks(app) -> gr.Blocks:
    """The page: a header, the filters, the three tabs, and the events that wire them."""
    searcher = app.searcher
    model = searcher.metadata["model"]["name"]
    views = ", photos seen as 4 views (TTA)" if searcher.encoder.tta else ""
    with gr.Blocks(title="Recipe search") as blocks:
        gr.Markdown(
            f"# Recipe search\nA photo finds its recipe and ingredients; words find the "
            f"dishes. Collection **{searcher.collection}**, model `{Path(model).name}`{views}."
        )
        with gr.Accordion("Filters", open=False):
            dishes = gr.Dropdown(
                filter_choices(app.labels, app.tags),
                multiselect=True,
                label="Dish type or label (labels: multimodal tag's fields, as field: label)",
                elem_id="dish",
            )
            with gr.Row():
                with_text = gr.Textbox(label="Must contain (comma-separated)", elem_id="with")
                without_text = gr.Textbox(label="Must not contain", elem_id="without")
            collapse = gr.Checkbox(
                True,
                label="One photo per picture (copies folded: +N similar)",
                elem_id="collapse",
            )
            calibrated = app.service.judge.calibrated
            min_score = gr.Slider(
                0,
                1,
                value=DEFAULT_MIN_SCORE if calibrated else 0,
                step=0.05,
                label="Least match probability (hits below it are not shown; 0: every hit)",
                visible=calibrated,  # a model without a calibration gives no probability
                elem_id="min-score",
            )
        filters = [dishes, with_text, without_text]
        # what the page's own events send after their inputs: the switch, the cut, and that
        # they are the page's (their handlers then also return the verdict)
        extras = [collapse, min_score, gr.State(True)]
        marks = gr.JSON(visible=False)  # each search's place on the map (the Map tab's star)
        with gr.Tab("Find dishes from words", id="words"):
            _words_tab(app, filters, extras, marks)
        with gr.Tab("What's this dish?", id="photo"):
            _photo_tab(app, filters, extras, marks)
        with gr.Tab("Map", id="map"):
            map_tab(blocks, app.map_view, marks)
        with gr.Tab("Duplicates", id="duplicates"):
            duplicates_tab(app)
        # a watched folder's new dish types and labels, at each page load
        blocks.load(app.filter_choices, None, dishes, api_visibility="private")
    return blocks


def _words_tab(app, filters: list, extras: list, marks: gr.JSON) -> None:
    """Words -> photos in a search mode, with an optional weighted photo, the clicked recipe,
    "more like this" and like / dislike."""
    query, search, mode, diversity = _words_controls(app)
    with gr.Accordion("Mix in a photo (weighted)", open=False), gr.Row():
        mix_image = photo_input(label="Photo", sources=["upload", "clipboard"], height=180)
        mix_weight = gr.Slider(-1, 2, value=1, step=0.1, label="Photo weight")
    verdict = gr.Markdown(elem_id="verdict")  # "no good match" and the nearest miss
    gallery = gr.Gallery(
        label="Dishes (match probability · title · ingredients)",
        columns=4,
        height=430,
        elem_id="gallery",
    )
    hits = gr.JSON(visible=False)  # the results with payloads, for "more like this" and the API
    chosen = gr.Textbox(visible=False)  # the clicked point's id; the API passes one
    searched = gr.JSON({}, visible=False)  # what the shown results' search asked, for marks
    inputs = [query, mix_image, mix_weight, *filters, mode, diversity]
    outputs = [gallery, hits, marks]
    with gr.Row():
        recipe = gr.Markdown(elem_classes="recipe-card", elem_id="recipe")
        with gr.Column():
            more = gr.Button("More like this", elem_id="more")
            feedback_controls(app, chosen, searched, inputs, outputs, extras, verdict)
    gr.Examples(
        [
            ["chocolate cake with strawberries"],
            ["tortillas, beef, salsa, cheese"],
            ["spaghetti, tomato, basil"],
            ['"2:apple pie" - cinnamon'],
        ],
        [query],
        label="Example queries",
    )
    asked, shown = [*inputs, *extras], [*outputs, verdict]
    page = {"api_visibility": "private"}
    for event, name in ((search.click, "page_text_to_image"), (query.submit, "page_submit")):
        done = event(app.text_to_image, asked, shown, api_name=name, **page)
        done.then(searched_words, [query], [searched], **page)
    named_endpoint(app.text_to_image, inputs, outputs, "text_to_image")
    gallery.select(app.select, [hits], [recipe, chosen], api_visibility="private")
    more_inputs = [chosen, *filters, diversity]
    more.click(
        app.more_like_this,
        [*more_inputs, *extras],
        shown,
        api_name="page_more_like_this",
        **page,
    ).then(searched_point, [chosen], [searched], **page)
    named_endpoint(app.more_like_this, more_inputs, outputs, "more_like_this")


def _words_controls(app):
    """The words, the Search button, how the words are matched and the diversity."""
    with gr.Row():
        query = gr.Textbox(
            label="Ingredients, a dish name or a description",
            placeholder='e.g. "strawberries, cream, sugar" or "2:tacos - beef"',
            elem_id="query",
            scale=4,
        )
        search = gr.Button("Search", variant="primary", elem_id="search", scale=1)
    with gr.Row():
        modes = MODES if app.searcher.words is not None else ("dense",)  # words not indexed
        mode = gr.Radio(
            list(modes), value=app.mode, label="Match the words", info=MODE_HELP, elem_id="mode"
        )
        diversity = gr.Slider(
            0,
            1,
            value=app.diversity,
            step=0.05,
            elem_id="diversity",
            label="Diversity (0: by score alone; more: fewer look-alikes)",
        )
    return query, search, mode, diversity


def _photo_tab(app, filters: list, extras: list, marks: gr.JSON) -> None:
    """A photo -> what it looks like, the nearest recipes, suggested ingredients and similar
    dishes."""
    with gr.Row():
        photo = photo_input(
            label="Photo of a dish (upload, paste or drop)",
            sources=["upload", "clipboard"],
            height=300,
            elem_id="photo",
        )
        with gr.Column():
            looks_like = gr.Label(
                label="Looks like (the nearest recipes' dish types)", elem_id="looks-like"
            )
            suggested = ranked_label(
                num_top_classes=SUGGESTIONS,
                elem_id="suggested",
                label="Suggested ingredients (most specific first; share of the votes)",
            )
    box = _region_controls(app, photo)
    identify = gr.Button("Find recipes", variant="primary", elem_id="identify")
    verdict = gr.Markdown(elem_id="photo-verdict")
    recipes = gr.Dataframe(
        headers=["rank", "score", "title", "dish type", "ingredients"],
        label="Nearest recipes",
        wrap=True,
        elem_id="recipes",
    )
    similar = gr.Gallery(label="Similar dishes", columns=6, height=240, elem_id="similar")
    if app.examples:
        gr.Examples([[str(p)] for p in app.examples], [photo], label="Example photos")
    found = [recipes, suggested, similar, marks, looks_like]
    identify.click(
        app.image_to_text,
        [photo, *filters, *extras, box],
        [*found, verdict],
        api_name="page_image_to_text",
        api_visibility="private",
    )
    named_endpoint(app.image_to_text, [photo, *filters], found, "image_to_text")


def _region_controls(app, photo: gr.Image) -> gr.Textbox:
    """Two clicks on the photo draw the region searched (:mod:`ui.region`); returns the
    hidden box the search reads."""
    picker = RegionPicker(app.searcher.max_pixels)
    box = gr.Textbox(visible=False, elem_id="box")
    with gr.Row():
        note = gr.Markdown(NO_REGION, elem_id="region-note")
        preview = gr.Image(label="Region searched", height=120, interactive=False, elem_id="region")
        whole = gr.Button("Whole photo", size="sm", elem_id="whole-photo")
    drawn = [box, preview, note]
    page = {"api_visibility": "private"}
    photo.select(picker.pick, [photo, box], drawn, **page)
    photo.change(clear_region, None, drawn, **page)
    whole.click(clear_region, None, drawn, **page)
    return box


def named_endpoint(handler, inputs: list, outputs: list, name: str) -> None:
    """``handler`` as the named endpoint ``name`` with the inputs it has always taken, on a
    hidden trigger: the page's own event also sends the "One photo per picture" switch, and
    a client of Gradio's HTTP protocol must send every input an event has (so a new one
    would break it). Through the endpoint, copies of one picture are folded, as the page
    does by default; the JSON API's ``collapse`` turns that off."""
    trigger = gr.Button(visible=False)
    trigger.click(handler, inputs, outputs, api_name=name)
