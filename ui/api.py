"""The JSON API beside the page, over the page's :class:`indexer.service.SearchService`.

    POST /api/search           JSON SearchBody                      -> SearchOut
    POST /api/search/photo     multipart: photo (file), query (JSON SearchBody, optional)
    POST /api/suggest          multipart: photo (file), top, ranking -> SuggestOut
    GET  /api/items/{id}                                            -> HitOut
    GET  /api/similar/{id}?target=image&k=12&diversity=0            -> SearchOut
    GET  /api/health                                                -> HealthOut

Every refusal is ``{"detail": "one readable line"}``: 422 for input that does not validate
or cannot be searched (a corrupt photo, a file path as a term), 404 for an id the
collection does not hold, 413 past the byte or pixel limit, 503 when the store is away or
uploads wait too long for room to decode.
docs/api.md has the examples; ``/docs`` the OpenAPI page.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import PurePath
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from gradio import route_utils
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from indexer.service import DEFAULT_K, Answer, SearchQuery, SearchService, UnknownPoint
from indexer.store import SearchFilter, StoredPoint, StoreError
from indexer.tags import check_field
from indexer.trust import DEFAULT_MIN_SCORE
from multimodal.data.decoding import BudgetExhausted
from multimodal.data.images import ImageLoadError
from multimodal.suggestions import SUGGESTIONS, VOTERS
from ui.photos import hit_json
from ui.uploads import MAX_UPLOAD_BYTES, PhotoTooLarge, read_upload, too_many_bytes

log = logging.getLogger(__name__)

PREFIX = "/api"
MAX_K = 100  # hits in one answer: the API's page size (the query itself allows more)
MAX_NAMES = 100  # dish types or ingredients in one filter
Name = Annotated[str, StringConstraints(max_length=200)]
# a field multimodal tag wrote; never one the indexer writes (a "root" filter would tell a
# client which folders of the server hold photos)
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
PointId = Annotated[str, StringConstraints(max_length=64)]
Target = Literal["image", "text"]
Mode = Literal["dense", "hybrid", "sparse"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored


class Filters(Strict):
    """What every result must match."""

    labels: list[Name] = Field([], max_length=MAX_NAMES, description="dish types, any of")
    with_ingredients: list[Name] = Field([], max_length=MAX_NAMES, description="each must appear")
    without_ingredients: list[Name] = Field([], max_length=MAX_NAMES, description="none may")
    fields: dict[FieldName, list[Name]] = Field(
        {},
        max_length=MAX_NAMES,
        description="payload field -> values, any of (e.g. a multimodal tag field: "
        '{"course": ["dessert"]}); every field given must match',
    )

    def spec(self) -> SearchFilter:
        for key in self.fields:
            check_field(key)  # a ValueError: 422
        return SearchFilter(
            list(self.labels),
            list(self.with_ingredients),
            list(self.without_ingredients),
            fields={key: list(values) for key, values in self.fields.items()},
        )


class SearchBody(Strict):
    """A search: words, a stored point, liked results, or a mix (with a photo on
    ``/api/search/photo``)."""

    text: str = Field(
        "",
        description="words or a mixed expression, e.g. '\"2:apple pie\" + cinnamon - raisins'; "
        "id:UUID terms allowed, file paths not",
    )
    point_id: PointId | None = Field(None, description="a stored point to search from")
    photo_weight: float = Field(1.0, description="the uploaded photo's weight beside words")
    target: Target = Field("image", description="image: photos; text: recipe texts")
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K, description="results")
    filters: Filters = Field(default_factory=Filters)
    mode: Mode | None = Field(
        None,
        description="how words are matched; default: hybrid where the collection has BM25 "
        "words, else dense",
    )
    diversity: float = Field(0.0, description="MMR re-ranking, 0 to 1")
    like: list[PointId] = Field([], description="point ids to steer to")
    unlike: list[PointId] = Field([], description="point ids to avoid")
    collapse: bool = Field(
        True,
        description="photos that are one picture (resized, recompressed, cropped, mirrored): "
        "the best as a hit, the others in its duplicates; false: every photo a hit",
    )
    box: list[float] | None = Field(
        None,
        min_length=4,
        max_length=4,
        description="the uploaded photo's region to search by, [x0, y0, x1, y1]: pixels, or "
        "fractions of its width and height when every value is from 0 to 1 (photo route only)",
    )
    min_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description=f"the least match probability a hit needs (default {DEFAULT_MIN_SCORE} "
        "where the model is calibrated; 0: every hit)",
    )

    def query(self, photo=None) -> SearchQuery:
        """The search as the service takes it, checked there (its refusals are 422s)."""
        fields = self.model_dump(exclude={"filters"})
        photos = [photo] if photo is not None else []
        return SearchQuery(**fields, photos=photos, filter=self.filters.spec())


class Duplicate(BaseModel):
    id: str
    score: float | None
    photo: str | None


class HitOut(BaseModel):
    id: str = Field(description="the point id")
    score: float | None = Field(description="similarity (a fused rank score in hybrid mode)")
    probability: float | None = Field(
        None, description="the chance the hit is relevant (calibrated; null: model not calibrated)"
    )
    photo: str | None = Field(description="the photo's URL on this server")
    duplicates: list[Duplicate] = Field(
        [], description="photos that are the same picture, folded into this hit (collapse)"
    )
    payload: dict[str, Any] = Field(description="title, label, ingredients, image, ...")


class SearchOut(BaseModel):
    hits: list[HitOut]
    target: Target
    mode: Mode = Field(description="how the words were matched (dense for a query without words)")
    no_good_match: bool = Field(
        False, description="true when no hit reached min_score: hits is empty, see near_miss"
    )
    near_miss: HitOut | None = Field(None, description="the best hit below min_score")
    min_score: float | None = Field(None, description="the cut applied (null: none)")
    in_domain: float | None = Field(
        None,
        description="how usual the query is for the model's calibration data, 0 to 1 "
        "(the share of its own queries as unusual); null: not calibrated",
    )


class Share(BaseModel):
    name: str
    share: float


class SuggestOut(BaseModel):
    looks_like: list[Share] = Field(description="dish types the nearest recipes vote for")
    ingredients: list[Share] = Field(description="suggested ingredients, in ranking order")
    recipes: list[HitOut] = Field(description="the nearest recipes, which voted")


class HealthOut(BaseModel):
    status: Literal["ok"]
    collection: str
    points: int
    model: str
    modes: list[Mode]


def service(request: Request) -> SearchService:
    return request.app.state.search_service


def public_model(spec: str) -> str:
    """A model spec as a client may see it: a checkpoint folder on the server by its last
    two parts ("recipe/best"), never its whole path; any other spec as it is."""
    path = PurePath(spec)
    return "/".join(path.parts[-2:]) if path.is_absolute() else spec


Service = Annotated[SearchService, Depends(service)]
router = APIRouter(prefix=PREFIX, tags=["search"])


@router.post("/search", response_model=SearchOut)
def search(body: SearchBody, searches: Service, request: Request) -> SearchOut:
    """Search by words, a stored point, liked results, or a mix."""
    with refusals():
        query = body.query()
        return _search_out(searches.search(query), _root_url(request))


@router.post("/search/photo", response_model=SearchOut)
def search_photo(
    photo: Annotated[UploadFile, File(description="a photo, at most 10 MB")],
    searches: Service,
    request: Request,
    query: Annotated[str, Form(max_length=64_000, description="a SearchBody as JSON")] = "{}",
) -> SearchOut:
    """Search by an uploaded photo, mixed with the words of ``query`` when it has any."""
    try:
        body = SearchBody.model_validate_json(query)
    except ValidationError as err:
        raise HTTPException(422, "query: " + _first_error(err.errors())) from None
    with refusals():
        image = read_upload(_upload_bytes(photo), searches.searcher.max_pixels)
        return _search_out(searches.search(body.query(image)), _root_url(request))


@router.post("/suggest", response_model=SuggestOut)
def suggest(
    photo: Annotated[UploadFile, File(description="a photo of a dish, at most 10 MB")],
    searches: Service,
    request: Request,
    top: Annotated[int, Form(ge=1, le=MAX_K, description="ingredients")] = SUGGESTIONS,
    ranking: Annotated[Literal["specific", "share"], Form()] = "specific",
) -> SuggestOut:
    """What the dish in a photo looks like, and the ingredients its nearest recipes vote
    for (ranked by how specific they are, or by share)."""
    with refusals():
        image = read_upload(_upload_bytes(photo), searches.searcher.max_pixels)
        query = SearchQuery(
            photos=[image],
            target="text",
            k=VOTERS,
            mode="dense",
            suggest=True,
            ranking=ranking,
            suggestions=top,
        )
        found = searches.search(query)
    root_url = _root_url(request)
    return SuggestOut(
        looks_like=[Share(name=n, share=s) for n, s in found.looks_like],
        ingredients=[Share(name=n, share=s) for n, s in found.ingredients],
        recipes=[_hit_out(hit, root_url) for hit in found.recipes],
    )


@router.get("/items/{point_id}", response_model=HitOut)
def item(point_id: str, searches: Service, request: Request) -> HitOut:
    """One stored item: its photo URL and payload."""
    with refusals():
        return _hit_out(searches.item(point_id), _root_url(request))


@router.get("/similar/{point_id}", response_model=SearchOut)
def similar(
    point_id: str,
    searches: Service,
    request: Request,
    target: Target = "image",
    k: Annotated[int, Query(ge=1, le=MAX_K)] = DEFAULT_K,
    diversity: float = 0.0,
    collapse: bool = True,
) -> SearchOut:
    """Items like a stored one (itself left out), matched by its vectors; photos that are
    one picture folded into the best of them unless ``collapse`` is false."""
    with refusals():
        query = SearchQuery(
            point_id=point_id, target=target, k=k, diversity=diversity, collapse=collapse
        )
        return _search_out(searches.search(query), _root_url(request))


@router.get("/health", response_model=HealthOut)
def health(searches: Service) -> HealthOut:
    """The collection served, its size and model, and the modes it can be searched in."""
    with refusals():
        found = searches.health()
    return HealthOut(**{**found, "model": public_model(found["model"])})


# -- answers and refusals ------------------------------------------------------------------


@contextmanager
def refusals():
    """The service's refusals as HTTP answers with one readable line."""
    try:
        yield
    except PhotoTooLarge as err:
        raise HTTPException(413, str(err)) from None
    except UnknownPoint as err:
        raise HTTPException(404, str(err)) from None
    except (ValueError, ImageLoadError) as err:
        raise HTTPException(422, str(err)) from None
    except BudgetExhausted as err:
        raise HTTPException(503, str(err), headers={"Retry-After": "5"}) from None
    except StoreError as err:
        log.warning("the store refused an API search: %s", err)
        raise HTTPException(503, f"the store is not available: {err}") from None


def _upload_bytes(photo: UploadFile) -> bytes:
    """The upload's bytes, refused past the limit without reading further."""
    data = photo.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, too_many_bytes(None))
    return data


def _search_out(answer: Answer, root_url: str) -> SearchOut:
    hits = [_hit_out(hit, root_url, answer.duplicates.get(hit.id, [])) for hit in answer.hits]
    near = answer.near_miss
    return SearchOut(
        hits=hits,
        target=answer.target,
        mode=answer.mode,
        no_good_match=answer.no_match,
        near_miss=_hit_out(near, root_url, answer.duplicates.get(near.id, [])) if near else None,
        min_score=answer.min_score,
        in_domain=None if answer.domain is None else round(answer.domain, 4),
    )


def _hit_out(hit: StoredPoint, root_url: str, duplicates=()) -> HitOut:
    return HitOut(**hit_json(hit, root_url, duplicates))


def _root_url(request: Request) -> str:
    """The server's address as the client reached it (behind a proxy too), as the page
    works out its own."""
    return route_utils.get_root_url(request, request.url.path, request.scope.get("root_path"))


def _first_error(errors) -> str:
    """The first of pydantic's errors as one line: ``k: Input should be ...``."""
    if not errors:
        return "invalid request"
    error = errors[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
    message = f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid")
    return _printable(message)


def _printable(text: str) -> str:
    """``text`` on one line: a control character (a newline in a field's name, say) written
    as its escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


async def _validation_refused(request: Request, err: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _first_error(err.errors())}, status_code=422)


def install(app: FastAPI, searches: SearchService) -> None:
    """Add the API's routes to ``app``, answering from ``searches``."""
    app.state.search_service = searches
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_refused)
