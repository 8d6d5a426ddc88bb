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
from pathlib import Path

import gradio as gr
from PIL import Image

from indexer.search import Searcher, Term, parse_query
from indexer.store import SearchFilter, Store, StoredPoint, StoreError
from multimodal.data.decoding import BudgetExhausted
from multimodal.data.images import ImageLoadError, check_image_size
from multimodal.suggestions import SUGGESTIONS, VOTERS
from ui.feedback import mark, point_ids
from ui.guard import Access
from ui.map import MapCache
from ui.map_view import MapView
from ui.origins import Origins
from ui.photos import page_root_url, photo_url, public_payload
from ui.server import Server, start
from ui.service import read_upload_file

log = logging.getLogger(__name__)

RESULTS = max(12, VOTERS)  # hits per list; the recipes shown include every one that votes
DEFAULT_MODE = "hybrid"  # how words are matched, where the collection has BM25 words
DEFAULT_DIVERSITY = 0.0  # the words gallery's MMR diversity, 0 (none) to 1
DEFAULT_RANKING = "specific"  # suggested ingredients: by share, or by how specific they are
LOOKS_LIKE = 5  # dish types shown for a photo
EXAMPLE_READS = 2048  # points looked at for the example photos, at most


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
        self.labels = searcher.labels()
        # fitted once per collection and model (t-SNE in the background), kept in map_folder
        # (default $MULTIMODAL_HOME/maps); each search sends only its marks (ui.map_view)
        self.maps = MapCache(map_folder)
        self.map = self.maps.get(searcher.store, searcher.collection, searcher.metadata["model"])
        self.map_view = MapView(self.map, searcher)
        self.examples = examples or []
        # a collection indexed before BM25 words can only be searched densely
        self.mode = DEFAULT_MODE if searcher.words is not None else "dense"
        self.diversity = DEFAULT_DIVERSITY

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
        request: gr.Request | None = None,
    ):
        """Photos for a text query, optionally mixed with a photo; gallery, hits, map marks.
        ``mode``: how the words are matched (None: the page's default); ``diversity``: MMR,
        0 to 1. The query is text: a term naming a file is refused (photos come as uploads)."""
        terms = self._terms(query, image, image_weight)
        if not terms:
            raise refused("Type a dish or some ingredients (or add a photo) to search.")
        (hits,), vector = self._search(
            terms, ["image"], _filter(dishes, with_text, without_text),
            mode=mode or self.mode, diversity=diversity,
        )  # fmt: skip
        return self._shown_with_marks(hits, vector, "text query", request)

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
        request: gr.Request | None = None,
    ):
        """:meth:`text_to_image` steered by the results marked good (``liked``) and bad
        (``disliked``): Qdrant's recommendation, the query staying a positive example. With
        no query the liked results are the query."""
        try:
            like, unlike = point_ids(liked, "liked"), point_ids(disliked, "disliked")
        except ValueError as err:
            raise refused(str(err)) from None
        terms = self._terms(query, image, image_weight)
        if not terms and not like:
            raise refused(
                "Nothing to search again: type a query, or click a photo and mark it "
                "👍 Good first (dislikes alone have nothing to steer)."
            )
        (hits,), vector = self._search(
            terms, ["image"], _filter(dishes, with_text, without_text),
            mode=mode or self.mode, diversity=diversity, like=like, unlike=unlike,
        )  # fmt: skip
        return self._shown_with_marks(hits, vector, "search", request)

    def like(self, point_id, liked, disliked):
        """The clicked result marked good: the liked ids, the disliked ids, their summary."""
        return self._mark(point_id, liked, disliked, good=True)

    def dislike(self, point_id, liked, disliked):
        """The clicked result marked bad (see :meth:`like`)."""
        return self._mark(point_id, liked, disliked, good=False)

    def image_to_text(
        self, image, dishes, with_text, without_text, request: gr.Request | None = None
    ):
        """Recipes, suggested ingredients, similar dishes, the map marks and what the dish
        looks like (the dish types the nearest recipes vote for) for an uploaded photo."""
        if image is None:
            raise refused("Upload, paste or drop a photo of a dish first.")
        terms = [Term("image", self._checked(image))]
        (recipes, similar), vector = self._search(
            terms, ["text", "image"], _filter(dishes, with_text, without_text)
        )
        voters = recipes[:VOTERS]
        gallery, shown = _shown(similar, page_root_url(request))
        return (
            _recipe_rows(recipes),
            dict(self.searcher.ingredients_of(voters, SUGGESTIONS, ranking=DEFAULT_RANKING)),
            gallery,
            self.map_view.marks(vector, shown, "photo"),
            self.looks_like(voters),
        )

    def looks_like(self, recipes: list[StoredPoint]) -> dict[str, float]:
        """The dish types ``recipes`` vote for, as the page shows them ("crab cakes": 0.18)."""
        shown: dict[str, float] = {}
        for label, share in self.searcher.looks_like(recipes, LOOKS_LIKE):
            if share <= 0:  # only voters scoring below 0: no vote at all
                continue
            name = str(label).replace("_", " ")
            shown[name] = shown.get(name, 0.0) + share
        return shown

    def more_like_this(
        self,
        point_id,
        dishes,
        with_text,
        without_text,
        diversity=DEFAULT_DIVERSITY,
        request: gr.Request | None = None,
    ):
        """Image -> image from a stored point (the one clicked in the gallery)."""
        if not point_id:
            raise refused("Click a photo in the results first.")
        (hits,), vector = self._search(
            [Term("point", point_id)], ["image"], _filter(dishes, with_text, without_text),
            diversity=diversity,
        )  # fmt: skip
        return self._shown_with_marks(hits, vector, "more like this", request)

    def select(self, hits: list[dict], event: gr.SelectData):
        """The full recipe of the clicked result, and its id for "more like this"."""
        if not hits or event.index is None or event.index >= len(hits):
            return "", ""
        hit = hits[event.index]
        return recipe_markdown(hit), hit["id"]

    # -- helpers -------------------------------------------------------------------------

    def _terms(self, query, image, image_weight) -> list[Term]:
        """The query's terms: its words (parsed), then the photo mixed in with its weight."""
        try:
            terms = parse_query(query) if query and query.strip() else []
        except ValueError as err:
            raise refused(str(err)) from None
        if image is not None:
            terms.append(Term("image", self._checked(image), float(image_weight)))
        return terms

    def _search(self, terms, targets, search_filter, **how):
        """The query vector of ``terms`` (of the first liked point when there are none) and
        the hits in each of ``targets``; ``how``: mode, diversity, like and unlike, as
        :meth:`Searcher.nearest` takes them."""
        try:
            if terms:  # the searcher takes the towers' locks, shared with the API
                prepared = self.searcher.prepare(terms)
            else:
                prepared = self.searcher.feedback_only(how.get("like"), how.get("unlike"))
            results = [
                self.searcher.nearest(prepared, target, RESULTS, search_filter, **how)
                for target in targets
            ]
        except (ValueError, ImageLoadError, StoreError) as err:
            raise refused(str(err)) from None
        return results, prepared.vector

    def _mark(self, point_id, liked, disliked, good: bool):
        if not point_id:
            raise refused("Click a photo in the results first, then mark it.")
        try:
            return mark(point_id, liked, disliked, good)
        except ValueError as err:
            raise refused(str(err)) from None

    def _checked(self, image) -> Image.Image:
        """The upload (a file path from :func:`ui.page.photo_input`, or a PIL image when
        called directly) as an RGB image; anything unusable is one readable message on the
        page and one line in the server's log, not a traceback."""
        try:
            if isinstance(image, (str, Path)):  # decoded as the API decodes its uploads
                return read_upload_file(image, self.searcher.max_pixels)
            if isinstance(image, Image.Image):
                check_image_size("upload", *image.size, self.searcher.max_pixels)
                return image
            reason = f"that photo cannot be used: a {type(image).__name__}, not an image"
        except ImageLoadError as err:
            reason = f"that photo cannot be used: {err.reason}"
        except (ValueError, BudgetExhausted) as err:  # the reason, without the upload's path
            reason = str(err)
        log.warning("refused an upload: %s", reason)
        raise refused(f"{reason[0].upper()}{reason[1:]}.")

    def _shown_with_marks(self, hits, vector, what: str, request) -> tuple[list, list, dict]:
        """The gallery, the hits as the browser keeps them, and their marks for the map."""
        gallery, shown = _shown(hits, page_root_url(request))
        return gallery, shown, self.map_view.marks(vector, shown, what)


def _filter(dishes, with_text, without_text) -> SearchFilter:
    return SearchFilter(
        labels=list(dishes or []),
        with_ingredients=_words(with_text),
        without_ingredients=_words(without_text),
    )


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
