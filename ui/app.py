"""The web page: Gradio Blocks over one :class:`indexer.search.Searcher`.

Three tabs: find dishes from words (text -> images, with "more like this"), recognise a dish
from a photo (image -> recipes, suggested ingredients, similar dishes), and a map of the
collection. Each search is also a named API endpoint, so ``gradio_client`` can call it::

    from gradio_client import Client
    Client("http://127.0.0.1:7860/").predict("tacos with salsa", ..., api_name="/text_to_image")
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import gradio as gr
from PIL import Image

from indexer.search import Searcher, Term, parse_query, vote_ingredients
from indexer.store import SearchFilter, Store, StoredPoint, StoreError
from multimodal.data.images import ImageLoadError, check_image_size, load_image
from multimodal.suggestions import SUGGESTIONS, VOTERS
from ui.map import MapProjection
from ui.photos import page_root_url, photo_routes, photo_url, public_payload

log = logging.getLogger(__name__)

MAX_UPLOAD = "10mb"
RESULTS = max(12, VOTERS)  # hits per list; the recipes shown include every one that votes


def refused(message: str) -> gr.Error:
    """An expected refusal (bad input): a readable message on the page, no traceback in the
    server's log."""
    return gr.Error(message, print_exception=False)


def photo_input(**options) -> gr.Image:
    """The page's photo input: a ``gr.Image`` whose handler gets the uploaded file's path,
    unopened. Left alone, ``gr.Image`` decodes the upload before any handler runs, so a bomb
    or a 30000x1 strip would be decoded before our limits apply and a broken file would end
    in Gradio's generic error; the handler's :func:`load_image` checks the header first and
    says what is wrong. (An instance override, not a subclass: Gradio writes a ``.pyi`` file
    beside any module that defines a component class.)"""
    photo = gr.Image(type="filepath", image_mode=None, **options)
    photo.preprocess = _upload_path
    return photo


def _upload_path(payload) -> str | None:
    return None if payload is None or payload.path is None else str(payload.path)


CSS = """
.recipe-card {min-height: 12rem}
footer {display: none !important}
"""


def example_photos(store: Store, collection: str, count: int = 6) -> list[Path]:
    """A few photos of different dish types from the collection (the val split when there
    is one), for one-click examples."""
    picked, seen = [], set()
    for spec in (SearchFilter(splits=["val"]), None):
        for record in store.scroll(collection, spec, ["image", "root", "label"], page=256):
            payload, path = record.payload, record.image_path
            if payload.get("label") in seen or path is None:
                continue
            if path.is_file():
                picked.append(path)
                seen.add(payload.get("label"))
            if len(picked) >= count:
                return picked
    return picked


class RecipeApp:
    """The page's handlers, as plain methods the tests call directly."""

    def __init__(self, searcher: Searcher, examples: list[Path] | None = None):
        self.searcher = searcher
        self.labels = searcher.labels()
        self.map = MapProjection.fit(searcher)
        self.examples = examples or []
        self._lock = threading.Lock()  # one model forward at a time; the store is thread-safe

    # -- handlers ------------------------------------------------------------------------

    def text_to_image(
        self,
        query,
        image,
        image_weight,
        dishes,
        with_text,
        without_text,
        request: gr.Request | None = None,
    ):
        """Photos for a text query, optionally mixed with a photo; gallery, hits, map. The
        query is text: a term naming a file is refused (photos come as uploads)."""
        try:
            terms = parse_query(query) if query and query.strip() else []
        except ValueError as err:
            raise refused(str(err)) from None
        if image is not None:
            terms.append(Term("image", self._checked(image), float(image_weight)))
        if not terms:
            raise refused("Type a dish or some ingredients (or add a photo) to search.")
        (hits,), vector = self._search(terms, ["image"], dishes, with_text, without_text)
        return (*_shown(hits, page_root_url(request)), self._map(vector, "text query"))

    def image_to_text(
        self, image, dishes, with_text, without_text, request: gr.Request | None = None
    ):
        """Recipes, suggested ingredients and similar dishes for an uploaded photo."""
        if image is None:
            raise refused("Upload, paste or drop a photo of a dish first.")
        terms = [Term("image", self._checked(image))]
        (recipes, similar), vector = self._search(
            terms, ["text", "image"], dishes, with_text, without_text
        )
        return (
            _recipe_rows(recipes),
            self._suggestions(recipes),
            _shown(similar, page_root_url(request))[0],
            self._map(vector, "photo"),
        )

    def more_like_this(
        self, point_id, dishes, with_text, without_text, request: gr.Request | None = None
    ):
        """Image -> image from a stored point (the one clicked in the gallery)."""
        if not point_id:
            raise refused("Click a photo in the results first.")
        (hits,), vector = self._search(
            [Term("point", point_id)], ["image"], dishes, with_text, without_text
        )
        return (*_shown(hits, page_root_url(request)), self._map(vector, "more like this"))

    def select(self, hits: list[dict], event: gr.SelectData):
        """The full recipe of the clicked result, and its id for "more like this"."""
        if not hits or event.index is None or event.index >= len(hits):
            return "", ""
        hit = hits[event.index]
        return recipe_markdown(hit), hit["id"]

    # -- helpers -------------------------------------------------------------------------

    def _search(self, terms, targets, dishes, with_text, without_text):
        """The query vector of ``terms`` and the hits in each of ``targets``."""
        search_filter = SearchFilter(
            labels=list(dishes or []),
            with_ingredients=_words(with_text),
            without_ingredients=_words(without_text),
        )
        try:
            with self._lock:
                prepared = self.searcher.prepare(terms)
            results = [
                self.searcher.nearest(prepared, target, RESULTS, search_filter)
                for target in targets
            ]
        except (ValueError, ImageLoadError, StoreError) as err:
            raise refused(str(err)) from None
        return results, prepared.vector

    def _checked(self, image) -> Image.Image:
        """The upload (a file path from :func:`photo_input`, or a PIL image when called
        directly) as an RGB image; anything unusable is one readable message on the page and
        one line in the server's log, not a traceback."""
        try:
            if isinstance(image, (str, Path)):
                return load_image(image, self.searcher.max_pixels)
            if isinstance(image, Image.Image):
                check_image_size("upload", *image.size, self.searcher.max_pixels)
                return image
            reason = f"a {type(image).__name__}, not an image"
        except ImageLoadError as err:
            reason = err.reason  # without the upload's path on the server
        log.warning("refused an upload: %s", reason)
        raise refused(f"That photo cannot be used: {reason}.")

    def _suggestions(self, recipes: list[StoredPoint]) -> dict[str, float]:
        return dict(vote_ingredients(recipes[:VOTERS], top=SUGGESTIONS))

    def _map(self, vector, what: str):
        if self.map is None:
            return None
        return self.map.figure(vector, f"where your {what} falls (star) among the dishes")


def _words(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


def _shown(hits: list[StoredPoint], root_url: str) -> tuple[list, list[dict]]:
    """The gallery (each photo's URL and caption) and, in the same order, the hits as the
    browser keeps them; hits without a photo file are left out of both."""
    gallery, state = [], []
    for hit in hits:
        path = hit.image_path
        if path is None or not path.is_file():
            continue
        url = photo_url(hit.id, root_url)
        gallery.append((url, _caption(hit)))
        state.append({"id": hit.id, "score": hit.score, "photo": url,
                      "payload": public_payload(hit.payload)})  # fmt: skip
    return gallery, state


def _caption(hit: StoredPoint) -> str:
    names = hit.payload.get("base_ingredients") or hit.payload.get("ingredients") or []
    caption = f"{hit.score:.3f} · {hit.payload.get('title') or '-'}"
    if names:
        more = ", …" if len(names) > 4 else ""
        caption += f" · {', '.join(names[:4])}{more}"
    return caption


def _recipe_rows(hits: list[StoredPoint]) -> list[list]:
    rows = []
    for rank, hit in enumerate(hits, 1):
        p = hit.payload
        ingredients = ", ".join(p.get("ingredients") or p.get("base_ingredients") or [])
        rows.append([rank, round(hit.score, 3), p.get("title") or "-", p.get("label") or "-",
                     ingredients])  # fmt: skip
    return rows


def recipe_markdown(hit: dict) -> str:
    p = hit["payload"]
    lines = [f"### {p.get('title') or 'Untitled'}", f"score **{hit['score']:.3f}**"]
    if p.get("label"):
        lines[-1] += f" · dish type **{p['label'].replace('_', ' ')}**"
    ingredients = p.get("ingredients") or []
    if ingredients:
        lines.append("\n".join(f"- {i}" for i in ingredients))
    if p.get("image"):
        lines.append(f"`{p['image']}`")
    return "\n\n".join(lines)


def build_blocks(app: RecipeApp) -> gr.Blocks:
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
            dishes = gr.Dropdown(app.labels, multiselect=True, label="Dish type", elem_id="dish")
            with gr.Row():
                with_text = gr.Textbox(label="Must contain (comma-separated)", elem_id="with")
                without_text = gr.Textbox(label="Must not contain", elem_id="without")
        filters = [dishes, with_text, without_text]
        with gr.Tab("Find dishes from words", id="words"):
            _words_tab(app, filters)
        with gr.Tab("What's this dish?", id="photo"):
            _photo_tab(app, filters)
        with gr.Tab("Map", id="map"):
            gr.Plot(app.map.figure() if app.map else None, label="The collection")
    return blocks


def _words_tab(app: RecipeApp, filters: list) -> None:
    """Words -> photos, with an optional weighted photo, the clicked recipe and "more like
    this"."""
    with gr.Row():
        query = gr.Textbox(
            label="Ingredients, a dish name or a description",
            placeholder='e.g. "strawberries, cream, sugar" or "2:tacos - beef"',
            elem_id="query",
            scale=4,
        )
        search = gr.Button("Search", variant="primary", elem_id="search", scale=1)
    with gr.Accordion("Mix in a photo (weighted)", open=False), gr.Row():
        mix_image = photo_input(label="Photo", sources=["upload", "clipboard"],
                                height=180)  # fmt: skip
        mix_weight = gr.Slider(-1, 2, value=1, step=0.1, label="Photo weight")
    gallery = gr.Gallery(label="Dishes (score · title · ingredients)", columns=4,
                         height=430, elem_id="gallery")  # fmt: skip
    hits = gr.JSON(visible=False)  # the results with payloads, for "more like this" and the API
    chosen = gr.Textbox(visible=False)  # the clicked point's id; the API passes one
    with gr.Row():
        recipe = gr.Markdown(elem_classes="recipe-card", elem_id="recipe")
        more = gr.Button("More like this", elem_id="more")
    words_map = gr.Plot(label="Embedding map")
    gr.Examples(
        [["chocolate cake with strawberries"], ["tortillas, beef, salsa, cheese"],
         ["spaghetti, tomato, basil"], ['"2:apple pie" - cinnamon']],
        [query],
        label="Example queries",
    )  # fmt: skip
    inputs, outputs = [query, mix_image, mix_weight, *filters], [gallery, hits, words_map]
    search.click(app.text_to_image, inputs, outputs, api_name="text_to_image")
    query.submit(app.text_to_image, inputs, outputs, api_visibility="private")
    gallery.select(app.select, [hits], [recipe, chosen], api_visibility="private")
    more.click(app.more_like_this, [chosen, *filters], outputs, api_name="more_like_this")


def _photo_tab(app: RecipeApp, filters: list) -> None:
    """A photo -> the nearest recipes, suggested ingredients and similar dishes."""
    with gr.Row():
        photo = photo_input(label="Photo of a dish (upload, paste or drop)",
                            sources=["upload", "clipboard"], height=300,
                            elem_id="photo")  # fmt: skip
        suggested = gr.Label(num_top_classes=SUGGESTIONS, label="Suggested ingredients",
                             elem_id="suggested")  # fmt: skip
    identify = gr.Button("Find recipes", variant="primary", elem_id="identify")
    recipes = gr.Dataframe(
        headers=["rank", "score", "title", "dish type", "ingredients"],
        label="Nearest recipes", wrap=True, elem_id="recipes",
    )  # fmt: skip
    similar = gr.Gallery(label="Similar dishes", columns=6, height=240,
                         elem_id="similar")  # fmt: skip
    photo_map = gr.Plot(label="Embedding map")
    if app.examples:
        gr.Examples([[str(p)] for p in app.examples], [photo], label="Example photos")
    identify.click(app.image_to_text, [photo, *filters],
                   [recipes, suggested, similar, photo_map],
                   api_name="image_to_text")  # fmt: skip


def launch(
    app: RecipeApp,
    host: str = "127.0.0.1",
    port: int | None = None,
    concurrency: int = 2,
    block: bool = True,
):
    """Serve the page: loopback only unless ``host`` says otherwise, no share link, uploads
    capped; of the server's files only the indexed points' photos, by point id
    (:mod:`ui.photos`): Gradio's own file route is given no folder of the data."""
    blocks = build_blocks(app)
    blocks.queue(default_concurrency_limit=concurrency, max_size=64)
    searcher = app.searcher
    photos = photo_routes(searcher.store, searcher.collection, searcher.max_pixels)
    blocks.launch(
        server_name=host,
        server_port=port,
        share=False,
        app_kwargs={"routes": photos},  # ahead of Gradio's own routes
        max_file_size=MAX_UPLOAD,
        prevent_thread_lock=not block,
        quiet=True,
        css=CSS,
        footer_links=[],
    )
    return blocks
