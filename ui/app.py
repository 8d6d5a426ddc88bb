"""The web page: Gradio Blocks over one :class:`indexer.search.Searcher`.

Three tabs: find dishes from words (text -> images in a search mode, with "more like this"
and like / dislike), recognise a dish from a photo (what it looks like, recipes, suggested
ingredients, similar dishes), and a map of the collection. Each search is also a named API
endpoint, so ``gradio_client`` can call it::

    from gradio_client import Client
    Client("http://127.0.0.1:7860/").predict("tacos with salsa", ..., api_name="/text_to_image")
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
from PIL import Image

from indexer.search import Searcher
from indexer.service import (
    DEFAULT_DIVERSITY,
    DEFAULT_RANKING,
    Answer,
    EmptyQuery,
    SearchQuery,
    SearchService,
)
from indexer.store import SearchFilter, Store, StoreError
from indexer.tags import tag_choices
from multimodal.data.decoding import BudgetExhausted
from multimodal.data.images import ImageLoadError
from multimodal.suggestions import VOTERS
from ui.cards import (
    filter_choices,
    gallery_and_hits,
    looks_like,
    page_filter,
    recipe_markdown,
    recipe_rows,
    verdict,
)
from ui.feedback import mark, marks_text, point_ids
from ui.guard import Access
from ui.map import MapCache
from ui.map_view import MapView
from ui.origins import Origins
from ui.photos import page_root_url
from ui.region import box_of
from ui.server import Server, start
from ui.throttle import Throttle
from ui.uploads import read_upload_file

log = logging.getLogger(__name__)

RESULTS = max(12, VOTERS)  # hits per list; the recipes shown include every one that votes
EXAMPLE_READS = 2048  # points looked at for the example photos, at most
MAP_REFRESH_SECONDS = 60.0  # a changing collection's map is fitted again at most this often


EMPTY_TEXT = "Type a dish or some ingredients (or add a photo) to search."
EMPTY_SEARCH = (
    "Nothing to search again: type a query, or click a photo and mark it 👍 Good first "
    "(dislikes alone have nothing to steer)."
)
EMPTY_PHOTO = "Upload, paste or drop a photo of a dish first."
NO_POINT = "Click a photo in the results first."


def refused(message: str) -> gr.Error:
    """An expected refusal (bad input): a readable message on the page, no traceback in the
    server's log."""
    return gr.Error(message, print_exception=False)


def example_photos(
    store: Store, collection: str, count: int = 6, read: int = EXAMPLE_READS
) -> list[Path]:
    """A few photos of different dish types from the collection (the val split when there
    is one), for one-click examples; at most ``read`` points are looked at, so a large
    collection whose photos are elsewhere starts as fast as a small one."""
    picked, seen, looked = [], set(), 0
    for spec in (SearchFilter(splits=["val"]), None):
        for record in store.scroll(collection, spec, ["image", "root", "label"], page=256):
            looked += 1
            if looked > read:
                return picked
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

    def __init__(
        self,
        searcher: Searcher,
        examples: list[Path] | None = None,
        map_folder: Path | str | None = None,
    ):
        self.searcher = searcher
        self.service = SearchService(searcher)  # the JSON API's too (ui.server)
        self.labels = searcher.labels()
        self.tags = tag_choices(searcher.metadata)  # multimodal tag's fields and labels
        self.changes = 0  # collection changes this process made (serve --watch); see refresh
        # fitted once per collection and model (t-SNE in the background), kept in map_folder
        # (default $MULTIMODAL_HOME/maps); each search sends only its marks (ui.map_view)
        self.maps = MapCache(map_folder)
        self.map = self.maps.get(searcher.store, searcher.collection, searcher.metadata["model"])
        self.map_view = MapView(self.map, searcher)
        self.examples = examples or []
        self.mode = self.service.default_mode  # dense in a collection without BM25 words
        self.diversity = DEFAULT_DIVERSITY
        self._map_refresh = Throttle(self._refit_map, MAP_REFRESH_SECONDS)

    def refresh(self) -> None:
        """After the collection changed (a watched folder): the filter's dish types and
        labels, the Duplicates tab's groups (found again when next asked) and, at most once
        a minute, the map (t-SNE refitted in the background) follow it."""
        self.searcher.metadata = self.searcher.store.metadata(self.searcher.collection)
        self.labels = self.searcher.labels()
        self.tags = tag_choices(self.searcher.metadata)
        self.changes += 1
        self._map_refresh.request()

    def _refit_map(self) -> None:
        collection_map = self.maps.get(
            self.searcher.store, self.searcher.collection, self.searcher.metadata["model"]
        )
        self.map = collection_map
        self.map_view.replace(collection_map)

    def filter_choices(self) -> gr.Dropdown:
        """The "Dish type or label" filter's choices as the collection now has them (each
        page load asks)."""
        return gr.Dropdown(choices=filter_choices(self.labels, self.tags))

    # -- handlers ------------------------------------------------------------------------

    def text_to_image(
        self,
        query,
        image,
        image_weight,
        dishes,
        with_text,
        without_text,
        mode=None,
        diversity=DEFAULT_DIVERSITY,
        collapse=True,
        min_score=None,
        page=False,
        request: gr.Request | None = None,
    ):
        """Photos for a text query, optionally mixed with a photo; gallery, hits, map marks.
        ``mode``: how the words are matched (None: the collection's default); ``diversity``:
        MMR, 0 to 1; ``collapse``: one photo per picture, "+N similar" in its caption;
        ``min_score``: the least match probability (None: the default); ``page``: the page's
        own event, which also shows the verdict ("no good match"). The query is text: a term
        naming a file is refused (photos come as uploads)."""
        how = {"mode": mode, "diversity": diversity, "request": request, "what": "text query"}
        how.update(collapse=collapse, min_score=min_score, page=page)
        return self.feedback(query, image, image_weight, dishes, with_text, without_text, **how)

    def feedback(
        self,
        query,
        image,
        image_weight,
        dishes,
        with_text,
        without_text,
        mode=None,
        diversity=DEFAULT_DIVERSITY,
        liked=None,
        disliked=None,
        collapse=True,
        min_score=None,
        page=False,
        request: gr.Request | None = None,
        what: str = "search",
    ):
        """:meth:`text_to_image` steered by the results marked good (``liked``) and bad
        (``disliked``): Qdrant's recommendation, the query staying a positive example. With
        no query the liked results are the query."""
        with refusals(EMPTY_SEARCH if what == "search" else EMPTY_TEXT):
            photos = [self._checked(image)] if image is not None else []
            asked = SearchQuery(
                text=query or "",
                photos=photos,
                photo_weight=float(image_weight),
                k=RESULTS,
                filter=page_filter(dishes, with_text, without_text, self.tags),
                mode=mode,
                diversity=diversity,
                like=point_ids(liked, "liked"),
                unlike=point_ids(disliked, "disliked"),
                collapse=bool(collapse),
                min_score=min_score,
            )
            answer = self.service.search(asked)
        return self._shown_with_marks(answer, what, request, page)

    def like(self, point_id, liked, disliked, searched=None):
        """The clicked result marked good: the liked ids, the disliked ids, their summary.
        With ``searched`` (what the results' search asked: ``{"text": ...}`` or
        ``{"point": ...}``), the mark is also kept with the collection for training."""
        return self._mark(point_id, liked, disliked, True, searched)

    def dislike(self, point_id, liked, disliked, searched=None):
        """The clicked result marked bad (see :meth:`like`)."""
        return self._mark(point_id, liked, disliked, False, searched)

    def image_to_text(
        self,
        image,
        dishes,
        with_text,
        without_text,
        collapse=True,
        min_score=None,
        page=False,
        box=None,
        request: gr.Request | None = None,
    ):
        """Recipes, suggested ingredients, similar dishes, the map marks and what the dish
        looks like (the dish types the nearest recipes vote for) for an uploaded photo, or
        its region ``box`` (:mod:`ui.region`); the verdict too for the page's own event (see
        :meth:`text_to_image`)."""
        if image is None:
            raise refused(EMPTY_PHOTO)
        with refusals(EMPTY_PHOTO):
            asked = SearchQuery(
                photos=[self._checked(image)],
                target="text",
                k=RESULTS,
                filter=page_filter(dishes, with_text, without_text, self.tags),
                mode="dense",
                suggest=True,
                ranking=DEFAULT_RANKING,
                collapse=bool(collapse),
                min_score=min_score,
                box=box_of(box),
            )
            recipes, similar = self.service.search_in(asked, ["text", "image"])
        gallery, shown = gallery_and_hits(similar, page_root_url(request))
        found = (
            recipe_rows(recipes.hits),
            dict(recipes.ingredients),
            gallery,
            self.map_view.marks(similar.vector, shown, "photo"),
            looks_like(recipes.looks_like),
        )
        return (*found, verdict(recipes, similar)) if page else found

    def more_like_this(
        self,
        point_id,
        dishes,
        with_text,
        without_text,
        diversity=DEFAULT_DIVERSITY,
        collapse=True,
        min_score=None,
        page=False,
        request: gr.Request | None = None,
    ):
        """Image -> image from a stored point (the one clicked in the gallery)."""
        if not point_id:
            raise refused(NO_POINT)
        with refusals(NO_POINT):
            asked = SearchQuery(
                point_id=point_id,
                k=RESULTS,
                diversity=diversity,
                filter=page_filter(dishes, with_text, without_text, self.tags),
                collapse=bool(collapse),
                min_score=min_score,
            )
            answer = self.service.search(asked)
        return self._shown_with_marks(answer, "more like this", request, page)

    def select(self, hits: list[dict], event: gr.SelectData):
        """The full recipe of the clicked result, and its id for "more like this"."""
        if not hits or event.index is None or event.index >= len(hits):
            return "", ""
        hit = hits[event.index]
        return recipe_markdown(hit), hit["id"]

    # -- helpers -------------------------------------------------------------------------

    def _mark(self, point_id, liked, disliked, good: bool, searched):
        if not point_id:
            raise refused("Click a photo in the results first, then mark it.")
        try:
            liked, disliked, _ = mark(point_id, liked, disliked, good)
            if searched:  # a search by an uploaded photo alone has no words to learn
                self.service.marks.record(searched, point_id, good)
        except (ValueError, StoreError) as err:
            raise refused(str(err)) from None
        return liked, disliked, marks_text(liked, disliked, kept=bool(searched))

    def _checked(self, image) -> Image.Image:
        """The upload (a file path from :func:`ui.page.photo_input`, or a PIL image when
        called directly) as an RGB image; anything unusable is one readable message on the
        page and one line in the server's log, not a traceback."""
        try:
            if isinstance(image, (str, Path)):  # decoded as the API decodes its uploads
                return read_upload_file(image, self.searcher.max_pixels)
            if isinstance(image, Image.Image):  # a direct call: checked by the searcher
                return image
            reason = f"that photo cannot be used: a {type(image).__name__}, not an image"
        except ImageLoadError as err:
            reason = f"that photo cannot be used: {err.reason}"
        except (ValueError, BudgetExhausted) as err:  # the reason, without the upload's path
            reason = str(err)
        log.warning("refused an upload: %s", reason)
        raise refused(f"{reason[0].upper()}{reason[1:]}.")

    def _shown_with_marks(self, answer: Answer, what: str, request, page=False) -> tuple:
        """The gallery, the hits as the browser keeps them, and their marks for the map;
        with ``page``, the verdict too."""
        gallery, shown = gallery_and_hits(answer, page_root_url(request))
        found = gallery, shown, self.map_view.marks(answer.vector, shown, what)
        return (*found, verdict(answer)) if page else found


@contextmanager
def refusals(empty: str):
    """The service's refusals as messages on the page (``empty`` for an empty query, in
    the words of the tab it came from)."""
    try:
        yield
    except gr.Error:  # the page's own message
        raise
    except EmptyQuery:
        raise refused(empty) from None
    except (ValueError, ImageLoadError, StoreError, BudgetExhausted) as err:
        raise refused(str(err)) from None


def launch(
    app: RecipeApp,
    host: str = "127.0.0.1",
    port: int | None = None,
    concurrency: int = 2,
    block: bool = True,
    access: Access | None = None,
    origins: Origins | None = None,
) -> Server:
    """Serve the page, its photos and the JSON API on one port (:mod:`ui.server`): loopback
    only unless ``host`` says otherwise, no share link, uploads capped, ``access``'s
    credentials asked for when it has any, only ``origins``' host names answered (default:
    ``host``'s) and no cross-site requests; of the server's files only the indexed points'
    photos, by point id (:mod:`ui.photos`). Returns the running server (``local_url``,
    ``block_thread()``, ``close()``)."""
    server = start(app, host, port, concurrency, access, origins)
    if block:
        try:
            server.block_thread()
        finally:
            server.close()
    return server
